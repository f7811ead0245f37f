//! Controlling a run (issue #13 items 1d and 3): the two-person approval of a plan, and the three choices after
//! a permanent failure — retry the step, cancel and clean up, leave as is. One impl, split by operation:
//!
//! - [`Restores::approve_plan`]: another operator or admin (never the plan's author) approves a plan hash; with
//!   the `require_restore_approval` setting on, [`Restores::start_run`] refuses a plan without one
//!   ([`approved_for`]). `restore.approve`.
//! - [`Restores::retry_run`]: a failed run's failed step back to pending and the run to `pending`; a worker picks
//!   it up. `restore.run.retry`. Refused when the app's name was taken by someone else (the retry would take
//!   that app for the run's).
//! - [`Restores::cancel_run`]: any run not done becomes `cancelled` at once (a worker running it notices at its
//!   next step boundary or lease refresh: every worker write is guarded by the run's state, see `runs.rs`).
//!   [`Cleanup::Leave`] keeps everything; [`Cleanup::Destroy`] also queues a clean-up job
//!   (`restore_cleanups`), run at once and by the worker's [`super::tick`] until done. `restore.run.cancel`,
//!   once when asked (with what exists) and once when the clean-up ends (with what was destroyed).
//! - The clean-up job ([`Restores::clean_up`]): leased like a run, so a crashed clean-up is resumed; it waits
//!   until the cancelled run's worker let go of the run; every destroy looks first, so doing it again is
//!   harmless. It destroys ONLY what the run made: machines tagged `walden_run=<id>` (stopped, then destroyed),
//!   the volumes the run recorded, and the app only when the run's `create_app` step is done and nothing else
//!   is left in it. The source app is never touched.

use std::time::Duration;

use fly::{FlyClient, ListMachines, StopRequest, WaitFor};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{Row, SqlitePool};

use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, AuditedTx, Event, Outcome};
use crate::settings::{self, REQUIRE_RESTORE_APPROVAL};
use crate::ts;

use super::super::{store, Restores};
use super::{actions, new_run_id, runs, EngineError, RunState, RunView, RUN_METADATA};

/// What a cancel does with what the run created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cleanup {
    /// Destroy what the run created (its tagged machines, its volumes, its app when empty).
    Destroy,
    /// Keep everything as it is (the run's view says what exists).
    Leave,
}

/// One approval of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    pub plan_hash: String,
    pub approver: String,
    pub approved_at: String,
}

/// A cancelled run's clean-up, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CleanupView {
    /// `pending` (not finished yet: the worker goes on with it) or `done`.
    pub state: String,
    pub attempts: i64,
    pub requested_by: String,
    pub requested_at: String,
    pub finished_at: Option<String>,
    /// What is gone so far (`machine m…`, `volume vol_…`, `app …`).
    pub destroyed: Vec<String>,
    /// The last attempt's failure, in plain words.
    pub error: Option<String>,
}

/// What one attempt of a clean-up did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupOutcome {
    /// Everything the run created is gone (or was already).
    Done,
    /// Another worker holds the clean-up, or the cancelled run's worker has not let go of the run yet: a later
    /// tick goes on.
    Waiting,
    /// This attempt failed (recorded); a later tick tries again.
    Failed(String),
    /// There is nothing to clean up for this run (not cancelled with destroy, or already done).
    Nothing,
}

/// What `exec::create_app`'s failure says when the name was taken by someone else before the run sent a create.
/// A retry of that step would count the earlier attempt and take the stranger's app for the run's, so it is
/// refused.
const NAME_TAKEN: &str = "was taken since the plan";

/// How long a clean-up holds its lease without a refresh.
const CLEANUP_LEASE: Duration = Duration::from_secs(60);
/// How long a clean-up attempt waits for a destroyed machine to be gone.
const DESTROY_DEADLINE: Duration = Duration::from_secs(10 * 60);

/// Whether the plan `hash` may start for `starter`: the setting is off, or someone who is neither the plan's
/// author nor `starter` approved it.
pub(super) async fn approved_for(
    pool: &SqlitePool,
    hash: &str,
    starter: &Actor,
) -> Result<bool, EngineError> {
    if !settings::get_bool(pool, REQUIRE_RESTORE_APPROVAL).await? {
        return Ok(true);
    }
    let approvers: Vec<String> =
        sqlx::query_scalar("SELECT approver FROM restore_plan_approvals WHERE plan_hash = ?")
            .bind(hash)
            .fetch_all(pool)
            .await?;
    let starter = starter.display_name();
    Ok(approvers.iter().any(|a| *a != starter))
}

fn plan_subject(hash: &str) -> String {
    format!("restore_plan:{hash}")
}

impl Restores {
    /// Whether runs need a second person's approval of their plan (the `require_restore_approval` setting).
    pub async fn approval_required(&self) -> Result<bool, EngineError> {
        Ok(settings::get_bool(&self.pool, REQUIRE_RESTORE_APPROVAL).await?)
    }

    /// `actor` approves the stored plan `hash`: operators and admins, never the plan's author (a viewer or the
    /// author is refused and audited). Approving twice is harmless. `restore.approve`.
    pub async fn approve_plan(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        hash: &str,
    ) -> Result<Approval, EngineError> {
        let refuse = |outcome: Outcome, why: &str| {
            Event::new(actions::APPROVE, outcome)
                .subject(plan_subject(hash))
                .detail(json!({ "refused": why }))
        };
        if !actor.has_role(Role::Operator) {
            audit::record(&self.pool, actor, meta, &refuse(Outcome::Denied, "role")).await?;
            return Err(EngineError::Forbidden);
        }
        let stored = store::load(&self.pool, hash)
            .await?
            .ok_or_else(|| EngineError::NoPlan(hash.to_owned()))?;
        let approver = actor.display_name();
        if stored.created_by == approver {
            audit::record(&self.pool, actor, meta, &refuse(Outcome::Denied, "author")).await?;
            return Err(EngineError::SelfApproval);
        }
        let now = ts::format(ts::now());
        let mut tx = AuditedTx::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO restore_plan_approvals (plan_hash, approver, approver_id, author, approved_at) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (plan_hash, approver) DO NOTHING",
        )
        .bind(hash)
        .bind(&approver)
        .bind(actor.user_id())
        .bind(&stored.created_by)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let approved_at: String = sqlx::query_scalar(
            "SELECT approved_at FROM restore_plan_approvals WHERE plan_hash = ? AND approver = ?",
        )
        .bind(hash)
        .bind(&approver)
        .fetch_one(&mut *tx)
        .await?;
        let event = Event::new(actions::APPROVE, Outcome::Ok)
            .subject(plan_subject(hash))
            .detail(json!({ "plan": hash, "author": stored.created_by, "to": stored.plan.destination.app }));
        tx.commit(actor, meta, &event).await?;
        Ok(Approval {
            plan_hash: hash.to_owned(),
            approver,
            approved_at,
        })
    }

    /// The approvals of plan `hash`, oldest first.
    pub async fn approvals(&self, hash: &str) -> Result<Vec<Approval>, EngineError> {
        let rows = sqlx::query(
            "SELECT approver, approved_at FROM restore_plan_approvals WHERE plan_hash = ? ORDER BY approved_at",
        )
        .bind(hash)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Approval {
                    plan_hash: hash.to_owned(),
                    approver: r.try_get("approver")?,
                    approved_at: r.try_get("approved_at")?,
                })
            })
            .collect()
    }

    /// Retries a `failed` run: its failed step back to pending, the run to `pending` (a worker picks it up and
    /// the step looks before it creates, as after a crash). Operators and admins. `restore.run.retry`.
    pub async fn retry_run(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
    ) -> Result<RunView, EngineError> {
        self.require_operator(actor, meta, actions::RUN_RETRY, run)
            .await?;
        let view = runs::view(&self.pool, run).await?;
        if view.state != RunState::Failed {
            return Err(EngineError::NotFailed {
                run: run.to_owned(),
                state: view.state,
            });
        }
        if view.steps.iter().any(|s| {
            s.kind == "create_app"
                && s.status == "failed"
                && s.error.as_deref().is_some_and(|e| e.contains(NAME_TAKEN))
        }) {
            return Err(EngineError::NameTaken(run.to_owned()));
        }
        let app = self.run_app(&view.plan_hash).await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let live: Option<String> = sqlx::query_scalar(
            "SELECT id FROM restore_runs WHERE plan_hash = ? AND id <> ? \
             AND state IN ('pending', 'running', 'paused')",
        )
        .bind(&view.plan_hash)
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(live) = live {
            return Err(EngineError::LiveRun(live));
        }
        let step: Option<i64> = sqlx::query_scalar(
            "SELECT idx FROM restore_run_steps WHERE run_id = ? AND status = 'failed' ORDER BY idx LIMIT 1",
        )
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE restore_run_steps SET status = 'pending', started_at = NULL, finished_at = NULL, error = NULL \
             WHERE run_id = ? AND status = 'failed'",
        )
        .bind(run)
        .execute(&mut *tx)
        .await?;
        let moved = sqlx::query(
            "UPDATE restore_runs SET state = 'pending', failure = NULL, finished_at = NULL, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id = ? AND state = 'failed'",
        )
        .bind(run)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            return Err(EngineError::NotFailed {
                run: run.to_owned(),
                state: view.state,
            });
        }
        let event = Event::new(actions::RUN_RETRY, Outcome::Ok)
            .target(runs::target(run, &app))
            .detail(json!({ "step": step, "failure": view.failure }));
        tx.commit(actor, meta, &event).await?;
        runs::view(&self.pool, run).await
    }

    /// Cancels a run that is not done. With [`Cleanup::Leave`] everything stays; with [`Cleanup::Destroy`] a
    /// clean-up job is queued and tried at once (see [`Restores::clean_up`]; the worker finishes it if the
    /// run's worker is still stopping). Cancelling a cancelled run again is harmless, and may turn a "leave"
    /// into a "destroy". Operators and admins. `restore.run.cancel`.
    pub async fn cancel_run(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        run: &str,
        cleanup: Cleanup,
    ) -> Result<RunView, EngineError> {
        self.require_operator(actor, meta, actions::RUN_CANCEL, run)
            .await?;
        let view = runs::view(&self.pool, run).await?;
        if view.state == RunState::Done {
            return Err(EngineError::Finished(run.to_owned()));
        }
        let app = self.run_app(&view.plan_hash).await?;
        let already = view.state == RunState::Cancelled;
        let queued = view.cleanup.is_some();
        if !already || (cleanup == Cleanup::Destroy && !queued) {
            let now = ts::format(ts::now());
            let mut tx = AuditedTx::begin(&self.pool).await?;
            // The lease stays with a worker still running the run: it stops at its next write (all guarded by
            // the state), and the clean-up waits for it to let go.
            sqlx::query(
                "UPDATE restore_runs SET state = 'cancelled', failure = NULL, finished_at = COALESCE(finished_at, ?) \
                 WHERE id = ? AND state <> 'done'",
            )
            .bind(&now)
            .bind(run)
            .execute(&mut *tx)
            .await?;
            if cleanup == Cleanup::Destroy {
                sqlx::query(
                    "INSERT INTO restore_cleanups (run_id, state, requested_by, requested_at) \
                     VALUES (?, 'pending', ?, ?) ON CONFLICT (run_id) DO NOTHING",
                )
                .bind(run)
                .bind(actor.display_name())
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            let event = Event::new(actions::RUN_CANCEL, Outcome::Ok)
                .target(runs::target(run, &app))
                .detail(json!({
                    "cleanup": cleanup,
                    "was": view.state,
                    "exists": produced(&view),
                }));
            tx.commit(actor, meta, &event).await?;
        }
        if cleanup == Cleanup::Destroy {
            if let CleanupOutcome::Failed(why) = self.clean_up(run).await? {
                tracing::warn!(run, error = %why, "restore clean-up: this attempt failed; the worker retries");
            }
        }
        runs::view(&self.pool, run).await
    }

    /// One attempt of the clean-up of a run cancelled with [`Cleanup::Destroy`] (the worker's [`super::tick`]
    /// calls it for every unfinished one). Safe to call at any time, from any number of workers.
    pub async fn clean_up(&self, run: &str) -> Result<CleanupOutcome, EngineError> {
        let pool = &self.pool;
        let owner = new_run_id()?;
        let now = ts::format(ts::now());
        let taken = sqlx::query(
            "UPDATE restore_cleanups SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1 \
             WHERE run_id = ? AND state = 'pending' AND (lease_owner IS NULL OR lease_expires_at < ?) \
             AND NOT EXISTS (SELECT 1 FROM restore_runs r WHERE r.id = run_id AND r.lease_owner IS NOT NULL \
                             AND r.lease_expires_at >= ?)",
        )
        .bind(&owner)
        .bind(ts::format(ts::now() + CLEANUP_LEASE))
        .bind(run)
        .bind(&now)
        .bind(&now)
        .execute(pool)
        .await?;
        if taken.rows_affected() != 1 {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM restore_cleanups WHERE run_id = ?")
                    .bind(run)
                    .fetch_optional(pool)
                    .await?;
            return Ok(match state.as_deref() {
                Some("pending") => CleanupOutcome::Waiting,
                _ => CleanupOutcome::Nothing,
            });
        }
        let job = Job {
            pool,
            run,
            owner: &owner,
        };
        match self.destroy_what_the_run_made(&job).await {
            Ok(kept) => {
                job.finish(&self.run_app_of_run(run).await?, kept).await?;
                Ok(CleanupOutcome::Done)
            }
            Err(CleanupError::Engine(e)) => {
                job.release().await?;
                Err(e)
            }
            Err(CleanupError::Fly(why)) => {
                job.fail(&why).await?;
                Ok(CleanupOutcome::Failed(why))
            }
        }
    }

    /// The destroys, each looking first; what was left alone (and why) is returned for the report.
    async fn destroy_what_the_run_made(&self, job: &Job<'_>) -> Result<Vec<String>, CleanupError> {
        let view = runs::view(job.pool, job.run).await?;
        let plan = store::load(job.pool, &view.plan_hash)
            .await
            .map_err(EngineError::from)?
            .ok_or_else(|| EngineError::NoPlan(view.plan_hash.clone()))?
            .plan;
        let app = plan.destination.app.as_str();
        if app == plan.source.app {
            return Err(CleanupError::Fly(format!(
                "the plan's new app {app} is its source; nothing is destroyed"
            )));
        }
        let client = self.orgs.client_for(&plan.source.org).await.map_err(|e| {
            CleanupError::Fly(format!(
                "Fly cannot be asked about {}: {e}",
                plan.source.org
            ))
        })?;
        if plan.destination.existing {
            return start_what_the_run_stopped(&client, app, &view, job).await;
        }
        let app_made = view
            .steps
            .iter()
            .any(|s| s.kind == "create_app" && s.status == "done");
        let mut kept = Vec::new();
        if !app_exists(&client, app).await? {
            return Ok(kept);
        }
        for m in client.list_machines(app, &ListMachines::default()).await? {
            let ours = m
                .config
                .as_ref()
                .and_then(|c| c.metadata.get(RUN_METADATA))
                .is_some_and(|r| r == job.run);
            if !ours {
                if !m.is_gone() {
                    kept.push(format!("machine {} (not tagged with this run)", m.id));
                }
                continue;
            }
            if !m.is_gone() {
                if matches!(m.state.as_str(), "started" | "starting") {
                    ignore_gone(
                        client
                            .stop_machine(app, &m.id, &StopRequest::default(), None)
                            .await,
                    )?;
                }
                ignore_gone(client.destroy_machine(app, &m.id, true, None).await)?;
                job.destroyed(&format!("machine {}", m.id)).await?;
            }
            // A destroy is asynchronous: the machine's volume stays attached until it is gone.
            if m.state != "destroyed" {
                until_destroyed(&client, app, &m.id, job).await?;
            }
        }
        let recorded: Vec<String> = view
            .steps
            .iter()
            .filter_map(|s| {
                s.produced
                    .get("volume")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        for v in client.list_volumes(app).await? {
            if v.is_destroyed() {
                continue;
            }
            if !recorded.contains(&v.id) {
                kept.push(format!("volume {} (not recorded by this run)", v.id));
                continue;
            }
            ignore_gone(client.delete_volume(app, &v.id).await.map(|_| ()))?;
            job.destroyed(&format!("volume {}", v.id)).await?;
        }
        if !app_made {
            kept.push(format!("app {app} (this run did not create it)"));
        } else if kept.is_empty() {
            ignore_gone(client.delete_app(app, false).await)?;
            job.destroyed(&format!("app {app}")).await?;
        } else {
            kept.push(format!("app {app} (it holds what this run did not make)"));
        }
        Ok(kept)
    }

    /// Refuses (and audits as denied) anyone below operator.
    async fn require_operator(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &'static str,
        run: &str,
    ) -> Result<(), EngineError> {
        if actor.has_role(Role::Operator) {
            return Ok(());
        }
        let denied = Event::new(action, Outcome::Denied).subject(format!("restore_run:{run}"));
        audit::record(&self.pool, actor, meta, &denied).await?;
        Err(EngineError::Forbidden)
    }

    /// The new app of plan `hash`.
    async fn run_app(&self, hash: &str) -> Result<String, EngineError> {
        Ok(store::load(&self.pool, hash)
            .await?
            .ok_or_else(|| EngineError::NoPlan(hash.to_owned()))?
            .plan
            .destination
            .app)
    }

    async fn run_app_of_run(&self, run: &str) -> Result<String, EngineError> {
        let hash = runs::load(&self.pool, run).await?.plan_hash;
        self.run_app(&hash).await
    }
}

/// What the run's steps recorded as produced (the Fly ids), for the cancel's audit row and report.
fn produced(view: &RunView) -> Vec<Value> {
    view.steps
        .iter()
        .filter(|s| !s.produced.is_null())
        .map(|s| json!({ "step": s.kind, "produced": s.produced }))
        .collect()
}

/// The clean-up of a run into an existing cluster: nothing is destroyed (the app, its volumes and machines
/// are the team's); the machines the run stopped (recorded by `keep_one_machine` before each stop, and by the
/// keeper check) are started again. Returns what was left as it is, for the report.
async fn start_what_the_run_stopped(
    client: &FlyClient,
    app: &str,
    view: &RunView,
    job: &Job<'_>,
) -> Result<Vec<String>, CleanupError> {
    let mut stopped = std::collections::BTreeSet::new();
    for s in &view.steps {
        stopped.extend(super::exec::stopped_ids(&s.produced));
        stopped.extend(super::exec::stopped_ids(&s.progress));
    }
    for m in client.list_machines(app, &ListMachines::default()).await? {
        if !stopped.contains(&m.id) || m.is_gone() {
            continue;
        }
        if matches!(m.state.as_str(), "stopped" | "suspended") {
            ignore_gone(client.start_machine(app, &m.id, None).await)?;
        }
        job.refresh().await?;
    }
    Ok(vec![format!(
        "app {app} and everything in it (an existing cluster: nothing is destroyed; the {} machine(s) the run \
         stopped were started again)",
        stopped.len()
    )])
}

/// Whether `app` exists on Fly.
async fn app_exists(client: &FlyClient, app: &str) -> Result<bool, CleanupError> {
    match client.get_app(app).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Waits (in bounded calls, keeping the job's lease) until machine `id` is destroyed.
async fn until_destroyed(
    client: &FlyClient,
    app: &str,
    id: &str,
    job: &Job<'_>,
) -> Result<(), CleanupError> {
    let start = tokio::time::Instant::now();
    loop {
        match client
            .wait(
                app,
                id,
                &WaitFor::state("destroyed"),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(fly::Error::WaitTimeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if start.elapsed() > DESTROY_DEADLINE {
            return Err(CleanupError::Fly(format!(
                "the machine {id} was still not destroyed after {} minutes; the clean-up tries again later",
                DESTROY_DEADLINE.as_secs() / 60
            )));
        }
        job.refresh().await?;
    }
}

/// A destroy of something already gone is done.
fn ignore_gone(r: Result<(), fly::Error>) -> Result<(), CleanupError> {
    match r {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}

/// Why a clean-up attempt stopped.
enum CleanupError {
    /// Fly refused or could not be reached: recorded, tried again later.
    Fly(String),
    Engine(EngineError),
}

impl From<fly::Error> for CleanupError {
    fn from(e: fly::Error) -> Self {
        CleanupError::Fly(format!("Fly refused: {e}"))
    }
}

impl From<EngineError> for CleanupError {
    fn from(e: EngineError) -> Self {
        CleanupError::Engine(e)
    }
}

/// A clean-up attempt holding the job's lease; each write is guarded by it.
struct Job<'a> {
    pool: &'a SqlitePool,
    run: &'a str,
    owner: &'a str,
}

impl Job<'_> {
    /// Keeps the lease through a long wait.
    async fn refresh(&self) -> Result<(), EngineError> {
        self.destroyed_or_refresh(None).await
    }

    /// Records one destroy (and keeps the lease).
    async fn destroyed(&self, what: &str) -> Result<(), EngineError> {
        self.destroyed_or_refresh(Some(what)).await
    }

    async fn destroyed_or_refresh(&self, what: Option<&str>) -> Result<(), EngineError> {
        let done = sqlx::query(
            "UPDATE restore_cleanups SET destroyed = CASE WHEN ?1 IS NULL THEN destroyed \
             ELSE json_insert(destroyed, '$[#]', ?1) END, lease_expires_at = ?2 \
             WHERE run_id = ?3 AND lease_owner = ?4",
        )
        .bind(what)
        .bind(ts::format(ts::now() + CLEANUP_LEASE))
        .bind(self.run)
        .bind(self.owner)
        .execute(self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(EngineError::LeaseLost(self.run.to_owned()))
        }
    }

    /// Everything destroyed: the job is done, with a `restore.run.cancel` row listing it.
    async fn finish(&self, app: &str, kept: Vec<String>) -> Result<(), EngineError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        let done = sqlx::query(
            "UPDATE restore_cleanups SET state = 'done', finished_at = ?, error = NULL, lease_owner = NULL, \
             lease_expires_at = NULL WHERE run_id = ? AND lease_owner = ?",
        )
        .bind(ts::format(ts::now()))
        .bind(self.run)
        .bind(self.owner)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(EngineError::LeaseLost(self.run.to_owned()));
        }
        let destroyed: String =
            sqlx::query_scalar("SELECT destroyed FROM restore_cleanups WHERE run_id = ?")
                .bind(self.run)
                .fetch_one(&mut *tx)
                .await?;
        let destroyed: Value = serde_json::from_str(&destroyed)?;
        let event = Event::new(actions::RUN_CANCEL, Outcome::Ok)
            .target(runs::target(self.run, app))
            .detail(json!({ "cleanup": "destroyed", "destroyed": destroyed, "kept": kept }));
        tx.commit(&super::worker_actor(), &RequestMeta::default(), &event)
            .await?;
        Ok(())
    }

    /// This attempt failed: the error recorded, the lease let go (a later tick tries again).
    async fn fail(&self, why: &str) -> Result<(), EngineError> {
        sqlx::query(
            "UPDATE restore_cleanups SET error = ?, lease_owner = NULL, lease_expires_at = NULL \
             WHERE run_id = ? AND lease_owner = ?",
        )
        .bind(why.chars().take(2000).collect::<String>())
        .bind(self.run)
        .bind(self.owner)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    async fn release(&self) -> Result<(), EngineError> {
        sqlx::query(
            "UPDATE restore_cleanups SET lease_owner = NULL, lease_expires_at = NULL \
             WHERE run_id = ? AND lease_owner = ?",
        )
        .bind(self.run)
        .bind(self.owner)
        .execute(self.pool)
        .await?;
        Ok(())
    }
}

/// Runs whose clean-up is not finished, oldest first (for the worker's tick).
pub(super) async fn pending_cleanups(pool: &SqlitePool) -> Result<Vec<String>, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT run_id FROM restore_cleanups WHERE state = 'pending' ORDER BY requested_at, run_id",
    )
    .fetch_all(pool)
    .await?)
}

/// A run's clean-up, if one was asked for.
pub(super) async fn cleanup_view(
    pool: &SqlitePool,
    run: &str,
) -> Result<Option<CleanupView>, EngineError> {
    let Some(row) = sqlx::query(
        "SELECT state, attempts, requested_by, requested_at, finished_at, destroyed, error \
         FROM restore_cleanups WHERE run_id = ?",
    )
    .bind(run)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let destroyed: String = row.try_get("destroyed")?;
    Ok(Some(CleanupView {
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        requested_by: row.try_get("requested_by")?,
        requested_at: row.try_get("requested_at")?,
        finished_at: row.try_get("finished_at")?,
        destroyed: serde_json::from_str(&destroyed)?,
        error: row.try_get("error")?,
    }))
}
