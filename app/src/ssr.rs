//! Server-only glue: the state every server function and render can reach, and error mapping.

use axum::extract::FromRef;
use leptos::prelude::*;
use sqlx::SqlitePool;

use crate::error::AppError;

/// Handles shared by every request. `leptos_axum` provides it as context to server functions and renders.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub pool: SqlitePool,
    /// No Fly token configured: the console talks to the built-in emulator.
    pub demo_mode: bool,
    /// The domain: accounts, audit log, settings, clusters (and through it, Fly). Server functions reach
    /// state only through it.
    pub walden: walden_core::Walden,
    /// Login throttling per account and per IP.
    pub login_limits: std::sync::Arc<crate::auth::LoginLimits>,
    /// Session lifetimes.
    pub sessions: crate::auth::SessionPolicy,
    /// Read the client's address from this header (`Fly-Client-IP` behind Fly's proxy) instead of the TCP
    /// peer. Only set behind a proxy that always overwrites it.
    pub client_ip_header: Option<axum::http::HeaderName>,
}

/// The application state of the current request.
pub fn app_state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| internal("AppState missing from the request context"))
}

/// The id of the current request (set by the request-id layer), for logs and error texts.
pub fn request_id() -> String {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| {
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// Log an internal failure with the request id and turn it into the opaque error the user sees.
pub fn internal(cause: impl std::fmt::Display) -> AppError {
    let request_id = request_id();
    tracing::error!(%request_id, error = %cause, "server function failed");
    AppError::Internal { request_id }
}
