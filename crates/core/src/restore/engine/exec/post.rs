//! After verification: the machine updated with its full config and the new secrets version (secrets reach a
//! machine only on an update or a start), then the new cluster's first base backup, launched detached once and
//! followed to its sentinel in the new prefix, read from the bucket with core's wal-g reader (never from the
//! machine).

use std::collections::HashMap;

use fly::UpdateMachineRequest;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use zeroize::Zeroize;

use super::pitr::{exec, machine_of};
use super::{StepCtx, StepError, ESCROWED};
use crate::restore::{steps, Step};

/// The machine's own config again, with the newest secrets version the run set: FLY_RESTORED_FROM gone, the
/// new prefix and ENABLE_WALG reach it. Running it again after a crash updates once more, which only restarts
/// the machine with the same config.
pub(super) async fn update_machine(ctx: &StepCtx<'_>, app: &str) -> Result<Value, StepError> {
    let id = machine_of(ctx)?;
    let machine = ctx.client.get_machine(app, &id).await?;
    let config = machine.config.ok_or_else(|| {
        StepError::Permanent(format!("The machine {id} has no config to update."))
    })?;
    let req = UpdateMachineRequest {
        config,
        name: None,
        region: None,
        min_secrets_version: ctx.secrets_version(),
        skip_launch: None,
        skip_secrets: None,
        current_version: None,
    };
    let updated = match ctx
        .client
        .update_machine_and_settle(app, &id, &req, None, ctx.options.wait_deadline)
        .await
    {
        Ok(m) => m,
        Err(fly::Error::MachineFailed { .. }) => {
            return Err(StepError::Permanent(format!(
                "The machine {id} failed to start after its update; look at fly machine status {id} -a {app}."
            )))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(json!({ "machine": id, "instance": updated.instance_id }))
}

/// The escrowed storage settings (read-only keys of the source) with the prefix variable set to the new prefix:
/// the reader of the new cluster's own archive. Values are wiped once the config is built.
async fn new_prefix_reader(ctx: &StepCtx<'_>) -> Result<walg::Reader, StepError> {
    let names: Vec<String> = ctx
        .plan
        .steps
        .iter()
        .find_map(|s| match s {
            Step::SetSecrets { values, .. } => Some(values),
            _ => None,
        })
        .map(|values| {
            values
                .iter()
                .filter(|(k, v)| {
                    !k.ends_with("_PASSWORD")
                        && v.as_deref().is_some_and(|v| v.starts_with(ESCROWED))
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let source = &ctx.plan.source;
    let fields: Vec<&str> = names.iter().map(String::as_str).collect();
    let opened = ctx
        .escrow
        .values_for_restore(&source.org, &source.app, ctx.plan.escrow.version, &fields)
        .await
        .map_err(|e| {
            StepError::Permanent(format!(
                "The escrowed storage settings cannot be opened: {e}."
            ))
        })?;
    let mut env: HashMap<String, String> = opened
        .iter()
        .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
        .collect();
    let dest = &ctx.plan.destination;
    env.insert(dest.walg_prefix_variable.clone(), dest.walg_prefix.clone());
    let config = walg::StorageConfig::from_env_map(&env);
    for value in env.values_mut() {
        value.zeroize();
    }
    let config = config.map_err(|e| {
        StepError::Permanent(format!(
            "The new prefix cannot be read with the escrowed settings: {e}."
        ))
    })?;
    walg::Reader::connect(&config)
        .await
        .map_err(|e| StepError::Transient(format!("the new prefix cannot be read: {e}")))
}

/// The first base backup: waits for the restored Postgres to accept connections after the update
/// ([`wait_accepting`]), launches the push detached once (a marker on the run's volume), then reads the new
/// prefix until a complete backup (its sentinel) is there. Its log on the volume is reported if it never comes.
pub(super) async fn backup_push(
    ctx: &StepCtx<'_>,
    app: &str,
    argv: &[String],
) -> Result<Value, StepError> {
    let machine = machine_of(ctx)?;
    let start = tokio::time::Instant::now();
    wait_accepting(ctx, app, &machine, start).await?;
    let launched_at = loop {
        let out = exec(ctx, app, &machine, argv, None).await;
        if let Ok(out) = &out {
            if out.success() {
                if let Some(at) = out
                    .stdout
                    .lines()
                    .find_map(|l| l.trim().parse::<i64>().ok())
                {
                    break at;
                }
            }
        }
        if let Err(StepError::Engine(e)) = out {
            return Err(StepError::Engine(e));
        }
        if start.elapsed() >= ctx.options.keeper_deadline {
            return Err(StepError::Permanent(format!(
                "The first base backup could not be launched on {machine}; look at fly logs -a {app} -i {machine}."
            )));
        }
        ctx.pause().await?;
    };
    let reader = new_prefix_reader(ctx).await?;
    loop {
        if let Ok((index, _)) = reader.build().await {
            if let Some(name) = index.backups.keys().next_back() {
                return Ok(
                    json!({ "backup": name, "launched_at": launched_at, "prefix": ctx.plan.destination.walg_prefix }),
                );
            }
        }
        if start.elapsed() >= ctx.options.pitr_deadline {
            let tail = exec(ctx, app, &machine, &tail_argv(), None)
                .await
                .map(|o| o.stdout.clone())
                .unwrap_or_default();
            let shown: Vec<String> = tail.lines().filter_map(super::pitr::shown_line).collect();
            return Err(StepError::Permanent(format!(
                "The first base backup did not reach the new prefix {} in time. Its log on the machine ends: {}",
                ctx.plan.destination.walg_prefix,
                shown.iter().rev().take(3).cloned().collect::<Vec<_>>().join(" | ")
            )));
        }
        ctx.pause().await?;
    }
}

/// `select 1` through HAProxy's :5432, as the push connects, with the machine's own operator password (from
/// its environment, never in the argv).
const ACCEPTING_PROBE: &str = "PGPASSWORD=\"$OPERATOR_PASSWORD\" psql -X -w -h localhost -p 5432 -U postgres -d postgres -t -A -c \"select 1\"";

/// Postgres restarts with the machine's update: a push launched before it accepts connections again fails at
/// once, and its launch marker keeps it from being launched again (the run would wait for a backup that never
/// comes). So the launch waits for the restored Postgres to answer, up to the keeper deadline.
async fn wait_accepting(
    ctx: &StepCtx<'_>,
    app: &str,
    machine: &str,
    start: tokio::time::Instant,
) -> Result<(), StepError> {
    let argv: Vec<String> = vec!["bash".into(), "-c".into(), ACCEPTING_PROBE.into()];
    loop {
        match exec(ctx, app, machine, &argv, None).await {
            Ok(out) if out.success() => return Ok(()),
            Err(StepError::Engine(e)) => return Err(StepError::Engine(e)),
            _ => {}
        }
        if start.elapsed() >= ctx.options.keeper_deadline {
            return Err(StepError::Permanent(format!(
                "The restored Postgres on {machine} did not accept connections again after the machine's update, \
                 so its first base backup was not launched; look at fly logs -a {app} -i {machine}."
            )));
        }
        ctx.pause().await?;
    }
}

fn tail_argv() -> Vec<String> {
    vec![
        "tail".into(),
        "-n".into(),
        "20".into(),
        steps::BACKUP_LOG.into(),
    ]
}
