//! Cutover and rollback after a verified restore (issue #13 item 5, its audit rows of item 7).
//!
//! A cutover is a separate, confirmed action on a restore run that is `done` (verified): operators and admins
//! type the OLD cluster's name. [`Restores::cutover`] checks everything it can before changing anything on Fly
//! (the run, the role, the confirmation, each selected app's `DATABASE_URL` pointing at the old cluster), then
//! runs its steps in order, each looking before it changes (so a step run again after a crash finds what it did):
//!
//! 1. `stop_archiving`: `ENABLE_WALG` unset on the old cluster (its value kept, sealed) and rolled out to its
//!    machines (each updated with the new `min_secrets_version`); its archive stays readable.
//! 2. `clone_replicas`: as `fly machine clone` does, one replica per old machine but one: the new leader's
//!    config, a new empty volume each, the leader's region or the user's choice; waited for `started`.
//! 3. `point_app` (one per selected app): the old `DATABASE_URL` kept sealed, the new one set (the host
//!    `<new app>.flycast` or `.internal` as the old used; user, password, port, database kept: the restored
//!    cluster has the escrowed passwords, the source's), rolled out to the app's machines.
//! 4. `stop_old`: the old cluster's started machines stopped, never destroyed.
//! 5. `verify`: the checklist ([`checklist`]) Walden checks itself until every line holds.
//!
//! [`Restores::rollback`] (one click, the same confirmation) puts back what the cutover changed, in the order
//! that keeps the apps' database reachable: `resume_archiving` (the old `ENABLE_WALG` set again, staged),
//! `start_old` (the machines the cutover stopped updated with that secrets version, which launches them; the
//! others rolled out), `restore_app` (each app's old `DATABASE_URL` set and rolled out), `verify_rollback`. The
//! NEW cluster is left as it is, running with its replicas: it is the verified restore, it archives to its own
//! prefix, the user may want to compare or cut over again later, and destroying anything is never automatic.
//! A rollback also works on a cutover that failed half-way: each step puts back only what was changed.
//!
//! Persisted in `restore_cutovers` / `restore_cutover_steps` with a lease like the engine's runs (the same
//! pattern on its own table: `engine/runs.rs` is private to the engine); each step's start, end and failure
//! audited (`restore.cutover.*`, `restore.rollback.*`). The replaced values live only sealed with the master key
//! in `restore_cutover_secrets`; no value ever reaches a row, the audit log or an error.
//!
//! One place per concern: [`store`] (the tables and the lease), [`steps`] (one executor per step),
//! [`checklist`] (what is checked), [`url`] (a `DATABASE_URL`'s host), this file (the API and the loop).

mod checklist;
mod steps;
mod store;
pub mod url;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, AuditError, Event, Outcome};

use super::engine::RunState;
use super::{store as plans, Restores};
use steps::{Ctx, StepError};
use store::{CutoverRow, Held, NewStep};

pub use checklist::Check;
pub use store::secret_context;
pub(crate) use store::secret_row_context;

/// Audit actions of the cutover and the rollback.
pub mod actions {
    /// A cutover confirmed and started (or resumed after a failure: `resume` in the detail), refused
    /// (`failed`, with the reasons) or denied.
    pub const CUTOVER_START: &str = "restore.cutover.start";
    pub const CUTOVER_STEP_START: &str = "restore.cutover.step.start";
    pub const CUTOVER_STEP_DONE: &str = "restore.cutover.step.done";
    pub const CUTOVER_STEP_FAIL: &str = "restore.cutover.step.fail";
    /// Every step of the cutover done, the checklist holding.
    pub const CUTOVER_DONE: &str = "restore.cutover.done";
    /// A rollback confirmed and started (or resumed), refused or denied.
    pub const ROLLBACK_START: &str = "restore.rollback.start";
    pub const ROLLBACK_STEP_START: &str = "restore.rollback.step.start";
    pub const ROLLBACK_STEP_DONE: &str = "restore.rollback.step.done";
    pub const ROLLBACK_STEP_FAIL: &str = "restore.rollback.step.fail";
    pub const ROLLBACK_DONE: &str = "restore.rollback.done";
}

/// Which steps a cutover is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Cutover,
    Rollback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Cutover => "cutover",
            Phase::Rollback => "rollback",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "rollback" {
            Phase::Rollback
        } else {
            Phase::Cutover
        }
    }

    /// The audit action `restore.<phase>.<what>`.
    fn action(self, what: &str) -> &'static str {
        use actions::*;
        match (self, what) {
            (Phase::Cutover, "start") => CUTOVER_START,
            (Phase::Cutover, "step.start") => CUTOVER_STEP_START,
            (Phase::Cutover, "step.done") => CUTOVER_STEP_DONE,
            (Phase::Cutover, "step.fail") => CUTOVER_STEP_FAIL,
            (Phase::Cutover, _) => CUTOVER_DONE,
            (Phase::Rollback, "start") => ROLLBACK_START,
            (Phase::Rollback, "step.start") => ROLLBACK_STEP_START,
            (Phase::Rollback, "step.done") => ROLLBACK_STEP_DONE,
            (Phase::Rollback, "step.fail") => ROLLBACK_STEP_FAIL,
            (Phase::Rollback, _) => ROLLBACK_DONE,
        }
    }
}

/// Where a phase is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutoverState {
    /// A console is at its next step (or was, and its lease lapsed: asking again resumes it).
    Running,
    /// A step failed for good; asking again resumes at that step.
    Failed,
    Done,
}

impl CutoverState {
    fn parse(s: &str) -> Self {
        match s {
            "running" => CutoverState::Running,
            "done" => CutoverState::Done,
            _ => CutoverState::Failed,
        }
    }
}

/// A cutover (and its rollback, once asked for), as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutoverView {
    pub run: String,
    pub org: String,
    pub old_app: String,
    pub new_app: String,
    /// The apps pointed at the new cluster.
    pub apps: Vec<String>,
    /// Where the new replicas go (`None`: the new leader's region).
    pub replica_region: Option<String>,
    pub phase: Phase,
    pub state: CutoverState,
    /// Why the phase failed, in plain words.
    pub failure: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// The cutover's steps.
    pub cutover: Vec<CutoverStepView>,
    /// The rollback's steps (empty until one is asked for).
    pub rollback: Vec<CutoverStepView>,
    /// The checklist as last checked by the phase's final step (empty before it ran).
    pub checklist: Vec<Check>,
}

/// One step of a phase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutoverStepView {
    pub index: usize,
    pub kind: String,
    /// The app a per-app step is about.
    pub app: Option<String>,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The Fly ids and versions it produced (never a secret).
    pub produced: Value,
    pub error: Option<String>,
}

/// Why a cutover or rollback was refused or stopped.
#[derive(Debug, thiserror::Error)]
pub enum CutoverError {
    #[error("a cutover or rollback needs the operator or admin role")]
    Forbidden,
    #[error("there is no restore run {0}")]
    NoRun(String),
    #[error("restore run {run} is {state}: only a verified (done) restore can be cut over")]
    NotDone { run: String, state: String },
    #[error("the confirmation does not match: type the old cluster's name, {expected}, to go on")]
    ConfirmMismatch { expected: String },
    #[error("the cutover is refused:\n{}", .0.iter().map(|r| format!("- {r}")).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<String>),
    #[error("restore run {0} has no cutover to roll back")]
    NoCutover(String),
    #[error("the cutover of restore run {0} was rolled back; it cannot be cut over again")]
    RolledBack(String),
    #[error("another console is driving the cutover of restore run {0}; follow it there")]
    Busy(String),
    #[error("another console took over the cutover of restore run {0}; this one stopped")]
    LeaseLost(String),
    #[error("the master key is not configured: the replaced values cannot be kept sealed")]
    NoKey,
    #[error("a replaced value could not be sealed or opened with the master key")]
    Seal,
    #[error("Fly cannot be asked about {org}: {why}")]
    Fly { org: String, why: String },
    #[error("the cutovers could not be read or written: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a cutover could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Plan(#[from] super::RestoreError),
    #[error("the system gave no randomness for a lease token")]
    Random,
}

/// How a cutover runs: its lease, backoff and deadlines.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// How long a lease lasts without a refresh (a crashed console's cutover is free again after it).
    pub lease: Duration,
    /// How long one step keeps retrying transient errors before the phase fails.
    pub step_deadline: Duration,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a machine is waited for (started, stopped), and the checklist for holding.
    pub wait_deadline: Duration,
    /// At most this many steps, then the lease is let go (a test stops a console at a step boundary).
    pub max_steps: usize,
    /// The region of the new replicas (default: the new leader's), the user's choice when a cutover is first
    /// asked for: kept with it, so a resumed cutover uses the same.
    pub replica_region: Option<String>,
}

impl Default for CutoverOptions {
    fn default() -> Self {
        CutoverOptions {
            lease: Duration::from_secs(60),
            step_deadline: Duration::from_secs(5 * 60),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            wait_deadline: Duration::from_secs(10 * 60),
            max_steps: usize::MAX,
            replica_region: None,
        }
    }
}

/// The secret the apps reach their database with.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The old cluster's archiving switch (the image's `archive_command` pushes only while it is set).
pub const ENABLE_WALG: &str = "ENABLE_WALG";

/// The cutover's steps for `apps`.
fn cutover_steps(apps: &[String]) -> Vec<NewStep> {
    let one = |kind| NewStep {
        kind,
        app: String::new(),
    };
    let mut out = vec![one(steps::STOP_ARCHIVING), one(steps::CLONE_REPLICAS)];
    out.extend(apps.iter().map(|app| NewStep {
        kind: steps::POINT_APP,
        app: app.clone(),
    }));
    out.push(one(steps::STOP_OLD));
    out.push(one(steps::VERIFY));
    out
}

/// The rollback's steps for `apps`.
fn rollback_steps(apps: &[String]) -> Vec<NewStep> {
    let one = |kind| NewStep {
        kind,
        app: String::new(),
    };
    let mut out = vec![one(steps::RESUME_ARCHIVING), one(steps::START_OLD)];
    out.extend(apps.iter().map(|app| NewStep {
        kind: steps::RESTORE_APP,
        app: app.clone(),
    }));
    out.push(one(steps::VERIFY_ROLLBACK));
    out
}

/// The run's clusters: (org, old app, new app), from its stored plan.
struct RunClusters {
    org: String,
    old_app: String,
    new_app: String,
}

impl Restores {
    /// Cuts the verified restore of `run` over (see the module's doc): operators and admins; `confirm` must be
    /// the OLD cluster's name; `apps` are pointed at the new cluster. Asked again for a cutover in progress or
    /// failed, it resumes where it was (with the apps first given); asked again once done, it only returns it.
    pub async fn cutover(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        apps: &[String],
        confirm: &str,
    ) -> Result<CutoverView, CutoverError> {
        self.cutover_with(actor, meta, run, apps, confirm, &CutoverOptions::default())
            .await
    }

    /// [`Restores::cutover`] with its options.
    pub async fn cutover_with(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        apps: &[String],
        confirm: &str,
        options: &CutoverOptions,
    ) -> Result<CutoverView, CutoverError> {
        let clusters = self
            .confirmed(actor, meta, run, confirm, Phase::Cutover)
            .await?;
        let start = |detail: Value| {
            Event::new(actions::CUTOVER_START, Outcome::Ok)
                .target(store::target(run, &clusters.old_app))
                .detail(detail)
        };
        match store::load(&self.pool, run).await? {
            Some(row) if row.phase == Phase::Rollback => {
                return Err(CutoverError::RolledBack(run.to_owned()))
            }
            Some(row) if row.apps != apps => {
                let why = format!(
                    "a cutover of this run is under way with the apps [{}]; it resumes with those",
                    row.apps.join(", ")
                );
                return Err(self
                    .refuse(actor, meta, run, &clusters, Phase::Cutover, vec![why])
                    .await);
            }
            Some(row) if row.state == CutoverState::Failed => {
                let event = start(json!({ "resume": true, "apps": row.apps }));
                store::resume(&self.pool, actor, meta, run, Phase::Cutover, &event).await?;
            }
            Some(_) => {}
            None => {
                let region = options.replica_region.as_deref();
                let reasons = self.cutover_refusals(&clusters, apps, region).await?;
                if !reasons.is_empty() {
                    return Err(self
                        .refuse(actor, meta, run, &clusters, Phase::Cutover, reasons)
                        .await);
                }
                let row = CutoverRow {
                    run_id: run.to_owned(),
                    org: clusters.org.clone(),
                    old_app: clusters.old_app.clone(),
                    new_app: clusters.new_app.clone(),
                    apps: apps.to_vec(),
                    replica_region: options.replica_region.clone(),
                    phase: Phase::Cutover,
                    state: CutoverState::Running,
                    next_step: 0,
                    failure: None,
                    created_by: actor.display_name(),
                    created_at: String::new(),
                    updated_at: String::new(),
                };
                let event = start(json!({ "new_app": clusters.new_app, "apps": apps }));
                store::insert(&self.pool, actor, meta, &row, &cutover_steps(apps), &event).await?;
            }
        }
        self.drive(actor, meta, run, options).await?;
        self.cutover_view(run)
            .await?
            .ok_or_else(|| CutoverError::NoCutover(run.to_owned()))
    }

    /// Rolls the cutover of `run` back (see the module's doc): operators and admins; `confirm` must be the OLD
    /// cluster's name. Asked again, it resumes (or only returns a finished rollback).
    pub async fn rollback(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        confirm: &str,
    ) -> Result<CutoverView, CutoverError> {
        self.rollback_with(actor, meta, run, confirm, &CutoverOptions::default())
            .await
    }

    /// [`Restores::rollback`] with its options.
    pub async fn rollback_with(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        confirm: &str,
        options: &CutoverOptions,
    ) -> Result<CutoverView, CutoverError> {
        let clusters = self
            .confirmed(actor, meta, run, confirm, Phase::Rollback)
            .await?;
        let Some(row) = store::load(&self.pool, run).await? else {
            let why = "there is no cutover of this run to roll back".to_owned();
            self.refuse(actor, meta, run, &clusters, Phase::Rollback, vec![why])
                .await;
            return Err(CutoverError::NoCutover(run.to_owned()));
        };
        let event = |detail: Value| {
            Event::new(actions::ROLLBACK_START, Outcome::Ok)
                .target(store::target(run, &clusters.old_app))
                .detail(detail)
        };
        match (row.phase, row.state) {
            (Phase::Cutover, _) => {
                let detail = json!({ "apps": row.apps, "cutover_was": row.state });
                store::begin_rollback(
                    &self.pool,
                    actor,
                    meta,
                    run,
                    &rollback_steps(&row.apps),
                    &event(detail),
                )
                .await?;
            }
            (Phase::Rollback, CutoverState::Failed) => {
                let detail = json!({ "resume": true, "apps": row.apps });
                store::resume(
                    &self.pool,
                    actor,
                    meta,
                    run,
                    Phase::Rollback,
                    &event(detail),
                )
                .await?;
            }
            (Phase::Rollback, _) => {}
        }
        self.drive(actor, meta, run, options).await?;
        self.cutover_view(run)
            .await?
            .ok_or_else(|| CutoverError::NoCutover(run.to_owned()))
    }

    /// The cutover of `run` (and its rollback), if one was asked for.
    pub async fn cutover_view(&self, run: &str) -> Result<Option<CutoverView>, CutoverError> {
        let Some(row) = store::load(&self.pool, run).await? else {
            return Ok(None);
        };
        let cutover = store::steps(&self.pool, run, Phase::Cutover).await?;
        let rollback = store::steps(&self.pool, run, Phase::Rollback).await?;
        let last = match row.phase {
            Phase::Cutover => cutover.last(),
            Phase::Rollback => rollback.last(),
        };
        let checklist = last
            .and_then(|s| s.produced.get("checks"))
            .map(|c| serde_json::from_value(c.clone()))
            .transpose()?
            .unwrap_or_default();
        Ok(Some(CutoverView {
            run: row.run_id,
            org: row.org,
            old_app: row.old_app,
            new_app: row.new_app,
            apps: row.apps,
            replica_region: row.replica_region,
            phase: row.phase,
            state: row.state,
            failure: row.failure,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            cutover,
            rollback,
            checklist,
        }))
    }

    /// The role, the run (done), and the confirmation (the old cluster's name); each refusal audited.
    async fn confirmed(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        confirm: &str,
        phase: Phase,
    ) -> Result<RunClusters, CutoverError> {
        if !actor.has_role(Role::Operator) {
            let denied = Event::new(phase.action("start"), Outcome::Denied)
                .subject(format!("restore_run:{run}"));
            audit::record(&self.pool, actor, meta, &denied).await?;
            return Err(CutoverError::Forbidden);
        }
        let view = match self.run(run).await {
            Ok(view) => view,
            Err(super::engine::EngineError::NoRun(_)) => {
                return Err(CutoverError::NoRun(run.to_owned()))
            }
            Err(super::engine::EngineError::Database(e)) => return Err(e.into()),
            Err(e) => {
                return Err(CutoverError::Refused(vec![format!(
                    "the restore run cannot be read: {e}"
                )]))
            }
        };
        if view.state != RunState::Done {
            return Err(CutoverError::NotDone {
                run: run.to_owned(),
                state: view.state.as_str().to_owned(),
            });
        }
        let plan = plans::load(&self.pool, &view.plan_hash)
            .await?
            .ok_or_else(|| CutoverError::NoRun(run.to_owned()))?
            .plan;
        let clusters = RunClusters {
            org: plan.source.org,
            old_app: plan.source.app,
            new_app: plan.destination.app,
        };
        if confirm.trim() != clusters.old_app {
            let why = "confirmation does not match the old cluster's name";
            let refused = Event::new(phase.action("start"), Outcome::Failed)
                .target(store::target(run, &clusters.old_app))
                .detail(json!({ "why": why }));
            audit::record(&self.pool, actor, meta, &refused).await?;
            return Err(CutoverError::ConfirmMismatch {
                expected: clusters.old_app,
            });
        }
        Ok(clusters)
    }

    /// Audits a refusal (`failed`, with the reasons) and returns it as the error.
    async fn refuse(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        clusters: &RunClusters,
        phase: Phase,
        reasons: Vec<String>,
    ) -> CutoverError {
        let refused = Event::new(phase.action("start"), Outcome::Failed)
            .target(store::target(run, &clusters.old_app))
            .detail(json!({ "refused": reasons }));
        if let Err(e) = audit::record(&self.pool, actor, meta, &refused).await {
            return e.into();
        }
        CutoverError::Refused(reasons)
    }

    /// Every reason a new cutover cannot go ahead, read from Fly before anything is changed: the replicas'
    /// region is a Fly region; each selected app exists, is neither cluster, and its `DATABASE_URL` points at
    /// the old cluster.
    async fn cutover_refusals(
        &self,
        clusters: &RunClusters,
        apps: &[String],
        region: Option<&str>,
    ) -> Result<Vec<String>, CutoverError> {
        if self.escrow.sealing_keyring().is_none() {
            return Err(CutoverError::NoKey);
        }
        let client = self.client(&clusters.org).await?;
        let mut reasons = Vec::new();
        if let Some(r) = region.filter(|r| !super::request::known_region(r)) {
            reasons.push(format!("'{r}' is not a Fly region for the new replicas."));
        }
        let mut seen = std::collections::BTreeSet::new();
        for app in apps {
            if !seen.insert(app) {
                reasons.push(format!("{app} is selected twice."));
            } else if app == &clusters.old_app || app == &clusters.new_app {
                reasons.push(format!(
                    "{app} is one of the clusters; select the apps that use the database."
                ));
            } else if let Err(why) = steps::points_at(&client, app, &clusters.old_app).await {
                reasons.push(why);
            }
        }
        Ok(reasons)
    }

    /// A Fly client acting in `org`.
    async fn client(&self, org: &str) -> Result<fly::FlyClient, CutoverError> {
        self.orgs
            .client_for(org)
            .await
            .map_err(|e| CutoverError::Fly {
                org: org.to_owned(),
                why: e.to_string(),
            })
    }

    /// Takes the cutover's lease, runs its phase's next steps until it ends (or `options.max_steps`), lets
    /// the lease go.
    async fn drive(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        options: &CutoverOptions,
    ) -> Result<(), CutoverError> {
        let row = store::load(&self.pool, run)
            .await?
            .ok_or_else(|| CutoverError::NoCutover(run.to_owned()))?;
        if row.state != CutoverState::Running {
            return Ok(());
        }
        let owner = new_token()?;
        if !store::take_lease(&self.pool, run, &owner, options.lease).await? {
            return Err(CutoverError::Busy(run.to_owned()));
        }
        let held = Held {
            pool: &self.pool,
            run,
            old_app: &row.old_app,
            phase: row.phase,
            owner: &owner,
            ttl: options.lease,
            actor,
            meta,
        };
        let driven = self.drive_held(&held, &row, options).await;
        store::release_lease(&self.pool, run, &owner).await?;
        driven
    }

    async fn drive_held(
        &self,
        held: &Held<'_>,
        row: &CutoverRow,
        options: &CutoverOptions,
    ) -> Result<(), CutoverError> {
        let client = self.client(&row.org).await?;
        let keyring = self.escrow.sealing_keyring().ok_or(CutoverError::NoKey)?;
        for _ in 0..options.max_steps {
            let now = store::load(&self.pool, held.run)
                .await?
                .ok_or_else(|| CutoverError::NoCutover(held.run.to_owned()))?;
            if now.state != CutoverState::Running {
                break;
            }
            let phase_steps = store::steps(&self.pool, held.run, now.phase).await?;
            let Some(step) = phase_steps.get(now.next_step) else {
                break;
            };
            let cutover = match now.phase {
                Phase::Cutover => phase_steps.clone(),
                Phase::Rollback => store::steps(&self.pool, held.run, Phase::Cutover).await?,
            };
            let produced = held.start_step(step).await?;
            let ctx = Ctx {
                client: &client,
                keyring,
                held,
                row,
                cutover: &cutover,
                options,
            };
            let last = now.next_step + 1 == phase_steps.len();
            match self.run_step(&ctx, step, produced).await? {
                Ok(produced) => held.finish_step(step, &produced, last).await?,
                Err(why) => {
                    held.fail_step(step, &why).await?;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Attempts of one step until it succeeds, fails for good, or its transient errors outlast the deadline.
    async fn run_step(
        &self,
        ctx: &Ctx<'_>,
        step: &CutoverStepView,
        produced: Value,
    ) -> Result<Result<Value, String>, CutoverError> {
        let start = tokio::time::Instant::now();
        let mut delay = ctx.options.backoff;
        let mut produced = produced;
        loop {
            let why = match steps::execute(ctx, step, &mut produced).await {
                Ok(()) => return Ok(Ok(produced)),
                Err(StepError::Permanent(why)) => return Ok(Err(why)),
                Err(StepError::Cutover(e)) => return Err(e),
                Err(StepError::Transient(why)) => why,
            };
            if start.elapsed() + delay > ctx.options.step_deadline {
                return Ok(Err(format!(
                    "Fly kept failing for {} s: {why}. Nothing was done twice; ask again to resume at this step.",
                    start.elapsed().as_secs()
                )));
            }
            tracing::info!(run = ctx.held.run, step = step.index, error = %why, ?delay, "cutover: transient error, retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(ctx.options.max_backoff);
            ctx.held.refresh().await?;
        }
    }
}

/// 16 random hex digits: a console's lease token.
fn new_token() -> Result<String, CutoverError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|_| CutoverError::Random)?;
    Ok(hex::encode(bytes))
}
