//! `walden timeline`, `walden verify` and `walden plan` run as a user runs them, against buckets written by
//! `walg::testkit` on local files and on a real S3-protocol server (moto).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::process::{Command, Output};

use serde_json::Value;
use time::{Duration, OffsetDateTime};
use walg::testkit::{sample_builder, BackupSpec, BucketBuilder};

fn walden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walden"));
    for (k, _) in std::env::vars() {
        if k.starts_with("WALG_")
            || k.starts_with("WALE_")
            || k.starts_with("AWS_")
            || k.starts_with("WALDEN_")
        {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The sample bucket's anchor times, as `sample_builder` computes them.
struct Sample {
    dir: tempfile::TempDir,
    start: OffsetDateTime,
}

impl Sample {
    fn at(&self, k: i64) -> OffsetDateTime {
        self.start + Duration::minutes(10 * k)
    }
    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }
}

fn sample() -> Sample {
    let now = OffsetDateTime::now_utc();
    let dir = tempfile::tempdir().unwrap();
    sample_builder(now).write_dir(dir.path()).unwrap();
    let hour = now
        .replace_minute(0)
        .unwrap()
        .replace_second(0)
        .unwrap()
        .replace_nanosecond(0)
        .unwrap();
    Sample {
        dir,
        start: hour - Duration::days(4),
    }
}

#[test]
fn timeline_json_has_the_documented_fields() {
    let s = sample();
    let out = walden()
        .args(["timeline", &s.path(), "--json", "--no-cache"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    let b = &j["backups"][0];
    for k in [
        "name",
        "timeline",
        "start_lsn",
        "finish_lsn",
        "start_time",
        "finish_time",
        "permanent",
        "delta_from",
    ] {
        assert!(b.get(k).is_some(), "backups[].{k} missing: {b}");
    }
    assert_eq!(b["start_lsn"], "2A/C000028");
    assert_eq!(b["permanent"], true);
    assert_eq!(j["backups"].as_array().unwrap().len(), 5);
    assert!(j["backups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["delta_from"].is_string()));
    let t2 = &j["timelines"][1];
    assert_eq!(t2["timeline"], 2);
    assert_eq!(t2["parent"], 1);
    assert_eq!(t2["switch_lsn"], "2B/68004000");
    assert_eq!(t2["first_segment"], "000000020000002B00000068");
    assert_eq!(t2["last_segment"], "000000020000002C0000003F");
    assert_eq!(t2["gaps"][0]["from"], "000000020000002B000000C2");
    assert_eq!(t2["gaps"][0]["to"], "000000020000002B000000C7");
    let w = j["windows"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["timeline"], 2);
    assert!(w[0]["from"].as_str().unwrap().ends_with('Z'));
    assert!(j["earliest_restorable"].is_string() && j["latest_restorable"].is_string());
    let f = &j["findings"][0];
    assert_eq!(f["severity"], "error");
    assert_eq!(f["code"], "wal_gap");
    assert!(f["message"].as_str().unwrap().contains("timeline 2"));

    let out = walden()
        .args(["timeline", &s.path(), "--no-cache"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BACKUPS") && text.contains("RESTORABLE WINDOWS") && text.contains("wal_gap"),
        "{text}"
    );
}

#[test]
fn verify_exit_codes() {
    let s = sample();
    let out = walden()
        .args(["verify", &s.path(), "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ERROR   wal_gap"));

    let clean = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut b = BucketBuilder::new();
    b.wal(1, 1, 30, now - Duration::hours(5), Duration::minutes(10));
    b.backup(&BackupSpec::at(1, 2, now - Duration::hours(5)));
    b.write_dir(clean.path()).unwrap();
    let out = walden()
        .args(["verify", "--json", "--no-cache"])
        .env("WALG_FILE_PREFIX", clean.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["status"], "ok");
}

#[test]
fn plan_time_gap_latest_and_bad_input() {
    let s = sample();
    let target = walg::pg_time(s.at(300));
    let out = walden()
        .args([
            "plan",
            &s.path(),
            "--target-time",
            &target,
            "--json",
            "--no-cache",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert!(j["backup"].as_str().unwrap().contains("_D_"));
    assert_eq!(j["recovery_target_time"], target);
    assert_eq!(j["recovery_target_timeline"], "2");
    assert_eq!(j["wal_from"], "000000010000002A000000E4");
    assert_eq!(j["wal_to"], "000000010000002B0000002C");
    assert!(j["wal_bytes"].as_u64().unwrap() > 0);

    // In the gap: refusal, exit 3.
    let gap = walg::pg_time(s.at(452));
    let out = walden()
        .args([
            "plan",
            &s.path(),
            "--target-time",
            &gap,
            "--json",
            "--no-cache",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let j = json(&out);
    let reason = j["refusal"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("falls in a WAL gap from") && reason.contains("on timeline 2"),
        "{reason}"
    );
    assert!(j.get("backup").is_none());

    let out = walden()
        .args(["plan", &s.path(), "--latest", "--json", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let j = json(&out);
    assert_eq!(j["backup"], "base_000000020000002C00000004");
    assert!(j["recovery_target_time"].is_null());

    let out = walden()
        .args(["plan", &s.path(), "--latest", "--no-cache"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("recovery_target_timeline = '2'"));

    // Bad input: one clear line, no panic.
    let out = walden()
        .args(["plan", &s.path(), "--target-time", "teatime", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--target-time") && !err.contains("panicked"),
        "{err}"
    );
    let out = walden()
        .args(["timeline", "/no/such/bucket/dir", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/bucket/dir"));
    let out = walden().args(["timeline", "--no-cache"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WALG_S3_PREFIX"));
}

/// Runs one statement returning one integer on the database that keeps the index (`--cache FILE`): the tests
/// read and age the stored index's last full build as time would.
fn stored_index_sql(database: &std::path::Path, sql: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = walden_core::db::open_file(database).await.unwrap();
        let value: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
        pool.close().await;
        value
    })
}

#[test]
fn the_cache_file_is_refreshed() {
    let s = sample();
    let cache = s.dir.path().join("cache").join("walden.db");
    let cache_s = cache.display().to_string();
    let run = || {
        let out = walden()
            .args(["timeline", &s.path(), "--json", "--cache", &cache_s])
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut j = json(&out);
        j["generated_at"] = Value::Null;
        j["freshness"] = Value::Null;
        j
    };
    let first = run();
    assert!(cache.exists());
    assert_eq!(run(), first);
    // New WAL and a new backup appear after a refresh through the cache.
    let mut more = BucketBuilder::new();
    let now = OffsetDateTime::now_utc();
    more.wal(2, 0x2A00 + 576, 0x2A00 + 590, now, Duration::seconds(1));
    more.backup(&BackupSpec::at(2, 0x2A00 + 580, now));
    more.write_dir(s.dir.path()).unwrap();
    let third = run();
    assert_eq!(third["backups"].as_array().unwrap().len(), 6);
    assert_eq!(
        third["timelines"][1]["last_segment"],
        "000000020000002C0000004E"
    );
}

#[test]
fn an_old_cache_is_rebuilt_in_full_and_sees_deletions() {
    let s = sample();
    let cache = s.dir.path().join("cache").join("walden.db");
    let cache_s = cache.display().to_string();
    let run = || {
        let out = walden()
            .args(["timeline", &s.path(), "--json", "--cache", &cache_s])
            .output()
            .unwrap();
        assert!(out.status.success());
        json(&out)
    };
    let first = run();
    let segments = |j: &Value| j["timelines"][0]["segments"].as_u64().unwrap();
    let before = segments(&first);
    // Retention deletes the oldest segment of timeline 1: a refresh does not notice deletions...
    let oldest = first["timelines"][0]["first_segment"].as_str().unwrap();
    let wal = s.dir.path().join("wal_005");
    let file = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n.starts_with(oldest) && !n.contains(".partial")
        })
        .unwrap();
    std::fs::remove_file(file).unwrap();
    assert_eq!(segments(&run()), before);
    // ...but once the cache's last full build is over an hour old, the next run builds in full.
    let built = stored_index_sql(&cache, "SELECT built_at_ms FROM backup_indexes");
    stored_index_sql(
        &cache,
        "UPDATE backup_indexes SET built_at_ms = built_at_ms - 2 * 3600 * 1000 RETURNING built_at_ms",
    );
    assert_eq!(segments(&run()), before - 1);
    assert!(stored_index_sql(&cache, "SELECT built_at_ms FROM backup_indexes") >= built);
}

#[test]
fn cli_against_s3_with_wal_g_variables() {
    let moto = walg::testkit::MotoServer::start("cli-bucket");
    let vars = moto.walg_env("pg");
    let env: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let cfg = walg::StorageConfig::from_env_map(&env).unwrap();
    let store = cfg.build_store().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sample_builder(OffsetDateTime::now_utc()).write_store(store.as_ref(), &cfg.root))
        .unwrap();

    // Credentials and the prefix come from the environment (no URL argument), as pasted from wal-g.
    let mut cmd = walden();
    cmd.args(["timeline", "--json", "--no-cache"]);
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&out);
    assert_eq!(j["backups"].as_array().unwrap().len(), 5);
    assert_eq!(j["timelines"][1]["parent"], 1);
    assert_eq!(j["url"], "s3://cli-bucket/pg");

    // The same settings from an env file, with an explicit URL.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("walg.env");
    let text: String = vars
        .iter()
        .map(|(k, v)| format!("export {k}='{v}'\n"))
        .collect();
    std::fs::write(&f, text).unwrap();
    let out = walden()
        .args([
            "plan",
            "s3://cli-bucket/pg",
            "--latest",
            "--json",
            "--no-cache",
            "--env-file",
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["backup"], "base_000000020000002C00000004");
}

/// A bucket with 1 MiB segments whose newest segment is real WAL (`walg::xlog_writer`): one commit at
/// `base + 31 min`, archived at `base + 45 min`.
fn bucket_with_real_wal(base: OffsetDateTime) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    walg::testkit::real_wal_builder(base)
        .0
        .write_dir(dir.path())
        .unwrap();
    dir
}

#[test]
fn plan_refuses_a_target_after_the_last_commit_read_from_wal() {
    let base = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(2);
    let dir = bucket_with_real_wal(base);
    let path = dir.path().display().to_string();
    let plan = |target: OffsetDateTime, extra: &[&str]| {
        walden()
            .env("WALG_PG_WAL_SIZE", "1")
            .args(["plan", &path, "--target-time", &walg::pg_time(target)])
            .args(["--json", "--no-cache"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = plan(base + Duration::minutes(40), &[]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(json(&out)["refusal"]["code"], "after_last_commit");
    assert_eq!(
        plan(base + Duration::minutes(30), &[]).status.code(),
        Some(0)
    );
    // Without reading WAL, the old behaviour: planned, with a caveat.
    let out = plan(base + Duration::minutes(40), &["--commit-segments", "0"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(json(&out)["notes"][0]
        .as_str()
        .unwrap()
        .contains("needs a commit after the target"));

    let out = walden()
        .env("WALG_PG_WAL_SIZE", "1")
        .args(["timeline", &path, "--no-cache"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Last commit: "), "{text}");
    assert!(text.contains("an idle database"), "{text}");
    let out = walden()
        .env("WALG_PG_WAL_SIZE", "1")
        .args(["timeline", &path, "--json", "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(
        json(&out)["last_commit"]["segment"],
        "000000010000000000000005"
    );
}
