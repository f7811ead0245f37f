//! The tables (migration `20261203001200_restore_cutovers.sql`): a cutover's row (phase, state, next step and
//! lease), its steps, and the values it replaced, sealed. Every change of state lands with its audit row in one
//! transaction ([`AuditedTx`]); the lease follows the engine's runs (`engine/runs.rs`): an owner and an expiry
//! in the row, taken only when free or expired, checked by every write a step makes.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::access::{Actor, RequestMeta};
use crate::audit::{AuditedTx, Event, Outcome, Target};
use crate::keyring::Keyring;
use crate::ts;

use super::{CutoverError, CutoverState, CutoverStepView, Phase};

/// A cutover as stored.
#[derive(Debug, Clone)]
pub(super) struct CutoverRow {
    pub run_id: String,
    pub org: String,
    pub old_app: String,
    pub new_app: String,
    pub apps: Vec<String>,
    /// Where the new replicas go (`None`: the new leader's region).
    pub replica_region: Option<String>,
    pub phase: Phase,
    pub state: CutoverState,
    pub next_step: usize,
    pub failure: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

/// One step to insert: its kind and the app it is about (`""` for none).
pub(super) struct NewStep {
    pub kind: &'static str,
    pub app: String,
}

/// The audit target of a cutover: the run and the old cluster.
pub(super) fn target(run: &str, old_app: &str) -> Target {
    Target {
        run_id: Some(run.to_owned()),
        app_name: Some(old_app.to_owned()),
        ..Target::default()
    }
}

fn now() -> String {
    ts::format(ts::now())
}

fn expiry(ttl: Duration) -> String {
    ts::format(ts::now() + ttl)
}

/// A failure text within the column's limit.
fn clip(s: &str) -> String {
    s.chars().take(2000).collect()
}

/// The cutover of `run`, if one was asked for.
pub(super) async fn load(pool: &SqlitePool, run: &str) -> Result<Option<CutoverRow>, CutoverError> {
    let Some(row) = sqlx::query(
        "SELECT run_id, org, old_app, new_app, apps, replica_region, phase, state, next_step, failure, created_by, created_at, \
         updated_at FROM restore_cutovers WHERE run_id = ?",
    )
    .bind(run)
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let apps: String = row.try_get("apps")?;
    let phase: String = row.try_get("phase")?;
    let state: String = row.try_get("state")?;
    let next: i64 = row.try_get("next_step")?;
    Ok(Some(CutoverRow {
        run_id: row.try_get("run_id")?,
        org: row.try_get("org")?,
        old_app: row.try_get("old_app")?,
        new_app: row.try_get("new_app")?,
        apps: serde_json::from_str(&apps)?,
        replica_region: row.try_get("replica_region")?,
        phase: Phase::parse(&phase),
        state: CutoverState::parse(&state),
        next_step: usize::try_from(next).unwrap_or(0),
        failure: row.try_get("failure")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

/// Inserts the steps of `phase` for `run`, in order, all pending.
async fn insert_steps(
    tx: &mut AuditedTx,
    run: &str,
    phase: Phase,
    steps: &[NewStep],
) -> Result<(), CutoverError> {
    for (idx, step) in steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO restore_cutover_steps (run_id, phase, idx, kind, app, status) \
             VALUES (?, ?, ?, ?, ?, 'pending')",
        )
        .bind(run)
        .bind(phase.as_str())
        .bind(idx as i64)
        .bind(step.kind)
        .bind(&step.app)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A new cutover of `row.run_id` (phase cutover, running, step 0) with its steps and `event`, together. A
/// second one for the same run is refused by the primary key.
pub(super) async fn insert(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    row: &CutoverRow,
    steps: &[NewStep],
    event: &Event,
) -> Result<(), CutoverError> {
    let mut tx = AuditedTx::begin(pool).await?;
    let at = now();
    sqlx::query(
        "INSERT INTO restore_cutovers (run_id, org, old_app, new_app, apps, replica_region, phase, state, \
         next_step, created_by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'cutover', 'running', 0, ?, ?, ?)",
    )
    .bind(&row.run_id)
    .bind(&row.org)
    .bind(&row.old_app)
    .bind(&row.new_app)
    .bind(serde_json::to_string(&row.apps)?)
    .bind(&row.replica_region)
    .bind(clip(&actor.display_name()))
    .bind(&at)
    .bind(&at)
    .execute(&mut *tx)
    .await?;
    insert_steps(&mut tx, &row.run_id, Phase::Cutover, steps).await?;
    tx.commit(actor, meta, event).await?;
    Ok(())
}

/// The cutover turns into its rollback: phase rollback, running, step 0, with the rollback's steps.
pub(super) async fn begin_rollback(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    run: &str,
    steps: &[NewStep],
    event: &Event,
) -> Result<(), CutoverError> {
    let mut tx = AuditedTx::begin(pool).await?;
    // Not while a console holds a live lease on the cutover: its next write would land in the rollback.
    let switched = sqlx::query(
        "UPDATE restore_cutovers SET phase = 'rollback', state = 'running', next_step = 0, failure = NULL, \
         updated_at = ? WHERE run_id = ? AND phase = 'cutover' AND (lease_owner IS NULL OR lease_expires_at < ?)",
    )
    .bind(now())
    .bind(run)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    if switched.rows_affected() != 1 {
        return Err(CutoverError::Busy(run.to_owned()));
    }
    insert_steps(&mut tx, run, Phase::Rollback, steps).await?;
    tx.commit(actor, meta, event).await?;
    Ok(())
}

/// A failed phase asked for again: running at the step that failed (which runs again: its row is running,
/// without an end or error, until that attempt ends), with `event`.
pub(super) async fn resume(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    run: &str,
    phase: Phase,
    event: &Event,
) -> Result<(), CutoverError> {
    let mut tx = AuditedTx::begin(pool).await?;
    sqlx::query(
        "UPDATE restore_cutover_steps SET status = 'running', finished_at = NULL, error = NULL \
         WHERE run_id = ? AND phase = ? AND status = 'failed'",
    )
    .bind(run)
    .bind(phase.as_str())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE restore_cutovers SET state = 'running', failure = NULL, updated_at = ? \
         WHERE run_id = ? AND state = 'failed'",
    )
    .bind(now())
    .bind(run)
    .execute(&mut *tx)
    .await?;
    tx.commit(actor, meta, event).await?;
    Ok(())
}

/// Takes the cutover's lease for `owner` when it is free or expired and the phase is running.
pub(super) async fn take_lease(
    pool: &SqlitePool,
    run: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, CutoverError> {
    let taken = sqlx::query(
        "UPDATE restore_cutovers SET lease_owner = ?, lease_expires_at = ? WHERE run_id = ? \
         AND state = 'running' AND (lease_owner IS NULL OR lease_expires_at < ?)",
    )
    .bind(owner)
    .bind(expiry(ttl))
    .bind(run)
    .bind(now())
    .execute(pool)
    .await?;
    Ok(taken.rows_affected() == 1)
}

/// Gives the lease back (when still held).
pub(super) async fn release_lease(
    pool: &SqlitePool,
    run: &str,
    owner: &str,
) -> Result<(), CutoverError> {
    sqlx::query(
        "UPDATE restore_cutovers SET lease_owner = NULL, lease_expires_at = NULL WHERE run_id = ? \
         AND lease_owner = ?",
    )
    .bind(run)
    .bind(owner)
    .execute(pool)
    .await?;
    Ok(())
}

fn held(rows: u64, run: &str) -> Result<(), CutoverError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(CutoverError::LeaseLost(run.to_owned()))
    }
}

/// The steps of `phase`, in order.
pub(super) async fn steps(
    pool: &SqlitePool,
    run: &str,
    phase: Phase,
) -> Result<Vec<CutoverStepView>, CutoverError> {
    sqlx::query(
        "SELECT idx, kind, app, status, attempts, started_at, finished_at, produced, error \
         FROM restore_cutover_steps WHERE run_id = ? AND phase = ? ORDER BY idx",
    )
    .bind(run)
    .bind(phase.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(step_view)
    .collect()
}

fn step_view(s: &SqliteRow) -> Result<CutoverStepView, CutoverError> {
    let idx: i64 = s.try_get("idx")?;
    let app: String = s.try_get("app")?;
    let produced: String = s.try_get("produced")?;
    Ok(CutoverStepView {
        index: usize::try_from(idx).unwrap_or(0),
        kind: s.try_get("kind")?,
        app: (!app.is_empty()).then_some(app),
        status: s.try_get("status")?,
        attempts: s.try_get("attempts")?,
        started_at: s.try_get("started_at")?,
        finished_at: s.try_get("finished_at")?,
        produced: serde_json::from_str(&produced)?,
        error: s.try_get("error")?,
    })
}

/// What a console holds while it drives a phase: the cutover, its lease and who it acts as.
pub(super) struct Held<'a> {
    pub pool: &'a SqlitePool,
    pub run: &'a str,
    pub old_app: &'a str,
    pub phase: Phase,
    pub owner: &'a str,
    pub ttl: Duration,
    pub actor: &'a Actor,
    pub meta: &'a RequestMeta,
}

impl Held<'_> {
    async fn commit(
        &self,
        tx: AuditedTx,
        action: &str,
        outcome: Outcome,
        detail: Value,
    ) -> Result<(), CutoverError> {
        let event = Event::new(action, outcome)
            .target(target(self.run, self.old_app))
            .detail(detail);
        tx.commit(self.actor, self.meta, &event).await?;
        Ok(())
    }

    /// Keeps the lease through a long step.
    pub async fn refresh(&self) -> Result<(), CutoverError> {
        let done = sqlx::query(
            "UPDATE restore_cutovers SET lease_expires_at = ? WHERE run_id = ? AND lease_owner = ? AND phase = ?",
        )
        .bind(expiry(self.ttl))
        .bind(self.run)
        .bind(self.owner)
        .bind(self.phase.as_str())
        .execute(self.pool)
        .await?;
        held(done.rows_affected(), self.run)
    }

    /// Step `idx` running (one more attempt), with its `*.step.start` row; returns what it produced so far
    /// (an interrupted attempt's ids).
    pub async fn start_step(&self, step: &CutoverStepView) -> Result<Value, CutoverError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        sqlx::query(
            "UPDATE restore_cutover_steps SET status = 'running', attempts = attempts + 1, \
             started_at = COALESCE(started_at, ?) WHERE run_id = ? AND phase = ? AND idx = ?",
        )
        .bind(now())
        .bind(self.run)
        .bind(self.phase.as_str())
        .bind(step.index as i64)
        .execute(&mut *tx)
        .await?;
        let run = sqlx::query(
            "UPDATE restore_cutovers SET lease_expires_at = ?, updated_at = ? WHERE run_id = ? AND lease_owner = ? \
             AND phase = ?",
        )
        .bind(expiry(self.ttl))
        .bind(now())
        .bind(self.run)
        .bind(self.owner)
        .bind(self.phase.as_str())
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        let detail = serde_json::json!({
            "index": step.index,
            "kind": step.kind,
            "app": step.app,
            "attempt": step.attempts + 1,
        });
        self.commit(tx, self.phase.action("step.start"), Outcome::Ok, detail)
            .await?;
        Ok(step.produced.clone())
    }

    /// What step `idx` did so far (ids and versions), kept at once so an attempt after a crash finds it. Not
    /// audited: the step's end carries it.
    pub async fn progress(&self, idx: usize, produced: &Value) -> Result<(), CutoverError> {
        self.refresh().await?;
        sqlx::query(
            "UPDATE restore_cutover_steps SET produced = ? WHERE run_id = ? AND phase = ? AND idx = ?",
        )
        .bind(produced.to_string())
        .bind(self.run)
        .bind(self.phase.as_str())
        .bind(idx as i64)
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Step `idx` done with what it produced; the phase moves to the next step (or is done after the last).
    pub async fn finish_step(
        &self,
        step: &CutoverStepView,
        produced: &Value,
        last: bool,
    ) -> Result<(), CutoverError> {
        let mut tx = AuditedTx::begin(self.pool).await?;
        sqlx::query(
            "UPDATE restore_cutover_steps SET status = 'done', finished_at = ?, produced = ?, error = NULL \
             WHERE run_id = ? AND phase = ? AND idx = ?",
        )
        .bind(now())
        .bind(produced.to_string())
        .bind(self.run)
        .bind(self.phase.as_str())
        .bind(step.index as i64)
        .execute(&mut *tx)
        .await?;
        let state = if last { "done" } else { "running" };
        let run = sqlx::query(
            "UPDATE restore_cutovers SET next_step = ?, state = ?, lease_expires_at = ?, updated_at = ? \
             WHERE run_id = ? AND lease_owner = ? AND phase = ?",
        )
        .bind(step.index as i64 + 1)
        .bind(state)
        .bind(expiry(self.ttl))
        .bind(now())
        .bind(self.run)
        .bind(self.owner)
        .bind(self.phase.as_str())
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        let detail = serde_json::json!({
            "index": step.index,
            "kind": step.kind,
            "app": step.app,
            "produced": produced,
        });
        self.commit(tx, self.phase.action("step.done"), Outcome::Ok, detail)
            .await?;
        if last {
            let tx = AuditedTx::begin(self.pool).await?;
            self.commit(
                tx,
                self.phase.action("done"),
                Outcome::Ok,
                serde_json::json!({}),
            )
            .await?;
        }
        Ok(())
    }

    /// Step `idx` failed for good: it and the phase are `failed` with `why`.
    pub async fn fail_step(&self, step: &CutoverStepView, why: &str) -> Result<(), CutoverError> {
        let why = clip(why);
        let mut tx = AuditedTx::begin(self.pool).await?;
        sqlx::query(
            "UPDATE restore_cutover_steps SET status = 'failed', finished_at = ?, error = ? \
             WHERE run_id = ? AND phase = ? AND idx = ?",
        )
        .bind(now())
        .bind(&why)
        .bind(self.run)
        .bind(self.phase.as_str())
        .bind(step.index as i64)
        .execute(&mut *tx)
        .await?;
        let run = sqlx::query(
            "UPDATE restore_cutovers SET state = 'failed', failure = ?, updated_at = ? \
             WHERE run_id = ? AND lease_owner = ? AND phase = ?",
        )
        .bind(&why)
        .bind(now())
        .bind(self.run)
        .bind(self.owner)
        .bind(self.phase.as_str())
        .execute(&mut *tx)
        .await?;
        held(run.rows_affected(), self.run)?;
        let detail = serde_json::json!({
            "index": step.index,
            "kind": step.kind,
            "app": step.app,
            "error": why,
        });
        self.commit(tx, self.phase.action("step.fail"), Outcome::Failed, detail)
            .await
    }
}

// ---------------------------------------------------------------- the replaced values, sealed

/// The sealing context of a replaced value: bound to the run, the app and the secret's name, so a sealed value
/// moved to another row does not open.
pub fn secret_context(run: &str, app: &str, name: &str) -> String {
    format!("walden/restore_cutover_secrets/{run}/{app}/{name}")
}

/// The context of a `restore_cutover_secrets` row, for [`crate::rotation::SEALED_COLUMNS`].
pub(crate) fn secret_row_context(row: &SqliteRow) -> Result<String, sqlx::Error> {
    let run: String = row.try_get("run_id")?;
    let app: String = row.try_get("app")?;
    let name: String = row.try_get("name")?;
    Ok(secret_context(&run, &app, &name))
}

/// Keeps `value` (the value `app`'s secret `name` had before the cutover), sealed, unless one is kept already:
/// the first value kept is the one a rollback restores, however often a step runs.
pub(super) async fn keep_secret(
    pool: &SqlitePool,
    keyring: &Keyring,
    run: &str,
    app: &str,
    name: &str,
    value: &SecretString,
) -> Result<(), CutoverError> {
    let sealed = keyring
        .seal(
            value.expose_secret().as_bytes(),
            &secret_context(run, app, name),
        )
        .map_err(|_| CutoverError::Seal)?;
    sqlx::query(
        "INSERT INTO restore_cutover_secrets (run_id, app, name, sealed) VALUES (?, ?, ?, ?) \
         ON CONFLICT (run_id, app, name) DO NOTHING",
    )
    .bind(run)
    .bind(app)
    .bind(name)
    .bind(sealed)
    .execute(pool)
    .await?;
    Ok(())
}

/// The value kept for `app`'s `name`, opened, if one was kept.
pub(super) async fn kept_secret(
    pool: &SqlitePool,
    keyring: &Keyring,
    run: &str,
    app: &str,
    name: &str,
) -> Result<Option<SecretString>, CutoverError> {
    let sealed: Option<Vec<u8>> = sqlx::query_scalar(
        "SELECT sealed FROM restore_cutover_secrets WHERE run_id = ? AND app = ? AND name = ?",
    )
    .bind(run)
    .bind(app)
    .bind(name)
    .fetch_optional(pool)
    .await?;
    let Some(sealed) = sealed else {
        return Ok(None);
    };
    let opened = keyring
        .open(&sealed, &secret_context(run, app, name))
        .map_err(|_| CutoverError::Seal)?;
    let text = String::from_utf8(opened.to_vec()).map_err(|_| CutoverError::Seal)?;
    Ok(Some(SecretString::from(text)))
}
