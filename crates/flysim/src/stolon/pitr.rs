//! Point-in-time recovery as the keeper runs it after `stolonctl init` in pitr mode: `restoring`
//! (backup-fetch) → `recovering` (WAL replay) → `recovered` on a new timeline, or the failure modes.
//! Each step is a `TimerKind::Pitr`; a Machine restart mid-restore starts it from scratch.

use super::{auth_mismatches, pglog, walg_stamp};
use crate::model::*;
use crate::sim::{machine_env, Sim};

/// Start (or restart from scratch) the restore on the chosen keeper.
pub(crate) fn start_restore(st: &mut State, app: &str, at: i64, sim: &Sim) {
    let Some(a) = st.apps.get(app) else { return };
    let Some(pg) = a.pg.as_ref() else { return };
    let Some(p) = pg.pitr.as_ref() else { return };
    let keeper = p.keeper.clone();
    let spec = pg.spec.clone();
    let env = a
        .machines
        .get(&keeper)
        .map(|m| machine_env(a, m))
        .unwrap_or_default();
    let cmd = spec
        .pointer("/pitrConfig/dataRestoreCommand")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    st.log(
        app,
        &keeper,
        at,
        "keeper   | current db UID different than cluster data db UID",
    );
    st.log(
        app,
        &keeper,
        at,
        "keeper   | initializing the database cluster",
    );
    st.log(app, &keeper, at, "keeper   | removing data dir");
    st.log(
        app,
        &keeper,
        at,
        format!(
            "keeper   | executing DataRestoreCommand: {}",
            cmd.replace("%d", "/data/postgres")
        ),
    );
    let gen = {
        st.counter += 1;
        st.counter
    };
    let vol = st
        .apps
        .get(app)
        .and_then(|a| a.machines.get(&keeper))
        .and_then(|m| m.volume.clone());
    if let Some(v) = vol.and_then(|v| st.apps.get_mut(app).and_then(|a| a.volumes.get_mut(&v))) {
        v.keeper_initializing = true;
        v.has_pgdata = false;
    }
    let resolved = crate::walg::resolve_restore_command(&cmd, &env);
    let (delay, backup, message) = match resolved {
        Ok(b) => {
            let t = sim.timing();
            let secs = t.restore_base.as_millis() as i64
                + (b.compressed_size.saturating_mul(1000) / t.restore_bytes_per_sec.max(1)) as i64;
            (secs, Some(b.name), String::new())
        }
        Err(e) => (0, None, e),
    };
    if let Some(p) = st
        .apps
        .get_mut(app)
        .and_then(|a| a.pg.as_mut())
        .and_then(|pg| pg.pitr.as_mut())
    {
        p.step = "restoring".into();
        p.step_started_ms = at;
        p.gen = gen;
        p.backup = backup.clone();
        p.restored = None;
        p.message = message.clone();
    }
    if backup.is_none() {
        for line in message.lines() {
            st.log(app, &keeper, at, format!("keeper   | {line}"));
        }
        st.log(
            app,
            &keeper,
            at,
            "keeper   | failed to restore pitr: exit status 1",
        );
        st.log(
            app,
            &keeper,
            at,
            "keeper   | db failed to initialize or resync",
        );
        let retry = sim.timing().restore_retry.as_millis() as i64;
        st.schedule(app, at + retry, TimerKind::Pitr { gen });
        if let Some(p) = st
            .apps
            .get_mut(app)
            .and_then(|a| a.pg.as_mut())
            .and_then(|pg| pg.pitr.as_mut())
        {
            p.step = "restoring".into();
            p.attempts += 1;
        }
        return;
    }
    st.schedule(app, at + delay, TimerKind::Pitr { gen });
}

pub(crate) fn pitr_step(st: &mut State, app: &str, gen: u64, at: i64, sim: &Sim) {
    let Some(a) = st.apps.get(app) else { return };
    let Some(pg) = a.pg.as_ref() else { return };
    let Some(p) = pg.pitr.as_ref() else { return };
    if p.gen != gen {
        return;
    }
    let keeper = p.keeper.clone();
    let keeper_up = a
        .machines
        .get(&keeper)
        .is_some_and(|m| m.state == MachineState::Started);
    if !keeper_up {
        return; // resumes (from scratch) when the Machine boots again
    }
    let env = a
        .machines
        .get(&keeper)
        .map(|m| machine_env(a, m))
        .unwrap_or_default();
    let spec = pg.spec.clone();
    let step = p.step.clone();
    match step.as_str() {
        "restoring" => {
            let Some(backup) = p.backup.clone() else {
                // previous attempt failed to find a backup: try again from scratch
                start_restore(st, app, at, sim);
                return;
            };
            match crate::walg::fetch_for_recovery(&backup, &spec, &env) {
                Ok(restored) => {
                    st.log(
                        app,
                        &keeper,
                        at,
                        format!(
                            "keeper   | INFO: {} Backup extraction complete.",
                            walg_stamp(at)
                        ),
                    );
                    pglog(st, app, &keeper, at, "LOG", "starting archive recovery");
                    let dur = sim.timing().replay_per_segment.as_millis() as i64
                        * restored.replayed_segments as i64
                        + 10_000;
                    st.counter += 1;
                    let ngen = st.counter;
                    if let Some(p) = st
                        .apps
                        .get_mut(app)
                        .and_then(|a| a.pg.as_mut())
                        .and_then(|pg| pg.pitr.as_mut())
                    {
                        p.step = "recovering".into();
                        p.step_started_ms = at;
                        p.gen = ngen;
                        p.restored = Some(restored);
                    }
                    st.schedule(app, at + dur, TimerKind::Pitr { gen: ngen });
                }
                Err(e) => {
                    for line in e.lines() {
                        st.log(app, &keeper, at, format!("keeper   | {line}"));
                    }
                    st.log(
                        app,
                        &keeper,
                        at,
                        "keeper   | failed to initialize db: exit status 1",
                    );
                    st.log(
                        app,
                        &keeper,
                        at,
                        "keeper   | db failed to initialize or resync",
                    );
                    if let Some(p) = st
                        .apps
                        .get_mut(app)
                        .and_then(|a| a.pg.as_mut())
                        .and_then(|pg| pg.pitr.as_mut())
                    {
                        p.attempts += 1;
                        p.message = e;
                        p.backup = None;
                    }
                    let retry = sim.timing().restore_retry.as_millis() as i64;
                    st.schedule(app, at + retry, TimerKind::Pitr { gen });
                }
            }
        }
        "recovering" => {
            let Some(restored) = p.restored.clone() else {
                return;
            };
            let new_tli = restored.timeline + 1;
            let vol = a.machines.get(&keeper).and_then(|m| m.volume.clone());
            pglog(
                st,
                app,
                &keeper,
                at,
                "LOG",
                &format!("selected new timeline ID: {new_tli}"),
            );
            pglog(st, app, &keeper, at, "LOG", "archive recovery complete");
            pglog(
                st,
                app,
                &keeper,
                at,
                "LOG",
                "database system is ready to accept connections",
            );
            let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) else {
                return;
            };
            pg.roles = restored.roles.clone();
            pg.databases = restored.databases.clone();
            pg.system_identifier = restored.system_identifier;
            pg.timeline = new_tli;
            pg.lsn = restored.end_lsn;
            pg.master = Some(keeper.clone());
            let bad = auth_mismatches(pg, &env);
            if let Some(v) =
                vol.and_then(|v| st.apps.get_mut(app).and_then(|a| a.volumes.get_mut(&v)))
            {
                v.has_pgdata = true;
            }
            if bad.is_empty() {
                let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) else {
                    return;
                };
                pg.phase = "normal".into();
                if let Some(p) = pg.pitr.as_mut() {
                    p.step = "recovered".into();
                    p.step_started_ms = at;
                    p.message = String::new();
                }
                if let Some(v) = st
                    .apps
                    .get_mut(app)
                    .and_then(|a| a.machines.get(&keeper))
                    .and_then(|m| m.volume.clone())
                    .and_then(|v| st.apps.get_mut(app).and_then(|a| a.volumes.get_mut(&v)))
                {
                    v.keeper_initializing = false;
                }
                if let Ok(m) = st.machine_mut(app, &keeper) {
                    m.ready_ms = Some(at);
                }
                // The other keepers resync from the new master.
                let others: Vec<String> = st
                    .apps
                    .get(app)
                    .map(|a| {
                        a.machines
                            .values()
                            .filter(|m| {
                                m.id != keeper && m.state == MachineState::Started && !m.destroyed
                            })
                            .map(|m| m.id.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for o in others {
                    if let Ok(m) = st.machine_mut(app, &o) {
                        m.ready_ms = Some(at);
                    }
                    st.log(app, &o, at, "keeper   | resyncing the database cluster");
                }
                st.log(app, &keeper, at, "keeper   | db initialized");
                st.log(
                    app,
                    &keeper,
                    at,
                    "sentinel | db converged, cluster initialized (pitr recovered)",
                );
                crate::walg::archive_history(st, app, &keeper, at, new_tli, restored.end_lsn);
            } else {
                let users: Vec<String> = bad.iter().map(|u| format!("\"{u}\"")).collect();
                let msg = format!(
                    "password authentication failed for user {}",
                    users.join(", ")
                );
                if let Some(p) = st
                    .apps
                    .get_mut(app)
                    .and_then(|a| a.pg.as_mut())
                    .and_then(|pg| pg.pitr.as_mut())
                {
                    p.step = "failed".into();
                    p.step_started_ms = at;
                    p.message = format!(
                        "restored data does not accept this cluster's credentials: {msg} (SU_PASSWORD/REPL_PASSWORD/OPERATOR_PASSWORD must equal the source cluster's)"
                    );
                }
                for u in bad {
                    for _ in 0..3 {
                        pglog(
                            st,
                            app,
                            &keeper,
                            at,
                            "FATAL",
                            &format!("password authentication failed for user \"{u}\""),
                        );
                        pglog(
                            st,
                            app,
                            &keeper,
                            at,
                            "DETAIL",
                            &format!(
                                "Connection matched pg_hba.conf line 1: \"local postgres {u} md5\""
                            ),
                        );
                    }
                }
            }
        }
        _ => {}
    }
}
