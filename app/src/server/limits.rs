//! Server-only: the client address that audit rows record and that credential throttling is keyed on.
//!
//! The throttling itself lives in `walden_core::users::throttle` (SQLite-backed, keyed by account and by the
//! client's address or IPv6 /64): the one place the rule is decided.

use std::net::{IpAddr, SocketAddr};

use super::AppState;

/// The caller's address: the configured proxy header when there is one (and it parses), else the TCP peer.
pub async fn client_ip(state: &AppState) -> Option<IpAddr> {
    if let Some(header) = &state.client_ip_header {
        let from_header =
            leptos::prelude::use_context::<axum::http::request::Parts>().and_then(|parts| {
                parts
                    .headers
                    .get(header)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<IpAddr>().ok())
            });
        if from_header.is_some() {
            return from_header;
        }
    }
    leptos_axum::extract::<axum::extract::ConnectInfo<SocketAddr>>()
        .await
        .ok()
        .map(|connection| connection.0.ip())
}
