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
    /// Machines (by id or name) whose Postgres never becomes healthy.
    pub never_healthy: BTreeSet<String>,
    /// `FLY_RESTORED_FROM` handling panics on boot (boot loop), whatever the secrets.
    pub restored_from_fails: bool,
}

#[derive(Debug)]
pub(crate) struct FaultState {
    pub cfg: Faults,
    rng: StdRng,
}

impl FaultState {
    pub fn new(cfg: Faults) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Self { cfg, rng }
    }

    /// Draw once; `true` with probability `p`. Always draws, so the sequence does not depend on `p`.
    pub fn hit(&mut self, p: f64) -> bool {
        let x: f64 = self.rng.random();
        p > 0.0 && x < p
    }
}
