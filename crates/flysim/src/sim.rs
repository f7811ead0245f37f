//! The `Sim` handle: state, clock, timers, and the Machine state machine.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::clock::{ms, rfc3339, Clock, ManualClock, SystemClock};
use crate::faults::{FaultState, Faults};
use crate::model::*;

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
    pub fn build(self) -> Result<Sim, SimError> {
        let (clock, manual): (Arc<dyn Clock>, _) = match self.manual {
            Some(t) => {
                let m = Arc::new(ManualClock::new(t));
                (m.clone(), Some(m))
            }
            None => (Arc::new(SystemClock), None),
        };
        let mut state = State {
            seed: self.seed,
            ..State::default()
        };
        if let Some(path) = &self.persist {
            if path.exists() {
                let text = std::fs::read_to_string(path).map_err(|e| SimError::Persist {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                state = serde_json::from_str(&text).map_err(|e| SimError::Persist {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(Sim {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                clock,
                manual,
                notify: Notify::new(),
                persist: self.persist,
                faults: Mutex::new(FaultState::new(Faults::default())),
                timing: self.timing.unwrap_or_default(),
            }),
        })
    }
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
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("a builder without a state file cannot fail"))
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
        let mut st = self.lock();
        let n = st.orgs.len() as u64 + 1;
        st.orgs.entry(slug.to_string()).or_insert_with(|| Org {
            slug: slug.to_string(),
            name: name.to_string(),
            internal_numeric_id: 1000 + n,
        });
    }

    /// Accept `token` for the given orgs (an org token).
    pub fn add_token(&self, token: &str, orgs: &[&str]) {
        let mut st = self.lock();
        let id = st.next_id("tok_", 16);
        st.tokens.insert(
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
        let mut st = self.lock();
        let id = st.next_id("tok_", 16);
        st.tokens.insert(
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
        if let Some(m) = &self.inner.manual {
            // Step through due timers so each runs at its own time.
            let target = m.now() + by;
            loop {
                let next = {
                    let st = self.lock();
                    st.timers.iter().map(|t| t.at_ms).min()
                };
                match next {
                    Some(at) if at <= ms(target) => {
                        m.set(crate::clock::from_ms(at));
                        self.tick();
                    }
                    _ => break,
                }
            }
            m.set(target);
        }
        self.tick();
    }

    /// Run due timers. Called by every request and (real clock) by a background ticker.
    pub fn tick(&self) -> bool {
        let now = ms(self.now());
        let ran = {
            let mut st = self.lock();
            st.run_due(now, self)
        };
        if ran {
            self.inner.notify.notify_waiters();
            self.save();
        }
        ran
    }

    /// The earliest pending timer (simulated time), if any.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        let st = self.lock();
        st.timers
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
            let st = self.lock();
            serde_json::to_string(&*st)
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
        let st = self.lock();
        st.apps
            .get(app)?
            .machines
            .get(machine)
            .map(|m| m.state.as_str().to_string())
    }

    /// Log messages of an app, oldest first.
    pub fn log_messages(&self, app: &str) -> Vec<String> {
        let st = self.lock();
        st.apps
            .get(app)
            .map(|a| a.logs.iter().map(|l| l.message.clone()).collect())
            .unwrap_or_default()
    }

    /// The Stolon cluster phase of an app (`normal`, `initializing`), and the PITR step if one ran.
    pub fn pg_phase(&self, app: &str) -> Option<(String, Option<String>)> {
        let st = self.lock();
        let pg = st.apps.get(app)?.pg.as_ref()?;
        Some((pg.phase.clone(), pg.pitr.as_ref().map(|p| p.step.clone())))
    }

    /// Insert rows into a table of the app's Postgres (for tests and the demo: data to restore).
    pub fn pg_insert(&self, app: &str, db: &str, table: &str, rows: u64) -> Result<(), SimError> {
        let mut st = self.lock();
        let pg = st
            .apps
            .get_mut(app)
            .and_then(|a| a.pg.as_mut())
            .ok_or_else(|| SimError::Invalid(format!("app {app} has no Postgres cluster")))?;
        let n = pg
            .databases
            .entry(db.to_string())
            .or_default()
            .entry(table.to_string())
            .or_default();
        *n = n.saturating_add(rows);
        pg.lsn = pg.lsn.saturating_add(rows.saturating_mul(128));
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
            let mut st = self.lock();
            st.exit_and_restart(app, machine, now, exit_code, oom, &self.inner.timing)
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

// ----------------------------------------------------------------------------------------------
// State helpers
// ----------------------------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl State {
    pub(crate) fn rand(&mut self) -> u64 {
        self.counter += 1;
        splitmix(self.seed ^ self.counter.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    pub(crate) fn next_id(&mut self, prefix: &str, hex_len: usize) -> String {
        let mut s = String::from(prefix);
        while s.len() < prefix.len() + hex_len {
            s.push_str(&format!("{:016x}", self.rand()));
        }
        s.truncate(prefix.len() + hex_len);
        s
    }

    /// A 26-character ULID-like id (Machine versions, events).
    pub(crate) fn ulid(&mut self, now_ms: i64) -> String {
        let mut s = String::with_capacity(26);
        let mut t = now_ms.max(0) as u64;
        let mut time_part = [0u8; 10];
        for c in time_part.iter_mut().rev() {
            *c = CROCKFORD[(t % 32) as usize];
            t /= 32;
        }
        s.push_str(std::str::from_utf8(&time_part).unwrap_or("0000000000"));
        let mut r = self.rand();
        let mut r2 = self.rand();
        for i in 0..16 {
            let src = if i < 8 { &mut r } else { &mut r2 };
            s.push(CROCKFORD[(*src % 32) as usize] as char);
            *src /= 32;
        }
        s
    }

    pub(crate) fn schedule(&mut self, app: &str, at_ms: i64, kind: TimerKind) {
        self.counter += 1;
        let seq = self.counter;
        self.timers.push(Timer {
            at_ms,
            seq,
            app: app.to_string(),
            kind,
        });
    }

    pub(crate) fn app(&self, name: &str) -> ApiResult<&App> {
        self.apps
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("app not found: {name}")))
    }

    pub(crate) fn app_mut(&mut self, name: &str) -> ApiResult<&mut App> {
        self.apps
            .get_mut(name)
            .ok_or_else(|| ApiError::not_found(format!("app not found: {name}")))
    }

    pub(crate) fn machine_mut(&mut self, app: &str, id: &str) -> ApiResult<&mut Machine> {
        self.app_mut(app)?
            .machines
            .get_mut(id)
            .filter(|m| !m.destroyed)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))
    }

    pub(crate) fn log(&mut self, app: &str, machine: &str, at_ms: i64, message: impl Into<String>) {
        self.counter += 1;
        let seq = self.counter;
        let id = format!("{:016x}", splitmix(seq));
        let Some(a) = self.apps.get_mut(app) else {
            return;
        };
        let region = a
            .machines
            .get(machine)
            .map(|m| m.region.clone())
            .unwrap_or_default();
        // Nanosecond stamps strictly increase so next_token paging never loses a line.
        let mut ns = at_ms as i128 * 1_000_000;
        if let Some(last) = a.logs.back() {
            if ns <= last.ns {
                ns = last.ns + 1;
            }
        }
        a.logs.push_back(LogLine {
            ns,
            id,
            instance: machine.to_string(),
            region,
            message: message.into(),
        });
        while a.logs.len() > LOG_CAP {
            a.logs.pop_front();
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push_event(
        &mut self,
        app: &str,
        machine: &str,
        kind: &str,
        status: &str,
        source: &str,
        at_ms: i64,
        request: Value,
    ) {
        let id = self.ulid(at_ms);
        if let Ok(m) = self.machine_any_mut(app, machine) {
            m.events.push_front(Event {
                id,
                kind: kind.into(),
                status: status.into(),
                source: source.into(),
                ms: at_ms,
                request,
            });
            m.events.truncate(EVENT_CAP);
        }
    }

    fn machine_any_mut(&mut self, app: &str, id: &str) -> ApiResult<&mut Machine> {
        self.app_mut(app)?
            .machines
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))
    }

    /// Move a Machine to a transient state and schedule the settle.
    pub(crate) fn transition(
        &mut self,
        app: &str,
        machine: &str,
        transient: MachineState,
        to: MachineState,
        at_ms: i64,
        after: Duration,
    ) -> ApiResult<()> {
        let m = self.machine_any_mut(app, machine)?;
        m.state = transient;
        m.gen += 1;
        m.updated_ms = at_ms;
        m.ready_ms = None;
        let gen = m.gen;
        self.schedule(
            app,
            at_ms + after.as_millis() as i64,
            TimerKind::Settle {
                machine: machine.to_string(),
                gen,
                to,
            },
        );
        Ok(())
    }

    /// Run every timer due at or before `now`, earliest first. Returns whether anything ran.
    pub(crate) fn run_due(&mut self, now: i64, sim: &Sim) -> bool {
        let mut ran = false;
        #[allow(clippy::while_let_loop)]
        loop {
            let Some(idx) = self
                .timers
                .iter()
                .enumerate()
                .filter(|(_, t)| t.at_ms <= now)
                .min_by_key(|(_, t)| (t.at_ms, t.seq))
                .map(|(i, _)| i)
            else {
                break;
            };
            let timer = self.timers.swap_remove(idx);
            ran = true;
            self.fire(timer, sim);
        }
        ran
    }

    fn fire(&mut self, timer: Timer, sim: &Sim) {
        let at = timer.at_ms;
        let app = timer.app.clone();
        match timer.kind {
            TimerKind::Settle { machine, gen, to } => {
                let Ok(m) = self.machine_any_mut(&app, &machine) else {
                    return;
                };
                if m.gen != gen {
                    return;
                }
                m.state = to;
                m.updated_ms = at;
                m.gen += 1;
                match to {
                    MachineState::Started => {
                        self.push_event(&app, &machine, "start", "started", "flyd", at, json!({}));
                        crate::stolon::boot(self, &app, &machine, at, sim);
                    }
                    MachineState::Stopped => {
                        let exit = json!({"exit_event": {"exit_code": 0, "guest_exit_code": 0, "signal": -1,
                            "oom_killed": false, "requested_stop": true, "restarting": false,
                            "exited_at": rfc3339(at)}});
                        self.push_event(&app, &machine, "exit", "stopped", "flyd", at, exit);
                        crate::stolon::halted(self, &app, &machine, at);
                    }
                    MachineState::Suspended => {
                        self.push_event(
                            &app,
                            &machine,
                            "suspend",
                            "suspended",
                            "flyd",
                            at,
                            json!({}),
                        );
                        crate::stolon::halted(self, &app, &machine, at);
                    }
                    MachineState::Destroyed => {
                        self.push_event(
                            &app,
                            &machine,
                            "destroy",
                            "destroyed",
                            "user",
                            at,
                            json!({}),
                        );
                        crate::stolon::halted(self, &app, &machine, at);
                        if let Ok(a) = self.app_mut(&app) {
                            if let Some(m) = a.machines.get_mut(&machine) {
                                m.destroyed = true;
                                let vol = m.volume.take();
                                if let Some(v) = vol.and_then(|v| a.volumes.get_mut(&v)) {
                                    v.attached_machine_id = None;
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            TimerKind::Ready { machine, gen } => {
                crate::stolon::ready(self, &app, &machine, gen, at);
            }
            TimerKind::Crash { machine, gen } => {
                let Ok(m) = self.machine_any_mut(&app, &machine) else {
                    return;
                };
                if m.gen != gen {
                    return;
                }
                let _ = self.exit_and_restart(&app, &machine, at, 2, false, &sim.inner.timing);
            }
            TimerKind::Pitr { gen } => {
                crate::stolon::pitr_step(self, &app, gen, at, sim);
            }
            TimerKind::Archive => {
                crate::stolon::archive_tick(self, &app, at, sim);
            }
            TimerKind::BackupDone { machine, job } => {
                crate::walg::finish_push(self, &app, &machine, &job, at);
            }
        }
    }

    pub(crate) fn exit_and_restart(
        &mut self,
        app: &str,
        machine: &str,
        at: i64,
        exit_code: i64,
        oom: bool,
        timing: &Timing,
    ) -> ApiResult<()> {
        let m = self.machine_mut(app, machine)?;
        if m.state != MachineState::Started && m.state != MachineState::Starting {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: machine {machine} is not running (state {})",
                    m.state
                ),
            ));
        }
        m.restart_count += 1;
        m.crash_reason = None;
        let restart_count = m.restart_count;
        let req = json!({"exit_event": {"exit_code": exit_code, "guest_exit_code": exit_code,
            "signal": if oom { 9 } else { -1 }, "oom_killed": oom, "requested_stop": false,
            "restarting": true, "exited_at": rfc3339(at)}, "restart_count": restart_count});
        self.push_event(app, machine, "exit", "stopped", "flyd", at, req);
        if oom {
            self.log(app, machine, at, "Out of memory: Killed process (postgres)");
        }
        crate::stolon::halted(self, app, machine, at);
        self.transition(
            app,
            machine,
            MachineState::Starting,
            MachineState::Started,
            at,
            timing.start,
        )
    }
}

/// Env a process on the Machine sees: config env, then the secrets it booted with, then Fly's own vars.
pub(crate) fn machine_env(app: &App, m: &Machine) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(obj) = m.config.get("env").and_then(|e| e.as_object()) {
        for (k, v) in obj {
            if let Some(s) = v.as_str() {
                env.insert(k.clone(), s.to_string());
            }
        }
    }
    for (k, v) in &m.secrets_env {
        env.insert(k.clone(), v.clone());
    }
    env.insert("FLY_APP_NAME".into(), app.name.clone());
    env.insert("FLY_MACHINE_ID".into(), m.id.clone());
    env.insert("FLY_ALLOC_ID".into(), m.id.clone());
    env.insert("FLY_REGION".into(), m.region.clone());
    env.insert("FLY_PRIVATE_IP".into(), m.private_ip.clone());
    env.insert("FLY_IMAGE_REF".into(), image_of(m).to_string());
    env.insert("FLY_MACHINE_VERSION".into(), m.instance_id.clone());
    env.insert("HOSTNAME".into(), m.id.clone());
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    env
}

pub(crate) fn image_of(m: &Machine) -> &str {
    m.config.get("image").and_then(|v| v.as_str()).unwrap_or("")
}

pub(crate) fn is_stolon_image(image: &str) -> bool {
    let repo = image.split(['@', ':']).next().unwrap_or("");
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    let repo = repo.strip_prefix("registry-1.docker.io/").unwrap_or(repo);
    repo == "flyio/postgres"
}

/// `ImageRef` as Fly reports it.
pub(crate) fn image_ref(image: &str) -> Value {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d.to_string())),
        None => (image, None),
    };
    let (repo, tag) = match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (name, "latest"),
    };
    let (registry, repository) = match repo.split_once('/') {
        Some((host, rest)) if host.contains('.') => (host.to_string(), rest.to_string()),
        _ => ("docker-hub-mirror.fly.io".to_string(), repo.to_string()),
    };
    let digest = digest.unwrap_or_else(|| {
        use md5::{Digest, Md5};
        let h = hex::encode(Md5::digest(image.as_bytes()));
        format!("sha256:{h}{h}")
    });
    let mut labels = serde_json::Map::new();
    if is_stolon_image(image) {
        labels.insert("fly.app_role".into(), json!("postgres_cluster"));
        labels.insert("fly.version".into(), json!("v0.0.41"));
        labels.insert("fly.pg-version".into(), json!(tag));
    }
    json!({"registry": registry, "repository": repository, "tag": tag, "digest": digest, "labels": labels})
}

pub(crate) fn new_app(
    st: &mut State,
    name: &str,
    org: &str,
    network: &str,
    role: &str,
    now: i64,
) -> App {
    let id = st.next_id("", 14);
    let n = st.rand() % 900_000 + 100_000;
    App {
        id,
        name: name.to_string(),
        org: org.to_string(),
        network: if network.is_empty() {
            "default".into()
        } else {
            network.into()
        },
        app_role: role.to_string(),
        internal_numeric_id: n,
        created_ms: now,
        machines: BTreeMap::new(),
        volumes: BTreeMap::new(),
        secrets: BTreeMap::new(),
        secrets_version: 0,
        logs: VecDeque::new(),
        pg: None,
    }
}
