//! The Stolon image on one Machine: `start` at boot (cluster init, replicas, `FLY_RESTORED_FROM`,
//! boot loops), readiness, failover when the master goes away, and the archive_timeout tick.

use std::collections::BTreeMap;

use super::{
    auth_mismatches, default_spec, env_of, keeper_uid, md5_password, pg_version_of, pglog,
    start_restore, USERS,
};
use crate::image::image_of;
use crate::model::*;
use crate::sim::{machine_env, Sim};

/// A Machine finished starting: run the image's `start`.
pub(crate) fn boot(st: &mut State, app: &str, machine: &str, at: i64, sim: &Sim) {
    let Some(a) = st.apps.get(app) else { return };
    let Some(m) = a.machines.get(machine) else {
        return;
    };
    let gen = m.gen;
    let image = image_of(m).to_string();
    let env = machine_env(a, m);
    let name = m.name.clone();
    let vol_id = m.volume.clone();
    let store_url = env
        .get("FLY_CONSUL_URL")
        .or_else(|| env.get("CONSUL_URL"))
        .cloned()
        .unwrap_or_else(|| format!("https://consul-flysim.fly-shared.net/{app}-{}/", a.id));
    let uid = keeper_uid(m);
    let dotenv = format!(
        "STOLONCTL_CLUSTER_NAME={app}\nSTOLONCTL_STORE_BACKEND=consul\nSTOLONCTL_STORE_URL={store_url}\nSTOLONCTL_STORE_NODE={store_url}{uid}\n"
    );
    st.log(
        app,
        machine,
        at,
        "Preparing to run: `docker-entrypoint.sh start` as root",
    );
    st.log(app, machine, at, "listening on [::]:5500 (flycheck)");
    if st.apps.get(app).and_then(|a| a.pg.as_ref()).is_none() {
        let sysid = 7_000_000_000_000_000_000 + st.rand() % 1_000_000_000_000_000_000;
        let uid = st.next_id("", 8);
        if let Some(a) = st.apps.get_mut(app) {
            a.pg = Some(PgCluster {
                cluster_uid: uid,
                spec: default_spec(),
                phase: "normal".into(),
                master: None,
                system_identifier: sysid,
                timeline: 1,
                lsn: 0x0100_0028,
                pg_version: pg_version_of(&image),
                roles: BTreeMap::new(),
                databases: BTreeMap::new(),
                pitr: None,
                archive_armed: false,
                initialised: false,
            });
        }
    }
    let (has_pgdata, lock) = {
        let a = st.apps.get_mut(app);
        match a.and_then(|a| vol_id.as_ref().and_then(|v| a.volumes.get_mut(v))) {
            Some(v) => {
                v.files.insert("/data/.env".into(), dotenv);
                (v.has_pgdata, v.files.get("/data/restore.lock").cloned())
            }
            None => (false, None),
        }
    };

    let never = {
        let f = sim.faults();
        f.cfg.never_healthy.contains(machine) || f.cfg.never_healthy.contains(&name)
    };

    // FLY_RESTORED_FROM (cmd/start/main.go, pkg/flyunlock).
    let restored_from = env.get("FLY_RESTORED_FROM").filter(|v| !v.is_empty());
    if restored_from.is_some() && lock.as_deref() != Some(app) {
        if !has_pgdata {
            st.log(
                app,
                machine,
                at,
                "pg_hba.conf not found: treating as a new standby, nothing to unlock",
            );
        } else {
            let forced = sim.faults().cfg.restored_from_fails;
            let missing: Vec<&str> = ["SU_PASSWORD", "REPL_PASSWORD"]
                .into_iter()
                .filter(|k| env.get(*k).is_none_or(|v| v.is_empty()))
                .collect();
            if forced || !missing.is_empty() {
                let reason = if forced {
                    "failed to unlock restored data: failed to establish connection: timeout"
                        .to_string()
                } else {
                    format!(
                        "failed to unlock restored data: {} is required",
                        missing.join(", ")
                    )
                };
                st.log(
                    app,
                    machine,
                    at,
                    "Restore detected: reconfiguring users to match the environment",
                );
                st.log(app, machine, at, format!("panic: {reason}"));
                st.log(app, machine, at, "goroutine 1 [running]:\nmain.main()\n\t/go/src/github.com/fly-apps/postgres-ha/cmd/start/main.go:56 +0x2a5");
                if let Ok(m) = st.machine_mut(app, machine) {
                    m.crash_reason = Some(reason);
                }
                st.schedule(
                    app,
                    at + sim.timing().crash.as_millis() as i64,
                    TimerKind::Crash {
                        machine: machine.into(),
                        gen,
                    },
                );
                return;
            }
            st.log(
                app,
                machine,
                at,
                "Restore detected: reconfiguring users to match the environment",
            );
            if let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) {
                for (user, var) in USERS {
                    if let Some(pw) = env.get(var) {
                        pg.roles.insert(user.to_string(), md5_password(user, pw));
                    }
                }
            }
            if let Some(v) = st
                .apps
                .get_mut(app)
                .and_then(|a| vol_id.as_ref().and_then(|v| a.volumes.get_mut(v)))
            {
                v.files.insert("/data/restore.lock".into(), app.to_string());
            }
            st.log(
                app,
                machine,
                at,
                "Restore lock written to /data/restore.lock",
            );
        }
    }

    let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) else {
        return;
    };
    // An interrupted PITR restarts from scratch.
    if let Some(p) = pg.pitr.as_mut() {
        if p.keeper == machine && (p.step == "restoring" || p.step == "recovering") {
            p.attempts += 1;
            st.log(
                app,
                machine,
                at,
                "keeper   | db failed to initialize or resync",
            );
            start_restore(st, app, at, sim);
            return;
        }
    }
    let pg = st.apps.get_mut(app).and_then(|a| a.pg.as_mut());
    let Some(pg) = pg else { return };
    if !pg.initialised {
        for (user, var) in USERS {
            if let Some(pw) = env.get(var) {
                pg.roles.insert(user.to_string(), md5_password(user, pw));
            }
        }
        pg.databases.entry("postgres".into()).or_default();
        pg.initialised = true;
        pg.master = Some(machine.to_string());
        st.log(app, machine, at, "sentinel | trying to find initial master");
        st.log(
            app,
            machine,
            at,
            format!("sentinel | initializing cluster using keeper {uid}"),
        );
    }
    if let Some(v) = st
        .apps
        .get_mut(app)
        .and_then(|a| vol_id.as_ref().and_then(|v| a.volumes.get_mut(v)))
    {
        v.has_pgdata = true;
    }
    if never {
        st.log(app, machine, at, "keeper   | waiting for db to be ready");
        return;
    }
    st.schedule(
        app,
        at + sim.timing().boot.as_millis() as i64,
        TimerKind::Ready {
            machine: machine.into(),
            gen,
        },
    );
}

/// Postgres on the Machine accepts connections (the Machine is started and its boot current).
pub(crate) fn ready(st: &mut State, app: &str, machine: &str, at: i64) {
    let env = env_of(st, app, machine).unwrap_or_default();
    let mut need_arm = false;
    let mut converged = false;
    if let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) {
        if pg
            .pitr
            .as_ref()
            .is_some_and(|p| p.step != "recovered" && p.step != "failed")
        {
            return;
        }
        // A restore that failed only on credentials converges once the Machine boots with the source
        // cluster's passwords (the data is already restored).
        let failed_here = pg
            .pitr
            .as_ref()
            .is_some_and(|p| p.step == "failed" && p.keeper == machine);
        if failed_here && auth_mismatches(pg, &env).is_empty() {
            pg.phase = "normal".into();
            pg.master = Some(machine.to_string());
            if let Some(p) = pg.pitr.as_mut() {
                p.step = "recovered".into();
                p.step_started_ms = at;
                p.message = String::new();
            }
            converged = true;
        }
        let master_ok = pg.master.is_some();
        if !master_ok {
            pg.master = Some(machine.to_string());
        }
        need_arm = !pg.archive_armed;
        pg.archive_armed = true;
    }
    pglog(
        st,
        app,
        machine,
        at,
        "LOG",
        "database system is ready to accept connections",
    );
    if converged {
        st.log(app, machine, at, "keeper   | db initialized");
        st.log(
            app,
            machine,
            at,
            "sentinel | db converged, cluster initialized (pitr recovered)",
        );
    }
    let bad = st
        .apps
        .get(app)
        .and_then(|a| a.pg.as_ref())
        .map(|pg| auth_mismatches(pg, &env))
        .unwrap_or_default();
    for user in bad {
        pglog(
            st,
            app,
            machine,
            at,
            "FATAL",
            &format!("password authentication failed for user \"{user}\""),
        );
    }
    if need_arm {
        st.schedule(app, at + 60_000, TimerKind::Archive);
    }
}

/// The Machine stopped (or exited): Postgres is gone; fail over if it was the master.
pub(crate) fn halted(st: &mut State, app: &str, machine: &str, at: i64) {
    if let Ok(m) = st.machine_mut(app, machine) {
        m.ready_ms = None;
    } else if let Some(m) = st
        .apps
        .get_mut(app)
        .and_then(|a| a.machines.get_mut(machine))
    {
        m.ready_ms = None;
    }
    let Some(a) = st.apps.get(app) else { return };
    let Some(pg) = a.pg.as_ref() else { return };
    if pg.master.as_deref() != Some(machine)
        || pg.pitr.as_ref().is_some_and(|p| p.step != "recovered")
    {
        return;
    }
    let candidate = a
        .machines
        .values()
        .find(|m| {
            m.id != machine
                && !m.destroyed
                && m.state == MachineState::Started
                && m.ready_ms.is_some()
        })
        .map(|m| m.id.clone());
    if let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) {
        pg.master = candidate.clone();
    }
    st.log(app, machine, at, "sentinel | master db is failed");
    if let Some(c) = candidate {
        st.log(
            app,
            &c,
            at,
            format!("sentinel | electing db as the new master: {c}"),
        );
    }
}

/// archive_timeout: the master switches WAL; archive_command runs in its env.
pub(crate) fn archive_tick(st: &mut State, app: &str, at: i64, sim: &Sim) {
    if !st.apps.contains_key(app) {
        return;
    }
    let timeout_ms = sim.timing().archive_timeout.as_millis().max(1000) as i64;
    st.schedule(app, at + timeout_ms, TimerKind::Archive);
    crate::walg::archive_segment(st, app, at);
}

// ----------------------------------------------------------------------------------------------
// stolonctl, stolonctl-run
// ----------------------------------------------------------------------------------------------
