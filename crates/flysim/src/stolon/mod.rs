//! The Stolon image (`flyio/postgres:*`, fly-apps/postgres-ha): boot, roles, checks, PITR, archiving,
//! and the `stolonctl`, `stolonctl-run` and `psql` commands run by exec.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::model::*;
use crate::sim::{machine_env, Sim};

mod lifecycle;
mod pitr;
mod psql;
mod sql;
mod stolonctl;

pub(crate) use lifecycle::{archive_tick, boot, failover, halted, ready};
pub(crate) use pitr::{pitr_step, start_restore};
pub(crate) use psql::{missing_socket, psql};
pub(crate) use stolonctl::{stolonctl, stolonctl_run};

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

/// What postgres-ha's `InitConfig` sizes the spec from: the VM's memory, the `/data` volume and
/// `PG_MAJOR`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizing {
    pub memory_mb: u64,
    pub disk_gb: u64,
    pub pg_major: u32,
}

impl Sizing {
    /// A Machine's sizing: `guest.memory_mb` (Fly's default 256), its volume, its image's major.
    pub(crate) fn of(owner: &App, member: &Machine) -> Self {
        let memory_mb = member
            .config
            .pointer("/guest/memory_mb")
            .and_then(|v| v.as_u64())
            .unwrap_or(256);
        let disk_gb = member
            .volume
            .as_ref()
            .and_then(|id| owner.volumes.get(id))
            .map_or(1, |volume| volume.size_gb);
        let pg_major = pg_version_of(crate::image::image_of(member)) / 10000;
        Self {
            memory_mb,
            disk_gb,
            pg_major,
        }
    }
}

/// The cluster spec the image generates (postgres-ha `pkg/flypg/config.go::InitConfig`) for a new
/// cluster: only these fields, so stolon's defaults (`failInterval` 20 s, …) apply to the rest.
pub(crate) fn init_config(sizing: Sizing) -> Value {
    let memory = sizing.memory_mb;
    let disk_mb = sizing.disk_gb.saturating_mul(1024);
    let max_wal_mb = disk_mb / 10;
    let min_wal_mb = (max_wal_mb / 4).max(32);
    let mut spec = json!({
        "initMode": "new",
        "existingConfig": {},
        "maxStandbysPerSender": 50,
        "deadKeeperRemovalInterval": "1h",
        "pgParameters": {
            "random_page_cost": "1.1",
            "effective_io_concurrency": "200",
            "shared_buffers": format!("{}MB", memory / 4),
            "effective_cache_size": format!("{}MB", 3 * memory / 4),
            "maintenance_work_mem": format!("{}MB", (memory / 20).max(64)),
            "work_mem": format!("{}MB", (memory / 64).max(4)),
            "max_connections": "300",
            "max_worker_processes": "8",
            "max_parallel_workers": "8",
            "max_parallel_workers_per_gather": "2",
            "wal_compression": "on",
            "archive_mode": "on",
            "archive_command": "if [ $ENABLE_WALG ]; then /usr/local/bin/wal-g wal-push \"%p\"; fi",
            "archive_timeout": "60",
            "max_wal_size": format!("{max_wal_mb}MB"),
            "min_wal_size": format!("{min_wal_mb}MB"),
        }
    });
    let keep = match sizing.pg_major {
        13.. => Some(("wal_keep_size", "0")),
        12 => Some(("wal_keep_segments", "0")),
        _ => None,
    };
    if let Some((name, value)) = keep {
        spec["pgParameters"][name] = json!(value);
    }
    spec
}

/// The spec's `pgParameters` as strings.
pub(crate) fn pg_parameters(pg: &PgCluster) -> BTreeMap<String, String> {
    pg.spec
        .get("pgParameters")
        .and_then(|v| v.as_object())
        .map(|parameters| {
            parameters
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The `archive_mode` the master's Postgres started with, if flysim saw it start.
pub(crate) fn running_archive_mode(pg: &PgCluster) -> Option<String> {
    let master = pg.master.as_ref()?;
    pg.started_archive_mode.get(master).cloned()
}

/// Postgres started on `machine`: remember its postmaster-context `archive_mode` (stolon
/// `internal/cluster/cluster.go`: `automaticPgRestart` defaults to false, so a later spec change waits
/// for a restart; flyctl `config_update.go::isRestartRequired`).
pub(crate) fn postgres_started(pg: &mut PgCluster, machine: &str) {
    let mode = pg
        .spec
        .pointer("/pgParameters/archive_mode")
        .and_then(|v| v.as_str())
        .unwrap_or("off")
        .to_string();
    pg.started_archive_mode.insert(machine.to_string(), mode);
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

pub(crate) fn keeper_uid(member: &Machine) -> String {
    let groups: Vec<&str> = member.private_ip.split(':').collect();
    if groups.len() >= 4 {
        groups[groups.len() - 4..].concat()
    } else {
        member.id.clone()
    }
}

pub(super) fn pglog(state: &mut State, app: &str, machine: &str, at: i64, level: &str, msg: &str) {
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
    state.log(
        app,
        machine,
        at,
        format!("keeper   | {stamp} [{pid}] {level}:  {msg}"),
    );
}

pub(super) fn env_of(state: &State, app: &str, machine: &str) -> Option<BTreeMap<String, String>> {
    let owner = state.apps.get(app)?;
    let member = owner.machines.get(machine)?;
    Some(machine_env(owner, member))
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

pub(crate) struct Role {
    pub role: Option<&'static str>,
    pub problem: Option<String>,
}

/// What the `role` check would say for this Machine now.
pub(crate) fn role_of(owner: &App, member: &Machine) -> Role {
    let fail = |p: &str| Role {
        role: None,
        problem: Some(p.to_string()),
    };
    if member.state != MachineState::Started {
        return fail("machine is not running");
    }
    if let Some(r) = &member.crash_reason {
        return fail(&format!("failed to connect to local node: {r}"));
    }
    let Some(pg) = owner.pg.as_ref() else {
        return fail("failed to connect to local node: connection refused");
    };
    if let Some(p) = &pg.pitr {
        // stolon forces hot_standby=on (keeper.go `mandatoryPGParameters`): during archive recovery
        // the keeper's Postgres answers `transaction_read_only = on`, which the check reads as replica.
        if p.step == "recovering" && p.keeper == member.id {
            return Role {
                role: Some("replica"),
                problem: None,
            };
        }
        if p.step != "recovered" {
            return fail(
                "failed to connect to local node: FATAL: the database system is starting up",
            );
        }
    }
    if member.ready_ms.is_none() {
        return fail(
            "failed to connect to local node: dial tcp [::1]:5433: connect: connection refused",
        );
    }
    let env = machine_env(owner, member);
    let bad = auth_mismatches(pg, &env);
    if bad.contains(&"flypgadmin") {
        return fail("failed to connect to local node: FATAL: password authentication failed for user \"flypgadmin\"");
    }
    // postgres-ha `pkg/flycheck/role.go`: above 90 % disk use the check answers `readonly`.
    if disk_used_percent(owner, member) > 90 {
        return Role {
            role: Some("readonly"),
            problem: None,
        };
    }
    if pg.master.as_deref() == Some(&member.id) {
        Role {
            role: Some("leader"),
            problem: None,
        }
    } else {
        if bad.contains(&"repluser") || pgpass_garbles(env.get("REPL_PASSWORD")) {
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

/// Disk use of the Machine's `/data` volume, in percent.
fn disk_used_percent(owner: &App, member: &Machine) -> u64 {
    member
        .volume
        .as_ref()
        .and_then(|id| owner.volumes.get(id))
        .map_or(10, Volume::used_percent)
}

/// stolon writes the replication password into `.pgpass` unescaped
/// (`internal/postgresql/postgresql.go`: `fmt.Sprintf("%s:%s:*:%s:%s\n", host, port, user, password)`);
/// libpq reads the password up to the next `:` and drops each backslash, so a replica's resync
/// (pg_basebackup) authenticates with a different password.
fn pgpass_garbles(password: Option<&String>) -> bool {
    password.is_some_and(|p| p.contains(':') || p.contains('\\'))
}

/// `checks` of a Machine as Fly reports them (Stolon image: pg, role, vm on :5500).
pub(crate) fn checks(owner: &App, member: &Machine, now: i64) -> Vec<Value> {
    let role = role_of(owner, member);
    // The time of this run (the checks run on their interval: `sim::timers`).
    let ts = rfc3339(now);
    let (status, role_out, pg_out) = match (&role.role, &role.problem) {
        (Some(name), _) => (
            "passing",
            name.to_string(),
            "[✓] connections: 8 used, 3 reserved, 300 max (4.12ms)".to_string(),
        ),
        (None, Some(problem)) => ("critical", problem.clone(), problem.clone()),
        _ => ("critical", "unknown".into(), "unknown".into()),
    };
    let vm_status = if member.state == MachineState::Started {
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
