//! Fault injection knobs, deterministic with a seed.

use std::collections::BTreeSet;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Per-test fault settings. All rates are probabilities in `[0, 1]`, drawn from one `StdRng` seeded with
/// `seed`, in request order: the same seed and the same sequence of requests give the same faults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Faults {
    pub seed: u64,
    /// Added (real time) before every API answer.
    pub latency: Duration,
    /// Share of API requests answered `429 Too Many Requests` (nothing happens).
    pub rate_429: f64,
    /// Share of API requests answered `503` (nothing happens).
    pub rate_5xx: f64,
    /// Share of create calls (app, machine, volume) that succeed and then answer `408` anyway.
    pub create_408_after_success: f64,
    /// Share of exec calls answered `408 deadline_exceeded` (the command still ran).
    pub exec_deadline_exceeded: f64,
    /// Machines (by id or name, or every Machine of an app by the app's name) whose Postgres never becomes
    /// healthy.
    pub never_healthy: BTreeSet<String>,
    /// `FLY_RESTORED_FROM` handling panics on boot (boot loop), whatever the secrets.
    pub restored_from_fails: bool,
    /// Machines (by id or name) that Fly cannot launch (a host or image-pull failure): every start ends in the
    /// persistent `failed` state (docs `machine-states`; flyctl `internal/machine/update.go` treats a settled
    /// `failed` as an error, and its rollout relaunches `failed` Machines).
    #[serde(default)]
    pub launch_fails: BTreeSet<String>,
    /// Share of Machine mutations (`POST`/`DELETE` on `/v1/apps/{app}/machines/{id}` and its actions; exec,
    /// wait and the lease calls excepted) answered `409` as if another client (a `fly deploy`, another
    /// console) held the Machine's lease: nothing happens (the spec's 409 "lease held", fly-platform notes;
    /// flyctl retries it). Drawn only when set, so the seeded sequences of the other faults stay as they were.
    #[serde(default)]
    pub lease_conflict: f64,
    /// Enforce Fly's documented rate limits in simulated time (token buckets per action and Machine or
    /// app: 1 req/s burst 3; Get Machine 5 req/s burst 10) and answer 429 beyond them.
    pub enforce_rate_limits: bool,
    /// Crash and OOM exits come as `request.MonitorEvent.exit_event` instead of `request.exit_event`
    /// (fly-go `machine_types.go::MachineRequest.GetExitCode` prefers the nested form; Fly sends both).
    #[serde(default)]
    pub monitor_exit_events: bool,
}

#[derive(Debug)]
pub(crate) struct FaultState {
    pub cfg: Faults,
    rng: StdRng,
    /// key → (tokens, last refill ms)
    buckets: std::collections::HashMap<String, (f64, i64)>,
}

impl FaultState {
    pub fn new(cfg: Faults) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Self {
            cfg,
            rng,
            buckets: Default::default(),
        }
    }

    /// Take a token from the bucket for this request; `false` = over the limit.
    pub fn rate_ok(&mut self, method: &str, path: &str, now_ms: i64) -> bool {
        if !self.cfg.enforce_rate_limits {
            return true;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // /v1/apps/{app}/machines/{id}[/action]
        let (target, action, get_machine) = match parts.as_slice() {
            ["v1", "apps", _, "machines", id] => {
                (id.to_string(), format!("{method} machine"), method == "GET")
            }
            ["v1", "apps", _, "machines", id, action, ..] => {
                (id.to_string(), format!("{method} {action}"), false)
            }
            ["v1", "apps", app, rest @ ..] => (
                app.to_string(),
                format!("{method} {}", rest.join("/")),
                false,
            ),
            _ => (String::new(), format!("{method} {path}"), false),
        };
        let (rate, burst) = if get_machine { (5.0, 10.0) } else { (1.0, 3.0) };
        let key = format!("{action} {target}");
        let (tokens, refilled_ms) = self.buckets.entry(key).or_insert((burst, now_ms));
        let elapsed = (now_ms - *refilled_ms).max(0) as f64 / 1000.0;
        *tokens = (*tokens + elapsed * rate).min(burst);
        *refilled_ms = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A lease conflict for this request (see [`Faults::lease_conflict`]); draws only when the rate is set and
    /// the request mutates a Machine.
    pub fn lease_conflict(&mut self, method: &str, path: &str) -> bool {
        let rate = self.cfg.lease_conflict;
        rate > 0.0 && mutates_machine(method, path) && self.hit(rate)
    }

    /// Draw once; `true` with probability `p`. Always draws, so the sequence does not depend on `p`.
    pub fn hit(&mut self, probability: f64) -> bool {
        let draw: f64 = self.rng.random();
        probability > 0.0 && draw < probability
    }
}

/// `POST`/`DELETE` on a Machine or one of its actions, other than exec, wait, the lease and metadata (which a
/// lease held by another client does not block).
fn mutates_machine(method: &str, path: &str) -> bool {
    if method != "POST" && method != "DELETE" {
        return false;
    }
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "apps", _, "machines", _] => true,
        ["v1", "apps", _, "machines", _, action, ..] => {
            !matches!(*action, "exec" | "wait" | "lease" | "metadata")
        }
        _ => false,
    }
}
