//! The restore engine (issue #13 item 2, first part): a stored plan's [`Step`]s run as a persisted state
//! machine in SQLite by a background worker, so a killed or restarted console resumes where it was and never
//! creates anything twice.
//!
//! - [`Restores::start_run`] (operators): the typed confirmation must equal the new cluster's name; one live
//!   run per plan; `restore.run.start` audited with the run's rows.
//! - [`advance`] (the worker's unit, [`tick`] over every runnable run): takes the run's lease (an expiry in the
//!   row, refreshed at every step and during long waits; an expired lease is free, which is how a crashed
//!   worker's run is taken over), runs the next step, records it, moves on. Every step's start, end and failure
//!   is audited (`restore.step.start|done|fail`).
//! - Each step looks before it creates ([`exec`]); an interrupted step runs again and finds what it made.
//!   Transient errors (429, 5xx, 408, lost connections, ambiguous creates, 409) are retried with backoff up to a
//!   deadline on top of what `crates/fly` retries itself; a permanent failure stops the run (`failed`) with the
//!   cause in plain words.
//! - Every step of a plan runs: the app, Consul, secrets, volume, machine, the wait for it, the one keeper, the
//!   PITR init (detached, once), its progress (stored on the step), verification, the login proof, the secrets
//!   and machine update, and the first base backup. A plan step without an executor (a bare `Exec`) pauses the
//!   run with the reason. [`RunView::report`] gives each step's duration and the measured RTO.
//!
//! - [`control`]: the two-person approval of a plan, retry, cancel (leave as is, or destroy what the run made
//!   as a clean-up job of its own).
//!
//! One place per concern: [`runs`] (the tables and the lease), [`exec`] (one executor per step), [`control`]
//! (approval, retry, cancel and clean-up), this file (the loop).

mod control;
mod exec;
mod list;
mod runs;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, AuditError, Event, Outcome};
use crate::walden::Walden;

use super::{store, Restores, Step};
use exec::{StepCtx, StepError};
use runs::Held;

pub use control::{Approval, Cleanup, CleanupOutcome, CleanupView};
pub use exec::{assertion_holds, RUN_METADATA};
pub use list::RunSummary;

/// Audit actions of the engine.
pub mod actions {
    /// A run started (or was refused: `denied`).
    pub const RUN_START: &str = "restore.run.start";
    /// A run stopped before a step the engine cannot run yet.
    pub const RUN_PAUSE: &str = "restore.run.pause";
    /// Every step of a run done.
    pub const RUN_DONE: &str = "restore.run.done";
    /// A step began (again, after a crash or takeover: `attempt` says which).
    pub const STEP_START: &str = "restore.step.start";
    /// A step finished, with the ids it produced.
    pub const STEP_DONE: &str = "restore.step.done";
    /// A step failed for good; the run is `failed`.
    pub const STEP_FAIL: &str = "restore.step.fail";
    /// Another operator or admin approved a plan hash (or was refused: `denied`).
    pub const APPROVE: &str = "restore.approve";
    /// A failed run's failed step goes again.
    pub const RUN_RETRY: &str = "restore.run.retry";
    /// A run cancelled (with what existed), and its clean-up finished (with what was destroyed).
    pub const RUN_CANCEL: &str = "restore.run.cancel";
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Pending,
    Running,
    Paused,
    Failed,
    Cancelled,
    Done,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Done => "done",
        }
    }

    /// The stored text (the table's CHECK allows only these; anything else reads as failed).
    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => RunState::Pending,
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "cancelled" => RunState::Cancelled,
            "done" => RunState::Done,
            _ => RunState::Failed,
        }
    }

    /// A worker may still move it on.
    pub fn runnable(self) -> bool {
        matches!(self, RunState::Pending | RunState::Running)
    }
}

/// A run and its steps, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub id: String,
    pub plan_hash: String,
    pub state: RunState,
    pub next_step: usize,
    pub created_by: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Why the run failed or paused, in plain words.
    pub failure: Option<String>,
    pub steps: Vec<StepView>,
    /// Durations per step and the measured RTO, from the stored times (once a step has finished). Boxed: a
    /// view travels inside [`Advance`].
    pub report: Option<Box<RunReport>>,
    /// The clean-up of a run cancelled with [`Cleanup::Destroy`] (boxed: most runs have none).
    pub cleanup: Option<Box<CleanupView>>,
}

/// What a run took: each finished step's duration and the measured RTO (the run's start to the restored
/// cluster verified), from the times stored on the run and its steps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub steps: Vec<StepDuration>,
    /// Seconds from the run's creation to the end of the verification step; `None` until it is verified.
    pub rto_seconds: Option<f64>,
    /// Seconds from the run's creation to its last finished step.
    pub elapsed_seconds: f64,
}

/// One finished step's duration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepDuration {
    pub index: usize,
    pub kind: String,
    pub seconds: f64,
}

/// The report of a run from its stored times (see [`RunReport`]).
fn report(created_at: &str, steps: &[StepView]) -> Option<Box<RunReport>> {
    let created = crate::ts::parse(created_at)?;
    let secs = |a: time::OffsetDateTime, b: time::OffsetDateTime| (b - a).as_seconds_f64();
    let durations: Vec<StepDuration> = steps
        .iter()
        .filter_map(|s| {
            let start = crate::ts::parse(s.started_at.as_deref()?)?;
            let end = crate::ts::parse(s.finished_at.as_deref()?)?;
            Some(StepDuration {
                index: s.index,
                kind: s.kind.clone(),
                seconds: secs(start, end),
            })
        })
        .collect();
    let last = steps
        .iter()
        .filter_map(|s| crate::ts::parse(s.finished_at.as_deref()?))
        .max()?;
    let verified = steps
        .iter()
        .filter(|s| s.status == "done" && (s.kind == "verify" || s.kind == "prove_logins"))
        .filter_map(|s| crate::ts::parse(s.finished_at.as_deref()?))
        .max();
    Some(Box::new(RunReport {
        steps: durations,
        rto_seconds: verified.map(|v| secs(created, v)),
        elapsed_seconds: secs(created, last),
    }))
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepView {
    pub index: usize,
    pub kind: String,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The Fly ids and versions it produced (`{"machine": "…"}`), or null.
    pub produced: Value,
    pub error: Option<String>,
    /// A long step's live progress (`phase`, `percent`, `seconds_left`, `log_tail`), or null.
    pub progress: Value,
}

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// Another worker holds the run's lease; nothing was done.
    Held,
    /// This worker moved the run on as far as it could (or found nothing to do): where it is now.
    Ran(RunView),
}

/// Why a run could not be started or moved on.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "starting, approving, retrying or cancelling a restore needs the operator or admin role"
    )]
    Forbidden,
    #[error("no restore plan has the hash {0}")]
    NoPlan(String),
    #[error("the confirmation does not match: type the new cluster's name, {expected}, to start the restore")]
    ConfirmMismatch { expected: String },
    #[error("this plan already has a restore in progress (run {0}); follow that one")]
    LiveRun(String),
    #[error("there is no restore run {0}")]
    NoRun(String),
    #[error("restores need a second person's approval: another operator or admin approves plan {0} first (walden restore approve)")]
    NotApproved(String),
    #[error("the plan's author cannot approve it: another operator or admin must")]
    SelfApproval,
    #[error("restore run {run} is {state:?}, not failed: only a failed run can be retried")]
    NotFailed { run: String, state: RunState },
    #[error("restore run {0} is done: there is nothing to cancel")]
    Finished(String),
    #[error("restore run {0} failed because its new app's name was taken by someone else since the plan: a retry would take that app over. Cancel the run and plan again with another name")]
    NameTaken(String),
    #[error("another worker took over restore run {0}; this one stopped")]
    LeaseLost(String),
    #[error("the restore runs could not be read or written: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a restore run could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Plan(#[from] super::RestoreError),
    #[error("the system gave no randomness for a run id")]
    Random,
    /// The worker was asked to stop in the middle of a long step (it resumes on the next pass).
    #[error("the restore worker is stopping")]
    Stopped,
}

/// How the engine runs: its lease, backoff and deadlines.
#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// How long a lease lasts without a refresh (a crashed worker's run is free again after it).
    pub lease: Duration,
    /// How long one step keeps retrying transient errors before the run fails.
    pub step_deadline: Duration,
    /// The first pause between retries (doubling up to [`EngineOptions::max_backoff`]).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long the Wait step waits for the new machine.
    pub wait_deadline: Duration,
    /// How long the keeper check waits for exactly one healthy keeper (a keeper that never gets healthy).
    pub keeper_deadline: Duration,
    /// How long the PITR (and the first base backup) is followed before the run fails: never forever.
    pub pitr_deadline: Duration,
    /// The pause between two polls of a long step (progress, keeper, backup).
    pub poll_interval: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lease: Duration::from_secs(60),
            step_deadline: Duration::from_secs(5 * 60),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            wait_deadline: Duration::from_secs(10 * 60),
            keeper_deadline: Duration::from_secs(10 * 60),
            pitr_deadline: Duration::from_secs(24 * 60 * 60),
            poll_interval: Duration::from_secs(10),
        }
    }
}

/// The actor the worker acts as in the audit log.
pub fn worker_actor() -> Actor {
    Actor::System {
        label: "restore-worker".into(),
    }
}

impl Restores {
    /// Starts a run of the stored plan `plan_hash`: operators and admins only; `confirm` must be the plan's new
    /// app name; refused while the plan has a live run. The run is `pending` until a worker takes it.
    pub async fn start_run(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        plan_hash: &str,
        confirm: &str,
    ) -> Result<RunView, EngineError> {
        if !actor.has_role(Role::Operator) {
            let denied = Event::new(actions::RUN_START, Outcome::Denied)
                .subject(format!("restore_plan:{plan_hash}"));
            audit::record(&self.pool, actor, meta, &denied).await?;
            return Err(EngineError::Forbidden);
        }
        let stored = store::load(&self.pool, plan_hash)
            .await?
            .ok_or_else(|| EngineError::NoPlan(plan_hash.to_owned()))?;
        let app = &stored.plan.destination.app;
        if !control::approved_for(&self.pool, plan_hash, actor).await? {
            let refused = Event::new(actions::RUN_START, Outcome::Failed)
                .subject(format!("restore_plan:{plan_hash}"))
                .detail(json!({ "why": "the plan has no second person's approval" }));
            audit::record(&self.pool, actor, meta, &refused).await?;
            return Err(EngineError::NotApproved(plan_hash.to_owned()));
        }
        if confirm.trim() != app {
            let refused = Event::new(actions::RUN_START, Outcome::Failed)
                .subject(format!("restore_plan:{plan_hash}"))
                .detail(json!({ "why": "confirmation does not match the new cluster's name" }));
            audit::record(&self.pool, actor, meta, &refused).await?;
            return Err(EngineError::ConfirmMismatch {
                expected: app.clone(),
            });
        }
        let id = new_run_id()?;
        let kinds: Vec<String> = stored.plan.steps.iter().map(exec::kind).collect();
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        runs::insert(&self.pool, actor, meta, &id, plan_hash, app, &kinds).await?;
        runs::view(&self.pool, &id).await
    }

    /// A run and its steps.
    pub async fn run(&self, id: &str) -> Result<RunView, EngineError> {
        runs::view(&self.pool, id).await
    }
}

/// Moves `run` on as far as it goes (done, paused, failed), with the default options.
pub async fn advance(walden: &Walden, run: &str) -> Result<Advance, EngineError> {
    Engine::new(walden.restores(), EngineOptions::default())
        .advance(run, usize::MAX)
        .await
}

/// One pass over everything the engine has to do, one thing after another: every runnable run (pending or
/// running, lease free or expired) moved on ([`drive_run`]), then every unfinished clean-up tried once
/// ([`clean_up_pending`]). `stop` is asked before each run and each step (a shutdown waits for the step in
/// progress, never cuts a record in half). Returns how many runs it moved. The console's worker does the same
/// with each run in a task of its own (`server/src/jobs.rs`), so a long PITR never holds another run up.
pub async fn tick(walden: &Walden, stop: &(dyn Fn() -> bool + Sync)) -> Result<usize, EngineError> {
    tick_with(walden, EngineOptions::default(), stop).await
}

/// [`tick`] with the given options (the console's configured poll interval and lease).
pub async fn tick_with(
    walden: &Walden,
    options: EngineOptions,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<usize, EngineError> {
    let mut moved = 0;
    for id in runnable_runs(walden).await? {
        if stop() {
            break;
        }
        if drive_run(walden, options, &id, stop).await {
            moved += 1;
        }
    }
    clean_up_pending(walden, stop).await?;
    Ok(moved)
}

/// The runs a worker may move on now: pending or running, their lease free or expired.
pub async fn runnable_runs(walden: &Walden) -> Result<Vec<String>, EngineError> {
    runs::runnable(walden.pool()).await
}

/// Moves one run on as far as it goes unless another worker holds it; `true` when this worker moved it. A
/// failure to read or write the run is logged (the run's own row says what went wrong with a step).
pub async fn drive_run(
    walden: &Walden,
    options: EngineOptions,
    id: &str,
    stop: &(dyn Fn() -> bool + Sync),
) -> bool {
    let engine = Engine::new(walden.restores(), options);
    match engine.advance_until(id, usize::MAX, stop).await {
        Ok(Advance::Ran(_)) => true,
        Ok(Advance::Held) => false,
        Err(e) => {
            tracing::warn!(run = %id, error = %e, "restore engine: the run could not be moved on");
            false
        }
    }
}

/// Every unfinished clean-up of a cancelled run tried once (each leased, so two workers never clean up the
/// same run together).
pub async fn clean_up_pending(
    walden: &Walden,
    stop: &(dyn Fn() -> bool + Sync),
) -> Result<(), EngineError> {
    let restores = walden.restores();
    for id in control::pending_cleanups(walden.pool()).await? {
        if stop() {
            break;
        }
        match restores.clean_up(&id).await {
            Ok(CleanupOutcome::Failed(why)) => {
                tracing::warn!(run = %id, error = %why, "restore clean-up: this attempt failed")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(run = %id, error = %e, "restore clean-up could not go on"),
        }
    }
    Ok(())
}

/// The engine over a [`Restores`].
#[derive(Clone, Debug)]
pub struct Engine {
    restores: Restores,
    options: EngineOptions,
}

impl Engine {
    pub fn new(restores: Restores, options: EngineOptions) -> Self {
        Engine { restores, options }
    }

    /// Takes the run's lease and runs at most `max_steps` steps (the worker passes no limit; a limit is how a
    /// test stops a worker at a step boundary), then lets the lease go.
    pub async fn advance(&self, run: &str, max_steps: usize) -> Result<Advance, EngineError> {
        self.advance_until(run, max_steps, &|| false).await
    }

    /// [`Engine::advance`] that also stops (between steps) once `stop` says so.
    pub async fn advance_until(
        &self,
        run: &str,
        max_steps: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Advance, EngineError> {
        let pool = &self.restores.pool;
        let owner = new_run_id()?;
        if !runs::take_lease(pool, run, &owner, self.options.lease).await? {
            let view = runs::view(pool, run).await?;
            return Ok(if view.state.runnable() {
                Advance::Held
            } else {
                Advance::Ran(view)
            });
        }
        let driven = self.drive(run, &owner, max_steps, stop).await;
        runs::release_lease(pool, run, &owner).await?;
        let view = runs::view(pool, run).await?;
        match driven {
            // Cancelled while this worker held it: it stopped at its first write after the cancel.
            Err(EngineError::LeaseLost(_)) if view.state == RunState::Cancelled => {}
            other => other?,
        }
        Ok(Advance::Ran(view))
    }

    /// The loop: the next step, recorded, until the run stops or `max_steps` ran.
    async fn drive(
        &self,
        run: &str,
        owner: &str,
        max_steps: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<(), EngineError> {
        let pool = &self.restores.pool;
        let row = runs::load(pool, run).await?;
        let plan = store::load(pool, &row.plan_hash)
            .await?
            .ok_or_else(|| EngineError::NoPlan(row.plan_hash.clone()))?
            .plan;
        let actor = worker_actor();
        let held = Held {
            pool,
            run,
            app: &plan.destination.app,
            owner,
            ttl: self.options.lease,
            actor: &actor,
        };
        let client = self.restores.orgs.client_for(&plan.source.org).await;
        for _ in 0..max_steps {
            let row = runs::load(pool, run).await?;
            if !row.state.runnable() || stop() {
                break;
            }
            let idx = row.next_step;
            let Some(step) = plan.steps.get(idx) else {
                held.done().await?;
                break;
            };
            let kind = exec::kind(step);
            if !exec::built(step) {
                let why = format!(
                    "Stopped before step {} ({kind}: {}): the engine cannot run this step yet. Everything before it \
                     is done and stays as it is.",
                    idx + 1,
                    step.call()
                );
                held.pause(idx, &kind, &why).await?;
                break;
            }
            let prior = held.start_step(idx, &kind, start_detail(step)).await?;
            let client = match &client {
                Ok(c) => c,
                Err(e) => {
                    let why = format!(
                        "Fly cannot be asked about {}: {e}. Check the organisation's token.",
                        plan.source.org
                    );
                    held.fail_step(idx, &kind, &why).await?;
                    break;
                }
            };
            let earlier = runs::produced_before(pool, run, idx).await?;
            let ran = self
                .run_step(&held, client, &plan, (step, idx), &earlier, prior, stop)
                .await;
            // A shutdown in the middle of a long step: the step stays running and resumes on the next pass.
            if matches!(ran, Err(EngineError::Stopped)) {
                break;
            }
            match ran? {
                Ok(produced) => held.finish_step(idx, &kind, &produced).await?,
                Err(why) => {
                    held.fail_step(idx, &kind, &why).await?;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Attempts of one step until it succeeds, fails for good, or its transient errors outlast the deadline.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        held: &Held<'_>,
        client: &fly::FlyClient,
        plan: &super::Plan,
        (step, idx): (&Step, usize),
        earlier: &[Value],
        prior: i64,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Result<Value, String>, EngineError> {
        let start = tokio::time::Instant::now();
        let mut delay = self.options.backoff;
        let mut prior_attempts = prior;
        loop {
            let ctx = StepCtx {
                client,
                escrow: &self.restores.escrow,
                plan,
                held,
                earlier,
                prior_attempts,
                index: idx,
                options: self.options,
                stop,
            };
            let why = match exec::execute(&ctx, step).await {
                Ok(produced) => return Ok(Ok(produced)),
                Err(StepError::Permanent(why)) => return Ok(Err(why)),
                Err(StepError::Engine(e)) => return Err(e),
                Err(StepError::Transient(why)) => why,
            };
            if start.elapsed() + delay > self.options.step_deadline {
                return Ok(Err(format!(
                    "Fly kept failing for {} s: {why}. Nothing was created twice; retry the step when Fly answers \
                     again.",
                    start.elapsed().as_secs()
                )));
            }
            tracing::info!(run = held.run, step = idx, error = %why, ?delay, "restore engine: transient error, retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.options.max_backoff);
            held.retry_step(idx).await?;
            prior_attempts += 1;
        }
    }
}

/// The audit detail of a step's start: its Fly call, and for secrets the names only (and which escrow
/// version is opened), never a value.
fn start_detail(step: &Step) -> Value {
    let mut detail = json!({ "call": step.call() });
    if let Step::SetSecrets { values, .. } = step {
        detail["secrets"] = json!(values.keys().collect::<Vec<_>>());
    }
    detail
}

/// 16 random hex digits: a run id, or a worker's lease token.
fn new_run_id() -> Result<String, EngineError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|_| EngineError::Random)?;
    Ok(hex::encode(bytes))
}
