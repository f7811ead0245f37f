//! The Stolon image on one Machine: `start` at boot (`NewNode`'s required env, cluster init with the
//! image's `InitConfig` spec, replicas, `FLY_RESTORED_FROM`, boot loops), readiness, failover when the
//! master goes away (after failInterval, to a keeper in `PRIMARY_REGION` only), and the archive_timeout
//! tick.

use std::collections::BTreeMap;

use super::{
    auth_mismatches, env_of, init_config, keeper_uid, md5_password, pg_version_of, pglog,
    start_restore, Sizing, USERS,
};
use crate::image::image_of;
use crate::model::*;
use crate::sim::{machine_env, Sim};

/// What `start` learned about the Machine it runs on.
struct Boot {
    gen: u64,
    name: String,
    env: BTreeMap<String, String>,
    volume: Option<String>,
    keeper: String,
    /// `/data/postgres` existed before this boot.
    had_pgdata: bool,
    /// The app named in `/data/restore.lock`, if any.
    restore_lock: Option<String>,
}

/// A Machine finished starting: run the image's `start` (cmd/start/main.go) step by step.
pub(crate) fn boot(state: &mut State, app: &str, machine: &str, at: i64, sim: &Sim) {
    let Some(boot) = prepare(state, app, machine, at) else {
        return;
    };
    let never_healthy = {
        let faults = sim.faults();
        let never = &faults.cfg.never_healthy;
        never.contains(machine) || never.contains(&boot.name) || never.contains(app)
    };
    if !unlock_restored(state, app, machine, at, sim, &boot) {
        return;
    }
    if let Some(reason) = node_failure(&boot.env) {
        crash(state, app, machine, at, sim, boot.gen, reason);
        return;
    }
    if restart_interrupted_restore(state, app, machine, at, sim) {
        return;
    }
    initialise_cluster(state, app, machine, at, &boot);
    if let Some(volume) = volume_mut(state, app, boot.volume.as_ref()) {
        volume.has_pgdata = true;
    }
    if never_healthy {
        state.log(app, machine, at, "keeper   | waiting for db to be ready");
        return;
    }
    let ready_at = at + sim.timing().boot.as_millis() as i64;
    let machine = machine.to_string();
    state.schedule(
        app,
        ready_at,
        TimerKind::Ready {
            machine,
            gen: boot.gen,
        },
    );
}

fn volume_mut<'a>(
    state: &'a mut State,
    app: &str,
    volume: Option<&String>,
) -> Option<&'a mut Volume> {
    state.apps.get_mut(app)?.volumes.get_mut(volume?)
}

/// Log the entrypoint, create the app's cluster record on the first boot, write `/data/.env`.
fn prepare(state: &mut State, app: &str, machine: &str, at: i64) -> Option<Boot> {
    let owner = state.apps.get(app)?;
    let record = owner.machines.get(machine)?;
    let image = image_of(record).to_string();
    let env = machine_env(owner, record);
    let sizing = Sizing::of(owner, record);
    let keeper = keeper_uid(record);
    // `start` writes the file only once `NewNode` found a store URL (see `node_failure`).
    let dotenv = store_url(&env).map(|store_url| {
        let node = store_node(&store_url, &keeper);
        format!(
            "STOLONCTL_CLUSTER_NAME={app}\nSTOLONCTL_STORE_BACKEND=consul\nSTOLONCTL_STORE_URL={store_url}\nSTOLONCTL_STORE_NODE={node}\n"
        )
    });
    let (gen, name, volume) = (record.gen, record.name.clone(), record.volume.clone());
    state.log(
        app,
        machine,
        at,
        "Preparing to run: `docker-entrypoint.sh start` as root",
    );
    state.log(app, machine, at, "listening on [::]:5500 (flycheck)");
    ensure_cluster(state, app, &image, sizing);
    let (had_pgdata, restore_lock) = match volume_mut(state, app, volume.as_ref()) {
        Some(found) => {
            if let Some(dotenv) = dotenv {
                found.files.insert("/data/.env".into(), dotenv);
            }
            (
                found.has_pgdata,
                found.files.get("/data/restore.lock").cloned(),
            )
        }
        None => (false, None),
    };
    Some(Boot {
        gen,
        name,
        env,
        volume,
        keeper,
        had_pgdata,
        restore_lock,
    })
}

/// `FLY_CONSUL_URL`, else `CONSUL_URL` (empty counts as unset: `os.Getenv`).
fn store_url(env: &BTreeMap<String, String>) -> Option<String> {
    ["FLY_CONSUL_URL", "CONSUL_URL"]
        .iter()
        .filter_map(|key| env.get(*key))
        .find(|value| !value.is_empty())
        .cloned()
}

/// `STOLONCTL_STORE_NODE`: the store URL's path joined with the keeper UID, without the leading `/`
/// (postgres-ha `pkg/flypg/node.go`: `strings.TrimPrefix(path.Join(url.Path, keeperUID), "/")`).
fn store_node(store_url: &str, keeper: &str) -> String {
    let after_scheme = store_url
        .split_once("://")
        .map_or(store_url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("", |at| &after_scheme[at..]);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let joined = format!("{}/{keeper}", path.trim_end_matches('/'));
    joined.trim_start_matches('/').to_string()
}

/// Why `flypg.NewNode` fails, which `start` turns into a panic and the restart policy into a boot loop
/// (postgres-ha `pkg/flypg/node.go`, `cmd/start/main.go`): no consul URL, or SU/REPL password unset
/// (`os.LookupEnv`: an empty value exists).
fn node_failure(env: &BTreeMap<String, String>) -> Option<String> {
    if store_url(env).is_none() {
        return Some("FLY_CONSUL_URL or CONSUL_URL are required".into());
    }
    ["SU_PASSWORD", "REPL_PASSWORD"]
        .into_iter()
        .find(|key| !env.contains_key(*key))
        .map(|key| format!("{key} is required"))
}

/// The app's cluster record, created (new system identifier, default spec) by its first boot.
fn ensure_cluster(state: &mut State, app: &str, image: &str, sizing: Sizing) {
    if state
        .apps
        .get(app)
        .and_then(|owner| owner.pg.as_ref())
        .is_some()
    {
        return;
    }
    let system_identifier = 7_000_000_000_000_000_000 + state.rand() % 1_000_000_000_000_000_000;
    let cluster_uid = state.next_id("", 8);
    if let Some(owner) = state.apps.get_mut(app) {
        owner.pg = Some(PgCluster {
            cluster_uid,
            spec: init_config(sizing),
            phase: "normal".into(),
            master: None,
            system_identifier,
            timeline: 1,
            lsn: 0x0100_0028,
            pg_version: pg_version_of(image),
            roles: BTreeMap::new(),
            databases: BTreeMap::new(),
            pitr: None,
            archive_armed: false,
            initialised: false,
            unarchived_commit_ms: None,
            started_archive_mode: BTreeMap::new(),
            wal_push_refused: false,
            ready_commit_ms: None,
        });
    }
}

/// `FLY_RESTORED_FROM` (cmd/start/main.go, pkg/flyunlock): on restored data without a matching lock,
/// rewrite the role passwords to the env's and write the lock. `false` when `start` panicked (the
/// Machine will exit and restart: a boot loop).
fn unlock_restored(
    state: &mut State,
    app: &str,
    machine: &str,
    at: i64,
    sim: &Sim,
    boot: &Boot,
) -> bool {
    let restored_from = boot.env.get("FLY_RESTORED_FROM").filter(|v| !v.is_empty());
    if restored_from.is_none() || boot.restore_lock.as_deref() == Some(app) {
        return true;
    }
    if !boot.had_pgdata {
        state.log(
            app,
            machine,
            at,
            "pg_hba.conf not found: treating as a new standby, nothing to unlock",
        );
        return true;
    }
    state.log(
        app,
        machine,
        at,
        "Restore detected: reconfiguring users to match the environment",
    );
    if let Some(reason) = unlock_failure(sim, &boot.env) {
        crash(state, app, machine, at, sim, boot.gen, reason);
        return false;
    }
    if let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) {
        for (user, var) in USERS {
            if let Some(password) = boot.env.get(var) {
                pg.roles
                    .insert(user.to_string(), md5_password(user, password));
            }
        }
    }
    if let Some(volume) = volume_mut(state, app, boot.volume.as_ref()) {
        volume
            .files
            .insert("/data/restore.lock".into(), app.to_string());
    }
    state.log(
        app,
        machine,
        at,
        "Restore lock written to /data/restore.lock",
    );
    true
}

/// Why unlocking restored data panics: the `restored_from_fails` fault, or missing passwords.
fn unlock_failure(sim: &Sim, env: &BTreeMap<String, String>) -> Option<String> {
    if sim.faults().cfg.restored_from_fails {
        return Some(
            "failed to unlock restored data: failed to establish connection: timeout".to_string(),
        );
    }
    if let Some(error) = unquotable_password(env) {
        return Some(format!("failed to unlock restored data: {error}"));
    }
    let missing: Vec<&str> = ["SU_PASSWORD", "REPL_PASSWORD"]
        .into_iter()
        .filter(|key| env.get(*key).is_none_or(|v| v.is_empty()))
        .collect();
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "failed to unlock restored data: {} is required",
        missing.join(", ")
    ))
}

/// postgres-ha `pkg/flyunlock/unlock.go::createRequiredUsers` runs
/// `fmt.Sprintf("ALTER USER %s WITH PASSWORD '%s'", user, pass)`: a `'` in a password ends the string
/// literal early and the statement is a syntax error (flyctl generates `[A-Za-z0-9]` only).
fn unquotable_password(env: &BTreeMap<String, String>) -> Option<String> {
    USERS.iter().find_map(|(_, var)| {
        let password = env.get(*var)?;
        let (_, after_quote) = password.split_once('\'')?;
        let token: String = after_quote
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '\'')
            .collect();
        let near = if token.is_empty() {
            "'".to_string()
        } else {
            token
        };
        Some(format!(
            "ERROR: syntax error at or near \"{near}\" (SQLSTATE 42601)"
        ))
    })
}

/// `start` panics: log it like Go does and schedule the exit.
fn crash(
    state: &mut State,
    app: &str,
    machine: &str,
    at: i64,
    sim: &Sim,
    gen: u64,
    reason: String,
) {
    state.log(app, machine, at, format!("panic: {reason}"));
    state.log(app, machine, at, "goroutine 1 [running]:\nmain.main()\n\t/go/src/github.com/fly-apps/postgres-ha/cmd/start/main.go:34 +0x2a5");
    if let Ok(record) = state.machine_mut(app, machine) {
        record.crash_reason = Some(reason);
    }
    let exit_at = at + sim.timing().crash.as_millis() as i64;
    let machine = machine.to_string();
    state.schedule(app, exit_at, TimerKind::Crash { machine, gen });
}

/// A PITR interrupted on this keeper (restart, stop, OOM) starts again from scratch. `true` if so.
fn restart_interrupted_restore(
    state: &mut State,
    app: &str,
    machine: &str,
    at: i64,
    sim: &Sim,
) -> bool {
    let Some(pitr) = state
        .apps
        .get_mut(app)
        .and_then(|owner| owner.pg.as_mut())
        .and_then(|pg| pg.pitr.as_mut())
    else {
        return false;
    };
    if pitr.keeper != machine || !(pitr.step == "restoring" || pitr.step == "recovering") {
        return false;
    }
    pitr.attempts += 1;
    state.log(
        app,
        machine,
        at,
        "keeper   | db failed to initialize or resync",
    );
    start_restore(state, app, at, sim);
    true
}

/// The first keeper to boot initialises the cluster with the env's passwords and becomes master.
fn initialise_cluster(state: &mut State, app: &str, machine: &str, at: i64, boot: &Boot) {
    let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) else {
        return;
    };
    if pg.initialised {
        return;
    }
    for (user, var) in USERS {
        if let Some(password) = boot.env.get(var) {
            pg.roles
                .insert(user.to_string(), md5_password(user, password));
        }
    }
    pg.databases.entry("postgres".into()).or_default();
    pg.initialised = true;
    pg.master = Some(machine.to_string());
    state.log(app, machine, at, "sentinel | trying to find initial master");
    state.log(
        app,
        machine,
        at,
        format!(
            "sentinel | initializing cluster using keeper {}",
            boot.keeper
        ),
    );
}

/// Postgres on the Machine accepts connections (the Machine is started and its boot current).
pub(crate) fn ready(state: &mut State, app: &str, machine: &str, at: i64) {
    let env = env_of(state, app, machine).unwrap_or_default();
    let mut need_arm = false;
    let mut converged = false;
    if let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) {
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
        super::postgres_started(pg, machine);
    }
    pglog(
        state,
        app,
        machine,
        at,
        "LOG",
        "database system is ready to accept connections",
    );
    if converged {
        state.log(app, machine, at, "keeper   | db initialized");
        state.log(
            app,
            machine,
            at,
            "sentinel | db converged, cluster initialized (pitr recovered)",
        );
    }
    let bad = state
        .apps
        .get(app)
        .and_then(|owner| owner.pg.as_ref())
        .map(|pg| auth_mismatches(pg, &env))
        .unwrap_or_default();
    for user in bad {
        pglog(
            state,
            app,
            machine,
            at,
            "FATAL",
            &format!("password authentication failed for user \"{user}\""),
        );
    }
    if need_arm {
        state.schedule(app, at + 60_000, TimerKind::Archive);
    }
}

/// The Machine stopped (or exited): Postgres is gone. If it was the master, the sentinel waits
/// failInterval before it declares it failed (see `failover`).
pub(crate) fn halted(state: &mut State, app: &str, machine: &str, at: i64) {
    if let Ok(member) = state.machine_mut(app, machine) {
        member.ready_ms = None;
    } else if let Some(member) = state
        .apps
        .get_mut(app)
        .and_then(|owner| owner.machines.get_mut(machine))
    {
        member.ready_ms = None;
    }
    let Some(pg) = state.apps.get(app).and_then(|owner| owner.pg.as_ref()) else {
        return;
    };
    if pg.master.as_deref() != Some(machine)
        || pg.pitr.as_ref().is_some_and(|p| p.step != "recovered")
    {
        return;
    }
    let wait = fail_interval_ms(&pg.spec);
    let master = machine.to_string();
    state.schedule(app, at + wait, TimerKind::Failover { master });
}

/// The spec's `failInterval` (a Go duration), else stolon's default of 20 s
/// (`internal/cluster/cluster.go`: `DefaultFailInterval = 20 * time.Second`).
fn fail_interval_ms(spec: &serde_json::Value) -> i64 {
    spec.get("failInterval")
        .and_then(|v| v.as_str())
        .and_then(go_duration_ms)
        .unwrap_or(20_000)
}

/// `1h`, `20s`, `500ms`, `1m30s` → milliseconds.
fn go_duration_ms(text: &str) -> Option<i64> {
    let mut total = 0i64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: i64 = rest.get(..digits)?.parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// failInterval passed since `master` went away: unless it is back, the sentinel elects the first
/// ready keeper that can be master. Outside `PRIMARY_REGION` `start` sets
/// `STKEEPER_CAN_BE_MASTER=false` (postgres-ha `cmd/start/main.go`, `Node.IsPrimaryRegion`), and
/// stolon's `findBestNewMasters` skips such keepers; with none eligible the sentinel keeps waiting.
pub(crate) fn failover(state: &mut State, app: &str, master: &str, at: i64) {
    let Some(owner) = state.apps.get(app) else {
        return;
    };
    let Some(pg) = owner.pg.as_ref() else { return };
    if pg.master.as_deref() != Some(master) {
        return;
    }
    let back = owner
        .machines
        .get(master)
        .is_some_and(|member| member.state == MachineState::Started && member.ready_ms.is_some());
    if back {
        return;
    }
    let wait = fail_interval_ms(&pg.spec);
    let candidate = owner
        .machines
        .values()
        .find(|member| {
            member.id != master
                && !member.destroyed
                && member.state == MachineState::Started
                && member.ready_ms.is_some()
                && can_be_master(owner, member)
        })
        .map(|member| member.id.clone());
    state.log(app, master, at, "sentinel | master db is failed");
    let Some(candidate) = candidate else {
        state.log(app, master, at, "sentinel | no eligible masters");
        let master = master.to_string();
        state.schedule(app, at + wait, TimerKind::Failover { master });
        return;
    };
    if let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) {
        pg.master = Some(candidate.clone());
    }
    state.log(
        app,
        &candidate,
        at,
        format!("sentinel | electing db as the new master: {candidate}"),
    );
}

/// The keeper runs in the app's `PRIMARY_REGION`.
fn can_be_master(owner: &App, member: &Machine) -> bool {
    let env = machine_env(owner, member);
    env.get("PRIMARY_REGION")
        .is_some_and(|primary| *primary == member.region)
}

/// archive_timeout: the master switches WAL; archive_command runs in its env.
pub(crate) fn archive_tick(state: &mut State, app: &str, at: i64, sim: &Sim) {
    if !state.apps.contains_key(app) {
        return;
    }
    let timeout_ms = sim.timing().archive_timeout.as_millis().max(1000) as i64;
    state.schedule(app, at + timeout_ms, TimerKind::Archive);
    crate::walg::archive_segment(state, app, at);
}

// ----------------------------------------------------------------------------------------------
// stolonctl, stolonctl-run
// ----------------------------------------------------------------------------------------------
