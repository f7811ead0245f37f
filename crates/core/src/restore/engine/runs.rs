//! `restore_runs` and `restore_run_steps` (migration `20261203000800_restore_runs.sql`): every change of a run
//! or a step, each written with its audit row in one transaction ([`AuditedTx`]), and the run's lease. Every
//! write a worker makes is guarded by its lease (`WHERE lease_owner = ?`): a worker whose lease was taken over
//! changes nothing more ([`EngineError::LeaseLost`]). A worker's writes that move a run on (a step's start, a
//! lease refresh, a failure, a pause, the end) also need the run still `pending` or `running`, so a run
//! cancelled under a worker takes no further step; only the record of the step in flight lands, so that its
//! clean-up sees what it made.

use std::time::Duration;

use serde_json::Value;
use sqlx::{Row, SqlitePool};

use crate::access::{Actor, RequestMeta};
use crate::audit::{AuditedTx, Event, Outcome, Target};
use crate::ts;

use super::{actions, EngineError, RunState, RunView, StepView};

/// A run as the engine reads it.
pub(super) struct RunRow {
    pub plan_hash: String,
    pub state: RunState,
    pub next_step: usize,
}

/// The audit target of a run: its id and the app it creates.
pub(super) fn target(run: &str, app: &str) -> Target {
    Target {
        run_id: Some(run.to_owned()),
        app_name: Some(app.to_owned()),
        ..Target::default()
    }
}

fn expiry(ttl: Duration) -> String {
    ts::format(ts::now() + ttl)
}

/// Inserts a pending run of `plan_hash` with one pending row per step (`kinds`, in order) and its
/// `restore.run.start` row. A second live run of the plan is refused by the table's unique index, so two
/// clicks at once cannot both start one.
#[allow(clippy::too_many_arguments)]
pub(super) async fn insert(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    id: &str,
    plan_hash: &str,
    app: &str,
    kinds: &[&str],
) -> Result<(), EngineError> {
    let mut tx = AuditedTx::begin(pool).await?;
    let live: Option<String> = sqlx::query_scalar(
        "SELECT id FROM restore_runs WHERE plan_hash = ? AND state IN ('pending', 'running', 'paused')",
    )
    .bind(plan_hash)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(live) = live {
        return Err(EngineError::LiveRun(live));
    }
    sqlx::query(
        "INSERT INTO restore_runs (id, plan_hash, state, next_step, created_by, created_by_id, created_at) \
         VALUES (?, ?, 'pending', 0, ?, ?, ?)",
    )
    .bind(id)
    .bind(plan_hash)
    .bind(actor.display_name())
    .bind(actor.user_id())
    .bind(ts::format(ts::now()))
    .execute(&mut *tx)
    .await?;
    for (idx, kind) in kinds.iter().enumerate() {
        sqlx::query(
            "INSERT INTO restore_run_steps (run_id, idx, kind, status) VALUES (?, ?, ?, 'pending')",
        )
        .bind(id)
        .bind(idx as i64)
        .bind(kind)
        .execute(&mut *tx)
        .await?;
    }
    let event = Event::new(actions::RUN_START, Outcome::Ok)
        .target(target(id, app))
        .detail(serde_json::json!({ "plan": plan_hash, "steps": kinds.len() }));
    tx.commit(actor, meta, &event).await?;
    Ok(())
}

/// The run's state, plan and next step.
pub(super) async fn load(pool: &SqlitePool, id: &str) -> Result<RunRow, EngineError> {
    let row = sqlx::query("SELECT plan_hash, state, next_step FROM restore_runs WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| EngineError::NoRun(id.to_owned()))?;
    let state: String = row.try_get("state")?;
    let next: i64 = row.try_get("next_step")?;
    Ok(RunRow {
        plan_hash: row.try_get("plan_hash")?,
        state: RunState::parse(&state),
        next_step: usize::try_from(next).unwrap_or(0),
    })
}

/// Runs a worker may take: pending or running, with no lease or an expired one, oldest first.
pub(super) async fn runnable(pool: &SqlitePool) -> Result<Vec<String>, EngineError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM restore_runs WHERE state IN ('pending', 'running') \
         AND (lease_owner IS NULL OR lease_expires_at < ?) ORDER BY created_at, id",
    )
    .bind(ts::format(ts::now()))
    .fetch_all(pool)
    .await?)
}

/// Takes the run's lease for `owner` when it is free or expired and the run can go on; `false` otherwise.
pub(super) async fn take_lease(
    pool: &SqlitePool,
    id: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, EngineError> {
    let taken = sqlx::query(
        "UPDATE restore_runs SET lease_owner = ?, lease_expires_at = ? WHERE id = ? \
         AND state IN ('pending', 'running') AND (lease_owner IS NULL OR lease_expires_at < ?)",
    )
    .bind(owner)
    .bind(expiry(ttl))
    .bind(id)
    .bind(ts::format(ts::now()))
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Pushes the lease's expiry out by `ttl`; [`EngineError::LeaseLost`] when `owner` no longer holds it or the run
/// was cancelled meanwhile (how a long step notices a cancel).
pub(super) async fn refresh_lease(
    pool: &SqlitePool,
    id: &str,
    owner: &str,
    ttl: Duration,
) -> Result<(), EngineError> {
    let done = sqlx::query(
        "UPDATE restore_runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND state IN ('pending', 'running')",
    )
    .bind(expiry(ttl))
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    held(done.rows_affected(), id)
}

/// Gives the lease back (when still held).
pub(super) async fn release_lease(
    pool: &SqlitePool,
    id: &str,
    owner: &str,
) -> Result<(), EngineError> {
    sqlx::query(
        "UPDATE restore_runs SET lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ?",
    )
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

fn held(rows: u64, id: &str) -> Result<(), EngineError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(EngineError::LeaseLost(id.to_owned()))
    }
}

/// What a worker holds while it runs a run: the run, its lease and who it acts as.
pub(super) struct Held<'a> {
    pub pool: &'a SqlitePool,
    pub run: &'a str,
    pub app: &'a str,
    pub owner: &'a str,
    pub ttl: Duration,
    pub actor: &'a Actor,
}

impl Held<'_> {
    /// Commits `tx` with this run's audit row for `action` (and `detail`): the change and its row land together.
    async fn commit(
        &self,
        tx: AuditedTx,
        action: &'static str,
        outcome: Outcome,
        detail: Option<Value>,
    ) -> Result<(), EngineError> {
        let mut event = Event::new(action, outcome).target(target(self.run, self.app));
        if let Some(detail) = detail {
            event = event.detail(detail);
        }
        tx.commit(self.actor, &RequestMeta::default(), &event)
            .await?;
        Ok(())
    }

    /// Keeps the lease through a long step.
    pub async fn refresh(&self) -> Result<(), EngineError> {
        refresh_lease(self.pool, self.run, self.owner, self.ttl).await
    }

    /// Marks step `idx` running (one more attempt) and the run running, with `restore.step.start`; returns the
    /// attempts made before this one (a step interrupted by a crash has some: its Fly call may have happened).
    pub async fn start_step(
        &self,
        idx: usize,
        kind: &str,
        detail: Value,
    ) -> Result<i64, EngineError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        let prior: i64 = sqlx::query_scalar(
            "SELECT attempts FROM restore_run_steps WHERE run_id = ? AND idx = ?",
        )
        .bind(self.run)
        .bind(idx as i64)
        .fetch_one(&mut *tx)
        .await?;
        let now = ts::format(ts::now());
        sqlx::query(
            "UPDATE restore_run_steps SET status = 'running', attempts = attempts + 1, \
             started_at = COALESCE(started_at, ?) WHERE run_id = ? AND idx = ?",
        )
        .bind(&now)
        .bind(self.run)
        .bind(idx as i64)
        .execute(&mut *tx)
        .await?;
        let run = sqlx::query(
            "UPDATE restore_runs SET state = 'running', lease_expires_at = ? WHERE id = ? AND lease_owner = ? \
             AND state IN ('pending', 'running')",
        )
        .bind(expiry(self.ttl))
        .bind(self.run)
        .bind(self.owner)
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        let mut detail = detail;
        detail["index"] = idx.into();
        detail["kind"] = kind.into();
        detail["attempt"] = (prior + 1).into();
        self.commit(tx, actions::STEP_START, Outcome::Ok, Some(detail))
            .await?;
        Ok(prior)
    }

    /// One more attempt of the running step `idx` after a transient error (no audit row: the step's start and
    /// end are audited, the retries are logged); keeps the lease.
    pub async fn retry_step(&self, idx: usize) -> Result<(), EngineError> {
        self.refresh().await?;
        sqlx::query(
            "UPDATE restore_run_steps SET attempts = attempts + 1 WHERE run_id = ? AND idx = ?",
        )
        .bind(self.run)
        .bind(idx as i64)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// The running step `idx`'s live progress (phase, percentage, time left, last log lines; never a secret),
    /// written at each poll of a long step; keeps the lease. Not audited: the step's start and end are.
    pub async fn progress(&self, idx: usize, progress: &Value) -> Result<(), EngineError> {
        self.refresh().await?;
        sqlx::query("UPDATE restore_run_steps SET progress = ? WHERE run_id = ? AND idx = ?")
            .bind(progress.to_string())
            .bind(self.run)
            .bind(idx as i64)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Step `idx` done with what it produced; the run moves to the next step. `restore.step.done`.
    pub async fn finish_step(
        &self,
        idx: usize,
        kind: &str,
        produced: &Value,
    ) -> Result<(), EngineError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        let now = ts::format(ts::now());
        sqlx::query(
            "UPDATE restore_run_steps SET status = 'done', finished_at = ?, produced = ?, error = NULL \
             WHERE run_id = ? AND idx = ?",
        )
        .bind(&now)
        .bind(produced.to_string())
        .bind(self.run)
        .bind(idx as i64)
        .execute(&mut *tx)
        .await?;
        let run = sqlx::query(
            "UPDATE restore_runs SET next_step = ?, lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
        )
        .bind(idx as i64 + 1)
        .bind(expiry(self.ttl))
        .bind(self.run)
        .bind(self.owner)
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        self.commit(
            tx,
            actions::STEP_DONE,
            Outcome::Ok,
            Some(serde_json::json!({ "index": idx, "kind": kind, "produced": produced })),
        )
        .await
    }

    /// Step `idx` failed for good: the step and the run are `failed` with `why`, the lease is let go.
    /// `restore.step.fail`.
    pub async fn fail_step(&self, idx: usize, kind: &str, why: &str) -> Result<(), EngineError> {
        let why = clip(why);
        let mut tx = AuditedTx::begin(self.pool).await?;
        let now = ts::format(ts::now());
        sqlx::query(
            "UPDATE restore_run_steps SET status = 'failed', finished_at = ?, produced = NULL, error = ? \
             WHERE run_id = ? AND idx = ?",
        )
        .bind(&now)
        .bind(&why)
        .bind(self.run)
        .bind(idx as i64)
        .execute(&mut *tx)
        .await?;
        let run = sqlx::query(
            "UPDATE restore_runs SET state = 'failed', failure = ?, finished_at = ?, lease_owner = NULL, \
             lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND state IN ('pending', 'running')",
        )
        .bind(&why)
        .bind(&now)
        .bind(self.run)
        .bind(self.owner)
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        self.commit(
            tx,
            actions::STEP_FAIL,
            Outcome::Failed,
            Some(serde_json::json!({ "index": idx, "kind": kind, "error": why })),
        )
        .await
    }

    /// The run stops before step `idx`, which the engine cannot run yet: `paused` with `why`.
    /// `restore.run.pause`.
    pub async fn pause(&self, idx: usize, kind: &str, why: &str) -> Result<(), EngineError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        let run = sqlx::query(
            "UPDATE restore_runs SET state = 'paused', failure = ?, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ? AND lease_owner = ? AND state IN ('pending', 'running')",
        )
        .bind(clip(why))
        .bind(self.run)
        .bind(self.owner)
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        self.commit(
            tx,
            actions::RUN_PAUSE,
            Outcome::Ok,
            Some(serde_json::json!({ "index": idx, "kind": kind, "why": why })),
        )
        .await
    }

    /// Every step done: the run is `done`. `restore.run.done`.
    pub async fn done(&self) -> Result<(), EngineError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        let run = sqlx::query(
            "UPDATE restore_runs SET state = 'done', finished_at = ?, lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ? AND lease_owner = ? AND state IN ('pending', 'running')",
        )
        .bind(ts::format(ts::now()))
        .bind(self.run)
        .bind(self.owner)
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        self.commit(tx, actions::RUN_DONE, Outcome::Ok, None).await
    }
}

/// What the steps before `idx` produced, in order (ids and versions the later steps use).
pub(super) async fn produced_before(
    pool: &SqlitePool,
    run: &str,
    idx: usize,
) -> Result<Vec<Value>, EngineError> {
    let rows: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT produced FROM restore_run_steps WHERE run_id = ? AND idx < ? ORDER BY idx",
    )
    .bind(run)
    .bind(idx as i64)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|p| {
            Ok(p.map(|s| serde_json::from_str(&s))
                .transpose()?
                .unwrap_or(Value::Null))
        })
        .collect()
}

/// The run and its steps, for a status page or the CLI.
pub(super) async fn view(pool: &SqlitePool, id: &str) -> Result<RunView, EngineError> {
    let row = sqlx::query(
        "SELECT plan_hash, state, next_step, created_by, created_at, finished_at, failure FROM restore_runs \
         WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| EngineError::NoRun(id.to_owned()))?;
    let steps = sqlx::query(
        "SELECT idx, kind, status, attempts, started_at, finished_at, produced, error, progress FROM restore_run_steps \
         WHERE run_id = ? ORDER BY idx",
    )
    .bind(id)
    .fetch_all(pool)
    .await?
    .iter()
    .map(|s| -> Result<StepView, EngineError> {
        let produced: Option<String> = s.try_get("produced")?;
        let progress: Option<String> = s.try_get("progress")?;
        let idx: i64 = s.try_get("idx")?;
        Ok(StepView {
            index: usize::try_from(idx).unwrap_or(0),
            kind: s.try_get("kind")?,
            status: s.try_get("status")?,
            attempts: s.try_get("attempts")?,
            started_at: s.try_get("started_at")?,
            finished_at: s.try_get("finished_at")?,
            produced: produced
                .map(|p| serde_json::from_str(&p))
                .transpose()?
                .unwrap_or(Value::Null),
            error: s.try_get("error")?,
            progress: progress
                .map(|p| serde_json::from_str(&p))
                .transpose()?
                .unwrap_or(Value::Null),
        })
    })
    .collect::<Result<Vec<_>, _>>()?;
    let state: String = row.try_get("state")?;
    let next: i64 = row.try_get("next_step")?;
    let created_at: String = row.try_get("created_at")?;
    let report = super::report(&created_at, &steps);
    Ok(RunView {
        id: id.to_owned(),
        plan_hash: row.try_get("plan_hash")?,
        state: RunState::parse(&state),
        next_step: usize::try_from(next).unwrap_or(0),
        created_by: row.try_get("created_by")?,
        created_at,
        finished_at: row.try_get("finished_at")?,
        failure: row.try_get("failure")?,
        steps,
        report,
        cleanup: super::control::cleanup_view(pool, id).await?.map(Box::new),
    })
}

/// A failure text within the column's limit.
fn clip(s: &str) -> String {
    s.chars().take(2000).collect()
}
