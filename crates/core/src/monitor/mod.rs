//! The monitor: each tracked cluster's backups health, refreshed in the background and on demand (issue #12
//! items 1, 5, 6 and 7).
//!
//! A refresh of one cluster ([`Monitor::refresh`]):
//! 1. opens the wal-g storage settings of the cluster's newest escrowed version (`core::escrow`; the values stay
//!    in this crate and are never logged) and builds a [`walg::Reader`] from them. In demo mode that is the demo
//!    cluster's `WALG_FILE_PREFIX` (flysim's local bucket), captured like any cluster's secrets;
//! 2. brings the storage's index up to date through [`crate::backups::Backups::refresh`] (incremental, stored);
//! 3. computes the timeline and reads the last commit of the main lineage
//!    ([`walg::Reader::attach_last_commit`]), so the latest restorable time is the last commit, not an upload time;
//! 4. writes the cluster's row of `cluster_health` (migration `20261202000100_cluster_health.sql`): when the
//!    refresh started and finished, how long it took, its error, and the summary of the last good refresh,
//!    which a failed refresh leaves in place (the page shows it under the error);
//! 5. reads the leader's volume from the Machines API and keeps a sample of its use for the forecast of when it
//!    is full ([`volume`]; a volume that cannot be read is noted in the row, not alerted on).
//!
//! [`Monitor::overview`] reads the rows, asks Fly for each cluster's machines and applies the rules of
//! [`health`] (worst first), `volume_filling` among them. [`Monitor::timeline`] hands the cluster page the last
//! good timeline.
//!
//! Invariants: a storage failure is a state of the cluster (its row's `last_error`), not an error of the call;
//! the error text is the reader's (it names the storage URL without credentials, never a value); refreshes are
//! not audited when the worker runs them (they change no one's data), an on-demand refresh by a person is.

pub mod archive;
pub mod health;
pub mod volume;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use fly::ListMachines;
use sqlx::{Row, SqlitePool};
use time::OffsetDateTime;
use walg::{BucketTimeline, Reader, Severity};

use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, actions, AuditError, Event, Outcome};
use crate::backups::{storage_key, Backups};
use crate::clusters::MachineSummary;
use crate::escrow::Escrow;
use crate::orgs::{OrgError, Orgs};
use crate::ts;

pub use health::{FindingCounts, Health, Rules, Summary, Verdict};
pub use volume::{Forecast, VolumeStatus};

/// Why a monitor call failed (a storage failure is not one: it is recorded in the cluster's status).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{org}/{app} is not tracked: an admin tracks it in Settings → Fly organizations")]
    NotTracked { org: String, app: String },
    #[error("refreshing a cluster needs the operator or admin role")]
    Forbidden,
    #[error("the cluster health table could not be read or written: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Orgs(#[from] OrgError),
    /// Raising or resolving the cluster's backups alert.
    #[error(transparent)]
    Alert(#[from] crate::alerts::AlertsError),
}

/// The last refresh of a cluster, good or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshStatus {
    /// The storage URL without credentials, once known.
    pub storage: Option<String>,
    pub started_at: OffsetDateTime,
    /// `None` while the first refresh is running.
    pub finished_at: Option<OffsetDateTime>,
    pub duration_ms: Option<i64>,
    /// Why the last refresh could not read the storage (`None` when it could).
    pub last_error: Option<String>,
    /// The cluster's `archive_timeout` in seconds as read from its Stolon spec (`None`: not read yet, and the
    /// rules use [`health::STOLON_ARCHIVE_TIMEOUT_SECS`]).
    pub archive_timeout_secs: Option<i64>,
}

/// One tracked cluster as the home page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterHealth {
    pub org: String,
    pub app: String,
    /// The colour and line shown: the worse of `backups` and `volume_filling` ([`health::combine`]).
    pub verdict: Verdict,
    /// The backups rules alone (alerted on as `backups_failing` / `backups_late`).
    pub backups: Verdict,
    /// The `volume_filling` rule when it fires (alerted on as `volume_filling`).
    pub volume_filling: Option<Verdict>,
    /// The leader's volume and its forecast; `None` when it was never read nor tried.
    pub volume: Option<VolumeStatus>,
    /// `None` before the first refresh.
    pub status: Option<RefreshStatus>,
    /// The last good refresh's summary (kept when a later one fails).
    pub summary: Option<Summary>,
    /// `None` when Fly could not be asked (then `machines_error` says why).
    pub machines: Option<Vec<MachineSummary>>,
    pub machines_error: Option<String>,
}

impl ClusterHealth {
    /// Machines in state `started`, and all of them.
    pub fn machines_up(&self) -> Option<(usize, usize)> {
        self.machines.as_ref().map(|m| {
            let up = m.iter().filter(|m| m.state == "started").count();
            (up, m.len())
        })
    }

    /// The machine that reports itself leader, when exactly one does.
    pub fn leader(&self) -> Option<&MachineSummary> {
        let mut leaders = self
            .machines
            .as_ref()?
            .iter()
            .filter(|m| m.role == "leader");
        match (leaders.next(), leaders.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

/// The last good timeline of a cluster, for the cluster page ([`Monitor::timeline`]).
#[derive(Debug, Clone)]
pub struct LastGood {
    /// With the last commit attached when it was read in this process; rebuilt from the stored index (without
    /// the last commit) after a restart, until the next refresh.
    pub timeline: Arc<BucketTimeline>,
    pub status: RefreshStatus,
}

type Kept = Arc<std::sync::Mutex<HashMap<(String, String), Arc<BucketTimeline>>>>;

/// Where the monitor reads the time: the system clock, or a test's (an emulator's manual clock).
type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The monitor as a service of [`crate::Walden`]. Cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    pool: SqlitePool,
    escrow: Escrow,
    orgs: Orgs,
    backups: Backups,
    rules: Rules,
    /// The last good timeline of each cluster refreshed in this process.
    kept: Kept,
    clock: Clock,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Monitor {
    pub fn new(pool: SqlitePool, escrow: Escrow, orgs: Orgs, backups: Backups) -> Self {
        Monitor {
            pool,
            escrow,
            orgs,
            backups,
            rules: Rules::default(),
            kept: Arc::default(),
            clock: Arc::new(ts::now),
        }
    }

    /// The same monitor on another clock: tests drive it with the emulator's manual clock, so that WAL ages
    /// and the volume's samples move with the emulated hours.
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// The same monitor with other thresholds.
    pub fn with_rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    /// Refreshes every tracked cluster in turn (the worker's unit of work is one cluster: `stop` is asked
    /// between clusters). Returns each cluster's health after its refresh.
    pub async fn refresh_all(
        &self,
        stop: impl Fn() -> bool,
    ) -> Result<Vec<ClusterHealth>, MonitorError> {
        let tracked = self.orgs.tracked(&system()).await?;
        let mut done = Vec::with_capacity(tracked.len());
        for cluster in tracked {
            if stop() {
                break;
            }
            done.push(self.refresh(&cluster.org, &cluster.app).await?);
        }
        Ok(done)
    }

    /// Refreshes one cluster now (Walden's own call: the worker). A storage failure is recorded in the status
    /// and returned inside the health, not as an error.
    #[tracing::instrument(skip(self), err(level = "debug"))]
    pub async fn refresh(&self, org: &str, app: &str) -> Result<ClusterHealth, MonitorError> {
        let started_at = self.now();
        let clock = Instant::now();
        sqlx::query(
            "INSERT INTO cluster_health (org, app, refresh_started_at) VALUES (?, ?, ?) \
             ON CONFLICT (org, app) DO UPDATE SET refresh_started_at = excluded.refresh_started_at",
        )
        .bind(org)
        .bind(app)
        .bind(ts::format(started_at))
        .execute(&self.pool)
        .await?;
        let outcome = self.read_storage(org, app).await;
        let finished_at = self.now();
        let ms = i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX);
        match outcome {
            Ok((storage, timeline)) => {
                let summary = summarize(&timeline, finished_at);
                self.save_good(org, app, &storage, finished_at, ms, &summary)
                    .await?;
                self.kept
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert((org.to_owned(), app.to_owned()), Arc::new(timeline));
            }
            Err((storage, error)) => {
                tracing::warn!(org, app, error = %error, "cluster refresh could not read the storage");
                self.save_error(org, app, storage.as_deref(), finished_at, ms, &error)
                    .await?;
            }
        }
        self.update_archive_timeout(org, app).await?;
        let machines = self.machines(org, app).await;
        self.sample_volume(org, app, &machines).await?;
        let health = self.health(org, app, Some(machines)).await?;
        self.alert_on(&health).await?;
        Ok(health)
    }

    /// The escrow capture the worker would make, for a tracked cluster with no version yet; then its storage
    /// settings (`None` when the cluster has none).
    async fn first_capture(
        &self,
        org: &str,
        app: &str,
    ) -> Result<Option<crate::escrow::StorageSettings>, String> {
        self.escrow
            .capture(&system(), &RequestMeta::default(), org, app)
            .await
            .map_err(|e| e.to_string())?;
        self.escrow
            .storage_settings(org, app)
            .await
            .map_err(|e| e.to_string())
    }

    /// Red and amber are alerts (`crate::alerts`), raised once while they last and resolved when the cluster
    /// is green or idle again: `backups_failing` (critical) for red, `backups_late` (warning) for amber; and
    /// `volume_filling` ([`Monitor::alert_on_volume`]).
    async fn alert_on(&self, health: &ClusterHealth) -> Result<(), MonitorError> {
        use crate::alerts::{cluster_key, kinds, AlertSpec, Alerts, Severity};
        let alerts = Alerts::new(self.pool.clone());
        let (actor, meta) = (system(), RequestMeta::default());
        let (org, app) = (health.org.as_str(), health.app.as_str());
        let reason = &health.backups.reason;
        let (raise, other) = match health.backups.health {
            Health::Red => (
                Some((kinds::BACKUPS_FAILING, Severity::Critical)),
                Some(kinds::BACKUPS_LATE),
            ),
            Health::Amber => (
                Some((kinds::BACKUPS_LATE, Severity::Warning)),
                Some(kinds::BACKUPS_FAILING),
            ),
            Health::Green | Health::Idle => (None, None),
        };
        let over = format!("The backups of {org}/{app} are healthy again: {reason}.");
        match raise {
            Some((kind, severity)) => {
                let message = format!("Backups of {org}/{app}: {reason}.");
                alerts
                    .raise(
                        &actor,
                        &meta,
                        &AlertSpec::cluster(kind, severity, org, app, message),
                    )
                    .await?;
                if let Some(other) = other {
                    alerts
                        .resolve(&actor, &meta, &cluster_key(other, org, app), &over)
                        .await?;
                }
            }
            None => {
                for kind in [kinds::BACKUPS_FAILING, kinds::BACKUPS_LATE] {
                    alerts
                        .resolve(&actor, &meta, &cluster_key(kind, org, app), &over)
                        .await?;
                }
            }
        }
        self.alert_on_volume(health).await
    }

    /// `volume_filling`: raised (warning when amber, critical when red) while the rule fires, resolved when it
    /// no longer does (WAL archived again, the volume not growing, or the machines stopped on purpose). A
    /// warning that turns red is resolved as escalated and raised again as critical, so the webhook says so.
    async fn alert_on_volume(&self, health: &ClusterHealth) -> Result<(), MonitorError> {
        use crate::alerts::{cluster_key, kinds, AlertSpec, Alerts, Severity};
        let alerts = Alerts::new(self.pool.clone());
        let (actor, meta) = (system(), RequestMeta::default());
        let (org, app) = (health.org.as_str(), health.app.as_str());
        match &health.volume_filling {
            Some(v) => {
                let severity = if v.health == Health::Red {
                    Severity::Critical
                } else {
                    Severity::Warning
                };
                let message = format!(
                    "The leader's volume of {org}/{app} is filling: {}. Fix WAL archiving (archive_command \
                     keeps failing, so PostgreSQL keeps every segment in pg_wal) or extend the volume.",
                    v.reason
                );
                let key = cluster_key(kinds::VOLUME_FILLING, org, app);
                // Only upwards: a critical alert whose volume drops below 90 % stays one open alert.
                let escalated = severity == Severity::Critical
                    && alerts
                        .open()
                        .await?
                        .iter()
                        .any(|a| a.key == key && a.severity() == Severity::Warning);
                if escalated {
                    let why = format!("Now {}: {}.", severity.as_str(), v.reason);
                    alerts.resolve(&actor, &meta, &key, &why).await?;
                }
                alerts
                    .raise(
                        &actor,
                        &meta,
                        &AlertSpec::cluster(kinds::VOLUME_FILLING, severity, org, app, message),
                    )
                    .await?;
            }
            None => {
                let now = self.now();
                let state = match &health.volume {
                    Some(v) => format!("the leader's volume is {}", v.describe(now)),
                    None => "the leader's volume is no longer read".to_owned(),
                };
                let over = format!(
                    "The leader's volume of {org}/{app} is no longer filling: {}; {state}.",
                    health.verdict.reason
                );
                alerts
                    .resolve(
                        &actor,
                        &meta,
                        &cluster_key(kinds::VOLUME_FILLING, org, app),
                        &over,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Reads the leader's volume and keeps a sample, or notes why it could not (never an error of the refresh).
    async fn sample_volume(
        &self,
        org: &str,
        app: &str,
        machines: &Result<Vec<MachineSummary>, String>,
    ) -> Result<(), sqlx::Error> {
        match self.read_volume(org, app, machines).await {
            Ok((id, used, total)) => {
                let sample = volume::Sample {
                    at: self.now(),
                    used,
                    total,
                };
                volume::save_sample(&self.pool, org, app, &id, sample).await
            }
            Err(e) => {
                tracing::debug!(org, app, error = %e, "the leader's volume was not read");
                volume::save_error(&self.pool, org, app, &e).await
            }
        }
    }

    /// The leader's volume: its id, bytes used and bytes in all, or why it is not known.
    async fn read_volume(
        &self,
        org: &str,
        app: &str,
        machines: &Result<Vec<MachineSummary>, String>,
    ) -> Result<(String, u64, u64), String> {
        let machines = machines
            .as_ref()
            .map_err(|e| format!("the machines are not known: {e}"))?;
        let leader = volume::leader_machine(machines).ok_or_else(|| {
            "no machine reports itself leader, so the leader's volume is not known".to_owned()
        })?;
        let client = self.orgs.client_for(org).await.map_err(|e| e.to_string())?;
        let volumes = client
            .list_volumes(app)
            .await
            .map_err(|e| format!("Fly did not list the volumes: {e}"))?;
        match volume::pick(&volumes, &leader.id, &[]) {
            Ok(found) => Ok(found),
            // No volume reports the leader as attached: the leader's config names what it mounts.
            Err(not_attached) => {
                let machine = client.get_machine(app, &leader.id).await.map_err(|e| {
                    format!("{not_attached}, and Fly did not show the machine: {e}")
                })?;
                let mounted: Vec<String> = machine
                    .config
                    .iter()
                    .flat_map(|c| c.mounts.iter())
                    .filter_map(|m| m.volume.clone())
                    .collect();
                volume::pick(&volumes, &leader.id, &mounted)
            }
        }
    }

    /// Refreshes one tracked cluster for a person (the "Refresh now" button): operators and admins, refusals
    /// and the refresh audited (`cluster.refresh`).
    #[tracing::instrument(skip(self, actor, meta), err(level = "debug"))]
    pub async fn refresh_now(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<ClusterHealth, MonitorError> {
        let subject = format!("org:{org}/app:{app}");
        if !actor.has_role(Role::Operator) {
            let denied = Event::new(actions::CLUSTER_REFRESH, Outcome::Denied).subject(&subject);
            audit::record(&self.pool, actor, meta, &denied).await?;
            return Err(MonitorError::Forbidden);
        }
        if !self.is_tracked(org, app).await? {
            return Err(MonitorError::NotTracked {
                org: org.to_owned(),
                app: app.to_owned(),
            });
        }
        let health = self.refresh(org, app).await?;
        let error = health.status.as_ref().and_then(|s| s.last_error.clone());
        let outcome = if error.is_some() {
            Outcome::Failed
        } else {
            Outcome::Ok
        };
        let event = Event::new(actions::CLUSTER_REFRESH, outcome)
            .subject(subject)
            .detail(serde_json::json!({ "org": org, "app": app, "error": error }));
        audit::record(&self.pool, actor, meta, &event).await?;
        Ok(health)
    }

    /// Every tracked cluster's health now, worst first (then by org and app), with its machines from Fly. Any
    /// signed-in role.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn overview(&self, actor: &Actor) -> Result<Vec<ClusterHealth>, MonitorError> {
        let tracked = self.orgs.tracked(actor).await?;
        let mut out = Vec::with_capacity(tracked.len());
        for cluster in tracked {
            let machines = self.machines(&cluster.org, &cluster.app).await;
            out.push(
                self.health(&cluster.org, &cluster.app, Some(machines))
                    .await?,
            );
        }
        out.sort_by(|a, b| {
            (a.verdict.health, &a.org, &a.app).cmp(&(b.verdict.health, &b.org, &b.app))
        });
        Ok(out)
    }

    /// The last good timeline of a tracked cluster and its refresh status, for the cluster page; `None` before
    /// the first good refresh. Any signed-in role. The timeline is the one the last good refresh computed (with
    /// the last commit) while this process has it, else it is computed again from the stored index.
    #[tracing::instrument(skip(self, actor), err(level = "debug"))]
    pub async fn timeline(
        &self,
        actor: &Actor,
        org: &str,
        app: &str,
    ) -> Result<Option<LastGood>, MonitorError> {
        if !actor.has_role(Role::Viewer) {
            return Err(MonitorError::Forbidden);
        }
        let Some((status, summary)) = self.load(org, app).await? else {
            return Ok(None);
        };
        if summary.is_none() {
            return Ok(None);
        }
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(org.to_owned(), app.to_owned()))
            .cloned();
        let timeline = match (kept, &status.storage) {
            (Some(t), _) => t,
            (None, Some(url)) => match self.backups.stored(url).await {
                Ok(Some(index)) => Arc::new(BucketTimeline::from_index(&index, self.now())),
                Ok(None) => return Ok(None),
                Err(e) => {
                    tracing::warn!(org, app, error = %e, "the stored index cannot be read");
                    return Ok(None);
                }
            },
            (None, None) => return Ok(None),
        };
        Ok(Some(LastGood { timeline, status }))
    }

    /// One line on the leader's volume for the cluster page ("71 % full, fills in about 19 h (Tue 14:05
    /// UTC)", or why it was not read); `None` when it was never read nor tried. Any signed-in role. (The
    /// `volume_filling` rule's line is the home row's reason.)
    pub async fn volume_line(
        &self,
        actor: &Actor,
        org: &str,
        app: &str,
    ) -> Result<Option<String>, MonitorError> {
        if !actor.has_role(Role::Viewer) {
            return Err(MonitorError::Forbidden);
        }
        let now = self.now();
        Ok(volume::load(&self.pool, org, app, now)
            .await?
            .map(|v| v.describe(now)))
    }

    /// The thresholds in use.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    async fn is_tracked(&self, org: &str, app: &str) -> Result<bool, MonitorError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tracked_clusters WHERE org = ? AND app = ? AND untracked_at IS NULL",
        )
        .bind(org)
        .bind(app)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// The storage's timeline with the last commit attached, or why it could not be read (with the storage
    /// URL when it was known).
    async fn read_storage(
        &self,
        org: &str,
        app: &str,
    ) -> Result<(String, BucketTimeline), (Option<String>, String)> {
        let settings = match self.escrow.storage_settings(org, app).await {
            Ok(Some(s)) => s,
            // Tracked but never captured (the escrow worker runs daily): capture now, as the worker would,
            // so a newly tracked cluster shows its backups at the next refresh instead of an error.
            Ok(None) => match self.first_capture(org, app).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    return Err((
                        None,
                        "the captured credentials hold no wal-g storage settings (WALG_*): is \
                         continuous archiving set up on this cluster?"
                            .to_owned(),
                    ))
                }
                Err(e) => {
                    return Err((
                        None,
                        format!(
                            "no credentials escrowed yet, so the bucket is unknown, and capturing them \
                             failed: {e}"
                        ),
                    ))
                }
            },
            Err(e) => return Err((None, format!("the storage settings cannot be opened: {e}"))),
        };
        let config = match settings.config() {
            Ok(c) => c,
            Err(e) => {
                return Err((
                    None,
                    format!(
                        "the escrowed storage settings (version {}: {}) are not usable: {e}",
                        settings.version,
                        settings.names().join(", ")
                    ),
                ))
            }
        };
        drop(settings);
        let url = storage_key(&config.display_url());
        let reader = match Reader::connect(&config).await {
            Ok(r) => r,
            Err(e) => return Err((Some(url), e.to_string())),
        };
        let refreshed = match self.backups.refresh(&reader).await {
            Ok(r) => r,
            Err(e) => return Err((Some(url), e.to_string())),
        };
        let mut timeline = refreshed.timeline(self.now());
        reader
            .attach_last_commit(&mut timeline, None, walg::LAST_COMMIT_SEGMENTS)
            .await;
        Ok((url, timeline))
    }

    /// Reads the cluster's `archive_timeout` again when it was never read or was read over an hour ago (see
    /// [`archive`]); a failure (no leader, machines stopped) keeps the value read before, and is tried again in
    /// an hour.
    async fn update_archive_timeout(&self, org: &str, app: &str) -> Result<(), sqlx::Error> {
        let read_at: Option<String> = sqlx::query_scalar(
            "SELECT archive_timeout_read_at FROM cluster_health WHERE org = ? AND app = ?",
        )
        .bind(org)
        .bind(app)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        let now = self.now();
        let due = read_at
            .as_deref()
            .and_then(ts::parse)
            .is_none_or(|at| (now - at).whole_seconds() >= archive::REREAD_AFTER_SECS);
        if !due {
            return Ok(());
        }
        let read = archive::read(&self.orgs, org, app).await;
        if let Err(e) = &read {
            tracing::debug!(org, app, error = %e, "archive_timeout not read from the cluster");
        }
        sqlx::query(
            "UPDATE cluster_health SET archive_timeout_secs = COALESCE(?, archive_timeout_secs), \
             archive_timeout_read_at = ? WHERE org = ? AND app = ?",
        )
        .bind(read.ok())
        .bind(ts::format(now))
        .bind(org)
        .bind(app)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The rules for one cluster: its own `archive_timeout` when it was read (and is not 0, which turns the
    /// timeout off), else the default.
    fn rules_for(&self, status: Option<&RefreshStatus>) -> Rules {
        match status
            .and_then(|s| s.archive_timeout_secs)
            .filter(|&t| t > 0)
        {
            Some(t) => Rules {
                archive_timeout_secs: t,
                ..self.rules
            },
            None => self.rules,
        }
    }

    async fn save_good(
        &self,
        org: &str,
        app: &str,
        storage: &str,
        finished_at: OffsetDateTime,
        ms: i64,
        s: &Summary,
    ) -> Result<(), sqlx::Error> {
        let t = |v: Option<OffsetDateTime>| v.map(ts::format);
        sqlx::query(
            "UPDATE cluster_health SET storage = ?, refresh_finished_at = ?, refresh_ms = ?, last_error = NULL, \
             good_at = ?, good_earliest_restorable = ?, good_latest_restorable = ?, good_newest_wal = ?, \
             good_newest_base_backup = ?, good_last_commit = ?, good_errors = ?, good_warnings = ?, \
             good_infos = ?, good_first_error = ? WHERE org = ? AND app = ?",
        )
        .bind(clip(storage))
        .bind(ts::format(finished_at))
        .bind(ms)
        .bind(ts::format(s.refreshed_at))
        .bind(t(s.earliest_restorable))
        .bind(t(s.latest_restorable))
        .bind(t(s.newest_wal))
        .bind(t(s.newest_base_backup))
        .bind(t(s.last_commit))
        .bind(s.findings.error)
        .bind(s.findings.warning)
        .bind(s.findings.info)
        .bind(s.first_error.as_deref().map(clip))
        .bind(org)
        .bind(app)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn save_error(
        &self,
        org: &str,
        app: &str,
        storage: Option<&str>,
        finished_at: OffsetDateTime,
        ms: i64,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE cluster_health SET storage = COALESCE(?, storage), refresh_finished_at = ?, refresh_ms = ?, \
             last_error = ? WHERE org = ? AND app = ?",
        )
        .bind(storage.map(clip))
        .bind(ts::format(finished_at))
        .bind(ms)
        .bind(clip(error))
        .bind(org)
        .bind(app)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The stored status and last good summary of a cluster; `None` before its first refresh.
    async fn load(
        &self,
        org: &str,
        app: &str,
    ) -> Result<Option<(RefreshStatus, Option<Summary>)>, sqlx::Error> {
        let Some(row) = sqlx::query("SELECT * FROM cluster_health WHERE org = ? AND app = ?")
            .bind(org)
            .bind(app)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let time = |col: &str| -> Result<Option<OffsetDateTime>, sqlx::Error> {
            Ok(row
                .try_get::<Option<String>, _>(col)?
                .as_deref()
                .and_then(ts::parse))
        };
        let status = RefreshStatus {
            storage: row.try_get("storage")?,
            started_at: time("refresh_started_at")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            finished_at: time("refresh_finished_at")?,
            duration_ms: row.try_get("refresh_ms")?,
            last_error: row.try_get("last_error")?,
            archive_timeout_secs: row.try_get("archive_timeout_secs")?,
        };
        let summary = match time("good_at")? {
            None => None,
            Some(refreshed_at) => Some(Summary {
                refreshed_at,
                earliest_restorable: time("good_earliest_restorable")?,
                latest_restorable: time("good_latest_restorable")?,
                newest_wal: time("good_newest_wal")?,
                newest_base_backup: time("good_newest_base_backup")?,
                last_commit: time("good_last_commit")?,
                findings: FindingCounts {
                    error: row.try_get("good_errors")?,
                    warning: row.try_get("good_warnings")?,
                    info: row.try_get("good_infos")?,
                },
                first_error: row.try_get("good_first_error")?,
            }),
        };
        Ok(Some((status, summary)))
    }

    /// A cluster's health from its stored row and, when given, its machines (`Err`: why Fly could not say).
    async fn health(
        &self,
        org: &str,
        app: &str,
        machines: Option<Result<Vec<MachineSummary>, String>>,
    ) -> Result<ClusterHealth, MonitorError> {
        let (status, summary) = match self.load(org, app).await? {
            Some((status, summary)) => (Some(status), summary),
            None => (None, None),
        };
        let (machines, machines_error) = match machines {
            Some(Ok(m)) => (Some(m), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let (rules, now) = (self.rules_for(status.as_ref()), self.now());
        let backups = health::assess(
            &rules,
            now,
            summary.as_ref(),
            status.as_ref().and_then(|s| s.last_error.as_deref()),
            machines.as_deref(),
        );
        let volume = volume::load(&self.pool, org, app, now).await?;
        let volume_filling = health::volume_filling(
            &rules,
            now,
            summary.as_ref(),
            machines.as_deref(),
            volume.as_ref(),
        );
        Ok(ClusterHealth {
            org: org.to_owned(),
            app: app.to_owned(),
            verdict: health::combine(&backups, volume_filling.as_ref()),
            backups,
            volume_filling,
            volume,
            status,
            summary,
            machines,
            machines_error,
        })
    }

    /// The cluster's machines through its organisation's client, sorted by name; the error as text.
    async fn machines(&self, org: &str, app: &str) -> Result<Vec<MachineSummary>, String> {
        let client = self.orgs.client_for(org).await.map_err(|e| e.to_string())?;
        let listed = client
            .list_machines(app, &ListMachines::default())
            .await
            .map_err(|e| format!("Fly did not list the machines: {e}"))?;
        let mut machines: Vec<MachineSummary> = listed.iter().map(MachineSummary::of).collect();
        machines.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(machines)
    }
}

/// The actor of Walden's own reads.
fn system() -> Actor {
    Actor::System {
        label: "monitor".into(),
    }
}

/// The summary of a good refresh's timeline.
pub fn summarize(t: &BucketTimeline, refreshed_at: OffsetDateTime) -> Summary {
    let count = |s: Severity| t.findings.iter().filter(|f| f.severity == s).count() as i64;
    let last_commit = t
        .main_lineage
        .and_then(|m| t.commit_search(m))
        .and_then(|c| c.found())
        .map(|c| c.time);
    // The window ends at the last commit when it was read and lies inside the last window.
    let latest_restorable = match (last_commit, t.latest_restorable) {
        (Some(c), Some(l)) if c <= l => Some(c),
        (_, l) => l,
    };
    Summary {
        refreshed_at,
        earliest_restorable: t.earliest_restorable,
        latest_restorable,
        newest_wal: t.freshness.newest_wal,
        newest_base_backup: t.backups.iter().filter_map(|b| b.finish_time).max(),
        last_commit,
        findings: FindingCounts {
            error: count(Severity::Error),
            warning: count(Severity::Warning),
            info: count(Severity::Info),
        },
        first_error: t
            .findings
            .iter()
            .find(|f| f.severity == Severity::Error)
            .map(|f| f.message.clone()),
    }
}

/// At most 2,000 characters (the table's limit), cut on a character boundary.
fn clip(s: &str) -> String {
    s.chars().take(2000).collect()
}
