//! Server-only: login throttling, and the client address it is keyed on.
//!
//! Throttling is per account name and per client IP (governor's GCRA, in memory): a restart forgets it, and
//! several console instances would each keep their own.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AppState;

/// Login throttling: per account name and per client IP.
pub struct LoginLimits {
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginLimits {
    /// `per_account` and `per_ip` attempts per minute (bursts of the same size).
    pub fn new(per_account: u32, per_ip: u32) -> Arc<Self> {
        let per_minute =
            |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Arc::new(LoginLimits {
            per_account: RateLimiter::keyed(per_minute(per_account)),
            per_ip: RateLimiter::keyed(per_minute(per_ip)),
        })
    }

    /// Spend one attempt for this account and this IP; `false` when either is over its quota.
    pub fn allow(&self, name: &str, ip: Option<IpAddr>) -> bool {
        let key: String = name.trim().to_ascii_lowercase().chars().take(64).collect();
        let ip_ok = ip.is_none_or(|ip| self.per_ip.check_key(&ip).is_ok());
        let account_ok = self.per_account.check_key(&key).is_ok();
        ip_ok && account_ok
    }
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimits")
    }
}

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
