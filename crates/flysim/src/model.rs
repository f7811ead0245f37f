//! The emulator's in-memory state. Everything here is serde so demo mode can persist it to a JSON file.
//! Timestamps are unix milliseconds of simulated time.
//!
//! Invariant: this is a leaf module. It imports nothing from the crate, so every other module (the API,
//! the Machine state machine, the Stolon image, wal-g) can share its vocabulary without import cycles.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const LOG_CAP: usize = 5000;
pub const EVENT_CAP: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    pub orgs: BTreeMap<String, Org>,
    pub tokens: BTreeMap<String, Token>,
    pub apps: BTreeMap<String, App>,
    pub timers: Vec<Timer>,
    pub counter: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Org {
    pub slug: String,
    pub name: String,
    pub internal_numeric_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub token_id: String,
    /// Orgs the token can act in.
    pub orgs: Vec<String>,
    /// `Some` for app-scoped (deploy) tokens.
    pub apps: Option<Vec<String>>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct App {
    pub id: String,
    pub name: String,
    pub org: String,
    pub network: String,
    pub app_role: String,
    pub internal_numeric_id: u64,
    pub created_ms: i64,
    pub machines: BTreeMap<String, Machine>,
    pub volumes: BTreeMap<String, Volume>,
    pub secrets: BTreeMap<String, Secret>,
    pub secrets_version: u64,
    pub logs: VecDeque<LogLine>,
    pub pg: Option<PgCluster>,
    /// The consul URL GraphQL `enablePostgresConsul` handed out for this app (the same on every call).
    #[serde(default)]
    pub consul_url: Option<String>,
    /// The secret values at each version this emulator wrote (a Machine gets exactly the version it
    /// asks for with `min_secrets_version`).
    #[serde(default)]
    pub secrets_history: BTreeMap<u64, BTreeMap<String, String>>,
}

impl App {
    /// The current secret values.
    pub fn secret_values(&self) -> BTreeMap<String, String> {
        self.secrets
            .iter()
            .map(|(name, secret)| (name.clone(), secret.value.clone()))
            .collect()
    }

    /// Record the current values as `secrets_version`.
    pub fn record_secrets_version(&mut self) {
        let values = self.secret_values();
        self.secrets_history.insert(self.secrets_version, values);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Secret {
    pub value: String,
    pub digest: String,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub ns: i128,
    pub id: String,
    pub instance: String,
    pub region: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub id: String,
    pub name: String,
    pub state: MachineState,
    pub region: String,
    pub instance_id: String,
    pub private_ip: String,
    pub config: Value,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub events: VecDeque<Event>,
    pub lease: Option<Lease>,
    pub cordoned: bool,
    /// The secrets (name → value) this Machine booted with, and their version.
    pub secrets_env: BTreeMap<String, String>,
    pub secrets_version: u64,
    /// Bumped on every state change; timers carrying an older generation are ignored.
    pub gen: u64,
    pub restart_count: u64,
    /// When the current boot's processes are ready (Postgres accepting connections).
    pub ready_ms: Option<i64>,
    /// The boot is looping (a panic in `start`); the reason.
    pub crash_reason: Option<String>,
    pub volume: Option<String>,
    pub destroyed: bool,
    /// The health checks' latest results: Fly runs them on their interval, not when asked (see
    /// [`CHECK_INTERVAL_MS`]); `None` before the first run.
    #[serde(default)]
    pub checks_run: Option<ChecksRun>,
    /// The current run loop of the checks (one per start); older loops stop at their next tick.
    #[serde(default)]
    pub checks_loop: u64,
}

/// flyctl gives the Stolon image's `pg`, `role` and `vm` checks `interval: 15s` (`flypg/launcher.go`); Fly's
/// proxy runs them on that interval, so what `GET /machines` shows can be up to 15 s old.
pub const CHECK_INTERVAL_MS: i64 = 15_000;

/// One run of a Machine's health checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChecksRun {
    pub at_ms: i64,
    pub checks: Vec<Value>,
}

/// A Machine's state, serialised as the lowercase word the Machines API returns (`"started"`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    Created,
    Starting,
    Started,
    Stopping,
    Stopped,
    Restarting,
    Replacing,
    Suspending,
    Suspended,
    Destroying,
    Destroyed,
    Failed,
}

impl MachineState {
    pub const ALL: [MachineState; 12] = [
        Self::Created,
        Self::Starting,
        Self::Started,
        Self::Stopping,
        Self::Stopped,
        Self::Restarting,
        Self::Replacing,
        Self::Suspending,
        Self::Suspended,
        Self::Destroying,
        Self::Destroyed,
        Self::Failed,
    ];

    /// The word the API uses for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Starting => "starting",
            Self::Started => "started",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Restarting => "restarting",
            Self::Replacing => "replacing",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Destroying => "destroying",
            Self::Destroyed => "destroyed",
            Self::Failed => "failed",
        }
    }

    /// The state named `word` (`None` for anything the API does not use).
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == word)
    }

    /// Running or about to run: the states a stop (or a forced destroy) interrupts.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            Self::Started | Self::Starting | Self::Replacing | Self::Restarting
        )
    }

    /// A resting state: nothing is in flight (`settled` in a wait).
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Started
                | Self::Stopped
                | Self::Suspended
                | Self::Destroyed
                | Self::Failed
                | Self::Created
        )
    }
}

impl fmt::Display for MachineState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub source: String,
    pub ms: i64,
    pub request: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub nonce: String,
    pub owner: String,
    pub description: String,
    pub expires_s: i64,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub state: String,
    pub size_gb: u64,
    pub region: String,
    pub zone: String,
    pub encrypted: bool,
    pub attached_machine_id: Option<String>,
    pub created_ms: i64,
    pub snapshot_retention: u64,
    pub auto_backup_enabled: bool,
    /// Files the Stolon image keeps on the volume (`/data/.env`, `/data/restore.lock`, logs of detached runs).
    pub files: BTreeMap<String, String>,
    /// `/data/postgres` exists (pg_hba.conf present).
    pub has_pgdata: bool,
    /// Keeper local state `Initializing: true` (a PITR run was interrupted).
    pub keeper_initializing: bool,
    /// Share of the filesystem in use, in percent (`None`: the emulator's usual 10 %), before `wal_ready_bytes`.
    #[serde(default)]
    pub used_percent: Option<u8>,
    /// WAL segments the leader keeps in `pg_wal` because `archive_command` fails: PostgreSQL's archiver
    /// (`src/backend/postmaster/pgarch.c`) leaves a segment's `.ready` file, and the checkpointer may not
    /// remove or recycle a segment until it is archived (`XLogArchiveCheckDone` in
    /// `src/backend/access/transam/xlogarchive.c`), so `/data` grows by one segment per switch. Emptied when
    /// an archive succeeds again (the archiver then catches up and the next checkpoint recycles them).
    #[serde(default)]
    pub wal_ready_bytes: u64,
}

impl Volume {
    /// Size of the filesystem in bytes.
    pub fn bytes_total(&self) -> u64 {
        self.size_gb.saturating_mul(1024 * 1024 * 1024)
    }

    /// Bytes in use: the base share and the WAL kept for archiving, at most the size.
    pub fn bytes_used(&self) -> u64 {
        let total = self.bytes_total();
        let base = total / 100 * u64::from(self.used_percent.unwrap_or(10).min(100));
        base.saturating_add(self.wal_ready_bytes).min(total)
    }

    /// Share of the filesystem in use, in percent (what `df` shows, rounded up).
    pub fn used_percent(&self) -> u64 {
        match self.bytes_total() {
            0 => 0,
            total => self.bytes_used().saturating_mul(100).div_ceil(total),
        }
    }
}

/// A Stolon cluster (one per app whose Machines run `flyio/postgres:*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgCluster {
    pub cluster_uid: String,
    pub spec: Value,
    pub phase: String,
    pub master: Option<String>,
    pub system_identifier: u64,
    pub timeline: u32,
    pub lsn: u64,
    pub pg_version: u32,
    /// Postgres roles: user → `md5` + md5(password + user), as pg_authid stores them.
    pub roles: BTreeMap<String, String>,
    /// Databases → tables → row count.
    pub databases: BTreeMap<String, BTreeMap<String, u64>>,
    pub pitr: Option<Pitr>,
    pub archive_armed: bool,
    pub initialised: bool,
    /// The time of the newest commit not yet in an archived segment: `None` while the server is idle,
    /// and an idle server switches no WAL segment at archive_timeout (PostgreSQL skips the switch when
    /// nothing was written since the last one).
    #[serde(default)]
    pub unarchived_commit_ms: Option<i64>,
    /// Machine id → the `archive_mode` its Postgres started with: a postmaster-context parameter, so a
    /// spec change takes effect only at the next Postgres start (stolon's `automaticPgRestart` is off by
    /// default).
    #[serde(default)]
    pub started_archive_mode: BTreeMap<String, String>,
    /// The bucket refuses uploads (its write permission revoked, a quota reached): every `wal-push` fails
    /// with `AccessDenied` while reads still work. Set with `Sim::set_wal_push_refused`.
    #[serde(default)]
    pub wal_push_refused: bool,
    /// The newest commit of the last segment switch whose archive failed: a retry of the same commit is no new
    /// switch, so it keeps no new segment (PostgreSQL switches at archive_timeout only after new writes).
    #[serde(default)]
    pub ready_commit_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pitr {
    pub keeper: String,
    pub step: String,
    pub step_started_ms: i64,
    pub attempts: u32,
    pub message: String,
    pub backup: Option<String>,
    pub gen: u64,
    /// Data restored from the backup (roles, databases, lsn), applied when recovery ends.
    pub restored: Option<RestoredData>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoredData {
    pub roles: BTreeMap<String, String>,
    pub databases: BTreeMap<String, BTreeMap<String, u64>>,
    pub system_identifier: u64,
    /// The timeline replay ended on (the recovery target timeline).
    pub timeline: u32,
    /// The newest timeline with a history file in the archive, from `timeline` upward
    /// (`findNewestTimeLine`); the restored cluster switches to the one after it.
    #[serde(default)]
    pub newest_timeline: u32,
    pub end_lsn: u64,
    pub replayed_segments: u64,
    /// The parameters in the restored `postgresql.conf` (`None`: a backup without one).
    #[serde(default)]
    pub pg_parameters: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Timer {
    pub at_ms: i64,
    pub seq: u64,
    pub app: String,
    pub kind: TimerKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum TimerKind {
    /// A transient state settles (starting → started, stopping → stopped, …).
    Settle {
        machine: String,
        gen: u64,
        to: MachineState,
    },
    /// Postgres on this Machine is ready (boot finished).
    Ready { machine: String, gen: u64 },
    /// `start` panicked; the Machine exits and restarts (restart policy `always`).
    Crash { machine: String, gen: u64 },
    /// Next step of a PITR run.
    Pitr { gen: u64 },
    /// archive_timeout: the leader switches WAL and archive_command runs.
    Archive,
    /// A detached or long `wal-g backup-push` finishes.
    BackupDone { machine: String, job: Box<PushJob> },
    /// failInterval after the master went away: the sentinel elects a new one unless it came back.
    Failover { master: String },
    /// The health checks of a started Machine run (every [`CHECK_INTERVAL_MS`]).
    Checks { machine: String, run_loop: u64 },
}

/// A `wal-g backup-push` in flight (persisted in a timer when it finishes later).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushJob {
    pub root: PathBuf,
    pub name: String,
    pub start_ms: i64,
    pub finish_ms: i64,
    pub start_lsn: u64,
    pub finish_lsn: u64,
    pub pg_version: u32,
    pub system_identifier: u64,
    pub timeline: u32,
    pub hostname: String,
    pub data_dir: String,
    pub roles: BTreeMap<String, String>,
    pub databases: BTreeMap<String, BTreeMap<String, u64>>,
    pub compression: String,
    pub permanent: bool,
    pub uncompressed_size: u64,
    pub log_path: Option<String>,
    /// The spec's `pgParameters` when the backup was taken: the data directory's stolon-written
    /// `postgresql.conf`.
    #[serde(default)]
    pub pg_parameters: BTreeMap<String, String>,
    /// The parent of a delta backup (`None`: a full backup).
    #[serde(default)]
    pub delta: Option<DeltaParent>,
    /// The walked data directory's size (the sentinel's `DataCatalogSize`) when it differs from
    /// `uncompressed_size`: a delta packs only what changed. `None`: the same.
    #[serde(default)]
    pub data_catalog_size: Option<u64>,
}

/// What a wal-g delta backup records about its parent (the sentinel's `DeltaLSN`, `DeltaFrom`,
/// `DeltaFullName` and `DeltaCount`, `backup_sentinel_dto.go`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaParent {
    /// The parent's full name (a full or a delta backup).
    pub name: String,
    /// The parent's start LSN.
    pub start_lsn: u64,
    /// The full backup at the root of the chain.
    pub full_name: String,
    /// This backup's depth in the chain: 1 for the first delta after the full backup.
    pub count: u64,
}
