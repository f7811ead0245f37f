//! The `Sim` handle: state, clock, timers, and the Machine state machine.
//!
//! Every rule of the emulated platform lives under this module, one file per resource (`apps`,
//! `machines`, `actions`, `wait`, `leases`, `metadata`, `volumes`, `secrets`, `logs`); the HTTP layer
//! (`crate::api`) only decodes, calls one method here and encodes. Invariants: all state sits behind one
//! mutex and every change happens under it; ids and random choices come from the seeded `State::rand`, in
//! call order, so the same seed and requests give the same answers; what runs inside a Machine is reached
//! only through `crate::image`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::clock::{ms, Clock, ManualClock, SystemClock};
use crate::faults::{FaultState, Faults};
use crate::model::*;

mod actions;
mod apps;
mod leases;
mod logs;
mod machines;
mod metadata;
mod secrets;
mod state;
mod timers;
mod volumes;
mod wait;

pub(crate) use actions::Action;
pub use apps::valid_app_name;
pub(crate) use apps::{AppSummary, TokenScope};
pub(crate) use logs::LogQuery;
pub(crate) use machines::{MachineFilter, MachineView};
pub(crate) use metadata::MetadataWrite;
pub(crate) use state::{machine_env, new_app};
pub(crate) use wait::WaitRequest;

/// How long simulated things take.
#[derive(Debug, Clone)]
pub struct Timing {
    pub start: Duration,
    pub stop: Duration,
    /// From `started` until Postgres accepts connections (checks pass).
    pub boot: Duration,
    /// From a panic in `start` until the Machine exits and restarts.
    pub crash: Duration,
    /// Fixed part of `wal-g backup-fetch` during a PITR init.
    pub restore_base: Duration,
    /// Download speed of `backup-fetch` (compressed bytes per simulated second).
    pub restore_bytes_per_sec: u64,
    /// WAL replay time per archived segment.
    pub replay_per_segment: Duration,
    /// Pause before the keeper retries a failed init.
    pub restore_retry: Duration,
    /// archive_timeout of the default spec.
    pub archive_timeout: Duration,
    /// Speed of `wal-g backup-push` (uncompressed bytes per simulated second).
    pub push_bytes_per_sec: u64,
    /// A new app answers 404 this long after its creation (fly-go `flaps/flaps_apps.go::WaitForApp`
    /// retries 404/401 for that reason).
    pub app_visible_after: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(2),
            stop: Duration::from_secs(2),
            boot: Duration::from_secs(5),
            crash: Duration::from_secs(3),
            restore_base: Duration::from_secs(30),
            restore_bytes_per_sec: 50 * 1024 * 1024,
            replay_per_segment: Duration::from_millis(200),
            restore_retry: Duration::from_secs(20),
            archive_timeout: Duration::from_secs(60),
            push_bytes_per_sec: 100 * 1024 * 1024,
            app_visible_after: Duration::from_secs(2),
        }
    }
}

/// A handle on one emulated Fly (cheap to clone).
#[derive(Clone)]
pub struct Sim {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub state: Mutex<State>,
    pub clock: Arc<dyn Clock>,
    pub manual: Option<Arc<ManualClock>>,
    pub notify: Notify,
    pub persist: Option<PathBuf>,
    pub faults: Mutex<FaultState>,
    pub timing: Timing,
}

/// Builds a [`Sim`].
#[derive(Default)]
pub struct SimBuilder {
    manual: Option<OffsetDateTime>,
    seed: u64,
    persist: Option<PathBuf>,
    timing: Option<Timing>,
}

impl SimBuilder {
    /// Use a manual clock starting at `start` (tests). Without this, real time.
    pub fn manual_clock(mut self, start: OffsetDateTime) -> Self {
        self.manual = Some(start);
        self
    }
    /// Seed for ids and random choices (the Stolon sentinel's keeper pick).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Persist the state to this JSON file (loaded if it exists).
    pub fn persist(mut self, path: impl Into<PathBuf>) -> Self {
        self.persist = Some(path.into());
        self
    }
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = Some(timing);
        self
    }
    /// Build the Sim, loading the state file if one is configured and exists.
    pub fn build(self) -> Result<Sim, SimError> {
        let state = match &self.persist {
            Some(path) if path.exists() => load_state(path)?,
            _ => State {
                seed: self.seed,
                ..State::default()
            },
        };
        Ok(self.assemble(state))
    }

    /// The Sim around `state` (infallible: nothing is read).
    fn assemble(self, state: State) -> Sim {
        let (clock, manual): (Arc<dyn Clock>, _) = match self.manual {
            Some(start) => {
                let manual = Arc::new(ManualClock::new(start));
                (manual.clone(), Some(manual))
            }
            None => (Arc::new(SystemClock), None),
        };
        Sim {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                clock,
                manual,
                notify: Notify::new(),
                persist: self.persist,
                faults: Mutex::new(FaultState::new(Faults::default())),
                timing: self.timing.unwrap_or_default(),
            }),
        }
    }
}

/// The persisted state in `path`.
fn load_state(path: &std::path::Path) -> Result<State, SimError> {
    let persist_error = |reason: String| SimError::Persist {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| persist_error(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| persist_error(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("flysim state file {path}: {reason}")]
    Persist { path: String, reason: String },
    #[error("flysim: {0}")]
    Invalid(String),
    #[error("flysim demo storage {path}: {reason}")]
    Storage { path: String, reason: String },
}

/// An API error: HTTP status + Fly's `{"error": …}` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub error: String,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> Self {
        Self {
            status,
            error: error.into(),
            code: None,
        }
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(404, what)
    }
    pub fn bad(what: impl Into<String>) -> Self {
        Self::new(400, what)
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl Sim {
    pub fn builder() -> SimBuilder {
        SimBuilder::default()
    }

    /// A Sim on real time with no orgs (add them with [`Sim::add_org`]).
    pub fn new() -> Self {
        Self::builder().assemble(State::default())
    }

    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    pub fn timing(&self) -> &Timing {
        &self.inner.timing
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add an org (idempotent).
    pub fn add_org(&self, slug: &str, name: &str) {
        let mut state = self.lock();
        let n = state.orgs.len() as u64 + 1;
        state.orgs.entry(slug.to_string()).or_insert_with(|| Org {
            slug: slug.to_string(),
            name: name.to_string(),
            internal_numeric_id: 1000 + n,
        });
    }

    /// Accept `token` for the given orgs (an org token).
    pub fn add_token(&self, token: &str, orgs: &[&str]) {
        let mut state = self.lock();
        let id = state.next_id("tok_", 16);
        state.tokens.insert(
            token.to_string(),
            Token {
                token_id: id,
                orgs: orgs.iter().map(|s| s.to_string()).collect(),
                apps: None,
                user: Some("flysim@example.com".into()),
            },
        );
    }

    /// Accept `token` for the given apps of one org only (a deploy token).
    pub fn add_app_token(&self, token: &str, org: &str, apps: &[&str]) {
        let mut state = self.lock();
        let id = state.next_id("tok_", 16);
        state.tokens.insert(
            token.to_string(),
            Token {
                token_id: id,
                orgs: vec![org.to_string()],
                apps: Some(apps.iter().map(|s| s.to_string()).collect()),
                user: None,
            },
        );
    }

    pub fn set_faults(&self, faults: Faults) {
        *self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()) = FaultState::new(faults);
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        self.inner.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Advance a manual clock and run everything that falls due, in time order.
    /// Panics never; on a real clock this only runs due work.
    pub fn advance(&self, by: Duration) {
        if let Some(manual) = &self.inner.manual {
            // Step through due timers so each runs at its own time.
            let target = manual.now() + by;
            loop {
                let next = {
                    let state = self.lock();
                    state.timers.iter().map(|t| t.at_ms).min()
                };
                match next {
                    Some(at) if at <= ms(target) => {
                        manual.set(crate::clock::from_ms(at));
                        self.tick();
                    }
                    _ => break,
                }
            }
            manual.set(target);
        }
        self.tick();
    }

    /// Run due timers. Called by every request and (real clock) by a background ticker.
    pub fn tick(&self) -> bool {
        let now = ms(self.now());
        let ran = {
            let mut state = self.lock();
            state.run_due(now, self)
        };
        if ran {
            self.inner.notify.notify_waiters();
            self.save();
        }
        ran
    }

    /// The earliest pending timer (simulated time), if any.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        let state = self.lock();
        state
            .timers
            .iter()
            .map(|t| t.at_ms)
            .min()
            .map(crate::clock::from_ms)
    }

    pub(crate) fn changed(&self) {
        self.inner.notify.notify_waiters();
        self.save();
    }

    /// Write the state file (if configured). Errors are logged, not fatal.
    pub fn save(&self) {
        let Some(path) = &self.inner.persist else {
            return;
        };
        let text = {
            let state = self.lock();
            serde_json::to_string(&*state)
        };
        match text {
            Ok(text) => {
                let tmp = path.with_extension("tmp");
                if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path))
                {
                    tracing::warn!(path = %path.display(), error = %e, "flysim: cannot save state");
                }
            }
            Err(e) => tracing::warn!(error = %e, "flysim: cannot serialise state"),
        }
    }

    // ---- test/inspection helpers ----

    /// A Machine's current state (`None` if unknown).
    pub fn machine_state(&self, app: &str, machine: &str) -> Option<String> {
        self.tick();
        let state = self.lock();
        state
            .apps
            .get(app)?
            .machines
            .get(machine)
            .map(|member| member.state.as_str().to_string())
    }

    /// The secrets version a Machine booted with (what Fly's API does not show: tests check that an update
    /// reached it), and the app's current one.
    pub fn secrets_versions(&self, app: &str, machine: &str) -> Option<(u64, u64)> {
        let state = self.lock();
        let owner = state.apps.get(app)?;
        let member = owner.machines.get(machine)?;
        Some((member.secrets_version, owner.secrets_version))
    }

    /// Log messages of an app, oldest first.
    pub fn log_messages(&self, app: &str) -> Vec<String> {
        let state = self.lock();
        state
            .apps
            .get(app)
            .map(|owner| owner.logs.iter().map(|l| l.message.clone()).collect())
            .unwrap_or_default()
    }

    /// The Stolon cluster phase of an app (`normal`, `initializing`), and the PITR step if one ran.
    pub fn pg_phase(&self, app: &str) -> Option<(String, Option<String>)> {
        let state = self.lock();
        let pg = state.apps.get(app)?.pg.as_ref()?;
        Some((pg.phase.clone(), pg.pitr.as_ref().map(|p| p.step.clone())))
    }

    /// Fill the volume mounted on `machine` to `percent` of its size (the role check reads `readonly`
    /// above 90 %).
    pub fn set_disk_used(&self, app: &str, machine: &str, percent: u8) -> Result<(), SimError> {
        let mut state = self.lock();
        let owner = state
            .apps
            .get_mut(app)
            .ok_or_else(|| SimError::Invalid(format!("no app {app}")))?;
        let volume = owner
            .machines
            .get(machine)
            .and_then(|member| member.volume.clone())
            .ok_or_else(|| SimError::Invalid(format!("machine {machine} has no volume")))?;
        if let Some(found) = owner.volumes.get_mut(&volume) {
            found.used_percent = Some(percent.min(100));
        }
        Ok(())
    }

    /// The app's bucket refuses uploads (`refused`) or takes them again: while refused, every `wal-push` of the
    /// leader fails with `AccessDenied` (reads still work), so WAL is not archived and the leader's volume
    /// keeps a segment per switch (see `Volume::wal_ready_bytes`).
    pub fn set_wal_push_refused(&self, app: &str, refused: bool) -> Result<(), SimError> {
        let mut state = self.lock();
        let pg = state
            .apps
            .get_mut(app)
            .and_then(|owner| owner.pg.as_mut())
            .ok_or_else(|| SimError::Invalid(format!("app {app} has no Postgres cluster")))?;
        pg.wal_push_refused = refused;
        Ok(())
    }

    /// The bytes in use on the volume mounted on `machine` (what the Machines API reports as `bytes_used`).
    pub fn disk_used_bytes(&self, app: &str, machine: &str) -> Option<u64> {
        let state = self.lock();
        let owner = state.apps.get(app)?;
        let id = owner.machines.get(machine)?.volume.as_ref()?;
        owner.volumes.get(id).map(Volume::bytes_used)
    }

    /// Insert rows into a table of the app's Postgres (for tests and the demo: data to restore).
    pub fn pg_insert(&self, app: &str, db: &str, table: &str, rows: u64) -> Result<(), SimError> {
        let now = ms(self.now());
        let mut state = self.lock();
        let pg = state
            .apps
            .get_mut(app)
            .and_then(|owner| owner.pg.as_mut())
            .ok_or_else(|| SimError::Invalid(format!("app {app} has no Postgres cluster")))?;
        let n = pg
            .databases
            .entry(db.to_string())
            .or_default()
            .entry(table.to_string())
            .or_default();
        *n = n.saturating_add(rows);
        pg.lsn = pg.lsn.saturating_add(rows.saturating_mul(128));
        pg.unarchived_commit_ms = Some(now);
        Ok(())
    }

    /// An OOM kill: the Machine exits with `oom_killed` and restarts (policy `always`).
    pub fn inject_oom(&self, app: &str, machine: &str) -> Result<(), SimError> {
        self.inject_exit(app, machine, 137, true)
    }

    /// The Machine's main process exits with `exit_code` and the Machine restarts.
    pub fn inject_exit(
        &self,
        app: &str,
        machine: &str,
        exit_code: i64,
        oom: bool,
    ) -> Result<(), SimError> {
        let now = ms(self.now());
        {
            let mut state = self.lock();
            state
                .exit_and_restart(app, machine, now, exit_code, oom, self)
                .map_err(|e| SimError::Invalid(e.error))?;
        }
        self.changed();
        Ok(())
    }
}

impl Default for Sim {
    fn default() -> Self {
        Self::new()
    }
}
