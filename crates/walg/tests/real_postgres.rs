//! The real-PostgreSQL tier: walg's plans executed by real PostgreSQL 15 recovery.
//!
//! The main story is written once per test run into a wal-g-layout bucket on local storage (see `pg/mod.rs` for
//! how the bucket is filled like wal-g fills it):
//!
//! 1. a primary (timeline 1) with `archive_mode = on`, a table `t`, and a streaming standby;
//! 2. base backup B1 (`pg_basebackup -Ft -X none`), then commits 1 and 2, a segment switch;
//! 3. base backup B2, then commits 3 and 4, a segment switch;
//! 4. the primary stops, the standby is promoted (timeline 2: a real `00000002.history` and the old timeline's
//!    `.partial` are archived), commits 5 and 6 on timeline 2, a segment switch.
//!
//! The server clock (`clock_timestamp()`) and `pg_current_wal_insert_lsn()` are recorded right after commits, so
//! each target lies between two known commits. Each test asks walg (Reader → Index → Timeline → plan) for a
//! plan, then executes it: the plan's backup is fetched into a new data directory, only the plan's WAL range
//! (plus the `.history` files) is offered to `restore_command`, and `postgresql.conf` gets exactly the recovery
//! settings the plan states. The assertions read the restored rows and PostgreSQL's recovery state.
//!
//! Two more stories pin cases walg once planned wrong (what PostgreSQL does is checked too, with a hand-made plan
//! where walg rightly refuses to make one): the old primary keeps archiving after the standby's promotion (a
//! branched archive: every timeline is a restore path), and a backup straddles the timeline switch (the standby
//! is promoted while the primary's backup copies files: a backup is judged by its FinishLSN).
//!
//! A fourth story checks the WAL reader (`walg::xlog`, `Reader::last_commit`) against PostgreSQL's own commit
//! timestamps (`track_commit_timestamp = on` in every story): a large commit over a page boundary, a `COMMIT
//! PREPARED`, a newer segment without a commit, and every codec wal-g writes; the main story shows that a target
//! after the last commit is refused (PostgreSQL would fail) and one just before it restores.
//!
//! Needs PostgreSQL 15's programs (Debian `postgresql-15`, `/usr/lib/postgresql/15/bin`, or `WALDEN_PG_BIN`);
//! without them every test fails with an explanation unless `WALDEN_SKIP_REAL_POSTGRES=1`. As root (CI) the
//! servers run as the `postgres` user.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod pg;

use pg::{parse_epoch, parse_lsn, Bucket, Postgres, Result, Server, SEGMENT_SIZE};
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};
use walg::names::{segment_of, wal_file_name};
use walg::plan::{Plan, PlanOutcome, Target};
use walg::{CommitSearch, Reader, StorageConfig, Timeline};

/// What the story recorded while writing the bucket.
struct Story {
    pg: Postgres,
    bucket: Bucket,
    timeline: Timeline,
    first_backup: String,
    second_backup: String,
    /// Server clock right after commit 1 (before commit 2).
    after_1: OffsetDateTime,
    /// WAL insert position right after commit 3 (before commit 4).
    lsn_after_3: u64,
    /// Server clock right after commit 5 (on timeline 2, before commit 6).
    after_5: OffsetDateTime,
    /// Server clock right after commit 6, the last commit in the archive.
    after_6: OffsetDateTime,
    /// Commit 6's commit timestamp (`pg_last_committed_xact()`), exact.
    commit_6: OffsetDateTime,
    /// What walg read from the archived WAL about the last commit of timeline 2.
    last_commit: CommitSearch,
    /// The LSN where timeline 2 begins.
    switch_lsn: u64,
}

static STORY: OnceLock<std::result::Result<Option<Story>, String>> = OnceLock::new();

/// The story, written on first use; `None` when the tier is skipped. Fails the test when it cannot be written.
fn story() -> Option<&'static Story> {
    let outcome = STORY.get_or_init(|| {
        let Some(pg) = pg::find_postgres()? else {
            return Ok(None);
        };
        write_story(pg).map(Some)
    });
    match outcome {
        Ok(story) => story.as_ref(),
        Err(e) => panic!("the real-PostgreSQL story could not be written: {e}"),
    }
}

/// A story's bucket, `<target tmp>/real_postgres/<story>-<pid>`: in Cargo's per-target scratch directory because a
/// static is never dropped (so it cannot be a `TempDir`); buckets of earlier runs whose process is gone are
/// removed first. Only the bucket stays: the servers' directories are temporary and removed with the story's
/// servers.
fn bucket_root(story: &str) -> Result<PathBuf> {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real_postgres");
    fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    for entry in fs::read_dir(&parent).map_err(|e| e.to_string())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .rsplit_once('-')
            .and_then(|(_, p)| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let root = parent.join(format!("{story}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    Ok(root)
}

fn primary_settings(stage: &Path) -> Vec<(&'static str, String)> {
    let stage = stage.display();
    vec![
        ("fsync", "off".into()),
        ("shared_buffers", "16MB".into()),
        ("min_wal_size", "32MB".into()),
        ("max_wal_size", "64MB".into()),
        ("autovacuum", "off".into()),
        ("timezone", "UTC".into()),
        ("wal_level", "replica".into()),
        // pg_xact_commit_timestamp / pg_last_committed_xact: what the WAL reader's commit times are checked against.
        ("track_commit_timestamp", "on".into()),
        ("max_prepared_transactions", "4".into()),
        ("max_wal_senders", "4".into()),
        ("archive_mode", "on".into()),
        // Only a copy (atomic by rename): the harness uploads staged files like `wal-g wal-push` would.
        (
            "archive_command",
            format!("test ! -f '{stage}/%f' && cp %p '{stage}/%f.tmp' && mv '{stage}/%f.tmp' '{stage}/%f'"),
        ),
    ]
}

/// Inserts row `id` in its own transaction; returns the server clock and WAL insert position right after its
/// commit.
fn commit(server: &Server, id: u32) -> Result<(OffsetDateTime, u64)> {
    let out = server.sql(&[
        &format!("insert into t values ({id})"),
        "select extract(epoch from clock_timestamp()) || ' ' || pg_current_wal_insert_lsn()",
    ])?;
    let (clock, lsn) = out
        .split_once(' ')
        .ok_or_else(|| format!("unexpected {out:?}"))?;
    Ok((parse_epoch(clock)?, parse_lsn(lsn)?))
}

/// `pg_switch_wal()`, waits until the finished segment (and `also`) are archived, then pushes them.
fn switch_and_push(
    server: &Server,
    stage: &Path,
    bucket: &mut Bucket,
    also: &[String],
) -> Result<()> {
    let finished = server.sql(&["select pg_walfile_name(pg_switch_wal())"])?;
    let mut names = vec![finished];
    names.extend_from_slice(also);
    pg::wait_staged(stage, &names)?;
    bucket.push_wal(stage).map(drop)
}

/// A base backup with pg_basebackup, uploaded as wal-g would: the backup's WAL (its stop segment and
/// PostgreSQL's `.backup` history file) reaches `wal_005/` before the sentinel.
fn take_backup(
    pg: &Postgres,
    work: &Path,
    server: &Server,
    stage: &Path,
    bucket: &mut Bucket,
) -> Result<String> {
    take_backup_during(pg, work, server, stage, bucket, None, &mut || Ok(()))
}

/// [`take_backup`] with pg_basebackup throttled to `max_rate` (when given); `during` runs while it copies the
/// data files, that is between `pg_backup_start` and `pg_backup_stop`.
fn take_backup_during(
    pg: &Postgres,
    work: &Path,
    server: &Server,
    stage: &Path,
    bucket: &mut Bucket,
    max_rate: Option<&str>,
    during: &mut dyn FnMut() -> Result<()>,
) -> Result<String> {
    let start_time = OffsetDateTime::now_utc();
    let dir =
        pg.directory(&work.join(format!("basebackup-{}", start_time.unix_timestamp_nanos())))?;
    // pg_basebackup waits until the stop segment is archived ("all required WAL segments have been archived").
    let mut command = pg.command("pg_basebackup", work);
    command
        .args([
            "-U",
            "postgres",
            "-p",
            &pg::PORT.to_string(),
            "-Ft",
            "-X",
            "none",
            "-c",
            "fast",
            "-h",
        ])
        .arg(&server.socket_dir)
        .arg("-D")
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(rate) = max_rate {
        command.args(["--max-rate", rate]);
    }
    let child = command.spawn().map_err(|e| format!("pg_basebackup: {e}"))?;
    let during_result = match max_rate {
        Some(_) => server
            .wait_for(
                "select count(*) from pg_stat_progress_basebackup where phase = 'streaming database files'",
                "1",
                "pg_basebackup to copy the data files",
            )
            .and_then(|()| during()),
        None => during(),
    };
    let out = child
        .wait_with_output()
        .map_err(|e| format!("pg_basebackup: {e}"))?;
    during_result?;
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let base = fs::read(dir.join("base.tar")).map_err(|e| format!("base.tar: {e}"))?;
    let label = pg::file_in_tar(&base, "backup_label")?;
    let (start_lsn, start_file) = location(pg::label_field(&label, "START WAL LOCATION")?)?;
    let history = format!("{start_file}.{:08X}.backup", start_lsn % SEGMENT_SIZE);
    pg::wait_staged(stage, std::slice::from_ref(&history))?;
    let history_text =
        fs::read_to_string(stage.join(&history)).map_err(|e| format!("{history}: {e}"))?;
    let (finish_lsn, stop_file) = location(pg::label_field(&history_text, "STOP WAL LOCATION")?)?;
    pg::wait_staged(stage, &[stop_file])?;
    bucket.push_wal(stage)?;
    let facts = pg::BackupFacts {
        start_lsn,
        finish_lsn,
        start_wal_file: start_file,
        start_time,
        system_identifier: number(
            &server.sql(&["select system_identifier from pg_control_system()"])?,
        )?,
        pg_version: number(&server.sql(&["show server_version_num"])?)?,
        data_dir: server.sql(&["show data_directory"])?,
    };
    let _ = fs::remove_dir_all(&dir);
    bucket.upload_backup(&base, &facts)
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    text.trim().parse().map_err(|e| format!("{text:?}: {e}"))
}

/// `0/2000028 (file 000000010000000000000002)` → (LSN, file).
fn location(field: &str) -> Result<(u64, String)> {
    let (lsn, file) = field
        .split_once(" (file ")
        .ok_or_else(|| format!("unexpected location {field:?}"))?;
    Ok((parse_lsn(lsn)?, file.trim_end_matches(')').to_string()))
}

/// A streaming standby of `primary` (`pg_basebackup -R`); it archives into the same stage once promoted
/// (`archive_mode = on` archives nothing during recovery).
fn start_standby(pg: &Postgres, work: &Path, primary: &Server) -> Result<Server> {
    let data = work.join("standby");
    let out = pg
        .command("pg_basebackup", work)
        .args([
            "-U",
            "postgres",
            "-p",
            &pg::PORT.to_string(),
            "-X",
            "stream",
            "-R",
            "-c",
            "fast",
            "-h",
        ])
        .arg(&primary.socket_dir)
        .arg("-D")
        .arg(&data)
        .output()
        .map_err(|e| format!("pg_basebackup (standby): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_basebackup (standby) failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let standby = Server::on(pg, work, "standby", data)?;
    standby.configure(&[])?;
    standby.start()?;
    Ok(standby)
}

fn write_story(pg: Postgres) -> Result<Story> {
    let work_dir = pg.temp_dir("walg-real-postgres-")?;
    let work = work_dir.path();
    let stage = pg.directory(&work.join("archive-stage"))?;
    let mut bucket = Bucket::new(bucket_root("bucket")?)?;

    let primary = Server::init(&pg, work, "primary")?;
    primary.configure(&primary_settings(&stage))?;
    primary.start()?;
    primary.sql(&["create table t (id int primary key)"])?;
    let standby = start_standby(&pg, work, &primary)?;

    let first_backup = take_backup(&pg, work, &primary, &stage, &mut bucket)?;
    let (after_1, _) = commit(&primary, 1)?;
    commit(&primary, 2)?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;

    let second_backup = take_backup(&pg, work, &primary, &stage, &mut bucket)?;
    let (_, lsn_after_3) = commit(&primary, 3)?;
    commit(&primary, 4)?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;

    // The standby has replayed all of timeline 1 before the primary goes away, so promoting it loses nothing.
    let end = primary.sql(&["select pg_current_wal_insert_lsn()"])?;
    standby.wait_for(
        &format!("select pg_last_wal_replay_lsn() >= '{end}'"),
        "t",
        "the standby to replay timeline 1",
    )?;
    // With archiving on, a clean shutdown finishes the current segment and archives it before the postmaster
    // exits; wal-g would upload it inside that archive_command, so push it now (its upload time is a window end).
    primary.stop()?;
    bucket.push_wal(&stage)?;
    standby.promote()?;
    standby.wait_for("select pg_is_in_recovery()", "f", "the standby's promotion")?;

    // PostgreSQL archives the new timeline's history file and the old timeline's last segment as `.partial`.
    pg::wait_staged(&stage, &["00000002.history".to_string()])?;
    let history = fs::read_to_string(stage.join("00000002.history")).map_err(|e| e.to_string())?;
    let switch_lsn = history
        .lines()
        .find_map(|l| l.split('\t').nth(1))
        .ok_or_else(|| format!("no switch point in 00000002.history: {history:?}"))
        .and_then(parse_lsn)?;
    let partial = format!(
        "{}.partial",
        wal_file_name(1, segment_of(switch_lsn, SEGMENT_SIZE), SEGMENT_SIZE)
    );
    pg::wait_staged(&stage, &[partial])?;
    bucket.push_wal(&stage)?;

    let (after_5, _) = commit(&standby, 5)?;
    let (after_6, _) = commit(&standby, 6)?;
    let (_, commit_6) = last_committed(&standby)?;
    switch_and_push(&standby, &stage, &mut bucket, &[])?;
    standby.stop()?;

    let timeline = read_timeline(&bucket.root)?;
    let last_commit = read_last_commit(&bucket.root, &timeline, 2, &[])?;
    Ok(Story {
        pg,
        bucket,
        timeline,
        first_backup,
        second_backup,
        after_1,
        lsn_after_3,
        after_5,
        after_6,
        commit_6,
        last_commit,
        switch_lsn,
    })
}

/// `pg_last_committed_xact()`: the xid and commit timestamp (exact, microseconds) of the server's last commit.
fn last_committed(server: &Server) -> Result<(u32, OffsetDateTime)> {
    let out = server.sql(&[
        "select xid || ' ' || extract(epoch from timestamp) from pg_last_committed_xact()",
    ])?;
    let (xid, time) = out
        .split_once(' ')
        .ok_or_else(|| format!("unexpected {out:?}"))?;
    Ok((number(xid)?, parse_epoch(time)?))
}

/// The storage settings of a local bucket, plus `env`.
fn storage(root: &Path, env: &[(&str, &str)]) -> Result<StorageConfig> {
    let mut map = HashMap::from([("WALG_FILE_PREFIX".to_string(), root.display().to_string())]);
    map.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    StorageConfig::from_env_map(&map).map_err(|e| e.to_string())
}

/// Reads the last commit of the lineage ending at `leaf` from the bucket's WAL, as `walden plan` does.
fn read_last_commit(
    root: &Path,
    timeline: &Timeline,
    leaf: u32,
    env: &[(&str, &str)],
) -> Result<CommitSearch> {
    let reader = Reader::new(&storage(root, env)?).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(runtime.block_on(reader.last_commit(timeline, leaf, walg::LAST_COMMIT_SEGMENTS)))
}

/// The story's timeline with the last commit read from WAL, as `walden plan` plans.
fn with_last_commit(story: &Story) -> Timeline {
    let mut t = story.timeline.clone();
    t.set_commit_search(story.last_commit.clone());
    t
}

/// Reader → Index → Timeline, as `walden plan` does (`WALG_FILE_PREFIX` = the bucket).
fn read_timeline(root: &Path) -> Result<Timeline> {
    let config = storage(root, &[])?;
    let reader = Reader::new(&config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (index, _) = runtime
        .block_on(reader.build())
        .map_err(|e| e.to_string())?;
    Ok(Timeline::from_index(&index, OffsetDateTime::now_utc()))
}

fn plan(story: &Story, target: Target) -> Plan {
    match story.timeline.choose_backup(&target, None) {
        PlanOutcome::Plan(plan) => *plan,
        PlanOutcome::Refusal(r) => panic!("walg refused {target:?}: {} ({})", r.reason, r.code),
    }
}

/// A server restored from the bucket by the plan; the server is dropped (stopped) before its directory.
struct Restored {
    server: Server,
    wal_offered: Vec<String>,
    _work: tempfile::TempDir,
}

/// Executes `plan`: fetches its backup into a new data directory, offers only its WAL range (and the history
/// files) to `restore_command`, writes `recovery.signal` and exactly the recovery settings the plan states, and
/// starts the server.
fn restore(pg: &Postgres, bucket: &Bucket, plan: &Plan) -> Result<Restored> {
    let restored = prepare_restore(pg, bucket, plan)?;
    restored.server.start()?;
    Ok(restored)
}

/// [`restore`] without starting the server.
fn prepare_restore(pg: &Postgres, bucket: &Bucket, plan: &Plan) -> Result<Restored> {
    let work = pg.temp_dir("walg-restore-")?;
    let data = work.path().join("data");
    bucket.fetch_backup(&plan.backup, &data)?;
    fs::write(data.join("recovery.signal"), "").map_err(|e| e.to_string())?;
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    pg.give(&data)?;
    let wal = work.path().join("wal");
    fs::create_dir_all(&wal).map_err(|e| e.to_string())?;
    let wal_offered = bucket.stage_wal(&plan.wal_from, &plan.wal_to, &wal)?;
    pg.give(&wal)?;

    let server = Server::on(pg, work.path(), "restored", data)?;
    server.configure(&recovery_settings(plan, &wal))?;
    Ok(Restored {
        server,
        wal_offered,
        _work: work,
    })
}

/// Starts a restore that is expected to stop with `error` in its log, and returns that log line. `pg_ctl start`
/// may report success or failure, depending on whether the error comes before the server is consistent.
fn failed_recovery(story: &Story, plan: &Plan, error: &str) -> Result<String> {
    let restored = prepare_restore(&story.pg, &story.bucket, plan)?;
    let _ = restored.server.start();
    let line = restored.server.wait_for_log(error)?;
    let stopped = std::time::Instant::now();
    while restored.server.running() && stopped.elapsed() < pg::WAIT {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if restored.server.running() {
        return Err(format!("the server still runs after {line:?}"));
    }
    Ok(line)
}

/// The plan's recovery settings, as `walden plan` tells the operator to write them, plus what any restore needs
/// (a socket of its own, no archiving into the source bucket, the `restore_command`).
fn recovery_settings(plan: &Plan, wal: &Path) -> Vec<(&'static str, String)> {
    let mut settings = vec![
        ("archive_mode", "off".to_string()),
        ("restore_command", format!("cp '{}/%f' '%p'", wal.display())),
        (
            "recovery_target_timeline",
            plan.recovery_target_timeline.clone(),
        ),
        (
            "recovery_target_action",
            plan.recovery_target_action.clone(),
        ),
    ];
    let targets = [
        ("recovery_target_time", &plan.recovery_target_time),
        ("recovery_target_lsn", &plan.recovery_target_lsn),
        ("recovery_target", &plan.recovery_target),
        ("recovery_target_inclusive", &plan.recovery_target_inclusive),
    ];
    for (key, value) in targets {
        if let Some(v) = value {
            settings.push((key, v.clone()));
        }
    }
    settings
}

/// The ids in `t`, in order.
fn rows(server: &Server) -> Result<String> {
    server.sql(&["select coalesce(string_agg(id::text, ',' order by id), '') from t"])
}

fn timeline_id(server: &Server) -> Result<String> {
    server.sql(&["select timeline_id from pg_control_checkpoint()"])
}

/// Walden's plans state `recovery_target_action = 'promote'` (as Stolon's PITR writes it), so the server stops
/// replaying at the target, ends recovery and promotes onto a new timeline by itself, instead of PostgreSQL's
/// default `pause` (read-only in recovery until `pg_wal_replay_resume()`).
fn wait_promoted(server: &Server) -> Result<()> {
    server.wait_for(
        "select pg_is_in_recovery()",
        "f",
        "promotion at the target (recovery_target_action = 'promote')",
    )
}

fn ok<T>(result: Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_bucket_reads_as_two_backups_on_a_two_timeline_history() {
    let Some(story) = story() else { return };
    let t = &story.timeline;
    let names: Vec<&str> = t.backups.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [story.first_backup.as_str(), story.second_backup.as_str()]
    );
    assert!(t.backups.iter().all(|b| b.restorable), "{:?}", t.backups);
    // The standby's promotion: timeline 2 branches from timeline 1 at the LSN its history file states.
    let two = t
        .timelines
        .iter()
        .find(|i| i.timeline == 2)
        .expect("timeline 2 is known");
    assert_eq!(
        (two.parent, two.switch_lsn),
        (Some(1), Some(story.switch_lsn))
    );
    assert_eq!(t.main_lineage, Some(2));
    let errors: Vec<_> = t
        .findings
        .iter()
        .filter(|f| f.severity == walg::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_target_time_on_the_first_timeline_restores_up_to_it() {
    let Some(story) = story() else { return };
    let plan = plan(story, Target::Time(story.after_1));
    // B2 finished after the target: only B1 is consistent by then.
    assert_eq!(plan.backup, story.first_backup);
    assert_eq!(
        plan.recovery_target_time.as_deref(),
        Some(walg::pg_time(story.after_1).as_str())
    );
    assert_eq!(plan.recovery_target_timeline, "2");
    assert_eq!(plan.recovery_target_inclusive.as_deref(), Some("on"));
    assert_eq!(plan.recovery_target_action, "promote");
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    let server = &restored.server;
    ok(wait_promoted(server));
    // recovery_target_time (inclusive by default) stops before the first commit after the target: commit 1
    // (before it) is restored, commit 2 (after it) is not.
    assert_eq!(
        ok(rows(server)),
        "1",
        "WAL offered: {:?}",
        restored.wal_offered
    );
    // PostgreSQL picks a timeline id above every history in the archive (00000002.history exists): 3.
    assert_eq!(ok(timeline_id(server)), "3");
    assert_eq!(ok(rows(server)), "1");
}

#[test]
fn a_target_lsn_restores_the_commit_before_it_and_not_the_one_after() {
    let Some(story) = story() else { return };
    let plan = plan(story, Target::Lsn(story.lsn_after_3));
    assert_eq!(plan.backup, story.second_backup);
    assert_eq!(
        plan.recovery_target_lsn,
        Some(walg::Lsn(story.lsn_after_3).to_string())
    );
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    ok(wait_promoted(&restored.server));
    // recovery_target_lsn (inclusive) stops after the first record at or past the LSN: commit 3 ended before it,
    // commit 4's commit record comes after its insert record, so it is not replayed.
    assert_eq!(
        ok(rows(&restored.server)),
        "1,2,3",
        "WAL offered: {:?}",
        restored.wal_offered
    );
}

#[test]
fn a_target_time_after_the_promotion_follows_the_history_to_timeline_2() {
    let Some(story) = story() else { return };
    let plan = plan(story, Target::Time(story.after_5));
    // Both backups are on timeline 1; the newest one consistent before the target is B2.
    assert_eq!(plan.backup, story.second_backup);
    assert_eq!(plan.backup_timeline, 1);
    assert_eq!(plan.recovery_target_timeline, "2");
    assert!(plan.wal_to.starts_with("00000002"), "{}", plan.wal_to);
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    let server = &restored.server;
    ok(wait_promoted(server));
    assert_eq!(
        ok(rows(server)),
        "1,2,3,4,5",
        "WAL offered: {:?}",
        restored.wal_offered
    );
    // The new timeline's history, written by PostgreSQL at promotion, shows the path recovery took: timeline 1
    // up to the switch point of 00000002.history, then timeline 2 (as recovery_target_timeline said), then 3.
    let history = ok(
        fs::read_to_string(server.data.join("pg_wal/00000003.history")).map_err(|e| e.to_string()),
    );
    let parents: Vec<(&str, &str)> = history
        .lines()
        .filter_map(|l| {
            let mut fields = l.split('\t');
            Some((fields.next()?, fields.next()?))
        })
        .collect();
    assert_eq!(parents.len(), 2, "{history}");
    assert_eq!(
        (parents[0].0, ok(parse_lsn(parents[0].1))),
        ("1", story.switch_lsn),
        "{history}"
    );
    assert_eq!(parents[1].0, "2", "{history}");
}

#[test]
fn latest_replays_all_archived_wal_and_promotes() {
    let Some(story) = story() else { return };
    let plan = plan(story, Target::Latest);
    assert_eq!(plan.backup, story.second_backup);
    assert_eq!(plan.recovery_target_timeline, "2");
    assert_eq!(
        (
            plan.recovery_target_time.as_ref(),
            plan.recovery_target_lsn.as_ref(),
            plan.recovery_target.as_ref()
        ),
        (None, None, None)
    );
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    let server = &restored.server;
    // Without a recovery target PostgreSQL replays until restore_command finds no next segment, then ends
    // recovery and promotes by itself (no pause).
    ok(server.wait_for(
        "select pg_is_in_recovery()",
        "f",
        "the end of archive recovery",
    ));
    assert_eq!(
        ok(rows(server)),
        "1,2,3,4,5,6",
        "WAL offered: {:?}",
        restored.wal_offered
    );
    assert_eq!(ok(timeline_id(server)), "3");
}

#[test]
fn a_named_backup_restores_to_its_consistency_point() {
    let Some(story) = story() else { return };
    let plan = plan(story, Target::Backup(story.first_backup.clone()));
    assert_eq!(plan.recovery_target.as_deref(), Some("immediate"));
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    ok(wait_promoted(&restored.server));
    // recovery_target = 'immediate' stops as soon as the backup is consistent: the table exists, empty.
    assert_eq!(ok(rows(&restored.server)), "");
}

#[test]
fn a_target_after_the_newest_wal_is_refused_where_postgresql_would_fail() {
    let Some(story) = story() else { return };
    let target = OffsetDateTime::now_utc() + Duration::hours(1);
    match story.timeline.choose_backup(&Target::Time(target), None) {
        PlanOutcome::Refusal(r) => assert_eq!(r.code, "after_latest", "{}", r.reason),
        PlanOutcome::Plan(p) => panic!("walg planned a target after the newest WAL: {p:?}"),
    }
    // What PostgreSQL 13+ does with such a target: it replays all WAL, then stops with a FATAL error instead of
    // opening a database that is older than asked for.
    let mut plan = plan(story, Target::Latest);
    plan.recovery_target_time = Some(walg::pg_time(target));
    let line = ok(failed_recovery(
        story,
        &plan,
        "recovery ended before configured recovery target was reached",
    ));
    assert!(line.contains("FATAL"), "{line}");
}

#[test]
fn the_last_commit_read_from_the_archived_wal_is_commit_6_to_the_microsecond() {
    let Some(story) = story() else { return };
    match &story.last_commit {
        CommitSearch::Found(c) => {
            assert_eq!(c.time, story.commit_6);
            assert_eq!(c.timeline, 2);
            assert!(c.lsn > story.switch_lsn, "{c:?}");
            assert!(c.segment.starts_with("00000002"), "{c:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_target_after_the_last_commit_is_refused_by_walden_where_postgresql_would_fail() {
    let Some(story) = story() else { return };
    // The last archived segment was uploaded after commit 6, so the window from upload times reaches past
    // `after_6`, but no commit follows it: walg, having read the WAL, refuses.
    match with_last_commit(story).choose_backup(&Target::Time(story.after_6), None) {
        PlanOutcome::Refusal(r) => {
            assert_eq!(r.code, "after_last_commit", "{}", r.reason);
            assert!(
                r.reason.contains(&walg::plan::exact_time(story.commit_6)),
                "{}",
                r.reason
            );
        }
        PlanOutcome::Plan(p) => panic!("walg planned a target after the last commit: {p:?}"),
    }
    // What PostgreSQL does with it (the plan made without reading WAL, which warned): FATAL at the end of WAL.
    let plan = plan(story, Target::Time(story.after_6));
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("needs a commit after the target")),
        "{:?}",
        plan.notes
    );
    let line = ok(failed_recovery(
        story,
        &plan,
        "recovery ended before configured recovery target was reached",
    ));
    assert!(line.contains("FATAL"), "{line}");
}

#[test]
fn a_target_just_before_the_last_commit_restores_every_commit_before_it() {
    let Some(story) = story() else { return };
    let target = story.commit_6 - Duration::microseconds(1);
    let plan = match with_last_commit(story).choose_backup(&Target::Time(target), None) {
        PlanOutcome::Plan(p) => *p,
        PlanOutcome::Refusal(r) => panic!("{}: {}", r.code, r.reason),
    };
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    ok(wait_promoted(&restored.server));
    // PostgreSQL stops before commit 6, the first commit after the target.
    assert_eq!(ok(rows(&restored.server)), "1,2,3,4,5");
}

/// A second story, written only by the test below: the standby is promoted while the primary keeps running and
/// archiving into the same bucket (a failover drill, or a clone promoted with the production bucket still
/// configured). Both timelines then hold WAL after timeline 2's switch point.
struct BranchedStory {
    pg: Postgres,
    bucket: Bucket,
    timeline: Timeline,
    _work: tempfile::TempDir,
}

fn write_branched_story(pg: Postgres) -> Result<BranchedStory> {
    let work_dir = pg.temp_dir("walg-real-postgres-branched-")?;
    let work = work_dir.path();
    let stage = pg.directory(&work.join("archive-stage"))?;
    let mut bucket = Bucket::new(work.join("bucket"))?;
    let primary = Server::init(&pg, work, "primary")?;
    primary.configure(&primary_settings(&stage))?;
    primary.start()?;
    primary.sql(&["create table t (id int primary key)"])?;
    let standby = start_standby(&pg, work, &primary)?;
    take_backup(&pg, work, &primary, &stage, &mut bucket)?;
    commit(&primary, 1)?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;
    let end = primary.sql(&["select pg_current_wal_insert_lsn()"])?;
    standby.wait_for(
        &format!("select pg_last_wal_replay_lsn() >= '{end}'"),
        "t",
        "the standby to replay timeline 1",
    )?;
    standby.promote()?;
    standby.wait_for("select pg_is_in_recovery()", "f", "the standby's promotion")?;
    pg::wait_staged(&stage, &["00000002.history".to_string()])?;
    bucket.push_wal(&stage)?;
    // Row 2 only on the promoted standby (timeline 2), row 3 only on the primary (timeline 1, archived last).
    commit(&standby, 2)?;
    switch_and_push(&standby, &stage, &mut bucket, &[])?;
    commit(&primary, 3)?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;
    standby.stop()?;
    primary.stop()?;
    bucket.push_wal(&stage)?;
    let timeline = read_timeline(&bucket.root)?;
    Ok(BranchedStory {
        pg,
        bucket,
        timeline,
        _work: work_dir,
    })
}

/// Every timeline is a restore path: PostgreSQL restores timeline 1 when `recovery_target_timeline = '1'` names
/// it, and wal-g's `wal-verify` treats the higher timeline as someone else writing into the archive.
#[test]
fn the_old_primary_keeps_archiving_after_a_promotion_and_its_timeline_can_be_restored() {
    let Some(pg) = ok(pg::find_postgres()) else {
        return;
    };
    let branched = ok(write_branched_story(pg));
    let plan = match branched.timeline.choose_backup(&Target::Latest, Some(1)) {
        PlanOutcome::Plan(plan) => *plan,
        PlanOutcome::Refusal(r) => panic!("walg refused timeline 1: {} ({})", r.reason, r.code),
    };
    assert_eq!(plan.recovery_target_timeline, "1");
    let restored = ok(restore(&branched.pg, &branched.bucket, &plan));
    ok(restored.server.wait_for(
        "select pg_is_in_recovery()",
        "f",
        "the end of archive recovery",
    ));
    // Timeline 1's history: row 1 and the primary's row 3, not the promoted standby's row 2.
    assert_eq!(
        ok(rows(&restored.server)),
        "1,3",
        "WAL offered: {:?}",
        restored.wal_offered
    );
}

/// A third story: a backup that straddles a timeline switch (a split brain during a backup). Backup B0 finishes
/// on timeline 1; backup BX starts on the primary, the standby is promoted while BX copies files (timeline 2),
/// and the primary, still running, finishes BX after the switch point and archives more timeline-1 WAL.
struct StraddlingStory {
    pg: Postgres,
    bucket: Bucket,
    timeline: Timeline,
    before_switch: String,
    straddling: String,
}

static STRADDLING: OnceLock<std::result::Result<Option<StraddlingStory>, String>> = OnceLock::new();

fn straddling_story() -> Option<&'static StraddlingStory> {
    let outcome = STRADDLING.get_or_init(|| match pg::find_postgres()? {
        Some(pg) => write_straddling_story(pg).map(Some),
        None => Ok(None),
    });
    match outcome {
        Ok(story) => story.as_ref(),
        Err(e) => panic!("the straddling-backup story could not be written: {e}"),
    }
}

fn write_straddling_story(pg: Postgres) -> Result<StraddlingStory> {
    let work_dir = pg.temp_dir("walg-real-postgres-straddling-")?;
    let work = work_dir.path();
    let stage = pg.directory(&work.join("archive-stage"))?;
    let mut bucket = Bucket::new(bucket_root("straddling")?)?;
    let primary = Server::init(&pg, work, "primary")?;
    primary.configure(&primary_settings(&stage))?;
    primary.start()?;
    primary.sql(&["create table t (id int primary key)"])?;
    let standby = start_standby(&pg, work, &primary)?;
    let before_switch = take_backup(&pg, work, &primary, &stage, &mut bucket)?;
    commit(&primary, 1)?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;

    // Row 2 only on the promoted standby (timeline 2), row 3 only on the primary (timeline 1) while BX runs.
    let mut promote_during_backup = || -> Result<()> {
        let end = primary.sql(&["select pg_current_wal_insert_lsn()"])?;
        standby.wait_for(
            &format!("select pg_last_wal_replay_lsn() >= '{end}'"),
            "t",
            "the standby to replay timeline 1",
        )?;
        standby.promote()?;
        standby.wait_for("select pg_is_in_recovery()", "f", "the standby's promotion")?;
        commit(&standby, 2)?;
        commit(&primary, 3).map(drop)
    };
    // 1 MB/s: the ~23 MB data directory takes about 23 s, ample time to promote the standby meanwhile even on a
    // loaded CI machine (the test checks that the backup did end after the switch).
    let straddling = take_backup_during(
        &pg,
        work,
        &primary,
        &stage,
        &mut bucket,
        Some("1M"),
        &mut promote_during_backup,
    )?;
    commit(&primary, 4)?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;
    // The old primary stops before the standby's last write, so timeline 2 holds the newest WAL: with archiving
    // on, a shutdown rotates a segment that has records since the last switch (a standby snapshot that the
    // background writer logs every 15 s is enough) and archives it (`ShutdownXLOG` in PostgreSQL's
    // src/backend/access/transam/xlog.c).
    primary.stop()?;
    bucket.push_wal(&stage)?;
    commit(&standby, 5)?;
    switch_and_push(
        &standby,
        &stage,
        &mut bucket,
        &["00000002.history".to_string()],
    )?;
    standby.stop()?;
    bucket.push_wal(&stage)?;
    let timeline = read_timeline(&bucket.root)?;
    Ok(StraddlingStory {
        pg,
        bucket,
        timeline,
        before_switch,
        straddling,
    })
}

/// PostgreSQL's rule that walg must follow: a backup can serve a timeline only if its end (the backup-end record,
/// its FinishLSN) lies before that timeline leaves the backup's timeline. Restored along timeline 2, the
/// straddling backup never reaches its end, and recovery stops with a FATAL error.
#[test]
fn a_backup_that_ends_after_a_timeline_switch_cannot_be_restored_along_the_new_timeline() {
    let Some(story) = straddling_story() else {
        return;
    };
    let straddling = story
        .timeline
        .backups
        .iter()
        .find(|b| b.name == story.straddling)
        .expect("the straddling backup is in the bucket");
    let switch = story
        .timeline
        .timelines
        .iter()
        .find(|t| t.timeline == 2)
        .and_then(|t| t.switch_lsn)
        .expect("timeline 2 has a switch point");
    // The story did what it says: BX starts before the switch and ends after it, on timeline 1.
    assert!(
        straddling.start_lsn < Some(switch) && Some(switch) < straddling.finish_lsn,
        "the throttled backup should span the promotion: {straddling:?} / switch {switch}"
    );
    let mut plan = plan_latest_on(&story.timeline);
    plan.backup = story.straddling.clone();
    plan.wal_from = wal_file_name(
        1,
        straddling.start_segment(SEGMENT_SIZE).unwrap_or(0),
        SEGMENT_SIZE,
    );
    plan.recovery_target_timeline = "2".into();
    let restored = ok(prepare_restore(&story.pg, &story.bucket, &plan));
    let _ = restored.server.start();
    // PostgreSQL 15: "WAL ends before end of online backup" (the backup-end record is on the abandoned branch).
    let line = ok(restored
        .server
        .wait_for_log("WAL ends before end of online backup"));
    assert!(line.contains("FATAL"), "{line}");
}

/// `wal_005/` with each object's modification time, for failure messages.
fn wal_listing(bucket: &Bucket) -> String {
    let dir = bucket.root.join("wal_005");
    let mut lines: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| {
                    let modified = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .map(|t| format!("{:?}", OffsetDateTime::from(t)))
                        .unwrap_or_default();
                    format!("{modified}  {}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    lines.sort();
    lines.join("\n")
}

fn plan_latest_on(timeline: &Timeline) -> Plan {
    match timeline.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(plan) => *plan,
        PlanOutcome::Refusal(r) => panic!("walg refused --latest: {} ({})", r.reason, r.code),
    }
}

/// A backup serves a timeline only if its consistency point (FinishLSN) lies before that timeline leaves the
/// backup's timeline (see the test above); wal-g uploads the straddling backup's sentinel anyway
/// (`bundle.go#checkTimelineChanged` only checks the backed-up server's own timeline).
#[test]
fn latest_after_a_split_brain_backup_picks_the_backup_that_ended_before_the_switch() {
    let Some(story) = straddling_story() else {
        return;
    };
    let plan = plan_latest_on(&story.timeline);
    assert_eq!(
        plan.recovery_target_timeline,
        "2",
        "the default lineage is the one with the newest WAL: {:?}\n{}",
        story.timeline.lineages,
        wal_listing(&story.bucket)
    );
    assert_eq!(plan.backup, story.before_switch, "not {}", story.straddling);
    let restored = ok(restore(&story.pg, &story.bucket, &plan));
    ok(restored.server.wait_for(
        "select pg_is_in_recovery()",
        "f",
        "the end of archive recovery",
    ));
    // Timeline 2's history: row 1 (timeline 1 before the switch), the standby's rows 2 and 5, not the old
    // primary's 3 and 4.
    assert_eq!(
        ok(rows(&restored.server)),
        "1,2,5",
        "WAL offered: {:?}",
        restored.wal_offered
    );
}

/// A fourth story, for the WAL reader: one primary whose last commit is large (3000 subtransactions: a commit
/// record of about 12 kB, over a page boundary), preceded by a prepared transaction committed with `COMMIT
/// PREPARED`; then a segment switch, and a newer segment holding only a checkpoint (no commit), so the reader
/// must walk back across the switch.
struct CommitStory {
    bucket: Bucket,
    timeline: Timeline,
    /// `pg_last_committed_xact()` after the large commit.
    last_xid: u32,
    last_time: OffsetDateTime,
    /// The prepared transaction's commit timestamp (`pg_xact_commit_timestamp`).
    prepared_time: OffsetDateTime,
    /// The segment holding the large commit, and the newest segment.
    commit_segment: String,
    newest_segment: String,
    _work: tempfile::TempDir,
}

static COMMITS: OnceLock<std::result::Result<Option<CommitStory>, String>> = OnceLock::new();

fn commit_story() -> Option<&'static CommitStory> {
    let outcome = COMMITS.get_or_init(|| match pg::find_postgres()? {
        Some(pg) => write_commit_story(pg).map(Some),
        None => Ok(None),
    });
    match outcome {
        Ok(story) => story.as_ref(),
        Err(e) => panic!("the commit story could not be written: {e}"),
    }
}

fn write_commit_story(pg: Postgres) -> Result<CommitStory> {
    let work_dir = pg.temp_dir("walg-real-postgres-commits-")?;
    let work = work_dir.path();
    let stage = pg.directory(&work.join("archive-stage"))?;
    let mut bucket = Bucket::new(bucket_root("commits")?)?;
    let primary = Server::init(&pg, work, "primary")?;
    primary.configure(&primary_settings(&stage))?;
    primary.start()?;
    primary.sql(&["create table t (id int primary key)"])?;
    take_backup(&pg, work, &primary, &stage, &mut bucket)?;

    let gid = format!("walden-{}", "g".repeat(180));
    primary.sql(&[
        "begin",
        "insert into t values (0)",
        &format!("prepare transaction '{gid}'"),
    ])?;
    let prepared_xid: u32 = number(&primary.sql(&[&format!(
        "select transaction from pg_prepared_xacts where gid = '{gid}'"
    )])?)?;
    primary.sql(&[&format!("commit prepared '{gid}'")])?;
    let prepared_time = parse_epoch(&primary.sql(&[&format!(
        "select extract(epoch from pg_xact_commit_timestamp('{prepared_xid}'::xid))"
    )])?)?;
    // Each BEGIN ... EXCEPTION block that writes is a subtransaction with its own xid, listed in the commit record.
    primary.sql(&[
        "do $$ begin for i in 1..3000 loop begin insert into t values (i); \
         exception when others then null; end; end loop; end $$",
    ])?;
    let (last_xid, last_time) = last_committed(&primary)?;
    let commit_segment = primary.sql(&["select pg_walfile_name(pg_current_wal_insert_lsn())"])?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;
    // A newer segment without a commit: a checkpoint, then a switch.
    primary.sql(&["checkpoint"])?;
    let newest_segment = primary.sql(&["select pg_walfile_name(pg_current_wal_insert_lsn())"])?;
    switch_and_push(&primary, &stage, &mut bucket, &[])?;
    primary.stop()?;
    let timeline = read_timeline(&bucket.root)?;
    Ok(CommitStory {
        bucket,
        timeline,
        last_xid,
        last_time,
        prepared_time,
        commit_segment,
        newest_segment,
        _work: work_dir,
    })
}

/// The plain bytes of a WAL segment in the (lz4) bucket.
fn segment_bytes(bucket: &Bucket, name: &str) -> Vec<u8> {
    let path = bucket.root.join("wal_005").join(format!("{name}.lz4"));
    let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    walg::codec::decompress(&data, walg::Compression::Lz4).unwrap()
}

#[test]
fn the_decoded_last_commit_equals_postgresqls_commit_timestamp_across_a_segment_switch() {
    let Some(story) = commit_story() else { return };
    assert_ne!(story.commit_segment, story.newest_segment);
    let found = match ok(read_last_commit(
        &story.bucket.root,
        &story.timeline,
        1,
        &[],
    )) {
        CommitSearch::Found(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(found.time, story.last_time);
    assert_eq!(found.segment, story.commit_segment);
    assert_eq!(found.kind, walg::xlog::XactKind::Commit);

    // The record itself, read from the segment: the last committed xid, spanning a page boundary.
    let seg = segment_bytes(&story.bucket, &story.commit_segment);
    let start = walg::names::parse_wal_file_name(&story.commit_segment, SEGMENT_SIZE)
        .map(|(_, n)| n * SEGMENT_SIZE)
        .unwrap();
    let scan = walg::xlog::scan(&seg, SEGMENT_SIZE, start);
    let record = scan.xacts.iter().find(|x| x.lsn == found.lsn).unwrap();
    assert_eq!(record.xid, story.last_xid);
    assert!(
        record.end_lsn / 8192 > record.lsn / 8192,
        "the commit record does not cross a page: {record:?}"
    );
    assert!(record.end_lsn - record.lsn > 12_000, "{record:?}");
    // The COMMIT PREPARED before it, to the microsecond.
    let prepared: Vec<_> = scan
        .xacts
        .iter()
        .filter(|x| x.kind == walg::xlog::XactKind::CommitPrepared)
        .collect();
    assert_eq!(prepared.len(), 1, "{:?}", scan.xacts);
    assert_eq!(prepared[0].time(), Some(story.prepared_time));
    // The segment ends with the switch: the walk stopped at the end of the input, not on an error.
    assert_eq!(
        scan.stop.reason,
        walg::xlog::StopReason::EndOfInput,
        "{}",
        scan.stop
    );
}

#[test]
fn the_last_commit_is_read_through_every_codec_and_libsodium() {
    let Some(story) = commit_story() else { return };
    const KEY: &str = "walden-test-libsodium-key-32-byte";
    let key = walg::LibsodiumKey::from_setting(KEY, None).unwrap();
    let cases = [
        (walg::Compression::Zstd, None),
        (walg::Compression::Brotli, None),
        (walg::Compression::Lzma, None),
        (walg::Compression::Gzip, None),
        (walg::Compression::None, None),
        (walg::Compression::Lz4, Some(key)),
    ];
    for (c, key) in cases {
        // The story's bucket, every WAL object re-encoded (and encrypted), as wal-g with that setting writes it.
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&story.bucket.root, dir.path(), &|name, data| {
            let (base, from) = walg::Compression::split(name);
            if from != walg::Compression::Lz4 {
                return (name.to_string(), data.to_vec());
            }
            let plain = walg::codec::decompress(data, from).unwrap();
            let coded = walg::codec::encode(&plain, c, key.as_ref()).unwrap();
            (c.key_for(base), coded)
        });
        let env: &[(&str, &str)] = if key.is_some() {
            &[("WALG_LIBSODIUM_KEY", KEY)]
        } else {
            &[]
        };
        let timeline = {
            let reader = Reader::new(&ok(storage(dir.path(), env))).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let (index, _) = runtime.block_on(reader.build()).unwrap();
            Timeline::from_index(&index, OffsetDateTime::now_utc())
        };
        match ok(read_last_commit(dir.path(), &timeline, 1, env)) {
            CommitSearch::Found(found) => assert_eq!(found.time, story.last_time, "{c:?}"),
            other => panic!("{c:?}: {other:?}"),
        }
    }
}

/// Rewrites one `wal_005/` object: its new name and bytes.
type Rewrite<'a> = &'a dyn Fn(&str, &[u8]) -> (String, Vec<u8>);

/// Copies `from` into `to`; files under `wal_005/` go through `wal`.
fn copy_tree(from: &Path, to: &Path, wal: Rewrite<'_>) {
    for entry in fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            let sub = to.join(&name);
            fs::create_dir_all(&sub).unwrap();
            copy_tree(&path, &sub, wal);
        } else {
            let data = fs::read(&path).unwrap();
            let (name, data) = if from.ends_with("wal_005") {
                wal(&name, &data)
            } else {
                (name, data)
            };
            fs::write(to.join(name), data).unwrap();
        }
    }
}
