//! Point-in-time recovery as the keeper runs it after `stolonctl init` in pitr mode: `restoring`
//! (backup-fetch) → `recovering` (WAL replay) → `recovered` on a new timeline, or the failure modes.
//! Each step is a `TimerKind::Pitr` carrying the run's generation; a Machine restart mid-restore starts it
//! from scratch (see `lifecycle`), and a step whose generation is stale does nothing.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{auth_mismatches, pglog, walg_stamp};
use crate::model::*;
use crate::sim::{machine_env, Sim};

/// The app's PITR run, if any.
fn pitr_mut<'a>(state: &'a mut State, app: &str) -> Option<&'a mut Pitr> {
    state.apps.get_mut(app)?.pg.as_mut()?.pitr.as_mut()
}

/// A fresh generation for the next step's timer.
fn next_gen(state: &mut State) -> u64 {
    state.counter += 1;
    state.counter
}

/// Log each line of a keeper's error output.
fn log_lines(state: &mut State, app: &str, keeper: &str, at: i64, text: &str) {
    for line in text.lines() {
        state.log(app, keeper, at, format!("keeper   | {line}"));
    }
}

/// The keeper's volume.
fn keeper_volume<'a>(state: &'a mut State, app: &str, keeper: &str) -> Option<&'a mut Volume> {
    let owner = state.apps.get_mut(app)?;
    let volume = owner.machines.get(keeper)?.volume.clone()?;
    owner.volumes.get_mut(&volume)
}

/// Start (or restart from scratch) the restore on the chosen keeper: run `dataRestoreCommand`, which
/// takes simulated download time, or fails and retries after `restore_retry`.
pub(crate) fn start_restore(state: &mut State, app: &str, at: i64, sim: &Sim) {
    let Some(owner) = state.apps.get(app) else {
        return;
    };
    let Some(pitr) = owner.pg.as_ref().and_then(|pg| pg.pitr.as_ref()) else {
        return;
    };
    let keeper = pitr.keeper.clone();
    let env = owner
        .machines
        .get(&keeper)
        .map(|member| machine_env(owner, member))
        .unwrap_or_default();
    let command = owner
        .pg
        .as_ref()
        .and_then(|pg| pg.spec.pointer("/pitrConfig/dataRestoreCommand"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    log_init(state, app, &keeper, at, &command);
    let gen = next_gen(state);
    if let Some(volume) = keeper_volume(state, app, &keeper) {
        volume.keeper_initializing = true;
        volume.has_pgdata = false;
    }
    let (delay, backup, message) = match crate::walg::resolve_restore_command(&command, &env) {
        Ok(resolved) => {
            let timing = sim.timing();
            let download =
                resolved.compressed_size.saturating_mul(1000) / timing.restore_bytes_per_sec.max(1);
            let delay = timing.restore_base.as_millis() as i64 + download as i64;
            (delay, Some(resolved.name), String::new())
        }
        Err(e) => (0, None, e),
    };
    if let Some(pitr) = pitr_mut(state, app) {
        pitr.step = "restoring".into();
        pitr.step_started_ms = at;
        pitr.gen = gen;
        pitr.backup = backup.clone();
        pitr.restored = None;
        pitr.message = message.clone();
    }
    if backup.is_some() {
        state.schedule(app, at + delay, TimerKind::Pitr { gen });
        return;
    }
    log_lines(state, app, &keeper, at, &message);
    state.log(
        app,
        &keeper,
        at,
        "keeper   | failed to restore pitr: exit status 1",
    );
    state.log(
        app,
        &keeper,
        at,
        "keeper   | db failed to initialize or resync",
    );
    let retry = sim.timing().restore_retry.as_millis() as i64;
    state.schedule(app, at + retry, TimerKind::Pitr { gen });
    if let Some(pitr) = pitr_mut(state, app) {
        pitr.step = "restoring".into();
        pitr.attempts += 1;
    }
}

/// The keeper's log as it wipes its data dir and runs the restore command.
fn log_init(state: &mut State, app: &str, keeper: &str, at: i64, command: &str) {
    state.log(
        app,
        keeper,
        at,
        "keeper   | current db UID different than cluster data db UID",
    );
    state.log(
        app,
        keeper,
        at,
        "keeper   | initializing the database cluster",
    );
    state.log(app, keeper, at, "keeper   | removing data dir");
    state.log(
        app,
        keeper,
        at,
        format!(
            "keeper   | executing DataRestoreCommand: {}",
            command.replace("%d", "/data/postgres")
        ),
    );
}

/// The next step of the run `gen`, if it is still current and its keeper is up (a stopped keeper
/// resumes, from scratch, when it boots again).
pub(crate) fn pitr_step(state: &mut State, app: &str, gen: u64, at: i64, sim: &Sim) {
    let Some(owner) = state.apps.get(app) else {
        return;
    };
    let Some(pg) = owner.pg.as_ref() else { return };
    let Some(pitr) = pg.pitr.as_ref() else { return };
    if pitr.gen != gen {
        return;
    }
    let keeper = pitr.keeper.clone();
    let Some(keeper_machine) = owner
        .machines
        .get(&keeper)
        .filter(|member| member.state == MachineState::Started)
    else {
        return;
    };
    let env = machine_env(owner, keeper_machine);
    let server_version = super::pg_version_of(crate::image::image_of(keeper_machine));
    let spec = pg.spec.clone();
    let step = pitr.step.clone();
    let backup = pitr.backup.clone();
    let restored = pitr.restored.clone();
    match step.as_str() {
        "restoring" => match backup {
            Some(backup) => {
                let source = (backup.as_str(), &spec, &env, server_version);
                fetch(state, app, &keeper, (gen, at), sim, source)
            }
            // The previous attempt found no backup: try again from scratch.
            None => start_restore(state, app, at, sim),
        },
        "recovering" => {
            if let Some(restored) = restored {
                recover(state, app, &keeper, at, restored, &env);
            }
        }
        _ => {}
    }
}

/// `backup-fetch`: on success replay starts (`recovering`); on failure the keeper retries.
fn fetch(
    state: &mut State,
    app: &str,
    keeper: &str,
    (gen, at): (u64, i64),
    sim: &Sim,
    (backup, spec, env, server_version): (&str, &Value, &BTreeMap<String, String>, u32),
) {
    let restored = match crate::walg::fetch_for_recovery(backup, spec, env, server_version) {
        Ok(restored) => restored,
        Err(e) => {
            log_lines(state, app, keeper, at, &e);
            state.log(
                app,
                keeper,
                at,
                "keeper   | failed to initialize db: exit status 1",
            );
            state.log(
                app,
                keeper,
                at,
                "keeper   | db failed to initialize or resync",
            );
            if let Some(pitr) = pitr_mut(state, app) {
                pitr.attempts += 1;
                pitr.message = e;
                pitr.backup = None;
            }
            let retry = sim.timing().restore_retry.as_millis() as i64;
            state.schedule(app, at + retry, TimerKind::Pitr { gen });
            return;
        }
    };
    state.log(
        app,
        keeper,
        at,
        format!(
            "keeper   | INFO: {} Backup extraction complete.",
            walg_stamp(at)
        ),
    );
    pglog(state, app, keeper, at, "LOG", "starting archive recovery");
    let replay = sim.timing().replay_per_segment.as_millis() as i64
        * restored.replayed_segments as i64
        + 10_000;
    let next = next_gen(state);
    if let Some(pitr) = pitr_mut(state, app) {
        pitr.step = "recovering".into();
        pitr.step_started_ms = at;
        pitr.gen = next;
        pitr.restored = Some(restored);
    }
    state.schedule(app, at + replay, TimerKind::Pitr { gen: next });
}

/// Replay ended: the restored data becomes the cluster's on a new timeline; then either the cluster
/// converges or the restored roles reject this cluster's credentials.
fn recover(
    state: &mut State,
    app: &str,
    keeper: &str,
    at: i64,
    restored: RestoredData,
    env: &BTreeMap<String, String>,
) {
    // `StartupXLOG`: `newTLI = findNewestTimeLine(recoveryTargetTLI) + 1`.
    let new_timeline = restored.newest_timeline.max(restored.timeline) + 1;
    pglog(
        state,
        app,
        keeper,
        at,
        "LOG",
        &format!("selected new timeline ID: {new_timeline}"),
    );
    pglog(state, app, keeper, at, "LOG", "archive recovery complete");
    pglog(
        state,
        app,
        keeper,
        at,
        "LOG",
        "database system is ready to accept connections",
    );
    let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) else {
        return;
    };
    pg.roles = restored.roles.clone();
    pg.databases = restored.databases.clone();
    pg.system_identifier = restored.system_identifier;
    pg.timeline = new_timeline;
    pg.lsn = restored.end_lsn;
    pg.master = Some(keeper.to_string());
    super::postgres_started(pg, keeper);
    let rejected = auth_mismatches(pg, env);
    if let Some(volume) = keeper_volume(state, app, keeper) {
        volume.has_pgdata = true;
    }
    if rejected.is_empty() {
        merge_restored_parameters(state, app, keeper, restored.pg_parameters.as_ref());
        converge(state, app, keeper, at, new_timeline, restored.end_lsn);
    } else {
        reject_credentials(state, app, keeper, at, &rejected);
    }
}

/// The keeper's Postgres runs with the restored `postgresql.conf` included, the spec's own
/// `pgParameters` on top; once the cluster converges the sentinel replaces the spec's `pgParameters`
/// with what the database reports (`cmd/sentinel/cmd/sentinel.go`: `IncludeConfig` and
/// `MergePgParameters`, true unless the spec says false).
fn merge_restored_parameters(
    state: &mut State,
    app: &str,
    keeper: &str,
    restored: Option<&BTreeMap<String, String>>,
) {
    let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) else {
        return;
    };
    let Some(restored) = restored else { return };
    if pg.spec.get("mergePgParameters") == Some(&Value::Bool(false)) {
        return;
    }
    let mut merged = restored.clone();
    merged.extend(super::pg_parameters(pg));
    if let Some(spec) = pg.spec.as_object_mut() {
        spec.insert("pgParameters".into(), serde_json::json!(merged));
    }
    super::postgres_started(pg, keeper);
}

/// `recovered`: the keeper is master, the others resync, the new timeline's history is archived.
fn converge(state: &mut State, app: &str, keeper: &str, at: i64, timeline: u32, end_lsn: u64) {
    let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) else {
        return;
    };
    pg.phase = "normal".into();
    if let Some(pitr) = pg.pitr.as_mut() {
        pitr.step = "recovered".into();
        pitr.step_started_ms = at;
        pitr.message = String::new();
    }
    if let Some(volume) = keeper_volume(state, app, keeper) {
        volume.keeper_initializing = false;
    }
    if let Ok(machine) = state.machine_mut(app, keeper) {
        machine.ready_ms = Some(at);
    }
    // The other keepers resync from the new master.
    let others: Vec<String> = state
        .apps
        .get(app)
        .map(|owner| {
            owner
                .machines
                .values()
                .filter(|member| {
                    member.id != keeper
                        && member.state == MachineState::Started
                        && !member.destroyed
                })
                .map(|member| member.id.clone())
                .collect()
        })
        .unwrap_or_default();
    for other in others {
        if let Ok(machine) = state.machine_mut(app, &other) {
            machine.ready_ms = Some(at);
        }
        state.log(app, &other, at, "keeper   | resyncing the database cluster");
    }
    state.log(app, keeper, at, "keeper   | db initialized");
    state.log(
        app,
        keeper,
        at,
        "sentinel | db converged, cluster initialized (pitr recovered)",
    );
    crate::walg::archive_history(state, app, keeper, at, timeline, end_lsn);
}

/// `failed`: the restored roles' passwords differ from this cluster's secrets.
fn reject_credentials(state: &mut State, app: &str, keeper: &str, at: i64, rejected: &[&str]) {
    let users: Vec<String> = rejected.iter().map(|u| format!("\"{u}\"")).collect();
    let summary = format!(
        "password authentication failed for user {}",
        users.join(", ")
    );
    if let Some(pitr) = pitr_mut(state, app) {
        pitr.step = "failed".into();
        pitr.step_started_ms = at;
        pitr.message = format!(
            "restored data does not accept this cluster's credentials: {summary} (SU_PASSWORD/REPL_PASSWORD/OPERATOR_PASSWORD must equal the source cluster's)"
        );
    }
    for user in rejected {
        for _ in 0..3 {
            pglog(
                state,
                app,
                keeper,
                at,
                "FATAL",
                &format!("password authentication failed for user \"{user}\""),
            );
            pglog(
                state,
                app,
                keeper,
                at,
                "DETAIL",
                &format!("Connection matched pg_hba.conf line 1: \"local postgres {user} md5\""),
            );
        }
    }
}
