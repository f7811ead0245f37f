//! The checklist Walden checks itself, line by line, at the end of a cutover and of a rollback: every line
//! read from Fly now (not from what the steps remember having done), compared with what the steps recorded
//! (the machines each roll-out reached and the instance each runs since).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use fly::stolon::Role;
use fly::Machine;
use secrecy::ExposeSecret;

use super::steps::{
    ids, live_machines, secret_value, Ctx, StepError, CLONE_REPLICAS, POINT_APP, RESTORE_APP,
    START_OLD, STOP_ARCHIVING, STOP_OLD,
};
use super::{store, url, Phase, DATABASE_URL, ENABLE_WALG};

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What is checked, in plain words.
    pub what: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

fn line(what: String, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check {
            what,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            what,
            ok: false,
            detail,
        },
    }
}

/// Every live machine of `machines` was reached by the roll-out recorded in `produced["machines"]` (id →
/// instance) and runs that instance or a later one (instance ids are ULIDs: they sort by time).
fn rolled_out(machines: &[Machine], produced: &Value) -> Result<String, String> {
    let recorded = produced.get("machines").and_then(Value::as_object);
    let mut missed = Vec::new();
    for m in machines {
        let at = recorded
            .and_then(|r| r.get(&m.id))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let now = m.instance_id.as_deref().unwrap_or_default();
        if at.is_empty() || now < at {
            missed.push(m.id.clone());
        }
    }
    if missed.is_empty() {
        Ok(format!(
            "{} machine(s) run the new secrets version",
            machines.len()
        ))
    } else {
        Err(format!(
            "not updated with the new secrets version: {}",
            missed.join(", ")
        ))
    }
}

/// Whether `app` has secret `name` set (names only: no value is read).
async fn has_secret(ctx: &Ctx<'_>, app: &str, name: &str) -> Result<bool, StepError> {
    Ok(ctx
        .client
        .list_secrets(app)
        .await?
        .iter()
        .any(|s| s.name == name))
}

/// The host `app`'s `DATABASE_URL` names now.
async fn current_host(ctx: &Ctx<'_>, app: &str) -> Result<String, StepError> {
    let value = secret_value(ctx.client, app, DATABASE_URL).await?;
    Ok(value
        .as_ref()
        .and_then(|v| url::host(v.expose_secret()).map(str::to_owned))
        .unwrap_or_default())
}

/// `app`'s DATABASE_URL names `want`, and its machines run the version the step's roll-out set.
async fn app_lines(
    ctx: &Ctx<'_>,
    app: &str,
    produced: &Value,
    out: &mut Vec<Check>,
) -> Result<(), StepError> {
    let want = produced
        .get("host")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let host = current_host(ctx, app).await?;
    out.push(line(
        format!("{app}'s {DATABASE_URL} points at {want}"),
        if host == want && !want.is_empty() {
            Ok(format!("host {host}"))
        } else {
            Err(format!("host {host}"))
        },
    ));
    let machines = live_machines(ctx.client, app).await?;
    out.push(line(
        format!("{app}'s machines run its new secrets"),
        rolled_out(&machines, produced),
    ));
    Ok(())
}

/// The cluster `app` is healthy with `n` members: all started, one leader, the others replicas.
fn healthy(machines: &[Machine], n: usize) -> Result<String, String> {
    let started = machines.iter().filter(|m| m.state == "started").count();
    let leaders = machines
        .iter()
        .filter(|m| fly::stolon::role(m) == Role::Leader)
        .count();
    let replicas = machines
        .iter()
        .filter(|m| fly::stolon::role(m) == Role::Replica)
        .count();
    let found = format!(
        "{} machine(s), {started} started, {leaders} leader, {replicas} replica(s)",
        machines.len()
    );
    if machines.len() == n && started == n && leaders == 1 && replicas + 1 == n {
        Ok(found)
    } else {
        Err(found)
    }
}

/// The cutover's checklist.
pub(super) async fn cutover(ctx: &Ctx<'_>) -> Result<Vec<Check>, StepError> {
    let (old, new) = (&ctx.row.old_app, &ctx.row.new_app);
    let mut out = Vec::new();
    let old_machines = live_machines(ctx.client, old).await?;
    let stop_archiving = ctx.cutover_produced(STOP_ARCHIVING, None);
    out.push(line(
        format!("Archiving is off on {old} ({ENABLE_WALG} unset)"),
        if has_secret(ctx, old, ENABLE_WALG).await? {
            Err(format!("{ENABLE_WALG} is still set"))
        } else {
            Ok(format!("{ENABLE_WALG} is not set"))
        },
    ));
    out.push(line(
        format!("{old}'s machines run the secrets without {ENABLE_WALG}"),
        rolled_out(&old_machines, &stop_archiving),
    ));
    let known = stop_archiving
        .get("machines")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    let stopped = old_machines.iter().filter(|m| m.state == "stopped").count();
    out.push(line(
        format!("{old}'s machines are stopped, none destroyed"),
        if stopped == old_machines.len() && old_machines.len() >= known {
            Ok(format!("{stopped} of {} stopped", old_machines.len()))
        } else {
            Err(format!(
                "{stopped} of {} stopped ({known} before the cutover)",
                old_machines.len()
            ))
        },
    ));
    let n = old_machines.len();
    let new_machines = live_machines(ctx.client, new).await?;
    out.push(line(
        format!("{new} is healthy with {n} members"),
        healthy(&new_machines, n),
    ));
    let clones = ctx.cutover_produced(CLONE_REPLICAS, None);
    let volumes = ctx.client.list_volumes(new).await?;
    let own_volumes = clones
        .get("machines")
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter_map(Value::as_str)
                .filter(|id| {
                    let mounted = new_machines
                        .iter()
                        .find(|x| x.id == *id)
                        .and_then(|x| x.config.as_ref())
                        .and_then(|c| c.mounts.first())
                        .and_then(|mount| mount.volume.clone());
                    mounted.is_some_and(|v| {
                        volumes.iter().any(|vol| {
                            vol.id == v && vol.attached_machine_id.as_deref() == Some(id)
                        })
                    })
                })
                .count()
        })
        .unwrap_or(0);
    out.push(line(
        format!("{new}'s replicas each have their own volume"),
        if own_volumes + 1 == n {
            Ok(format!("{own_volumes} replica(s) on their own volume"))
        } else {
            Err(format!("{own_volumes} replica(s) on their own volume"))
        },
    ));
    for app in &ctx.row.apps {
        let produced = ctx.cutover_produced(POINT_APP, Some(app));
        app_lines(ctx, app, &produced, &mut out).await?;
    }
    Ok(out)
}

/// The rollback's checklist.
pub(super) async fn rollback(ctx: &Ctx<'_>) -> Result<Vec<Check>, StepError> {
    let (old, new) = (&ctx.row.old_app, &ctx.row.new_app);
    let steps = store::steps(ctx.held.pool, ctx.held.run, Phase::Rollback).await?;
    let produced = |kind: &str, app: Option<&str>| -> Value {
        steps
            .iter()
            .find(|s| s.kind == kind && s.app.as_deref() == app)
            .map(|s| s.produced.clone())
            .unwrap_or(Value::Null)
    };
    let mut out = Vec::new();
    let kept_walg =
        store::kept_secret(ctx.held.pool, ctx.keyring, ctx.held.run, old, ENABLE_WALG).await?;
    if kept_walg.is_some() {
        out.push(line(
            format!("Archiving is on again on {old} ({ENABLE_WALG} set)"),
            if has_secret(ctx, old, ENABLE_WALG).await? {
                Ok(format!("{ENABLE_WALG} is set"))
            } else {
                Err(format!("{ENABLE_WALG} is not set"))
            },
        ));
    }
    let old_machines = live_machines(ctx.client, old).await?;
    out.push(line(
        format!("{old}'s machines run its secrets again"),
        rolled_out(&old_machines, &produced(START_OLD, None)),
    ));
    let stopped = ids(&ctx.cutover_produced(STOP_OLD, None), "stopped");
    let down: Vec<&str> = old_machines
        .iter()
        .filter(|m| stopped.contains(&m.id) && m.state != "started")
        .map(|m| m.id.as_str())
        .collect();
    let leader = fly::stolon::find_leader(&old_machines).map(|m| m.id.clone());
    out.push(line(
        format!("{old}'s machines are started again, with a leader"),
        match (down.is_empty(), leader) {
            (true, Ok(leader)) => Ok(format!("{} started again; leader {leader}", stopped.len())),
            (_, Err(e)) => Err(format!("not started: [{}]; {e}", down.join(", "))),
            (false, _) => Err(format!("not started: {}", down.join(", "))),
        },
    ));
    for app in &ctx.row.apps {
        let kept =
            store::kept_secret(ctx.held.pool, ctx.keyring, ctx.held.run, app, DATABASE_URL).await?;
        if kept.is_some() {
            app_lines(ctx, app, &produced(RESTORE_APP, Some(app)), &mut out).await?;
        }
    }
    let new_machines = live_machines(ctx.client, new).await?;
    out.push(line(
        format!("{new} is left as it is (not stopped, not destroyed)"),
        Ok(format!(
            "{} machine(s): {}",
            new_machines.len(),
            new_machines
                .iter()
                .map(|m| format!("{} {}", m.id, m.state))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    ));
    Ok(out)
}
