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

/// A 2-node source cluster with 1000 rows and one base backup in `dir`. Returns (leader, replica).
async fn source_cluster(env: &Env, dir: &Path) -> (String, String) {
    env.create_app("src-db").await;
    let mut s = pg_secrets("su-src", "repl-src", "op-src", dir.to_str().unwrap());
    s["ENABLE_WALG"] = json!("true");
    let v = env.set_secrets("src-db", s).await;
    let a = env.pg_machine("src-db", "iad", IMAGE, v).await;
    env.advance(10);
    let b = env.pg_machine("src-db", "iad", IMAGE, v).await;
    env.advance(10);
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
    env.create_app("dst-db").await;
    let v = env
        .set_secrets(
            "dst-db",
            pg_secrets("su-new", "repl-new", "op-new", dir.to_str().unwrap()),
        )
        .await;
    let id = env.pg_machine("dst-db", "iad", IMAGE, v).await;
    env.advance(10);
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
    env.advance(10);
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
    assert_eq!(env.role("dst-db", &id).await.0, "critical");
    env.advance(31);
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
    env.advance(10);
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
    env.create_app("lonely").await;
    let mut s = pg_secrets("a", "b", "c", "x");
    s["WALG_FILE_PREFIX"] = Value::Null;
    let v = env.set_secrets("lonely", s).await;
    let id = env.pg_machine("lonely", "iad", IMAGE, v).await;
    env.advance(10);
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
    env.advance(10);
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
    env.advance(5);
    assert_eq!(
        env.role("src-db", &replica).await,
        ("passing".into(), "leader".into())
    );
    assert_eq!(env.role("src-db", &leader).await.0, "critical");
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
