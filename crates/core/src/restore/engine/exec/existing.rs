//! The step of an existing destination cluster (`fly pg create`'s): all machines but one stopped. Nothing in
//! such a cluster is ever destroyed; the machines stopped are recorded (in the step's progress before each stop,
//! and in what it produced) so cancel and clean-up start them again.

use std::collections::BTreeSet;

use fly::{ListMachines, Machine, StopRequest};
use serde_json::{json, Value};

use super::{StepCtx, StepError};

/// Keeps the leader (else the first started machine, else the first) and stops the others. Run again, it
/// keeps the same machine (the leader is never stopped; ids sort the rest) and adds to the recorded stops.
pub(super) async fn keep_one_machine(ctx: &StepCtx<'_>, app: &str) -> Result<Value, StepError> {
    let mut machines: Vec<Machine> = ctx
        .client
        .list_machines(app, &ListMachines::default())
        .await?
        .into_iter()
        .filter(|m| !m.is_gone())
        .collect();
    machines.sort_by(|a, b| a.id.cmp(&b.id));
    let kept = fly::stolon::find_leader(&machines)
        .ok()
        .or_else(|| machines.iter().find(|m| m.state == "started"))
        .or_else(|| machines.first())
        .map(|m| m.id.clone())
        .ok_or_else(|| StepError::Permanent(format!("{app} has no machine to restore into.")))?;
    let mut stopped = recorded_stops(ctx).await?;
    for m in machines
        .iter()
        .filter(|m| m.id != kept && !matches!(m.state.as_str(), "stopped" | "suspended"))
    {
        stopped.insert(m.id.clone());
        // Recorded before the stop: a crash right after it still leaves the id for the clean-up.
        ctx.held
            .progress(ctx.index, &json!({ "machine": kept, "stopped": stopped }))
            .await?;
        ctx.client
            .stop_machine(app, &m.id, &StopRequest::default(), None)
            .await?;
    }
    Ok(json!({ "machine": kept, "stopped": stopped }))
}

/// The ids an earlier attempt of this step recorded as stopped.
async fn recorded_stops(ctx: &StepCtx<'_>) -> Result<BTreeSet<String>, StepError> {
    let progress: Option<String> =
        sqlx::query_scalar("SELECT progress FROM restore_run_steps WHERE run_id = ? AND idx = ?")
            .bind(ctx.held.run)
            .bind(ctx.index as i64)
            .fetch_optional(ctx.held.pool)
            .await
            .map_err(|e| StepError::Engine(e.into()))?
            .flatten();
    Ok(stopped_ids(
        &progress
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or(Value::Null),
    ))
}

/// The `stopped` ids of a `keep_one_machine` step's progress or produced value.
pub(crate) fn stopped_ids(v: &Value) -> BTreeSet<String> {
    v.get("stopped")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
