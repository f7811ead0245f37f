//! The plan's actions: the exact Machines API calls and exec argv the engine runs, in order, with every secret
//! masked as where it comes from (`<escrowed SU password>`); the Stolon init spec; the pgParameters the restored
//! server needs; the duration estimate. Pure functions of what pre-flight read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One step the engine runs. Each names its Fly call (method and path, or the exec argv) so the plan shows
/// exactly what will happen; values that are secrets appear only as `<…>` placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// `POST /v1/apps?wait=true`, after `GET /v1/apps/{app}` says it does not exist (look before create).
    CreateApp { app: String, org: String },
    /// GraphQL `enablePostgresConsul(input: {appId})`: the image panics without `FLY_CONSUL_URL`.
    EnableConsul { app: String },
    /// `POST /v1/apps/{app}/secrets` (`{"values": {name: value | null}}`): a value is a placeholder for an
    /// escrowed or computed value, or plain when it is no secret; `None` unsets the secret.
    SetSecrets {
        app: String,
        values: BTreeMap<String, Option<String>>,
    },
    /// `POST /v1/apps/{app}/machines/{id}` with the machine's full config and the new `min_secrets_version`:
    /// secrets reach a machine only on an update or start.
    UpdateMachine { app: String, why: String },
    /// The escrow's login proof on the new machine (`fly::escrow::prove_logins`: one login per role, the
    /// password on exec stdin, never in argv), after `pg_is_in_recovery()` is false.
    ProveLogins { app: String },
    /// An existing cluster: `POST /v1/apps/{app}/machines/{id}/stop` for every started machine but one (the
    /// leader, else the first started): the PITR goes to a random registered keeper, so only the kept one may
    /// run. The ids stopped are recorded, so cancel and clean-up start them again; nothing is ever destroyed.
    KeepOneMachine { app: String },
    /// `POST /v1/apps/{app}/volumes`.
    CreateVolume {
        app: String,
        name: String,
        region: String,
        size_gb: i64,
    },
    /// `POST /v1/apps/{app}/machines` with the source's config and image, the new volume, `min_secrets_version`.
    CreateMachine {
        app: String,
        region: String,
        image: String,
        memory_mb: i64,
        cpus: i64,
        cpu_kind: String,
        env: BTreeMap<String, String>,
    },
    /// `GET /v1/apps/{app}/machines/{id}/wait?state=…`.
    Wait { app: String, state: String },
    /// `POST /v1/apps/{app}/machines/{id}/exec` with this argv.
    Exec {
        app: String,
        argv: Vec<String>,
        why: String,
    },
    /// Exactly one keeper registered and healthy before the init (this argv, `stolonctl clusterdata read`,
    /// polled; machines other than the run's are stopped first).
    KeeperCheck { app: String, argv: Vec<String> },
    /// `stolonctl init` in pitr mode with the plan's spec, launched detached by this argv (a PITR outlives any
    /// exec deadline); not launched again when the cluster data already holds this spec.
    PitrInit {
        app: String,
        argv: Vec<String>,
        why: String,
    },
    /// The PITR followed to the end with this argv (`stolonctl clusterdata read`), machine events and logs:
    /// phase, percentage and time left stored on the step.
    PitrProgress { app: String, argv: Vec<String> },
    /// SQL over exec (passwords on stdin): out of recovery, a timeline newer than the backup's, and the
    /// user's read-only assertion, if any, true.
    Verify {
        app: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assertion: Option<String>,
        /// The database the assertion runs in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
    },
    /// The new cluster's first base backup, launched detached by this argv and followed to its sentinel in
    /// the new prefix.
    BackupPush {
        app: String,
        argv: Vec<String>,
        why: String,
    },
}

impl Step {
    /// The Fly call, as a line.
    pub fn call(&self) -> String {
        match self {
            Step::CreateApp { .. } => "POST /v1/apps?wait=true".into(),
            Step::EnableConsul { .. } => "GraphQL enablePostgresConsul".into(),
            Step::SetSecrets { app, .. } => format!("POST /v1/apps/{app}/secrets"),
            Step::CreateVolume { app, .. } => format!("POST /v1/apps/{app}/volumes"),
            Step::CreateMachine { app, .. } => format!("POST /v1/apps/{app}/machines"),
            Step::KeepOneMachine { app } => {
                format!("POST /v1/apps/{app}/machines/<each other machine>/stop")
            }
            Step::UpdateMachine { app, .. } => {
                format!("POST /v1/apps/{app}/machines/<new machine>")
            }
            Step::ProveLogins { app } => {
                format!("POST /v1/apps/{app}/machines/<new machine>/exec (one per role)")
            }
            Step::Wait { app, state } => {
                format!("GET /v1/apps/{app}/machines/<new machine>/wait?state={state}")
            }
            Step::Exec { app, .. }
            | Step::KeeperCheck { app, .. }
            | Step::PitrInit { app, .. }
            | Step::PitrProgress { app, .. }
            | Step::BackupPush { app, .. } => {
                format!("POST /v1/apps/{app}/machines/<new machine>/exec")
            }
            Step::Verify { app, .. } => {
                format!("POST /v1/apps/{app}/machines/<new machine>/exec (psql, password on stdin)")
            }
        }
    }
}

/// The parameters hot standby (which Stolon forces on) refuses to start below the primary's values.
pub const NEVER_BELOW_SOURCE: [&str; 5] = [
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
];

/// The image's conditional archive command (fly-apps/postgres-ha `pkg/flypg/config.go`): archives only while
/// `ENABLE_WALG` is set, so the restored cluster writes nothing until Walden turns archiving on (a guide-style
/// unconditional `wal-g wal-push` would write into the source's archive).
pub const ARCHIVE_COMMAND: &str =
    "if [ $ENABLE_WALG ]; then /usr/local/bin/wal-g wal-push \"%p\"; fi";

/// What is used for the [`NEVER_BELOW_SOURCE`] parameters when the source cannot be read: the image's
/// `InitConfig` values (`max_connections` 300, `max_worker_processes` 8) and PostgreSQL's defaults.
pub const FALLBACK: [(&str, &str); 5] = [
    ("max_connections", "300"),
    ("max_worker_processes", "8"),
    ("max_wal_senders", "10"),
    ("max_prepared_transactions", "0"),
    ("max_locks_per_transaction", "64"),
];

/// The pgParameters for the init spec: the source's (when read), the conditional archive command, and each of
/// [`NEVER_BELOW_SOURCE`] at least the source's (else [`FALLBACK`]).
pub fn pg_parameters(source: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    let mut out = source.cloned().unwrap_or_default();
    for (name, fallback) in FALLBACK {
        let from_source = source
            .and_then(|s| s.get(name))
            .and_then(|v| v.parse::<i64>().ok());
        let keep = from_source
            .map(|v| v.to_string())
            .unwrap_or_else(|| fallback.to_owned());
        out.insert(name.to_owned(), keep);
    }
    out.insert("archive_mode".into(), "on".into());
    out.insert("archive_command".into(), ARCHIVE_COMMAND.into());
    out
}

/// The `pgParameters` of a `stolonctl clusterdata read` document (`cluster.spec.pgParameters`), as strings.
pub fn parameters_of_clusterdata(doc: &str) -> Option<BTreeMap<String, String>> {
    let v: Value = serde_json::from_str(doc).ok()?;
    let params = v.pointer("/cluster/spec/pgParameters")?.as_object()?;
    Some(
        params
            .iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), s)
            })
            .collect(),
    )
}

/// The Stolon init spec for PITR: the chosen backup by name (never `LATEST` unless it is that one), wal-g's
/// restore command, the recovery target settings of the walg plan (the timeline always stated) and the full
/// pgParameters.
pub fn init_spec(recovery: &walg::Plan, params: &BTreeMap<String, String>) -> Value {
    let mut target = serde_json::Map::new();
    if let Some(t) = &recovery.recovery_target_time {
        target.insert("recoveryTargetTime".into(), json!(t));
    }
    if let Some(l) = &recovery.recovery_target_lsn {
        target.insert("recoveryTargetLsn".into(), json!(l));
    }
    if let Some(i) = &recovery.recovery_target {
        target.insert("recoveryTarget".into(), json!(i));
    }
    // Always the plan's timeline by number: with no target the keeper would set `latest`, which follows any
    // newer timeline in the archive, another cluster's included.
    target.insert(
        "recoveryTargetTimeline".into(),
        json!(recovery.recovery_target_timeline),
    );
    let mut pitr = json!({
        "dataRestoreCommand": format!("wal-g backup-fetch %d {}", recovery.backup),
        "archiveRecoverySettings": {"restoreCommand": "wal-g wal-fetch \"%f\" \"%p\""},
    });
    pitr["recoveryTargetSettings"] = Value::Object(target);
    json!({"initMode": "pitr", "pitrConfig": pitr, "pgParameters": params})
}

/// Default rates for the estimate (stated in the plan): fetching and unpacking a base backup, replaying WAL,
/// and a fixed time for creating the app, volume and machine and the image's boot.
pub const FETCH_BYTES_PER_SEC: u64 = 50 * 1024 * 1024;
pub const REPLAY_BYTES_PER_SEC: u64 = 20 * 1024 * 1024;
pub const FIXED_SECS: u64 = 180;

/// Estimated seconds: stored backup bytes at [`FETCH_BYTES_PER_SEC`], WAL (full segments) at
/// [`REPLAY_BYTES_PER_SEC`], plus [`FIXED_SECS`].
pub fn estimate_secs(backup_stored: u64, wal_replay: u64) -> u64 {
    FIXED_SECS + backup_stored / FETCH_BYTES_PER_SEC + wal_replay / REPLAY_BYTES_PER_SEC
}

/// What the engine does, in order: app, consul, secrets, volume, machine, wait, the one keeper, the PITR
/// init (detached), polling, and after verification the new archive. `secret_names` are the escrowed wal-g
/// settings the restore reads with (names only).
pub struct StepsInput<'a> {
    pub org: &'a str,
    pub source_app: &'a str,
    pub app: &'a str,
    pub region: &'a str,
    pub image: &'a str,
    pub memory_mb: i64,
    pub cpus: i64,
    pub cpu_kind: &'a str,
    pub volume_gb: i64,
    pub escrow_version: i64,
    pub storage_names: &'a [String],
    pub prefix_variable: &'a str,
    pub new_prefix: &'a str,
    pub spec: &'a Value,
    /// The user's read-only assertion query, checked by [`super::checks::assertion`] before it gets here, and
    /// its database.
    pub assertion: Option<&'a str>,
    pub assertion_database: Option<&'a str>,
}

/// Where the detached init and backup record that they were launched (the run's own volume) and log.
pub const PITR_MARKER: &str = "/data/walden-pitr.started";
pub const PITR_LOG: &str = "/data/walden-pitr.log";
pub const BACKUP_MARKER: &str = "/data/walden-backup.started";
pub const BACKUP_LOG: &str = "/data/walden-backup.log";

/// The detached `stolonctl init` (`$1` is the spec). Launched once: the marker (the launch's Unix time, written
/// before the launch) is printed and nothing runs again when it exists, so a lost answer or a crash between the
/// launch and its record never starts the restore over (a second init wipes the data dir and starts again).
/// `setsid nohup … > log 2>&1 &` is how a process outlives a non-interactive exec session (util-linux
/// `setsid(1)`, coreutils `nohup(1)`; its output goes to the volume, not to the exec's closed pipes).
/// `stolonctl` needs `/data/.env` exported: exec runs a non-interactive shell (fly-apps/postgres-ha
/// `cmd/start/main.go` writes the file; only interactive shells read `ENV`).
pub const PITR_LAUNCH_SCRIPT: &str = "export $(cat /data/.env | xargs)
cat /data/walden-pitr.started 2>/dev/null && exit 0
date -u +%s > /data/walden-pitr.started
cat /data/walden-pitr.started
setsid nohup stolonctl init --yes \"$1\" > /data/walden-pitr.log 2>&1 &
";

/// The detached first base backup of the restored cluster, launched once like [`PITR_LAUNCH_SCRIPT`]. HAProxy's
/// :5432 reaches the leader, which the one machine is; the password comes from the machine's own environment,
/// never from the argv. wal-g reads the (new) prefix from the machine's secrets.
pub const BACKUP_PUSH_SCRIPT: &str = "cat /data/walden-backup.started 2>/dev/null && exit 0
date -u +%s > /data/walden-backup.started
cat /data/walden-backup.started
PGHOST=localhost PGPORT=5432 PGUSER=postgres PGPASSWORD=\"$OPERATOR_PASSWORD\" setsid nohup wal-g backup-push /data/postgres > /data/walden-backup.log 2>&1 &
";

/// argv of the detached init: the spec is `$1`, never spliced into the script.
pub fn pitr_launch_argv(spec: &str) -> Vec<String> {
    vec![
        "bash".into(),
        "-c".into(),
        PITR_LAUNCH_SCRIPT.into(),
        "walden-pitr".into(),
        spec.to_owned(),
    ]
}

/// The escrowed SU/REPL/OPERATOR passwords, the source's storage settings (read only) and
/// `FLY_RESTORED_FROM`: what the restored cluster's secrets get, placeholders for every secret.
fn restore_secrets(i: &StepsInput<'_>) -> BTreeMap<String, Option<String>> {
    let mut secrets = BTreeMap::new();
    for (field, label) in [
        ("SU_PASSWORD", "SU"),
        ("REPL_PASSWORD", "REPL"),
        ("OPERATOR_PASSWORD", "OPERATOR"),
    ] {
        secrets.insert(
            field.to_owned(),
            Some(format!(
                "<escrowed {label} password, version {}>",
                i.escrow_version
            )),
        );
    }
    for name in i.storage_names {
        secrets.insert(
            name.clone(),
            Some(format!(
                "<escrowed {name} of {}, version {} (read only)>",
                i.source_app, i.escrow_version
            )),
        );
    }
    secrets.insert("FLY_RESTORED_FROM".into(), Some(i.source_app.to_owned()));
    secrets
}

/// What the engine does for a new cluster (see [`StepsInput`]).
pub fn steps(i: &StepsInput<'_>) -> Vec<Step> {
    let app = i.app.to_owned();
    let mut secrets = restore_secrets(i);
    secrets.insert(
        "FLY_CONSUL_URL".into(),
        Some("<from enablePostgresConsul>".into()),
    );
    let mut steps = vec![
        Step::CreateApp {
            app: app.clone(),
            org: i.org.to_owned(),
        },
        Step::EnableConsul { app: app.clone() },
        Step::SetSecrets {
            app: app.clone(),
            values: secrets,
        },
        Step::CreateVolume {
            app: app.clone(),
            name: "pg_data".into(),
            region: i.region.to_owned(),
            size_gb: i.volume_gb,
        },
        Step::CreateMachine {
            app: app.clone(),
            region: i.region.to_owned(),
            image: i.image.to_owned(),
            memory_mb: i.memory_mb,
            cpus: i.cpus,
            cpu_kind: i.cpu_kind.to_owned(),
            env: BTreeMap::from([("PRIMARY_REGION".to_owned(), i.region.to_owned())]),
        },
        Step::Wait {
            app: app.clone(),
            state: "started".into(),
        },
    ];
    steps.extend(restore_and_after(i));
    steps
}

/// What the engine does for an existing cluster made with `fly pg create` (the seed guide's path): no app,
/// Consul, volume or machine is created; its secrets are replaced, all machines but one stopped, the kept one
/// updated with the new secrets version; then the same keeper check, PITR and after as a new cluster.
pub fn steps_existing(i: &StepsInput<'_>) -> Vec<Step> {
    let app = i.app.to_owned();
    let mut steps = vec![
        Step::SetSecrets { app: app.clone(), values: restore_secrets(i) },
        Step::KeepOneMachine { app: app.clone() },
        Step::UpdateMachine {
            app: app.clone(),
            why: "the escrowed passwords and FLY_RESTORED_FROM reach the kept machine (secrets reach a machine \
                  only on an update or a start)"
                .into(),
        },
    ];
    steps.extend(restore_and_after(i));
    steps
}

/// The keeper check, the PITR, verification and the new archive: the same for both destinations.
fn restore_and_after(i: &StepsInput<'_>) -> Vec<Step> {
    let app = i.app.to_owned();
    let spec = i.spec.to_string();
    let mut after = BTreeMap::new();
    after.insert("FLY_RESTORED_FROM".to_owned(), None);
    after.insert(i.prefix_variable.to_owned(), Some(i.new_prefix.to_owned()));
    after.insert("ENABLE_WALG".to_owned(), Some("true".to_owned()));
    vec![
        Step::KeeperCheck {
            app: app.clone(),
            argv: fly::stolon::stolonctl_argv(&["clusterdata", "read"]),
        },
        Step::PitrInit {
            app: app.clone(),
            argv: pitr_launch_argv(&spec),
            why: "start the point-in-time recovery (launched detached, then polled)".into(),
        },
        Step::PitrProgress {
            app: app.clone(),
            argv: fly::stolon::stolonctl_argv(&["clusterdata", "read"]),
        },
        Step::Verify {
            app: app.clone(),
            assertion: i.assertion.map(str::to_owned),
            database: i
                .assertion
                .map(|_| i.assertion_database.unwrap_or("postgres").to_owned()),
        },
        Step::ProveLogins { app: app.clone() },
        Step::SetSecrets {
            app: app.clone(),
            values: after,
        },
        Step::UpdateMachine {
            app: app.clone(),
            why: "FLY_RESTORED_FROM unset (else a replica rebooting with data starts outside Stolon), the new \
                  prefix and archiving on reach the machine"
                .into(),
        },
        Step::BackupPush {
            app,
            argv: vec!["bash".into(), "-c".into(), BACKUP_PUSH_SCRIPT.into(), "walden-backup".into()],
            why: "the new cluster's first base backup into its own prefix (detached, followed to its sentinel)".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_spec_names_the_backup_and_the_timeline() {
        let plan = walg::Plan {
            backup: "base_000000010000000000000002".into(),
            backup_timeline: 1,
            delta_chain: Vec::new(),
            backup_finish_time: None,
            recovery_target_time: None,
            recovery_target_lsn: None,
            recovery_target: None,
            recovery_target_timeline: "1".into(),
            recovery_target_inclusive: None,
            recovery_target_action: "promote".into(),
            wal_from: String::new(),
            wal_to: String::new(),
            wal_segments: 0,
            wal_bytes: 0,
            notes: Vec::new(),
        };
        let spec = init_spec(&plan, &pg_parameters(None));
        assert_eq!(
            spec["pitrConfig"]["dataRestoreCommand"],
            "wal-g backup-fetch %d base_000000010000000000000002"
        );
        assert_eq!(
            spec["pitrConfig"]["recoveryTargetSettings"]["recoveryTargetTimeline"],
            "1"
        );
        assert_eq!(spec["pgParameters"]["archive_command"], ARCHIVE_COMMAND);
    }

    #[test]
    fn parameters_never_below_source() {
        let mut src = BTreeMap::new();
        src.insert("max_connections".to_owned(), "500".to_owned());
        src.insert("archive_command".to_owned(), "wal-g wal-push %p".to_owned());
        let p = pg_parameters(Some(&src));
        assert_eq!(p["max_connections"], "500");
        assert_eq!(p["max_worker_processes"], "8");
        assert_eq!(p["archive_command"], ARCHIVE_COMMAND);
        assert_eq!(pg_parameters(None)["max_connections"], "300");
    }
}
