//! The console's own health, shown to everyone (the demo badge shows on the sign-in page too).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use leptos::server_fn::ServerFn;

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[(<GetConsoleStatus as ServerFn>::PATH, None)];

/// What the console says about itself: shown in the header and on the status panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    /// Walden's version.
    pub version: String,
    /// True when no Fly token is configured: the console runs against the built-in Fly emulator.
    pub demo_mode: bool,
    /// True when the database answered.
    pub database_ok: bool,
    /// How many schema migrations are applied.
    pub migrations: i64,
    /// Server time of the check (RFC 3339, UTC).
    pub checked_at: String,
}

/// The console's own health: version, demo mode, database reachability, schema version.
#[server(endpoint = "get_console_status")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn get_console_status() -> Result<ConsoleStatus, AppError> {
    use time::format_description::well_known::Rfc3339;
    let visitor = crate::server::Visitor::new().await?;
    let database_ok = walden_core::db::ping(visitor.pool()).await;
    let migrations = if database_ok {
        walden_core::db::applied_migrations(visitor.pool()).await?
    } else {
        0
    };
    Ok(ConsoleStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        demo_mode: visitor.demo_mode(),
        database_ok,
        migrations,
        checked_at: time::OffsetDateTime::now_utc().format(&Rfc3339)?,
    })
}
