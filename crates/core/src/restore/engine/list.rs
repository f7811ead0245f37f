//! Recent restore runs with their plan's summary, for the console's `/restores` page and `walden restore
//! status` without a run: read only, newest first, joined with `restore_plans` so each row says what was
//! restored into what.

use sqlx::Row;

use super::{EngineError, RunState};
use crate::restore::Restores;

/// One run as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub id: String,
    pub plan_hash: String,
    pub state: RunState,
    pub source_org: String,
    pub source_app: String,
    /// The new cluster the run creates.
    pub target_app: String,
    pub created_by: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// Why it failed or paused, in plain words.
    pub failure: Option<String>,
    /// Steps done, and all of them.
    pub steps_done: i64,
    pub steps: i64,
}

impl Restores {
    /// The `limit` most recent runs (at most 500), newest first. Anyone who may see the console may list them:
    /// the rows hold names and states, never a secret.
    pub async fn list_runs(&self, limit: u32) -> Result<Vec<RunSummary>, EngineError> {
        let rows = sqlx::query(
            "SELECT r.id, r.plan_hash, r.state, p.source_org, p.source_app, p.target_app, r.created_by, \
             r.created_at, r.finished_at, r.failure, \
             (SELECT count(*) FROM restore_run_steps s WHERE s.run_id = r.id AND s.status = 'done') AS done, \
             (SELECT count(*) FROM restore_run_steps s WHERE s.run_id = r.id) AS total \
             FROM restore_runs r JOIN restore_plans p ON p.hash = r.plan_hash \
             ORDER BY r.created_at DESC, r.id LIMIT ?",
        )
        .bind(i64::from(limit.min(500)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| -> Result<RunSummary, EngineError> {
                let state: String = r.try_get("state")?;
                Ok(RunSummary {
                    id: r.try_get("id")?,
                    plan_hash: r.try_get("plan_hash")?,
                    state: RunState::parse(&state),
                    source_org: r.try_get("source_org")?,
                    source_app: r.try_get("source_app")?,
                    target_app: r.try_get("target_app")?,
                    created_by: r.try_get("created_by")?,
                    created_at: r.try_get("created_at")?,
                    finished_at: r.try_get("finished_at")?,
                    failure: r.try_get("failure")?,
                    steps_done: r.try_get("done")?,
                    steps: r.try_get("total")?,
                })
            })
            .collect()
    }
}
