//! `restore_plans` (migration `20261203000500_restore_plans.sql`): each plan under its hash, with the request,
//! who and when, written with its `restore.plan` audit row in one transaction. The same plan planned again
//! keeps its first row (the hash is the key) and gets its own audit row.

use sqlx::{Row, SqlitePool};

use crate::access::{Actor, RequestMeta};
use crate::audit::{AuditedTx, Event, Outcome};
use crate::ts;

use super::{actions, Plan, RestoreError, RestoreRequest, StoredPlan};

/// Saves `plan` under `hash` (once) and audits it.
pub(crate) async fn save(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    request: &RestoreRequest,
    plan: &Plan,
    hash: &str,
) -> Result<StoredPlan, RestoreError> {
    let request_json = serde_json::to_string(request)?;
    let plan_json = serde_json::to_string(plan)?;
    let mut tx = AuditedTx::begin(pool).await?;
    sqlx::query(
        "INSERT INTO restore_plans (hash, source_org, source_app, target_app, request, plan, created_by, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO NOTHING",
    )
    .bind(hash)
    .bind(&request.source.org)
    .bind(&request.source.app)
    .bind(&request.destination.app)
    .bind(&request_json)
    .bind(&plan_json)
    .bind(actor.display_name())
    .bind(ts::format(ts::now()))
    .execute(&mut *tx)
    .await?;
    let row = sqlx::query("SELECT created_by, created_at FROM restore_plans WHERE hash = ?")
        .bind(hash)
        .fetch_one(&mut *tx)
        .await?;
    let stored = StoredPlan {
        hash: hash.to_owned(),
        plan: plan.clone(),
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    };
    let event = Event::new(actions::RESTORE_PLAN, Outcome::Ok)
        .subject(format!(
            "org:{}/app:{}",
            request.source.org, request.source.app
        ))
        .detail(serde_json::json!({
            "hash": hash,
            "target": request.target,
            "to": request.destination.app,
            "backup": plan.backup.name,
        }));
    tx.commit(actor, meta, &event).await?;
    Ok(stored)
}

/// A stored plan by hash.
pub(crate) async fn load(
    pool: &SqlitePool,
    hash: &str,
) -> Result<Option<StoredPlan>, RestoreError> {
    let Some(row) =
        sqlx::query("SELECT plan, created_by, created_at FROM restore_plans WHERE hash = ?")
            .bind(hash)
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let plan: String = row.try_get("plan")?;
    Ok(Some(StoredPlan {
        hash: hash.to_owned(),
        plan: serde_json::from_str(&plan)?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    }))
}
