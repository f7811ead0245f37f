//! The Stolon image (`flyio/postgres:*`, fly-apps/postgres-ha): boot, roles, checks, PITR, archiving,
//! and the `stolonctl`, `stolonctl-run` and `psql` commands run by exec.

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::exec::Out;
use crate::image::{image_of, is_stolon_image, ExecContext};
use crate::model::*;
use crate::sim::{machine_env, Sim};

pub(crate) const USERS: [(&str, &str); 3] = [
    ("flypgadmin", "SU_PASSWORD"),
    ("repluser", "REPL_PASSWORD"),
    ("postgres", "OPERATOR_PASSWORD"),
];

pub(crate) fn md5_password(user: &str, password: &str) -> String {
    let mut h = Md5::new();
    h.update(password.as_bytes());
    h.update(user.as_bytes());
    format!("md5{}", hex::encode(h.finalize()))
}

/// The spec Fly's `start` generates when a cluster is first initialised (`pkg/flypg/config.go`).
pub(crate) fn default_spec() -> Value {
    json!({
        "initMode": "new",
        "sleepInterval": "1s",
        "failInterval": "10s",
        "maxStandbysPerSender": 50,
        "deadKeeperRemovalInterval": "1h",
        "synchronousReplication": false,
        "usePgrewind": true,
        "pgParameters": {
            "archive_mode": "on",
            "archive_timeout": "60",
            "archive_command": "if [ $ENABLE_WALG ]; then /usr/local/bin/wal-g wal-push \"%p\"; fi",
            "max_connections": "300",
            "shared_buffers": "64MB",
            "max_wal_size": "1GB",
            "min_wal_size": "80MB",
            "wal_level": "replica",
            "log_statement": "ddl"
        }
    })
}

pub(crate) fn pg_version_of(image: &str) -> u32 {
    let tag = image
        .split('@')
        .next()
        .and_then(|n| n.rsplit_once(':').map(|(_, t)| t))
        .unwrap_or("14");
    let mut parts = tag.split(['.', '-']);
    let major: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(14);
    let minor: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    major * 10000 + minor
}

pub(crate) fn keeper_uid(m: &Machine) -> String {
    let groups: Vec<&str> = m.private_ip.split(':').collect();
    if groups.len() >= 4 {
        groups[groups.len() - 4..].concat()
    } else {
        m.id.clone()
    }
}

fn pglog(st: &mut State, app: &str, machine: &str, at: i64, level: &str, msg: &str) {
    let ts = crate::clock::from_ms(at);
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03} UTC",
        ts.year(),
        ts.month() as u8,
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        ts.millisecond()
    );
    let pid = 500 + (at.rem_euclid(3000)) as u32;
    st.log(
        app,
        machine,
        at,
        format!("keeper   | {stamp} [{pid}] {level}:  {msg}"),
    );
}

fn env_of(st: &State, app: &str, machine: &str) -> Option<BTreeMap<String, String>> {
    let a = st.apps.get(app)?;
    let m = a.machines.get(machine)?;
    Some(machine_env(a, m))
}

/// Users whose password in the data differs from the Machine's env.
pub(crate) fn auth_mismatches(pg: &PgCluster, env: &BTreeMap<String, String>) -> Vec<&'static str> {
    let mut bad = Vec::new();
    for (user, var) in USERS {
        let Some(stored) = pg.roles.get(user) else {
            continue;
        };
        match env.get(var) {
            Some(pw) if md5_password(user, pw) == *stored => {}
            None if user == "postgres" => {}
            _ => bad.push(user),
        }
    }
    bad
}

/// The `flyio/postgres` image: Stolon keeper, sentinel and proxy behind Fly's `start`.
pub(crate) struct StolonImage;

impl crate::image::ImageBehaviour for StolonImage {
    fn boot(&self, state: &mut State, app: &str, machine: &str, at: i64, sim: &Sim) {
        boot(state, app, machine, at, sim);
    }

    fn ready(&self, state: &mut State, app: &str, machine: &str, at: i64) {
        ready(state, app, machine, at);
    }

    fn checks(&self, app: &App, machine: &Machine, now: i64) -> Vec<Value> {
        checks(app, machine, now)
    }
}

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

pub(crate) struct Role {
    pub role: Option<&'static str>,
    pub problem: Option<String>,
}

/// What the `role` check would say for this Machine now.
pub(crate) fn role_of(a: &App, m: &Machine) -> Role {
    let fail = |p: &str| Role {
        role: None,
        problem: Some(p.to_string()),
    };
    if m.state != MachineState::Started {
        return fail("machine is not running");
    }
    if let Some(r) = &m.crash_reason {
        return fail(&format!("failed to connect to local node: {r}"));
    }
    let Some(pg) = a.pg.as_ref() else {
        return fail("failed to connect to local node: connection refused");
    };
    if let Some(p) = &pg.pitr {
        if p.step != "recovered" {
            return fail(
                "failed to connect to local node: FATAL: the database system is starting up",
            );
        }
    }
    if m.ready_ms.is_none() {
        return fail(
            "failed to connect to local node: dial tcp [::1]:5433: connect: connection refused",
        );
    }
    let env = machine_env(a, m);
    let bad = auth_mismatches(pg, &env);
    if bad.contains(&"flypgadmin") {
        return fail("failed to connect to local node: FATAL: password authentication failed for user \"flypgadmin\"");
    }
    if pg.master.as_deref() == Some(&m.id) {
        Role {
            role: Some("leader"),
            problem: None,
        }
    } else {
        if bad.contains(&"repluser") {
            return fail(
                "replication: FATAL: password authentication failed for user \"repluser\"",
            );
        }
        Role {
            role: Some("replica"),
            problem: None,
        }
    }
}

/// `checks` of a Machine as Fly reports them (Stolon image: pg, role, vm on :5500).
pub(crate) fn checks(a: &App, m: &Machine, now: i64) -> Vec<Value> {
    let r = role_of(a, m);
    let ts = rfc3339(m.ready_ms.unwrap_or(now));
    let (status, role_out, pg_out) = match (&r.role, &r.problem) {
        (Some(role), _) => (
            "passing",
            role.to_string(),
            "[✓] connections: 8 used, 3 reserved, 300 max (4.12ms)".to_string(),
        ),
        (None, Some(p)) => ("critical", p.clone(), p.clone()),
        _ => ("critical", "unknown".into(), "unknown".into()),
    };
    let vm_status = if m.state == MachineState::Started {
        "passing"
    } else {
        "critical"
    };
    vec![
        json!({"name": "pg", "status": status, "output": pg_out, "updated_at": ts}),
        json!({"name": "role", "status": status, "output": role_out, "updated_at": ts}),
        json!({"name": "vm", "status": vm_status, "output": "[✓] checkDisk: 912.3 MB (92.4%) free space on /data/ (46.27µs)\n[✓] checkLoad: load averages: 0.00 0.01 0.00 (60.2µs)", "updated_at": ts}),
    ]
}

// ----------------------------------------------------------------------------------------------
// PITR
// ----------------------------------------------------------------------------------------------

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

pub(crate) fn walg_stamp(at: i64) -> String {
    let t = crate::clock::from_ms(at);
    format!(
        "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:06}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
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

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

pub(crate) fn stolonctl(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
    stdin: &str,
) -> Out {
    let mut cluster = env.get("STOLONCTL_CLUSTER_NAME").cloned();
    let mut backend = env.get("STOLONCTL_STORE_BACKEND").cloned();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let take = |i: &mut usize| -> Option<String> {
            *i += 1;
            args.get(*i).cloned()
        };
        if let Some(v) = a.strip_prefix("--cluster-name=") {
            cluster = Some(v.into());
        } else if a == "--cluster-name" {
            cluster = take(&mut i);
        } else if let Some(v) = a.strip_prefix("--store-backend=") {
            backend = Some(v.into());
        } else if a == "--store-backend" {
            backend = take(&mut i);
        } else if a == "--store-endpoints" || a == "--store-url" || a == "--store-node" {
            let _ = take(&mut i);
        } else if a.starts_with("--store-") {
        } else {
            rest.push(a.clone());
        }
        i += 1;
    }
    let Some(sub) = rest.first().cloned() else {
        return Out::ok("Usage:\n  stolonctl [command]\n\nAvailable Commands:\n  clusterdata Manage current cluster data\n  init        Initialize a new cluster\n  spec        Retrieve the current cluster specification\n  status      Display the current cluster status\n  update      Update a cluster specification\n");
    };
    if sub == "--help" || sub == "help" {
        return Out::ok("Usage:\n  stolonctl [command]\n");
    }
    let Some(cluster) = cluster.filter(|c| !c.is_empty()) else {
        return Out::err(1, "stolonctl: cluster name required\n");
    };
    if backend.as_deref().is_none_or(|b| b.is_empty()) {
        return Out::err(1, "stolonctl: store backend type required\n");
    }
    let app = context.app.clone();
    if cluster != app
        || context
            .state
            .apps
            .get(&app)
            .and_then(|a| a.pg.as_ref())
            .is_none()
    {
        return Out::err(1, "stolonctl: nil cluster data: cluster not initialized\n");
    }
    let args: Vec<String> = rest[1..].to_vec();
    match sub.as_str() {
        "spec" => {
            let pg = context.state.apps.get(&app).and_then(|a| a.pg.as_ref());
            let spec = pg.map(|p| p.spec.clone()).unwrap_or(Value::Null);
            Out::ok(format!("{}\n", serde_json::to_string_pretty(&spec).unwrap_or_default()))
        }
        "update" => {
            let patch_mode = args.iter().any(|a| a == "--patch" || a == "-p");
            let Some(doc) = args.iter().find(|a| !a.starts_with('-')) else {
                return Out::err(1, "stolonctl: no cluster spec provided as argument and no file provided (--file/-f option)\n");
            };
            let v: Value = match serde_json::from_str(doc) {
                Ok(v) => v,
                Err(e) => return Out::err(1, format!("stolonctl: failed to patch cluster spec: {e}\n")),
            };
            if !v.is_object() {
                return Out::err(1, "stolonctl: failed to patch cluster spec: not a JSON object\n");
            }
            let Some(pg) = context.state.apps.get_mut(&app).and_then(|a| a.pg.as_mut()) else {
                return Out::err(1, "stolonctl: nil cluster data\n");
            };
            if patch_mode {
                merge_patch(&mut pg.spec, &v);
            } else {
                pg.spec = v;
            }
            let (m, now) = (context.machine.clone(), context.now);
            context.state.log(&app, &m, now, "sentinel | cluster spec updated");
            Out::ok("")
        }
        "init" => init(context, &args, stdin),
        "status" => Out::ok(status_text(context.state, &app)),
        "clusterdata" => {
            if args.first().map(|s| s.as_str()) == Some("read") {
                Out::ok(format!("{}\n", clusterdata(context.state, &app, context.now)))
            } else {
                Out::err(1, "stolonctl: only `clusterdata read` is emulated by flysim\n")
            }
        }
        other => Out::err(1, format!("Error: unknown command \"{other}\" for \"stolonctl\"\nRun 'stolonctl --help' for usage.\n")),
    }
}

fn init(context: &mut ExecContext<'_>, args: &[String], stdin: &str) -> Out {
    let yes = args.iter().any(|a| a == "--yes" || a == "-y");
    let doc = args.iter().find(|a| !a.starts_with('-')).cloned();
    let warning = "WARNING: The current cluster data will be removed\nWARNING: The databases managed by the keepers will be overwritten depending on the provided cluster spec.\n";
    if !yes {
        let answer = stdin.lines().next().unwrap_or("").trim().to_string();
        if answer != "yes" {
            return Out {
                code: 1,
                stdout: format!("{warning}Are you sure you want to continue? [yes/no] "),
                stderr: if answer.is_empty() {
                    "stolonctl: EOF\n".into()
                } else {
                    String::new()
                },
                ..Out::default()
            };
        }
    }
    let spec: Value = match doc {
        Some(d) => match serde_json::from_str(&d) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Out::err(
                    1,
                    "stolonctl: failed to unmarshal cluster spec: not an object\n",
                )
            }
            Err(e) => {
                return Out::err(
                    1,
                    format!("stolonctl: failed to unmarshal cluster spec: {e}\n"),
                )
            }
        },
        None => json!({"initMode": "new"}),
    };
    let mode = spec
        .get("initMode")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    if mode.is_empty() {
        return Out::err(
            1,
            "stolonctl: failed to validate cluster spec: initMode undefined\n",
        );
    }
    if mode == "pitr"
        && spec
            .pointer("/pitrConfig/dataRestoreCommand")
            .and_then(|v| v.as_str())
            .is_none_or(|s| s.is_empty())
    {
        return Out::err(
            1,
            "stolonctl: failed to validate cluster spec: pitrConfig.dataRestoreCommand undefined\n",
        );
    }
    if mode != "pitr" && mode != "new" {
        return Out::err(
            1,
            format!("stolonctl: flysim emulates initMode \"new\" and \"pitr\", not {mode:?}\n"),
        );
    }
    let app = context.app.clone();
    // The sentinel picks a random registered (running) keeper.
    let keepers: Vec<String> = context
        .state
        .apps
        .get(&app)
        .map(|a| {
            a.machines
                .values()
                .filter(|m| {
                    !m.destroyed && m.state == MachineState::Started && is_stolon_image(image_of(m))
                })
                .map(|m| m.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if keepers.is_empty() {
        return Out::err(1, "stolonctl: no keepers available\n");
    }
    let pick = (context.state.rand() % keepers.len() as u64) as usize;
    let keeper = keepers[pick].clone();
    let uid = context.state.next_id("", 8);
    let now = context.now;
    let Some(pg) = context.state.apps.get_mut(&app).and_then(|a| a.pg.as_mut()) else {
        return Out::err(1, "stolonctl: nil cluster data\n");
    };
    pg.cluster_uid = uid;
    pg.spec = spec;
    pg.master = None;
    if mode == "new" {
        pg.phase = "normal".into();
        pg.pitr = None;
        pg.databases = BTreeMap::from([("postgres".to_string(), BTreeMap::new())]);
        pg.timeline = 1;
        pg.lsn = 0x0100_0028;
        pg.master = Some(keeper.clone());
        let env = env_of(context.state, &app, &keeper).unwrap_or_default();
        if let Some(pg) = context.state.apps.get_mut(&app).and_then(|a| a.pg.as_mut()) {
            pg.roles.clear();
            for (user, var) in USERS {
                if let Some(pw) = env.get(var) {
                    pg.roles.insert(user.to_string(), md5_password(user, pw));
                }
            }
        }
        context.state.log(
            &app,
            &keeper,
            now,
            format!("sentinel | initializing cluster using keeper {keeper}"),
        );
        return Out::ok("");
    }
    pg.phase = "initializing".into();
    pg.pitr = Some(Pitr {
        keeper: keeper.clone(),
        step: "restoring".into(),
        step_started_ms: now,
        attempts: 0,
        message: String::new(),
        backup: None,
        gen: 0,
        restored: None,
    });
    let all: Vec<String> = keepers.clone();
    for k in all {
        if let Ok(m) = context.state.machine_mut(&app, &k) {
            m.ready_ms = None;
        }
    }
    context.state.log(
        &app,
        &keeper,
        now,
        "sentinel | trying to find initial master",
    );
    context.state.log(
        &app,
        &keeper,
        now,
        format!("sentinel | initializing cluster in pitr mode using keeper {keeper}"),
    );
    start_restore(context.state, &app, now, context.sim);
    Out::ok("")
}

fn status_text(st: &State, app: &str) -> String {
    let Some(a) = st.apps.get(app) else {
        return String::new();
    };
    let Some(pg) = a.pg.as_ref() else {
        return String::new();
    };
    let mut s = String::from("=== Active sentinels ===\n\nID\t\tLEADER\n");
    let mut first = true;
    for m in a
        .machines
        .values()
        .filter(|m| m.state == MachineState::Started && !m.destroyed)
    {
        s.push_str(&format!(
            "{}\t{}\n",
            &keeper_uid(m)[..8.min(keeper_uid(m).len())],
            first
        ));
        first = false;
    }
    s.push_str("\n=== Active proxies ===\n\nNo active proxies\n\n=== Keepers ===\n\nUID\t\tHEALTHY\tPG LISTENADDRESS\t\tPG HEALTHY\tPG WANTEDGENERATION\tPG CURRENTGENERATION\n");
    for m in a.machines.values().filter(|m| !m.destroyed) {
        let healthy = m.state == MachineState::Started;
        let pg_healthy = role_of(a, m).role.is_some();
        s.push_str(&format!(
            "{}\t{}\t[{}]:5433\t{}\t\t{}\t\t\t{}\n",
            keeper_uid(m),
            healthy,
            m.private_ip,
            pg_healthy,
            m.gen,
            if pg_healthy { m.gen } else { 0 }
        ));
    }
    s.push_str("\n=== Cluster Info ===\n\n");
    match pg.master.as_ref().and_then(|id| a.machines.get(id)) {
        Some(m) if pg.phase == "normal" => {
            s.push_str(&format!("Master Keeper: {}\n", keeper_uid(m)))
        }
        _ => s.push_str("No cluster available\n"),
    }
    if pg.phase == "normal" {
        s.push_str("\n===== Keepers/DB tree =====\n\n");
        if let Some(master) = pg.master.as_ref().and_then(|id| a.machines.get(id)) {
            s.push_str(&format!("{} (master)\n", keeper_uid(master)));
            let replicas: Vec<&Machine> = a
                .machines
                .values()
                .filter(|m| {
                    m.id != master.id && !m.destroyed && role_of(a, m).role == Some("replica")
                })
                .collect();
            for (i, r) in replicas.iter().enumerate() {
                let branch = if i + 1 == replicas.len() {
                    "└─"
                } else {
                    "├─"
                };
                s.push_str(&format!("{branch}{}\n", keeper_uid(r)));
            }
        }
    }
    s
}

pub(crate) fn clusterdata(st: &State, app: &str, now: i64) -> String {
    let Some(a) = st.apps.get(app) else {
        return "{}".into();
    };
    let Some(pg) = a.pg.as_ref() else {
        return "{}".into();
    };
    let mut keepers = serde_json::Map::new();
    let mut dbs = serde_json::Map::new();
    for m in a.machines.values().filter(|m| !m.destroyed) {
        let uid = keeper_uid(m);
        keepers.insert(
            uid.clone(),
            json!({"uid": uid, "generation": m.gen, "changeTime": rfc3339(m.updated_ms),
                "spec": {}, "status": {"healthy": m.state == MachineState::Started, "lastHealthyTime": rfc3339(now),
                "bootUUID": m.instance_id, "postgresBinaryVersion": {"Maj": pg.pg_version / 10000, "Min": 0},
                "canBeMaster": true, "canBeSynchronousReplica": true}}),
        );
        let is_master = pg.master.as_deref() == Some(&m.id);
        let healthy = role_of(a, m).role.is_some();
        dbs.insert(
            format!("db-{uid}"),
            json!({"uid": format!("db-{uid}"), "generation": m.gen, "changeTime": rfc3339(m.updated_ms),
                "spec": {"keeperUID": uid, "role": if is_master {"master"} else {"standby"},
                    "initMode": if is_master { pg.spec.get("initMode").cloned().unwrap_or(json!("none")) } else { json!("resync") }},
                "status": {"healthy": healthy, "currentGeneration": if healthy { m.gen } else { 0 },
                    "listenAddress": m.private_ip, "port": "5433",
                    "systemdID": pg.system_identifier.to_string(), "timelineID": pg.timeline, "xLogPos": pg.lsn}}),
        );
    }
    let master_db = pg
        .master
        .as_ref()
        .and_then(|id| a.machines.get(id))
        .map(|m| format!("db-{}", keeper_uid(m)))
        .unwrap_or_default();
    let mut status = json!({"phase": pg.phase, "master": master_db});
    if let Some(p) = &pg.pitr {
        // Not a stolon field: flysim's view of the PITR run, for scripted checks.
        status["flysimPitr"] = json!({"step": p.step, "attempts": p.attempts, "message": p.message,
            "backup": p.backup, "keeper": p.keeper});
    }
    json!({"formatVersion": 1, "changeTime": rfc3339(now),
        "cluster": {"uid": pg.cluster_uid, "generation": 1, "changeTime": rfc3339(now), "spec": pg.spec, "status": status},
        "keepers": keepers, "dbs": dbs, "proxy": {"generation": 1, "spec": {}}})
    .to_string()
}

/// `stolonctl-run <base64 args>`: reads /data/.env itself, always exits 0, prints one JSON line.
pub(crate) fn stolonctl_run(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Out {
    let Some(enc) = args.first() else {
        let line =
            json!({"success": false, "message": "no arguments provided", "data": Value::Null});
        return Out::ok(format!("{line}\n"));
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some(decoded) = decoded else {
        let line = json!({"success": false, "message": "failed to decode arguments: illegal base64 data", "data": Value::Null});
        return Out::ok(format!("{line}\n"));
    };
    let Some(argv) = shlex::split(&decoded) else {
        let line =
            json!({"success": false, "message": "failed to split arguments", "data": Value::Null});
        return Out::ok(format!("{line}\n"));
    };
    let mut env = env.clone();
    let dotenv = context
        .state
        .apps
        .get(&context.app)
        .and_then(|a| {
            a.machines
                .get(&context.machine)
                .and_then(|m| m.volume.clone())
                .and_then(|v| a.volumes.get(&v))
        })
        .and_then(|v| v.files.get("/data/.env").cloned())
        .unwrap_or_default();
    for line in dotenv.lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.insert(k.to_string(), v.to_string());
        }
    }
    let out = stolonctl(context, &argv, &env, "");
    let line = if out.code == 0 {
        json!({"success": true, "message": "", "data": out.stdout})
    } else {
        json!({"success": false, "message": out.stderr.trim_end(), "data": out.stdout})
    };
    Out::ok(format!("{line}\n"))
}

// ----------------------------------------------------------------------------------------------
// psql
// ----------------------------------------------------------------------------------------------

pub(crate) fn psql(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Out {
    let mut host = env
        .get("PGHOST")
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut port = env.get("PGPORT").cloned().unwrap_or_else(|| "5432".into());
    let mut user = env.get("PGUSER").cloned().unwrap_or_else(|| "root".into());
    let mut password = env.get("PGPASSWORD").cloned();
    let mut db: Option<String> = env.get("PGDATABASE").cloned();
    let mut sql: Vec<String> = Vec::new();
    let mut tuples_only = false;
    let mut unaligned = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let mut next = || {
            i += 1;
            args.get(i).cloned().unwrap_or_default()
        };
        match a {
            "-h" | "--host" => host = next(),
            "-p" | "--port" => port = next(),
            "-U" | "--username" => user = next(),
            "-d" | "--dbname" => db = Some(next()),
            "-c" | "--command" => sql.push(next()),
            "-t" | "--tuples-only" => tuples_only = true,
            "-A" | "--no-align" => unaligned = true,
            "-tA" | "-At" => {
                tuples_only = true;
                unaligned = true
            }
            "-X" | "-q" | "--no-psqlrc" | "--quiet" | "-w" => {}
            "-v" | "--set" => {
                let _ = next();
            }
            s if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                if let Some((u, p, h, po, d)) = parse_url(s) {
                    if let Some(u) = u {
                        user = u;
                    }
                    if p.is_some() {
                        password = p;
                    }
                    if let Some(h) = h {
                        host = h;
                    }
                    if let Some(po) = po {
                        port = po;
                    }
                    if let Some(d) = d {
                        db = Some(d);
                    }
                }
            }
            s if s.starts_with('-') => {
                return Out::err(
                    1,
                    format!("psql: error: flysim does not emulate option {s}\n"),
                );
            }
            s => db = Some(s.to_string()),
        }
        i += 1;
    }
    let db = db.unwrap_or_else(|| user.clone());
    let where_ = format!("connection to server at \"{host}\", port {port} failed");
    let app = context.app.clone();
    let Some(a) = context.state.apps.get(&app) else {
        return Out::err(2, "psql: error: no app\n");
    };
    let Some(pg) = a.pg.as_ref() else {
        return Out::err(2, format!("psql: error: {where_}: Connection refused\n"));
    };
    // :5432 is HAProxy → the leader; :5433 is the local Postgres.
    let target = if port == "5432" {
        pg.master.clone()
    } else {
        Some(context.machine.clone())
    };
    let Some(target) = target.and_then(|t| a.machines.get(&t)) else {
        return Out::err(
            2,
            format!("psql: error: {where_}: server closed the connection unexpectedly\n"),
        );
    };
    let role = role_of(a, target);
    let starting = target.ready_ms.is_none()
        || pg
            .pitr
            .as_ref()
            .is_some_and(|p| p.step != "recovered" && p.step != "failed");
    if target.state != MachineState::Started || starting || target.crash_reason.is_some() {
        if starting && target.state == MachineState::Started {
            return Out::err(
                2,
                format!("psql: error: {where_}: FATAL:  the database system is starting up\n"),
            );
        }
        return Out::err(2, format!("psql: error: {where_}: Connection refused\n"));
    }
    let Some(pw) = password else {
        return Out::err(
            2,
            format!("psql: error: {where_}: fe_sendauth: no password supplied\n"),
        );
    };
    match pg.roles.get(&user) {
        Some(h) if *h == md5_password(&user, &pw) => {}
        _ => {
            return Out::err(2, format!("psql: error: {where_}: FATAL:  password authentication failed for user \"{user}\"\n"));
        }
    }
    if !pg.databases.contains_key(&db) {
        return Out::err(
            2,
            format!("psql: error: {where_}: FATAL:  database \"{db}\" does not exist\n"),
        );
    }
    let read_only = role.role == Some("replica");
    let mut out = String::new();
    for q in sql {
        match run_sql(context, &db, &q, read_only) {
            Ok(SqlResult::Rows(col, rows)) => {
                out.push_str(&render(&col, &rows, tuples_only, unaligned));
            }
            Ok(SqlResult::Tag(tag)) => {
                out.push_str(&tag);
                out.push('\n');
            }
            Err(e) => {
                return Out {
                    code: 1,
                    stdout: out,
                    stderr: format!("ERROR:  {e}\n"),
                    ..Out::default()
                }
            }
        }
    }
    Out::ok(out)
}

/// (user, password, host, port, database) of a libpq URL.
type UrlParts = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn parse_url(s: &str) -> Option<UrlParts> {
    let rest = s.split_once("://")?.1;
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (user, pass) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(a.to_string()), None),
        },
        None => (None, None),
    };
    let (hp, db) = match hostpart.split_once('/') {
        Some((h, d)) => (
            h,
            Some(d.split('?').next().unwrap_or("").to_string()).filter(|d| !d.is_empty()),
        ),
        None => (hostpart, None),
    };
    let (host, port) = if let Some(stripped) = hp.strip_prefix('[') {
        match stripped.split_once(']') {
            Some((h, p)) => (
                Some(h.to_string()),
                p.strip_prefix(':').map(|p| p.to_string()),
            ),
            None => (Some(hp.to_string()), None),
        }
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (Some(h.to_string()), Some(p.to_string())),
            None => (Some(hp.to_string()).filter(|h| !h.is_empty()), None),
        }
    };
    Some((user, pass, host, port, db))
}

enum SqlResult {
    Rows(String, Vec<String>),
    Tag(String),
}

fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn run_sql(
    context: &mut ExecContext<'_>,
    db: &str,
    q: &str,
    read_only: bool,
) -> Result<SqlResult, String> {
    let app = context.app.clone();
    let now = context.now;
    let Some(pg) = context.state.apps.get_mut(&app).and_then(|a| a.pg.as_mut()) else {
        return Err("no cluster".into());
    };
    let q = q.trim().trim_end_matches(';').trim();
    let lower = q.to_ascii_lowercase();
    let one = |col: &str, v: String| Ok(SqlResult::Rows(col.to_string(), vec![v]));
    let param = |name: &str| -> String {
        pg.spec
            .pointer(&format!("/pgParameters/{name}"))
            .and_then(|v| v.as_str())
            .map(|s| s.to_string())
            .unwrap_or_else(|| match name {
                "wal_level" => "replica".into(),
                "max_connections" => "300".into(),
                "archive_mode" => "off".into(),
                "archive_timeout" => "0".into(),
                "archive_command" => "(disabled)".into(),
                _ => String::new(),
            })
    };
    if lower == "select 1" {
        return one("?column?", "1".into());
    }
    if lower == "select version()" {
        let v = pg.pg_version;
        return one(
            "version",
            format!(
                "PostgreSQL {}.{} (Debian {}.{}-1.pgdg110+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 10.2.1-6) 10.2.1 20210110, 64-bit",
                v / 10000,
                v % 10000,
                v / 10000,
                v % 10000
            ),
        );
    }
    if let Some(name) = lower.strip_prefix("show ") {
        let name = name.trim();
        return match name {
            "transaction_read_only" => one(name, if read_only { "on" } else { "off" }.into()),
            "server_version" => one(
                name,
                format!("{}.{}", pg.pg_version / 10000, pg.pg_version % 10000),
            ),
            "archive_mode" | "archive_command" | "archive_timeout" | "wal_level"
            | "max_connections" | "shared_buffers" => one(name, param(name)),
            _ => Err(format!("unrecognized configuration parameter \"{name}\"")),
        };
    }
    if lower == "select pg_is_in_recovery()" {
        return one(
            "pg_is_in_recovery",
            if read_only { "t" } else { "f" }.into(),
        );
    }
    if lower == "select pg_current_wal_lsn()" {
        if read_only {
            return Err("recovery is in progress\nHINT:  WAL control functions cannot be executed during recovery.".into());
        }
        return one("pg_current_wal_lsn", lsn_text(pg.lsn));
    }
    if lower == "select timeline_id from pg_control_checkpoint()" {
        return one("timeline_id", pg.timeline.to_string());
    }
    if lower == "select system_identifier from pg_control_system()" {
        return one("system_identifier", pg.system_identifier.to_string());
    }
    if lower == "select now()" {
        return one("now", rfc3339(now));
    }
    if lower == "select datname from pg_database" {
        let mut names: Vec<String> = vec!["template0".into(), "template1".into()];
        names.extend(pg.databases.keys().cloned());
        return Ok(SqlResult::Rows("datname".into(), names));
    }
    if let Some(rest) = lower.strip_prefix("select count(*) from ") {
        let table = rest.trim().trim_start_matches("public.").to_string();
        let tables = pg.databases.get(db).cloned().unwrap_or_default();
        return match tables.get(&table) {
            Some(n) => one("count", n.to_string()),
            None => Err(format!("relation \"{table}\" does not exist")),
        };
    }
    if let Some(rest) = lower.strip_prefix("create table ") {
        if read_only {
            return Err("cannot execute CREATE TABLE in a read-only transaction".into());
        }
        let rest = rest.trim_start_matches("if not exists ").trim();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            return Err("syntax error at or near \"(\"".into());
        }
        pg.databases
            .entry(db.to_string())
            .or_default()
            .entry(name)
            .or_insert(0);
        pg.lsn += 4096;
        return Ok(SqlResult::Tag("CREATE TABLE".into()));
    }
    if let Some(rest) = lower.strip_prefix("insert into ") {
        if read_only {
            return Err("cannot execute INSERT in a read-only transaction".into());
        }
        let name: String = rest
            .trim()
            .trim_start_matches("public.")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let tables = pg.databases.entry(db.to_string()).or_default();
        let Some(n) = tables.get_mut(&name) else {
            return Err(format!("relation \"{name}\" does not exist"));
        };
        let rows = if let Some((_, values)) = lower.split_once(" values") {
            values.matches("),").count() as u64 + 1
        } else if let Some((_, series)) = lower.split_once("generate_series(") {
            let nums: Vec<u64> = series
                .split([',', ')'])
                .take(2)
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            match nums.as_slice() {
                [a, b] if b >= a => (b - a).saturating_add(1),
                _ => 0,
            }
        } else {
            1
        };
        *n = n.saturating_add(rows);
        pg.lsn = pg.lsn.saturating_add(rows.saturating_mul(128));
        return Ok(SqlResult::Tag(format!("INSERT 0 {rows}")));
    }
    if let Some(rest) = lower.strip_prefix("create database ") {
        if read_only {
            return Err("cannot execute CREATE DATABASE in a read-only transaction".into());
        }
        let name: String = rest
            .trim()
            .trim_matches('"')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        pg.databases.entry(name).or_default();
        return Ok(SqlResult::Tag("CREATE DATABASE".into()));
    }
    if lower == "select pg_switch_wal()" {
        let seg = pg.lsn / crate::walg::SEG_SIZE;
        let old = pg.lsn;
        pg.lsn = (seg + 1) * crate::walg::SEG_SIZE;
        return one("pg_switch_wal", lsn_text(old));
    }
    Err(format!("flysim: statement not emulated: {q}"))
}

fn render(col: &str, rows: &[String], tuples_only: bool, unaligned: bool) -> String {
    let mut s = String::new();
    if unaligned {
        if !tuples_only {
            s.push_str(col);
            s.push('\n');
        }
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        if !tuples_only {
            s.push_str(&format!(
                "({} row{})\n",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            ));
        }
        return s;
    }
    let width = rows
        .iter()
        .map(|r| r.chars().count())
        .chain([col.len()])
        .max()
        .unwrap_or(0);
    if !tuples_only {
        let pad = width - col.len();
        s.push_str(&format!(
            " {}{}{} \n",
            " ".repeat(pad / 2),
            col,
            " ".repeat(pad - pad / 2)
        ));
        s.push_str(&format!("{}\n", "-".repeat(width + 2)));
    }
    for r in rows {
        s.push_str(&format!(" {r:<width$} \n"));
    }
    if !tuples_only {
        s.push_str(&format!(
            "({} row{})\n\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        ));
    }
    s
}
