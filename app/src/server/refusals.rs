//! Server-only: audit rows for refused requests (security review M4), within a budget.
//!
//! Every refusal is recorded: a server function's role or sign-in check ([`super::Caller`]), and, in the
//! server's guard layer, a Host that is not allowed or a cross-origin state change. A refusal stands whether or
//! not its row is written (fail-closed is for changes; a refusal changes nothing), so a failed write is logged,
//! not returned.
//!
//! Anonymous refusals cost the refuser nothing, so they would let anyone on the network make the console write
//! to its database at will. They are therefore recorded within a budget per client ([`RefusalBudget`]: a small
//! number a minute per IPv4 address or IPv6 /64); beyond it they are only counted, in the
//! `walden_refusals_unrecorded_total` metric. A signed-in user's refusals are always recorded.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use walden_core::audit::{Actor, Event, RequestMeta};
use walden_core::Walden;

/// Anonymous refusal rows recorded per client per minute (bursts of the same size).
pub const ANONYMOUS_REFUSALS_PER_MIN: u32 = 20;

/// Above this many tracked clients, forget the idle ones (bounds the memory an address sweep can take).
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The per-client budget of anonymous refusal rows.
pub struct RefusalBudget {
    per_client: DefaultKeyedRateLimiter<IpAddr>,
}

impl RefusalBudget {
    /// `per_minute` rows per client (at least one).
    pub fn new(per_minute: u32) -> Arc<Self> {
        let n = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Arc::new(RefusalBudget {
            per_client: RateLimiter::keyed(Quota::per_minute(n)),
        })
    }

    /// Spend one row for this client; `false` when its budget is spent. Clients without a known address
    /// share one budget.
    pub fn allow(&self, client: Option<IpAddr>) -> bool {
        if self.per_client.len() > MAX_TRACKED_CLIENTS {
            self.per_client.retain_recent();
        }
        self.per_client.check_key(&client_key(client)).is_ok()
    }
}

impl std::fmt::Debug for RefusalBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalBudget")
    }
}

/// One key per IPv4 address and per IPv6 /64 (one host usually holds a whole /64).
fn client_key(client: Option<IpAddr>) -> IpAddr {
    match client {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
        Some(v4) => v4,
        None => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    }
}

/// Record a refusal (its event has outcome `denied`): always for a signed-in user, within the client's budget
/// for anyone else. Never fails: the refusal stands either way.
pub async fn record(
    walden: &Walden,
    budget: &RefusalBudget,
    client: Option<IpAddr>,
    actor: &Actor,
    meta: &RequestMeta,
    event: &Event,
) {
    let signed_in = actor.user_id().is_some();
    if !signed_in && !budget.allow(client) {
        metrics::counter!("walden_refusals_unrecorded_total", "action" => event.action.clone())
            .increment(1);
        return;
    }
    if let Err(e) = walden.audit().record(actor, meta, event).await {
        tracing::error!(
            request_id = meta.request_id.as_deref().unwrap_or("-"),
            action = %event.action,
            error = %e,
            "the refusal could not be recorded in the audit log (it was refused all the same)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_keyed_by_address_and_ipv6_slash_64() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7").unwrap());
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7").unwrap());
    }

    #[test]
    fn the_budget_runs_out_per_client() {
        let budget = RefusalBudget::new(3);
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        assert!((0..3).all(|_| budget.allow(a)));
        assert!(!budget.allow(a));
        assert!(budget.allow(b));
    }
}
