//! Client-side rate limiting at Fly's documented limits (docs `machines/api`): per action and per
//! Machine (or app), 1 request/s with a burst of 3; `get machine` 5 requests/s with a burst of 10.
//! Built on `governor` (GCRA, keyed by `(action, resource)`).

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

/// Rates for the two classes of calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Requests per second and burst for every action except `get machine`.
    pub per_action: (u32, u32),
    /// Requests per second and burst for `get machine`.
    pub get_machine: (u32, u32),
}

impl RateLimits {
    /// Fly's documented limits.
    pub const FLY: RateLimits = RateLimits {
        per_action: (1, 3),
        get_machine: (5, 10),
    };
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::FLY
    }
}

/// The action name used as the key for `get machine`.
pub(crate) const GET_MACHINE: &str = "get_machine";

pub(crate) struct Limiter {
    per_action: DefaultKeyedRateLimiter<(&'static str, String)>,
    get_machine: DefaultKeyedRateLimiter<(&'static str, String)>,
}

fn quota((per_second, burst): (u32, u32)) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl Limiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Self {
            per_action: DefaultKeyedRateLimiter::keyed(quota(limits.per_action)),
            get_machine: DefaultKeyedRateLimiter::keyed(quota(limits.get_machine)),
        }
    }

    fn bucket(&self, action: &str) -> &DefaultKeyedRateLimiter<(&'static str, String)> {
        if action == GET_MACHINE {
            &self.get_machine
        } else {
            &self.per_action
        }
    }

    /// Wait until `action` on `resource` may be sent.
    pub(crate) async fn acquire(&self, action: &'static str, resource: &str) {
        let key = (action, resource.to_string());
        self.bucket(action).until_key_ready(&key).await;
    }

    /// Take a permit now if one is free (used by tests to observe the buckets).
    #[cfg(test)]
    pub(crate) fn try_acquire(&self, action: &'static str, resource: &str) -> bool {
        let key = (action, resource.to_string());
        self.bucket(action).check_key(&key).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Burst sizes are checked by taking permits back to back: the bucket refills at 1/s (or 5/s),
    // far slower than these few calls, so the counts are exact.
    #[test]
    fn burst_is_per_action_and_per_machine() {
        let l = Limiter::new(RateLimits::FLY);
        for _ in 0..3 {
            assert!(l.try_acquire("stop", "m1"));
        }
        assert!(!l.try_acquire("stop", "m1"), "fourth stop on m1 must wait");
        assert!(
            l.try_acquire("stop", "m2"),
            "another machine has its own bucket"
        );
        assert!(
            l.try_acquire("start", "m1"),
            "another action has its own bucket"
        );
    }

    #[test]
    fn get_machine_has_a_larger_burst() {
        let l = Limiter::new(RateLimits::FLY);
        for _ in 0..10 {
            assert!(l.try_acquire(GET_MACHINE, "m1"));
        }
        assert!(!l.try_acquire(GET_MACHINE, "m1"));
    }
}
