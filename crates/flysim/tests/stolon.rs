//! The Stolon image: roles, stolonctl, psql, wal-g backup-push/backup-list into a real wal-g layout, and the
//! PITR restore path with its failure modes, over simulated time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use std::path::Path;

use base64::Engine as _;
use common::*;
use flysim::Faults;
use serde_json::{json, Value};

const IMAGE: &str = "flyio/postgres:14.6";

/// Long enough for a Machine started just now to be ready and its health checks to run again (they run as it
/// starts and every 15 s after).
const CHECK_RUN_SECS: u64 = 20;

fn pitr_spec(target: Option<&str>) -> String {
    let mut spec = json!({
        "initMode": "pitr",
        "pitrConfig": {
            "dataRestoreCommand": "wal-g backup-fetch %d LATEST",
            "archiveRecoverySettings": {"restoreCommand": "wal-g wal-fetch \"%f\" \"%p\""}
        }
    });
    if let Some(t) = target {
        spec["pitrConfig"]["recoveryTargetSettings"] = json!({"recoveryTargetTime": t});
    }
    spec.to_string()
}

/// The guide's init: full pgParameters with an unconditional archive_command, into the source's WAL prefix.
fn archiving_pitr_spec() -> String {
    let mut spec: Value = serde_json::from_str(&pitr_spec(None)).unwrap();
    spec["pgParameters"] = json!({"archive_mode": "on", "archive_timeout": "60",
        "archive_command": "wal-g wal-push %p"});
    spec.to_string()
}

async fn psql(env: &Env, app: &str, id: &str, sql: &str) -> Value {
    env.exec(
        app,
        id,
        &[
            "psql",
            "-h",
            "localhost",
            "-p",
            "5433",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-tA",
            "-c",
            sql,
        ],
    )
    .await
}

/// The set-up every cluster here starts with: app `app` with `secrets`, one Machine of `image` in iad (the
/// primary region), and 10 s for it to boot (and, when it can, become the leader). Returns the secrets' version
/// (for more Machines) and the Machine's id.
async fn first_machine(env: &Env, app: &str, image: &str, secrets: Value) -> (u64, String) {
    env.create_app(app).await;
    let v = env.set_secrets(app, secrets).await;
    let id = env.pg_machine(app, "iad", image, v).await;
    env.advance(10);
    (v, id)
}

/// A 2-node source cluster with 1000 rows and one base backup in `dir`. Returns (leader, replica).
async fn source_cluster(env: &Env, dir: &Path) -> (String, String) {
    let mut s = pg_secrets("su-src", "repl-src", "op-src", dir.to_str().unwrap());
    s["ENABLE_WALG"] = json!("true");
    let (v, a) = first_machine(env, "src-db", IMAGE, s).await;
    let b = env.pg_machine("src-db", "iad", IMAGE, v).await;
    // Ready after a few seconds; the checks report it at their next 15 s run.
    env.advance(20);
    assert_eq!(
        env.role("src-db", &a).await,
        ("passing".into(), "leader".into())
    );
    assert_eq!(
        env.role("src-db", &b).await,
        ("passing".into(), "replica".into())
    );
    let out = psql(env, "src-db", &a, "CREATE TABLE orders (id int)").await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let out = psql(
        env,
        "src-db",
        &a,
        "INSERT INTO orders SELECT generate_series(1, 1000)",
    )
    .await;
    assert_eq!(out["stdout"], "INSERT 0 1000\n");
    let out = env
        .exec(
            "src-db",
            &a,
            &[
                "sh",
                "-c",
                "PGUSER=postgres PGPASSWORD=$OPERATOR_PASSWORD wal-g backup-push /data/postgres",
            ],
        )
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(
        out["stderr"]
            .as_str()
            .unwrap()
            .contains("Wrote backup with name base_"),
        "{out}"
    );
    env.advance(120); // archive_timeout passes twice: WAL after the backup gets archived
    (a, b)
}

#[tokio::test]
async fn roles_stolonctl_psql_and_backup_layout() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, replica) = source_cluster(&env, dir.path()).await;

    // stolonctl needs /data/.env exported (exec's sh -c is not an interactive shell).
    let out = env.exec("src-db", &leader, &["stolonctl", "status"]).await;
    assert_eq!(out["exit_code"], 1);
    assert!(out["stderr"]
        .as_str()
        .unwrap()
        .contains("cluster name required"));
    let out = env.stolonctl("src-db", &leader, &["status"]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert!(
        out["stdout"].as_str().unwrap().contains("Master Keeper:"),
        "{out}"
    );
    assert!(out["stdout"].as_str().unwrap().contains("(master)"));

    // The guide's patch, passed as one argv element.
    let patch = r#"{"pgParameters": {"archive_mode": "yes", "archive_timeout": "60", "archive_command": "wal-g wal-push %p"}}"#;
    let out = env
        .stolonctl("src-db", &leader, &["update", "--patch", patch])
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let spec = env.stolonctl("src-db", &leader, &["spec"]).await;
    let spec: Value = serde_json::from_str(spec["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(spec["pgParameters"]["archive_command"], "wal-g wal-push %p");
    assert_eq!(
        spec["maxStandbysPerSender"], 50,
        "the patch merges, it does not replace"
    );

    // stolonctl-run: base64 args, JSON line, always exit 0.
    let enc = base64::engine::general_purpose::STANDARD
        .encode("update --patch '{\"pgParameters\": {\"archive_timeout\": \"30\"}}'");
    let out = env.exec("src-db", &leader, &["stolonctl-run", &enc]).await;
    assert_eq!(out["exit_code"], 0);
    let line: Value = serde_json::from_str(out["stdout"].as_str().unwrap().trim()).unwrap();
    assert_eq!(line["success"], true, "{line}");
    let enc = base64::engine::general_purpose::STANDARD.encode("update --patch '{not json'");
    let out = env.exec("src-db", &leader, &["stolonctl-run", &enc]).await;
    assert_eq!(out["exit_code"], 0);
    let line: Value = serde_json::from_str(out["stdout"].as_str().unwrap().trim()).unwrap();
    assert_eq!(line["success"], false);

    // printenv shows the secrets (how escrow reads them); psql sanity queries.
    let out = env
        .exec("src-db", &leader, &["printenv", "SU_PASSWORD"])
        .await;
    assert_eq!(out["stdout"], "su-src\n");
    assert_eq!(
        psql(&env, "src-db", &leader, "select count(*) from orders").await["stdout"],
        "1000\n"
    );
    assert_eq!(
        psql(&env, "src-db", &replica, "SHOW transaction_read_only").await["stdout"],
        "on\n"
    );
    let out = psql(&env, "src-db", &replica, "INSERT INTO orders VALUES (1)").await;
    assert_eq!(out["exit_code"], 1);
    let out = env
        .exec(
            "src-db",
            &leader,
            &[
                "psql",
                "postgres://postgres:wrong@localhost:5432/postgres",
                "-c",
                "select 1",
            ],
        )
        .await;
    assert_eq!(out["exit_code"], 2);
    assert!(out["stderr"]
        .as_str()
        .unwrap()
        .contains("password authentication failed for user \"postgres\""));

    // backup-push with the wrong password fails like the guide's users saw.
    let out = env
        .exec(
            "src-db",
            &leader,
            &[
                "sh",
                "-c",
                "PGUSER=postgres PGPASSWORD=$SU_PASSWORD wal-g backup-push /data/postgres",
            ],
        )
        .await;
    assert_eq!(out["exit_code"], 1);
    assert!(out["stderr"]
        .as_str()
        .unwrap()
        .contains("password authentication failed"));

    // The layout is wal-g's: sentinel, metadata.json, files_metadata.json, tar partitions, WAL segments.
    let base = dir.path().join("basebackups_005");
    let names: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let sentinel = names
        .iter()
        .find(|n| n.ends_with("_backup_stop_sentinel.json"))
        .expect("sentinel")
        .clone();
    let name = sentinel
        .trim_end_matches("_backup_stop_sentinel.json")
        .to_string();
    assert!(
        name.starts_with("base_00000001") && name.len() == 29,
        "{name}"
    );
    let s: Value = serde_json::from_slice(&std::fs::read(base.join(&sentinel)).unwrap()).unwrap();
    assert!(s["LSN"].as_u64().unwrap() < s["FinishLSN"].as_u64().unwrap());
    assert_eq!(s["PgVersion"], 140006);
    assert_eq!(s["Version"], 2);
    assert_eq!(s["DataDir"], "/data/postgres");
    let md: Value =
        serde_json::from_slice(&std::fs::read(base.join(&name).join("metadata.json")).unwrap())
            .unwrap();
    assert_eq!(md["start_lsn"], s["LSN"]);
    assert_eq!(md["date_fmt"], "%Y-%m-%dT%H:%M:%S.%fZ");
    for p in [
        "part_001.tar.lz4",
        "pg_control.tar.lz4",
        "backup_label.tar.lz4",
    ] {
        assert!(
            base.join(&name).join("tar_partitions").join(p).is_file(),
            "{p}"
        );
    }
    let wal: Vec<String> = std::fs::read_dir(dir.path().join("wal_005"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    let start_seg = &name[5..];
    assert!(
        wal.iter().any(|w| w == &format!("{start_seg}.lz4")),
        "the backup's start segment is archived: {wal:?}"
    );

    // backup-list --json --detail is BackupTime + metadata, flat.
    let out = env
        .exec(
            "src-db",
            &leader,
            &["wal-g", "backup-list", "--json", "--detail"],
        )
        .await;
    let list: Value = serde_json::from_str(out["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(list[0]["backup_name"], name.as_str());
    assert_eq!(list[0]["wal_file_name"], start_seg);
    assert_eq!(list[0]["start_lsn"], s["LSN"]);
    assert_eq!(list[0]["storage_name"], "default");

    // A detached push (nohup … &) returns at once and finishes later, logging to the redirect file.
    let out = env
        .exec(
            "src-db",
            &leader,
            &[
                "sh",
                "-c",
                "nohup wal-g backup-push /data/postgres > /data/walg-backup.log 2>&1 &",
            ],
        )
        .await;
    assert_eq!(out["exit_code"], 0);
    env.advance(30);
    let log = env
        .exec(
            "src-db",
            &leader,
            &["tail", "-n", "1", "/data/walg-backup.log"],
        )
        .await;
    assert!(
        log["stdout"]
            .as_str()
            .unwrap()
            .contains("Wrote backup with name"),
        "{log}"
    );
    let out = env
        .exec("src-db", &leader, &["wal-g", "backup-list", "--json"])
        .await;
    let list: Value = serde_json::from_str(out["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
}

/// A 1-node restore cluster with the given role passwords and FLY_RESTORED_FROM set, as the guide does it.
async fn restore_cluster(env: &Env, dir: &Path, su: &str, repl: &str, op: &str) -> String {
    restore_cluster_on(env, IMAGE, dir, (su, repl, op)).await
}

/// `restore_cluster` on the given image.
async fn restore_cluster_on(
    env: &Env,
    image: &str,
    dir: &Path,
    (su, repl, op): (&str, &str, &str),
) -> String {
    let own = pg_secrets("su-new", "repl-new", "op-new", dir.to_str().unwrap());
    let (_, id) = first_machine(env, "dst-db", image, own).await;
    let mut s = pg_secrets(su, repl, op, dir.to_str().unwrap());
    s["FLY_RESTORED_FROM"] = json!("src-db");
    let v = env.set_secrets("dst-db", s).await;
    let cfg = env.machine("dst-db", &id).await["config"].clone();
    env.ok(
        "POST",
        &format!("/v1/apps/dst-db/machines/{id}"),
        Some(json!({"config": cfg, "min_secrets_version": v})),
    )
    .await;
    env.advance(CHECK_RUN_SECS);
    id
}

#[tokio::test]
async fn pitr_restore_goes_restoring_recovering_recovered() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    // FLY_RESTORED_FROM rewrote the new cluster's passwords and left the lock.
    let lock = env
        .exec("dst-db", &id, &["cat", "/data/restore.lock"])
        .await;
    assert_eq!(lock["stdout"], "dst-db");
    assert_eq!(env.role("dst-db", &id).await.1, "leader");

    // Without --yes and without stdin, init asks and aborts.
    let out = env
        .stolonctl("dst-db", &id, &["init", &pitr_spec(None)])
        .await;
    assert_eq!(out["exit_code"], 1);
    assert!(out["stdout"].as_str().unwrap().contains("Are you sure"));

    let out = env
        .stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("initializing".into(), Some("restoring".into())))
    );
    // The role check has not run since the init: it still says what it saw before (the review's "stale passing
    // leader right after stolonctl init"); its next run sees Postgres down.
    assert_eq!(
        env.role("dst-db", &id).await,
        ("passing".into(), "leader".into())
    );
    env.advance(15);
    assert_eq!(env.role("dst-db", &id).await.0, "critical");
    env.advance(16);
    assert_eq!(
        env.sim.pg_phase("dst-db").unwrap().1.as_deref(),
        Some("recovering")
    );
    env.advance(60);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
    assert_eq!(
        env.role("dst-db", &id).await,
        ("passing".into(), "leader".into())
    );
    // The data came out of the backup's tar (1000 rows), on a new timeline.
    assert_eq!(
        psql(&env, "dst-db", &id, "select count(*) from orders").await["stdout"],
        "1000\n"
    );
    assert_eq!(
        psql(
            &env,
            "dst-db",
            &id,
            "select timeline_id from pg_control_checkpoint()"
        )
        .await["stdout"],
        "2\n"
    );
    let cd = env.stolonctl("dst-db", &id, &["clusterdata", "read"]).await;
    let cd: Value = serde_json::from_str(cd["stdout"].as_str().unwrap().trim()).unwrap();
    assert_eq!(cd["cluster"]["status"]["phase"], "normal");
    assert_eq!(cd["cluster"]["spec"]["initMode"], "pitr");
    let logs = env.logs("dst-db").await.join("\n");
    for needle in [
        "executing DataRestoreCommand: wal-g backup-fetch /data/postgres LATEST",
        "Backup extraction complete",
        "selected new timeline ID: 2",
        "db initialized",
    ] {
        assert!(logs.contains(needle), "missing log {needle:?}");
    }
}

#[tokio::test]
async fn pitr_fails_when_passwords_do_not_match_the_source() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    // The user kept the new cluster's own SU/REPL passwords: the restored data will not accept them.
    let id = restore_cluster(&env, dir.path(), "su-new", "repl-new", "op-src").await;
    let out = env
        .stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    assert_eq!(out["exit_code"], 0);
    env.advance(120);
    let (phase, step) = env.sim.pg_phase("dst-db").unwrap();
    assert_eq!(
        (phase.as_str(), step.as_deref()),
        ("initializing", Some("failed"))
    );
    let (status, output) = env.role("dst-db", &id).await;
    assert_eq!(status, "critical");
    assert!(
        output.contains("starting up") || output.contains("password"),
        "{output}"
    );
    let logs = env.logs("dst-db").await.join("\n");
    assert!(logs.contains("FATAL:  password authentication failed for user \"flypgadmin\""));
    assert!(logs.contains("password authentication failed for user \"repluser\""));
    let cd = env.stolonctl("dst-db", &id, &["clusterdata", "read"]).await;
    let cd: Value = serde_json::from_str(cd["stdout"].as_str().unwrap().trim()).unwrap();
    assert!(cd["cluster"]["status"]["flysimPitr"]["message"]
        .as_str()
        .unwrap()
        .contains("SU_PASSWORD"));

    // Fix the secrets to the source's values and roll them out: the restored data accepts them.
    let v = env
        .set_secrets(
            "dst-db",
            json!({"SU_PASSWORD": "su-src", "REPL_PASSWORD": "repl-src"}),
        )
        .await;
    let cfg = env.machine("dst-db", &id).await["config"].clone();
    env.ok(
        "POST",
        &format!("/v1/apps/dst-db/machines/{id}"),
        Some(json!({"config": cfg, "min_secrets_version": v})),
    )
    .await;
    env.advance(CHECK_RUN_SECS);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
    assert_eq!(
        env.role("dst-db", &id).await,
        ("passing".into(), "leader".into())
    );
    assert_eq!(
        psql(&env, "dst-db", &id, "select count(*) from orders").await["stdout"],
        "1000\n"
    );
}

#[tokio::test]
async fn restart_mid_restore_starts_over() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(20); // 2/3 through backup-fetch
    env.ok(
        "POST",
        &format!("/v1/apps/dst-db/machines/{id}/restart"),
        None,
    )
    .await;
    env.advance(5); // back up: the keeper finds Initializing and wipes the data dir
    assert_eq!(
        env.sim.pg_phase("dst-db").unwrap().1.as_deref(),
        Some("restoring")
    );
    let logs = env.logs("dst-db").await;
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("executing DataRestoreCommand"))
            .count(),
        2,
        "restarted from scratch"
    );
    assert!(logs
        .iter()
        .any(|l| l.contains("db failed to initialize or resync")));
    // It needs the full restore time again, counted from the restart.
    env.advance(25);
    assert_eq!(
        env.sim.pg_phase("dst-db").unwrap().1.as_deref(),
        Some("restoring")
    );
    env.advance(100);
    assert_eq!(
        env.sim.pg_phase("dst-db").unwrap().1.as_deref(),
        Some("recovered")
    );
    // An OOM kill mid-restore does the same.
    let m = env.machine("dst-db", &id).await;
    assert_eq!(m["state"], "started");
}

#[tokio::test]
async fn oom_mid_restore_is_an_exit_event_and_a_fresh_restore() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(10);
    env.sim.inject_oom("dst-db", &id).unwrap();
    env.advance(3);
    let events = env
        .ok(
            "GET",
            &format!("/v1/apps/dst-db/machines/{id}/events"),
            None,
        )
        .await;
    let exit = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "exit")
        .unwrap();
    assert_eq!(exit["request"]["exit_event"]["oom_killed"], true);
    assert_eq!(exit["request"]["restart_count"], 1);
    let logs = env.logs("dst-db").await;
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("executing DataRestoreCommand"))
            .count(),
        2
    );
}

#[tokio::test]
async fn pitr_target_before_the_backup_loops_with_postgres_error() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl(
        "dst-db",
        &id,
        &[
            "init",
            "--yes",
            &pitr_spec(Some("2020-01-01 00:00:00.000+00")),
        ],
    )
    .await;
    env.advance(100);
    assert_eq!(env.sim.pg_phase("dst-db").unwrap().0, "initializing");
    let logs = env.logs("dst-db").await;
    assert!(logs
        .iter()
        .any(|l| l.contains("requested recovery stop point is before consistent recovery point")));
    assert!(
        logs.iter()
            .filter(|l| l.contains("executing DataRestoreCommand"))
            .count()
            >= 2,
        "the keeper retries"
    );
}

#[tokio::test]
async fn pitr_without_storage_config_keeps_failing() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = pg_secrets("a", "b", "c", "x");
    s["WALG_FILE_PREFIX"] = Value::Null;
    let (_, id) = first_machine(&env, "lonely", IMAGE, s).await;
    env.stolonctl("lonely", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(60);
    let logs = env.logs("lonely").await.join("\n");
    assert!(logs.contains("storage is not configured"), "{logs}");
    assert_eq!(env.sim.pg_phase("lonely").unwrap().0, "initializing");
    let _ = dir;
}

#[tokio::test]
async fn fly_restored_from_failure_is_a_boot_loop() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    env.sim.set_faults(Faults {
        restored_from_fails: true,
        ..Faults::default()
    });
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.advance(30);
    let m = env.machine("dst-db", &id).await;
    let exits: Vec<&Value> = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "exit")
        .collect();
    assert!(exits.len() >= 3, "boot loop: {}", m["events"]);
    assert_eq!(exits[0]["request"]["exit_event"]["restarting"], true);
    assert_eq!(env.role("dst-db", &id).await.0, "critical");
    assert!(env
        .logs("dst-db")
        .await
        .iter()
        .any(|l| l.starts_with("panic: failed to unlock restored data")));
    // Between crashes the Machine is up for a moment: wait for it, then look.
    env.ok(
        "GET",
        &format!("/v1/apps/dst-db/machines/{id}/wait?state=started&timeout=30"),
        None,
    )
    .await;
    let out = env
        .exec("dst-db", &id, &["cat", "/data/restore.lock"])
        .await;
    assert_eq!(out["exit_code"], 1, "no lock is written");

    // Missing SU_PASSWORD panics the same way; fixing the secret + update ends the loop.
    env.sim.set_faults(Faults::default());
    let v = env
        .set_secrets("dst-db", json!({"SU_PASSWORD": null}))
        .await;
    let cfg = m["config"].clone();
    env.ok(
        "POST",
        &format!("/v1/apps/dst-db/machines/{id}"),
        Some(json!({"config": cfg, "min_secrets_version": v})),
    )
    .await;
    env.advance(10);
    assert!(env
        .logs("dst-db")
        .await
        .iter()
        .any(|l| l.contains("SU_PASSWORD is required")));
    let v = env
        .set_secrets("dst-db", json!({"SU_PASSWORD": "su-src"}))
        .await;
    env.ok(
        "POST",
        &format!("/v1/apps/dst-db/machines/{id}"),
        Some(json!({"config": cfg, "min_secrets_version": v})),
    )
    .await;
    env.advance(CHECK_RUN_SECS);
    assert_eq!(env.role("dst-db", &id).await.0, "passing");
    assert_eq!(
        env.exec("dst-db", &id, &["cat", "/data/restore.lock"])
            .await["stdout"],
        "dst-db"
    );
}

#[tokio::test]
async fn leader_failover_when_the_leader_stops() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, replica) = source_cluster(&env, dir.path()).await;
    env.ok(
        "POST",
        &format!("/v1/apps/src-db/machines/{leader}/stop"),
        None,
    )
    .await;
    // The sentinel waits failInterval (stolon `internal/cluster/cluster.go`: 20 s by default).
    env.advance(5);
    assert_eq!(
        env.role("src-db", &replica).await,
        ("passing".into(), "replica".into())
    );
    env.advance(20);
    // Elected now; the role check says so at its next run, up to 15 s later (flyctl `flypg/launcher.go`:
    // interval 15s), so a failover is not visible in the checks at once.
    env.advance(15);
    assert_eq!(
        env.role("src-db", &replica).await,
        ("passing".into(), "leader".into())
    );
    assert_eq!(env.role("src-db", &leader).await.0, "critical");
}

/// postgres-ha `cmd/start/main.go` sets `STKEEPER_CAN_BE_MASTER=false` outside `PRIMARY_REGION`;
/// stolon `cmd/sentinel/cmd/sentinel.go::findBestNewMasters` skips those keepers.
#[tokio::test]
async fn failover_never_elects_a_keeper_outside_the_primary_region() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = pg_secrets("su", "repl", "op", dir.path().to_str().unwrap());
    let (v, leader) = first_machine(&env, "geo-db", IMAGE, secrets).await;
    let far = env.pg_machine("geo-db", "ord", IMAGE, v).await;
    env.advance(CHECK_RUN_SECS);
    assert_eq!(env.role("geo-db", &far).await.1, "replica");
    let stop = format!("/v1/apps/geo-db/machines/{leader}/stop");
    env.ok("POST", &stop, None).await;
    env.advance(120);
    assert_eq!(
        env.role("geo-db", &far).await,
        ("passing".into(), "replica".into())
    );
    // The leader comes back and leads again.
    let start = format!("/v1/apps/geo-db/machines/{leader}/start");
    env.ok("POST", &start, None).await;
    env.advance(CHECK_RUN_SECS);
    assert_eq!(env.role("geo-db", &leader).await.1, "leader");
}

#[tokio::test]
async fn pitr_from_a_seeded_cluster_to_a_point_in_time() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let seed = flysim::ClusterSeed::new(ORG, "prod-db", dir.path());
    let info = env.sim.seed_cluster(&seed).unwrap();
    assert_eq!(info.machines.len(), 3);
    let leader = info.machines[0].clone();
    assert_eq!(env.role("prod-db", &leader).await.1, "leader");
    let list = env
        .exec(
            "prod-db",
            &leader,
            &["wal-g", "backup-list", "--json", "--detail"],
        )
        .await;
    let list: Value = serde_json::from_str(list["stdout"].as_str().unwrap()).unwrap();
    let backups = list.as_array().unwrap();
    assert_eq!(backups.len(), 3);
    let first = backups[0]["backup_name"].as_str().unwrap().to_string();

    // Restore into a new cluster with the source's passwords, to 20 h ago (after the first backup only).
    let target = env.sim.now() - time::Duration::hours(20);
    let target = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000+00",
        target.year(),
        target.month() as u8,
        target.day(),
        target.hour(),
        target.minute(),
        target.second()
    );
    let id = restore_cluster(
        &env,
        dir.path(),
        &seed.su_password,
        &seed.repl_password,
        &seed.operator_password,
    )
    .await;
    // LATEST is newer than the target: Postgres refuses, the keeper loops (a classic mistake).
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(Some(&target))])
        .await;
    env.advance(60);
    assert!(env
        .logs("dst-db")
        .await
        .iter()
        .any(|l| l.contains("requested recovery stop point is before consistent recovery point")));
    // Naming the backup taken before the target works.
    let mut spec: Value = serde_json::from_str(&pitr_spec(Some(&target))).unwrap();
    spec["pitrConfig"]["dataRestoreCommand"] = json!(format!("wal-g backup-fetch %d {first}"));
    env.stolonctl("dst-db", &id, &["init", "--yes", &spec.to_string()])
        .await;
    env.advance(600);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
    assert_eq!(
        env.role("dst-db", &id).await,
        ("passing".into(), "leader".into())
    );
    let logs = env.logs("dst-db").await.join("\n");
    assert!(logs.contains(&format!("wal-g backup-fetch /data/postgres {first}")));
}

/// The demo's history (a delta chain on timeline 2, after a promotion) restores with the emulator's own
/// backup-fetch and replay: LATEST is the newest delta, replay follows timeline 2 to the end of the archive,
/// and the restore takes timeline 3 (2 is taken).
#[tokio::test]
async fn pitr_from_the_demo_history_restores_its_newest_delta_on_a_new_timeline() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let seed = flysim::ClusterSeed {
        showcase_history: true,
        ..flysim::ClusterSeed::new(ORG, "prod-db", dir.path())
    };
    let info = env.sim.seed_cluster(&seed).unwrap();
    let list = env
        .exec(
            "prod-db",
            &info.machines[0],
            &["wal-g", "backup-list", "--json"],
        )
        .await;
    let list: Value = serde_json::from_str(list["stdout"].as_str().unwrap()).unwrap();
    let latest = list.as_array().unwrap().last().unwrap()["backup_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        latest.starts_with("base_00000002") && latest.contains("_D_"),
        "{latest}"
    );

    let id = restore_cluster(
        &env,
        dir.path(),
        &seed.su_password,
        &seed.repl_password,
        &seed.operator_password,
    )
    .await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(600);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
    assert_eq!(
        psql(
            &env,
            "dst-db",
            &id,
            "select timeline_id from pg_control_checkpoint()"
        )
        .await["stdout"],
        "3\n"
    );
    let logs = env.logs("dst-db").await.join("\n");
    assert!(logs.contains("selected new timeline ID: 3"), "{logs}");
}

/// Postgres' own timestamp form for a recovery target.
fn pg_time(at: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.000+00",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn wal_objects(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("wal_005")).unwrap().count()
}

/// An idle server switches no segment at archive_timeout (PostgreSQL's checkpointer skips the switch
/// when nothing was written); a write is archived at the next tick.
#[tokio::test]
async fn an_idle_leader_archives_no_segment() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = source_cluster(&env, dir.path()).await;
    let before = wal_objects(dir.path());
    env.advance(600);
    assert_eq!(wal_objects(dir.path()), before, "ten idle minutes, no WAL");
    let out = psql(&env, "src-db", &leader, "INSERT INTO orders VALUES (1)").await;
    assert_eq!(out["exit_code"], 0, "{out}");
    env.advance(61);
    assert_eq!(wal_objects(dir.path()), before + 1, "the write's segment");
}

/// stolon `cmd/keeper/cmd/keeper.go` `createRecoveryOptions` sets `recovery_target_time` with
/// `recovery_target_action=promote`: on PostgreSQL 13+ a target after the last archived commit ends in
/// `FATAL: recovery ended before configured recovery target was reached`, and the keeper retries
/// forever; the cluster never reaches `normal`.
#[tokio::test]
async fn pitr_target_after_the_last_commit_never_completes() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    env.advance(600);
    let target = pg_time(env.sim.now());
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(Some(&target))])
        .await;
    env.advance(600);
    assert_eq!(env.sim.pg_phase("dst-db").unwrap().0, "initializing");
    let logs = env.logs("dst-db").await;
    assert!(logs.iter().any(
        |l| l.contains("FATAL:  recovery ended before configured recovery target was reached")
    ));
    assert!(
        logs.iter()
            .filter(|l| l.contains("executing DataRestoreCommand"))
            .count()
            >= 2,
        "the keeper retries"
    );
}

/// The same target is reached once a commit after it is archived (keeper.go `createRecoveryOptions`;
/// PostgreSQL stops at the first commit past the target).
#[tokio::test]
async fn pitr_target_is_reached_by_a_later_commit() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = source_cluster(&env, dir.path()).await;
    env.advance(600);
    let target = pg_time(env.sim.now());
    env.advance(5);
    psql(&env, "src-db", &leader, "INSERT INTO orders VALUES (1)").await;
    env.advance(61);
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(Some(&target))])
        .await;
    env.advance(600);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
}

/// A backup of PostgreSQL 14 restored by a PostgreSQL 15 image: the server refuses the data directory
/// and the keeper retries forever (flyctl `flypg/launcher.go` picks the latest image unless told;
/// stolon `cmd/keeper/cmd/keeper.go` retries a database that fails to start).
#[tokio::test]
async fn pitr_from_another_postgres_major_never_starts() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let passwords = ("su-src", "repl-src", "op-src");
    let id = restore_cluster_on(&env, "flyio/postgres:15.2", dir.path(), passwords).await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(600);
    assert_eq!(env.sim.pg_phase("dst-db").unwrap().0, "initializing");
    let logs = env.logs("dst-db").await.join("\n");
    assert!(
        logs.contains("The data directory was initialized by PostgreSQL version 14, which is not compatible with this version 15.2."),
        "{logs}"
    );
}

/// The exits in a Machine's events, newest first.
async fn exits(env: &Env, app: &str, id: &str) -> Vec<Value> {
    let m = env.machine(app, id).await;
    m["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "exit")
        .cloned()
        .collect()
}

/// postgres-ha `pkg/flypg/node.go::NewNode` fails without `FLY_CONSUL_URL`/`CONSUL_URL` or with
/// `SU_PASSWORD`/`REPL_PASSWORD` unset, and `cmd/start/main.go` panics: restart policy `always` makes
/// it a boot loop, on any boot (not only a restore's).
#[tokio::test]
async fn a_machine_without_consul_url_or_passwords_boot_loops() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut secrets = pg_secrets("su", "repl", "op", dir.path().to_str().unwrap());
    secrets["FLY_CONSUL_URL"] = Value::Null;
    let (_, id) = first_machine(&env, "bare-db", IMAGE, secrets).await;
    env.advance(20); // 30 s after it started
    assert!(exits(&env, "bare-db", &id).await.len() >= 3, "boot loop");
    assert_eq!(env.role("bare-db", &id).await.0, "critical");
    let logs = env.logs("bare-db").await;
    assert!(logs
        .iter()
        .any(|l| l == "panic: FLY_CONSUL_URL or CONSUL_URL are required"));

    // CONSUL_URL is enough for the store; an unset REPL_PASSWORD still panics.
    let v = env
        .set_secrets(
            "bare-db",
            json!({"CONSUL_URL": "https://:t@consul.example/bare-db-1/", "REPL_PASSWORD": null}),
        )
        .await;
    let cfg = env.machine("bare-db", &id).await["config"].clone();
    let update = json!({"config": cfg, "min_secrets_version": v});
    let path = format!("/v1/apps/bare-db/machines/{id}");
    env.ok("POST", &path, Some(update)).await;
    env.advance(10);
    let logs = env.logs("bare-db").await;
    assert!(logs.iter().any(|l| l == "panic: REPL_PASSWORD is required"));

    // With both, the Machine boots and leads; STOLONCTL_STORE_NODE is the URL's path + keeper UID.
    let v = env
        .set_secrets("bare-db", json!({"REPL_PASSWORD": "repl"}))
        .await;
    let update = json!({"config": cfg, "min_secrets_version": v});
    env.ok("POST", &path, Some(update)).await;
    env.advance(CHECK_RUN_SECS);
    assert_eq!(
        env.role("bare-db", &id).await,
        ("passing".into(), "leader".into())
    );
    let dotenv = env.exec("bare-db", &id, &["cat", "/data/.env"]).await;
    let dotenv = dotenv["stdout"].as_str().unwrap();
    assert!(
        dotenv.contains("STOLONCTL_STORE_NODE=bare-db-1/"),
        "{dotenv}"
    );
}

/// postgres-ha `pkg/flyunlock/unlock.go::createRequiredUsers` pastes the password into
/// `ALTER USER … WITH PASSWORD '%s'`: a `'` makes `FLY_RESTORED_FROM` fail, `start` panics, and the
/// Machine boot-loops.
#[tokio::test]
async fn a_quote_in_a_password_breaks_fly_restored_from() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let id = restore_cluster(&env, dir.path(), "su-src", "it's", "op-src").await;
    env.advance(30);
    assert!(exits(&env, "dst-db", &id).await.len() >= 3, "boot loop");
    let logs = env.logs("dst-db").await;
    assert!(
        logs.iter().any(|l| l
            == "panic: failed to unlock restored data: ERROR: syntax error at or near \"s\" (SQLSTATE 42601)"),
        "{logs:?}"
    );
}

/// stolon `internal/postgresql/postgresql.go` writes `.pgpass` lines unescaped; libpq stops the
/// password at `:` and drops `\`, so a replica cannot resync with such a REPL_PASSWORD.
#[tokio::test]
async fn a_colon_or_backslash_in_the_repl_password_breaks_replicas() {
    for repl in ["re:pl", "re\\pl"] {
        let env = start().await;
        let dir = tempfile::tempdir().unwrap();
        let secrets = pg_secrets("su", repl, "op", dir.path().to_str().unwrap());
        let (v, leader) = first_machine(&env, "src-db", IMAGE, secrets).await;
        let replica = env.pg_machine("src-db", "iad", IMAGE, v).await;
        env.advance(CHECK_RUN_SECS);
        assert_eq!(env.role("src-db", &leader).await.1, "leader");
        assert_eq!(
            env.role("src-db", &replica).await,
            (
                "critical".into(),
                "replication: FATAL: password authentication failed for user \"repluser\"".into()
            ),
            "{repl}"
        );
    }
}

/// stolon `internal/common/common.go` puts the socket in `/tmp` (`PgUnixSocketDirectories`), Postgres
/// listens on 5433 and HAProxy on TCP 5432 (postgres-ha `config/haproxy.cfg`): without `PGHOST` psql
/// and wal-g look in `/var/run/postgresql` and fail.
#[tokio::test]
async fn psql_and_walg_need_pghost() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = source_cluster(&env, dir.path()).await;
    let script = "unset PGHOST; psql -tA -c 'select 1'";
    let out = env.exec("src-db", &leader, &["sh", "-c", script]).await;
    assert_eq!(out["exit_code"], 2, "{out}");
    assert!(out["stderr"]
        .as_str()
        .unwrap()
        .contains("socket \"/var/run/postgresql/.s.PGSQL.5432\" failed"));
    let script = "PGHOST=/tmp PGPORT=5433 psql -tA -c 'select 1'";
    let out = env.exec("src-db", &leader, &["sh", "-c", script]).await;
    assert_eq!(out["stdout"], "1\n", "{out}");
    let script =
        "unset PGHOST; PGUSER=postgres PGPASSWORD=$OPERATOR_PASSWORD wal-g backup-push /data/postgres";
    let out = env.exec("src-db", &leader, &["sh", "-c", script]).await;
    assert_eq!(out["exit_code"], 1, "{out}");
    assert!(out["stderr"]
        .as_str()
        .unwrap()
        .contains("dial unix /var/run/postgresql/.s.PGSQL.5432"));
}

/// On a replica `PGPORT=5432` reaches the leader through HAProxy (postgres-ha `config/haproxy.cfg`)
/// while wal-g tars the replica's own data directory: flysim refuses that inconsistent backup.
#[tokio::test]
async fn backup_push_on_a_replica_through_haproxy_is_refused() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, replica) = source_cluster(&env, dir.path()).await;
    let push = "PGUSER=postgres PGPASSWORD=$OPERATOR_PASSWORD wal-g backup-push /data/postgres";
    let out = env.exec("src-db", &replica, &["sh", "-c", push]).await;
    assert_eq!(out["exit_code"], 1, "{out}");
    assert!(out["stderr"]
        .as_str()
        .unwrap()
        .contains("inconsistent backup"));
    let local = format!("PGPORT=5433 {push}");
    let out = env.exec("src-db", &replica, &["sh", "-c", &local]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
}

/// `archive_mode` is a postmaster-context parameter and stolon's `automaticPgRestart` defaults to false
/// (stolon `internal/cluster/cluster.go`; flyctl `internal/command/postgres/config_update.go` offers the
/// restart): enabling it through the spec archives nothing until Postgres restarts.
#[tokio::test]
async fn archive_mode_changes_need_a_postgres_restart() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut secrets = pg_secrets("su", "repl", "op", dir.path().to_str().unwrap());
    secrets["ENABLE_WALG"] = json!("true");
    let (_, id) = first_machine(&env, "one-db", IMAGE, secrets).await;
    let patch = |mode: &str| format!(r#"{{"pgParameters": {{"archive_mode": "{mode}"}}}}"#);
    let restart = format!("/v1/apps/one-db/machines/{id}/restart");
    // Archiving off, with a restart.
    let off = patch("off");
    let out = env
        .stolonctl("one-db", &id, &["update", "--patch", &off])
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    env.ok("POST", &restart, None).await;
    env.advance(20);
    assert_eq!(show_archive_mode(&env, &id).await, "off\n");
    // Turned on in the spec: still off until Postgres restarts.
    let on = patch("on");
    env.stolonctl("one-db", &id, &["update", "--patch", &on])
        .await;
    psql(&env, "one-db", &id, "CREATE TABLE t (id int)").await;
    env.advance(61);
    assert_eq!(show_archive_mode(&env, &id).await, "off\n");
    assert!(!dir.path().join("wal_005").exists(), "nothing archived");
    env.ok("POST", &restart, None).await;
    env.advance(20);
    assert_eq!(show_archive_mode(&env, &id).await, "on\n");
    psql(&env, "one-db", &id, "INSERT INTO t VALUES (1)").await;
    env.advance(61);
    assert_eq!(wal_objects(dir.path()), 1, "archiving after the restart");
}

async fn show_archive_mode(env: &Env, id: &str) -> Value {
    psql(env, "one-db", id, "SHOW archive_mode").await["stdout"].clone()
}

/// The spec a new cluster gets is the image's `InitConfig` (postgres-ha `pkg/flypg/config.go`): sized
/// from the VM's memory and the volume, and nothing else, so stolon's own defaults apply to the rest.
#[tokio::test]
async fn a_new_cluster_spec_is_the_images_init_config() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let secrets = pg_secrets("su", "repl", "op", dir.path().to_str().unwrap());
    let (_, id) = first_machine(&env, "spec-db", IMAGE, secrets).await;
    let out = env.stolonctl("spec-db", &id, &["spec"]).await;
    let spec: Value = serde_json::from_str(out["stdout"].as_str().unwrap()).unwrap();
    for absent in ["failInterval", "sleepInterval", "usePgrewind"] {
        assert!(spec.get(absent).is_none(), "{absent} in {spec}");
    }
    assert_eq!(spec["maxStandbysPerSender"], 50);
    assert_eq!(spec["deadKeeperRemovalInterval"], "1h");
    let parameters = &spec["pgParameters"];
    // 256 MB of memory (no guest given), a 1 GB volume, PostgreSQL 14.
    assert_eq!(parameters["shared_buffers"], "64MB");
    assert_eq!(parameters["effective_cache_size"], "192MB");
    assert_eq!(parameters["work_mem"], "4MB");
    assert_eq!(parameters["maintenance_work_mem"], "64MB");
    assert_eq!(parameters["max_wal_size"], "102MB");
    assert_eq!(parameters["min_wal_size"], "32MB");
    assert_eq!(parameters["wal_keep_size"], "0");
    assert_eq!(parameters["wal_compression"], "on");
    assert!(parameters.get("log_statement").is_none());
    let file = env
        .exec("spec-db", &id, &["cat", "/fly/cluster-spec.json"])
        .await;
    let file: Value = serde_json::from_str(file["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(file["pgParameters"], *parameters);
}

/// stolon forces `hot_standby=on` (`cmd/keeper/cmd/keeper.go` `mandatoryPGParameters`), so during
/// archive recovery the role check (postgres-ha `pkg/flycheck/role.go`, `SHOW transaction_read_only`)
/// passes as `replica`; it reads `leader` only once recovery ends.
#[tokio::test]
async fn the_role_check_reads_replica_during_archive_recovery() {
    // Replay long enough (10 s a segment) that a check run falls inside it.
    let timing = flysim::Timing {
        replay_per_segment: std::time::Duration::from_secs(10),
        ..flysim::Timing::default()
    };
    let sim = flysim::Sim::builder()
        .manual_clock(time::macros::datetime!(2026-03-01 12:00 UTC))
        .seed(7)
        .timing(timing)
        .build()
        .unwrap();
    let env = start_with(sim).await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(15);
    assert_eq!(env.role("dst-db", &id).await.0, "critical", "restoring");
    env.advance(16);
    assert_eq!(
        env.sim.pg_phase("dst-db").unwrap().1.as_deref(),
        Some("recovering")
    );
    env.advance(15);
    assert_eq!(
        env.sim.pg_phase("dst-db").unwrap().1.as_deref(),
        Some("recovering"),
        "still replaying"
    );
    assert_eq!(
        env.role("dst-db", &id).await,
        ("passing".into(), "replica".into())
    );
    env.advance(120);
    assert_eq!(
        env.role("dst-db", &id).await,
        ("passing".into(), "leader".into())
    );
}

/// postgres-ha `pkg/flycheck/role.go`: with `/data` over 90 % full the role check answers `readonly`.
#[tokio::test]
async fn the_role_check_reads_readonly_above_90_percent_disk() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = source_cluster(&env, dir.path()).await;
    env.sim.set_disk_used("src-db", &leader, 90).unwrap();
    assert_eq!(env.role("src-db", &leader).await.1, "leader");
    env.sim.set_disk_used("src-db", &leader, 91).unwrap();
    assert_eq!(
        env.role("src-db", &leader).await.1,
        "leader",
        "until the check runs again"
    );
    env.advance(CHECK_RUN_SECS);
    assert_eq!(
        env.role("src-db", &leader).await,
        ("passing".into(), "readonly".into())
    );
}

/// An exec request cannot outlive Fly's 60 s proxy timeout (fly-go `flaps/flaps_machines_wait.go`
/// `proxyTimeoutThreshold`; flyctl#4194): a 73 s backup-push with `timeout: 600` answers 408, and the
/// backup still finishes.
#[tokio::test]
async fn exec_timeout_is_capped_at_the_proxy_timeout() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = source_cluster(&env, dir.path()).await;
    env.sim
        .pg_insert("src-db", "postgres", "orders", 60_000_000)
        .unwrap();
    let push = "PGUSER=postgres PGPASSWORD=$OPERATOR_PASSWORD wal-g backup-push /data/postgres";
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/src-db/machines/{leader}/exec"),
            Some(json!({"command": ["sh", "-c", push], "timeout": 600})),
        )
        .await;
    assert_eq!(r.status, 408, "{}", r.body);
    env.advance(120);
    let out = env
        .exec("src-db", &leader, &["wal-g", "backup-list", "--json"])
        .await;
    let list: Value = serde_json::from_str(out["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "the backup finished anyway"
    );
}

/// The source's backup restored by the guide's init into a new cluster that archives into the source's WAL
/// prefix: recovered on timeline 2, whose history file is then in the archive. Returns the keeper's id.
async fn restored_into_the_source_prefix(env: &Env, dir: &Path) -> String {
    let id = restore_cluster(env, dir, "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &archiving_pitr_spec()])
        .await;
    env.advance(120);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
    assert!(dir.join("wal_005/00000002.history.lz4").is_file());
    id
}

/// Without a target stolon's keeper sets `recovery_target_timeline=latest` (`cmd/keeper/cmd/keeper.go`
/// `createRecoveryOptions`; PostgreSQL 12+'s default with one): a cluster restored into the source's
/// WAL prefix archives timeline 2 and its history file there, and a later restore of the same backup
/// follows timeline 2 — replaying the other cluster's writes — and ends on timeline 3.
#[tokio::test]
async fn replay_follows_the_newest_timeline_in_the_archive() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restored_into_the_source_prefix(&env, dir.path()).await;
    psql(&env, "dst-db", &id, "INSERT INTO orders VALUES (1)").await;
    env.advance(61);
    let wal = std::fs::read_dir(dir.path().join("wal_005"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("00000002") && !name.contains("history"))
        .count();
    assert_eq!(
        wal, 1,
        "the restored cluster archived into the source's prefix"
    );

    // Restoring the source's backup again follows timeline 2.
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(120);
    let logs = env.logs("dst-db").await.join("\n");
    assert!(logs.contains("selected new timeline ID: 3"), "{logs}");
}

/// A restore that stays on timeline 1 while the archive already holds timeline 2's history switches to
/// timeline 3, never a second timeline 2: `StartupXLOG` takes `findNewestTimeLine(recoveryTargetTLI) + 1`,
/// probing the archive for history files upward (PostgreSQL `src/backend/access/transam/timeline.c`).
#[tokio::test]
async fn a_restore_on_an_old_timeline_skips_the_timelines_already_archived() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    source_cluster(&env, dir.path()).await;
    let id = restored_into_the_source_prefix(&env, dir.path()).await;

    let mut current: Value = serde_json::from_str(&pitr_spec(None)).unwrap();
    current["pitrConfig"]["recoveryTargetSettings"] = json!({"recoveryTargetTimeline": "current"});
    env.stolonctl("dst-db", &id, &["init", "--yes", &current.to_string()])
        .await;
    env.advance(120);
    let logs = env.logs("dst-db").await.join("\n");
    assert!(logs.contains("selected new timeline ID: 3"), "{logs}");
    assert_eq!(
        logs.matches("selected new timeline ID: 2").count(),
        1,
        "only the first restore took timeline 2: {logs}"
    );
}

/// After a PITR converges the sentinel replaces the spec's `pgParameters` with the restored database's
/// (stolon `cmd/sentinel/cmd/sentinel.go`: `IncludeConfig`, `MergePgParameters` true by default): a
/// source whose `archive_command` was patched to the guide's unconditional `wal-g wal-push %p` hands it
/// to the restored cluster, which then archives without `ENABLE_WALG`.
#[tokio::test]
async fn a_restored_cluster_takes_the_restored_pg_parameters() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let (leader, _) = source_cluster(&env, dir.path()).await;
    let patch = r#"{"pgParameters": {"archive_command": "wal-g wal-push %p"}}"#;
    env.stolonctl("src-db", &leader, &["update", "--patch", patch])
        .await;
    let push = "PGUSER=postgres PGPASSWORD=$OPERATOR_PASSWORD wal-g backup-push /data/postgres";
    let out = env.exec("src-db", &leader, &["sh", "-c", push]).await;
    assert_eq!(out["exit_code"], 0, "{out}");
    psql(&env, "src-db", &leader, "INSERT INTO orders VALUES (1)").await;
    env.advance(61);
    let id = restore_cluster(&env, dir.path(), "su-src", "repl-src", "op-src").await;
    env.stolonctl("dst-db", &id, &["init", "--yes", &pitr_spec(None)])
        .await;
    env.advance(120);
    assert_eq!(
        env.sim.pg_phase("dst-db"),
        Some(("normal".into(), Some("recovered".into())))
    );
    let out = env.stolonctl("dst-db", &id, &["spec"]).await;
    let spec: Value = serde_json::from_str(out["stdout"].as_str().unwrap()).unwrap();
    assert_eq!(spec["pgParameters"]["archive_command"], "wal-g wal-push %p");
    assert_eq!(spec["pgParameters"]["archive_mode"], "on");
    // No ENABLE_WALG on the restored cluster, and still it archives into the source's prefix.
    let printenv = env.exec("dst-db", &id, &["printenv", "ENABLE_WALG"]).await;
    assert_eq!(printenv["exit_code"], 1);
    psql(&env, "dst-db", &id, "INSERT INTO orders VALUES (2)").await;
    env.advance(61);
    let on_timeline_2 = std::fs::read_dir(dir.path().join("wal_005"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("00000002") && !name.contains("history"))
        .count();
    assert_eq!(on_timeline_2, 1);
}
