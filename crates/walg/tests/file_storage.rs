//! The whole reader against real files on local storage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use walg::codec::LibsodiumKey;
use walg::names::Compression;
use walg::plan::{PlanOutcome, Target};
use walg::testkit::{sample_builder, BackupSpec, BucketBuilder};
use walg::{Index, Reader, StorageConfig, Timeline};

const NOW: OffsetDateTime = datetime!(2026-03-05 12:00 UTC);
const SEG: u64 = 16 * 1024 * 1024;

fn at(k: i64) -> OffsetDateTime {
    datetime!(2026-03-01 12:00 UTC) + Duration::minutes(10 * k)
}

fn reader_for(dir: &std::path::Path, env: &[(&str, &str)]) -> Reader {
    let mut e: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e.insert("WALG_FILE_PREFIX".into(), dir.display().to_string());
    Reader::new(&StorageConfig::from_env_map(&e).unwrap()).unwrap()
}

async fn read(dir: &std::path::Path, env: &[(&str, &str)]) -> (Index, Timeline) {
    let (idx, _) = reader_for(dir, env).build().await.unwrap();
    let t = Timeline::from_index(&idx, NOW);
    (idx, t)
}

fn codes(t: &Timeline) -> Vec<&str> {
    t.findings.iter().map(|f| f.code.as_str()).collect()
}

#[tokio::test]
async fn sample_bucket_timelines_windows_and_plans() {
    let dir = tempfile::tempdir().unwrap();
    sample_builder(NOW).write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;

    assert_eq!(t.backups.len(), 5);
    assert!(t.backups.iter().all(|b| b.restorable), "{:?}", t.backups);
    assert!(t.backups[0].permanent);
    assert_eq!(
        t.backups.iter().filter(|b| b.delta_from.is_some()).count(),
        1
    );
    assert_eq!(t.timelines.len(), 2);
    let t2 = &t.timelines[1];
    assert_eq!((t2.timeline, t2.parent), (2, Some(1)));
    assert_eq!(t2.switch_lsn, Some((0x2A00 + 360) * SEG + 0x4000));
    assert_eq!(t2.gaps.len(), 1);
    assert_eq!(t2.gaps[0].len(), 6);
    assert_eq!(t.timelines[0].abandoned, None);
    assert_eq!(t.main_lineage, Some(2));

    // Two windows on timeline 2's history, split by the gap.
    assert_eq!(t.windows.len(), 2, "{:?}", t.windows);
    assert_eq!(t.windows[0].from, at(12) + Duration::minutes(5));
    assert_eq!(t.windows[0].to, at(449));
    assert_eq!(t.windows[1].from, at(516) + Duration::minutes(5));
    assert_eq!(t.windows[1].to, at(575));
    assert_eq!(t.earliest_restorable, Some(at(12) + Duration::minutes(5)));
    assert_eq!(t.latest_restorable, Some(at(575)));

    // The gap is an error; nothing else is.
    let errors: Vec<_> = t
        .findings
        .iter()
        .filter(|f| f.severity == walg::Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, "wal_gap");
    assert!(
        errors[0].message.contains("timeline 2"),
        "{}",
        errors[0].message
    );
    assert!(
        errors[0].message.contains("2026-03-04 14:50 UTC"),
        "{}",
        errors[0].message
    );

    // Target time on timeline 1's part of the history: the delta backup (newest that finished before).
    let target = at(300);
    match t.choose_backup(&Target::Time(target), None) {
        PlanOutcome::Plan(p) => {
            assert!(p.backup.contains("_D_"), "{}", p.backup);
            assert_eq!(
                p.recovery_target_time.as_deref(),
                Some("2026-03-03 14:00:00+00")
            );
            assert_eq!(p.recovery_target_timeline, "2");
            assert_eq!(p.wal_from, format!("00000001{:08X}{:08X}", 0x2A, 0xE4));
            assert_eq!(p.wal_to, "000000010000002B0000002C");
            assert_eq!(p.wal_segments, 300 - 228 + 1);
            assert!(p.wal_bytes > 0);
            assert_eq!(p.delta_chain.len(), 1);
        }
        r => panic!("{r:?}"),
    }
    // Not wal-g's LATEST: an early target picks the early backup.
    match t.choose_backup(&Target::Time(at(100)), None) {
        PlanOutcome::Plan(p) => assert_eq!(p.backup, "base_000000010000002A0000000C"),
        r => panic!("{r:?}"),
    }
    // In the gap: a precise refusal.
    match t.choose_backup(&Target::Time(at(452)), None) {
        PlanOutcome::Refusal(r) => {
            assert_eq!(r.code, "wal_gap");
            assert_eq!(
                r.reason,
                "2026-03-04 15:20 UTC falls in a WAL gap from 2026-03-04 14:50 UTC to 2026-03-04 16:00 UTC on \
                 timeline 2 (segments 000000020000002B000000C2 to 000000020000002B000000C7 are missing)."
            );
        }
        p => panic!("{p:?}"),
    }
    // Before the first backup finished, after the WAL ends.
    match t.choose_backup(&Target::Time(at(12)), None) {
        PlanOutcome::Refusal(r) => assert_eq!(r.code, "before_earliest", "{}", r.reason),
        p => panic!("{p:?}"),
    }
    match t.choose_backup(&Target::Time(NOW), None) {
        PlanOutcome::Refusal(r) => assert_eq!(r.code, "after_latest", "{}", r.reason),
        p => panic!("{p:?}"),
    }
    // Latest: the backup after the gap.
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, "base_000000020000002C00000004");
            assert_eq!(p.backup_timeline, 2);
            assert_eq!(p.recovery_target_time, None);
            assert_eq!(p.wal_to, "000000020000002C0000003F");
        }
        r => panic!("{r:?}"),
    }
    // LSN target inside timeline 1's part.
    let lsn = (0x2A00 + 200) * SEG + 5;
    match t.choose_backup(&Target::Lsn(lsn), None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, "base_000000010000002A0000009C");
            assert_eq!(p.recovery_target_lsn.as_deref(), Some("2A/C8000005"));
        }
        r => panic!("{r:?}"),
    }
    // Named backup: to its consistency point.
    let first = t.backups[0].name.clone();
    match t.choose_backup(&Target::Backup(first.clone()), None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, first);
            assert_eq!(p.recovery_target.as_deref(), Some("immediate"));
            assert_eq!(p.wal_segments, 2);
        }
        r => panic!("{r:?}"),
    }
    match t.choose_backup(&Target::Backup("base_nope".into()), None) {
        PlanOutcome::Refusal(r) => assert_eq!(r.code, "unknown_backup"),
        p => panic!("{p:?}"),
    }

    // JSON report shape.
    let j = serde_json::to_value(t.report()).unwrap();
    assert_eq!(j["backups"][0]["start_lsn"], "2A/C000028");
    assert_eq!(
        j["timelines"][1]["gaps"][0]["from"],
        "000000020000002B000000C2"
    );
    assert_eq!(j["timelines"][1]["switch_lsn"], "2B/68004000");
    assert_eq!(j["windows"][1]["to"], "2026-03-05T11:50:00Z");
    assert_eq!(j["findings"][0]["severity"], "error");
    assert!(t.render_text().contains("RESTORABLE WINDOWS"));
}

#[tokio::test]
async fn every_compression_and_encryption() {
    let key = LibsodiumKey::from_setting("correct horse battery staple!", None).unwrap();
    for c in [
        Compression::Lz4,
        Compression::Lzma,
        Compression::Zstd,
        Compression::Brotli,
        Compression::None,
        Compression::LegacyDot,
    ] {
        for encrypted in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut b = BucketBuilder::new().compression(c);
            if encrypted {
                b = b.encrypt(key.clone());
            }
            b.wal(1, 10, 40, at(0), Duration::minutes(10));
            b.history(2, &[(1, 41 * SEG + 0x100)], at(31));
            b.wal(2, 41, 60, at(31), Duration::minutes(10));
            b.backup(&BackupSpec::at(1, 12, at(2)));
            b.write_dir(dir.path()).unwrap();
            let env: Vec<(&str, &str)> = if encrypted {
                vec![("WALG_LIBSODIUM_KEY", "correct horse battery staple!")]
            } else {
                vec![]
            };
            let (_, t) = read(dir.path(), &env).await;
            assert_eq!(
                t.timelines[1].parent,
                Some(1),
                "{c:?} encrypted={encrypted}: {:?}",
                t.findings
            );
            assert!(t.backups[0].restorable);
            assert_eq!(t.windows.len(), 1);
            assert_eq!(t.windows[0].to, at(50));
            if c == Compression::LegacyDot {
                assert!(codes(&t).contains(&"legacy_trailing_dot"));
            }
            if encrypted {
                // Without the key the history cannot be read: a finding that names the object, not a failure.
                let (_, t) = read(dir.path(), &[]).await;
                let f = t
                    .findings
                    .iter()
                    .find(|f| f.code == "unreadable_history")
                    .expect("finding");
                assert!(f.message.contains("00000002.history"), "{}", f.message);
                assert_eq!(t.backups.len(), 1);
                // A wrong key too.
                let (_, t) = read(
                    dir.path(),
                    &[("WALG_LIBSODIUM_KEY", "this is not the right key at all")],
                )
                .await;
                assert!(codes(&t).contains(&"unreadable_history"));
            }
        }
    }
}

/// The review's encrypted bucket read without the key (or with PGP/KMS, which Walden cannot decrypt): wal-g and
/// PostgreSQL read `.history` through the crypter (`wal-fetch`, `timeline_history.go`), so the restore works; Walden
/// must place timeline 2 from the names (the old timeline's `.partial` is the new one's first segment), plan
/// targets before and after the failover, and never claim "not a child" or a branch it cannot see.
#[tokio::test]
async fn an_unreadable_history_is_inferred_from_the_partial_and_plans_still_cross_the_failover() {
    let key = LibsodiumKey::from_setting("correct horse battery staple!", None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new().encrypt(key);
    b.wal(1, 10, 30, at(0), Duration::minutes(10));
    let first = b.backup(&BackupSpec::at(1, 12, at(2)));
    b.partial(1, 31, at(21));
    b.history(2, &[(1, 31 * SEG + 0x100)], at(21));
    b.wal(2, 31, 50, at(21), Duration::minutes(10));
    let second = b.backup(&BackupSpec::at(2, 40, at(30)));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    let found = codes(&t);
    assert!(found.contains(&"unreadable_history"), "{found:?}");
    assert!(found.contains(&"history_inferred"), "{found:?}");
    for wrong in ["latest_not_a_child", "branches", "missing_history"] {
        assert!(!found.contains(&wrong), "{wrong}: {:?}", t.findings);
    }
    assert_eq!(t.timelines[1].parent, Some(1));
    assert_eq!(t.main_lineage, Some(2));
    match t.choose_backup(&Target::Time(at(10)), None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, first);
            assert_eq!(p.recovery_target_timeline, "2");
        }
        r => panic!("{r:?}"),
    }
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => assert_eq!(p.backup, second),
        r => panic!("{r:?}"),
    }
    // From timeline 1's backup across the failover to timeline 2's newest WAL.
    match t.choose_backup(&Target::Time(at(35)), None) {
        PlanOutcome::Plan(p) => assert_eq!(p.backup, second),
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn bad_input_is_reported_and_the_rest_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 100, at(0), Duration::minutes(10));
    let good = b.backup(&BackupSpec::at(1, 12, at(2)));
    // A delta whose parent disappeared.
    let parent = b.backup(&BackupSpec::at(1, 30, at(20)));
    b.backup(&BackupSpec::at(1, 50, at(40)).delta_of(&parent));
    b.remove(&format!("{parent}_backup_stop_sentinel.json"));
    // Truncated and non-JSON sentinels.
    b.raw(
        "basebackups_005/base_000000010000000000000040_backup_stop_sentinel.json",
        b"{\"LSN\": 10",
        at(50),
    );
    b.raw(
        "basebackups_005/base_000000010000000000000041_backup_stop_sentinel.json",
        b"<html>nope</html>",
        at(50),
    );
    b.raw(
        "basebackups_005/base_000000010000000000000042_backup_stop_sentinel.json",
        b"",
        at(50),
    );
    // Names that look almost right.
    b.raw(
        "basebackups_005/base_00000001000000000000004_backup_stop_sentinel.json",
        b"{}",
        at(50),
    );
    b.raw("wal_005/000000010000000000000100.lz4", b"x", at(50));
    b.raw("wal_005/00000001000000000000006a.lz4", b"x", at(50));
    // Garbage folder, a duplicate in another compression, a zero-size segment, a metadata sidecar.
    b.garbage("base_000000010000000000000058", at(60));
    b.raw("wal_005/000000010000000000000020.zst", b"dup", at(10));
    b.raw("wal_005/000000010000000000000064.br", b"", at(90));
    b.raw("wal_005/000000010000000000000021.json", b"{}", at(10));
    // A history file that cannot be decompressed.
    b.raw("wal_005/00000002.history.lz4", b"not lz4 at all", at(90));
    // A second cluster in the same prefix.
    let mut other = BackupSpec::at(1, 70, at(60));
    other.system_identifier = Some(42);
    b.backup(&other);
    // Stale sentinel permanence.
    let mut marked = BackupSpec::at(1, 80, at(70));
    marked.permanent = true;
    marked.sentinel_permanent = Some(false);
    b.backup(&marked);
    // A backup without pg_control.tar, one without any data tar.
    let mut no_control = BackupSpec::at(1, 84, at(74));
    no_control.with_pg_control = false;
    let no_control = b.backup(&no_control);
    let mut no_data = BackupSpec::at(1, 90, at(78));
    no_data.with_data = false;
    let no_data = b.backup(&no_data);
    b.write_dir(dir.path()).unwrap();

    let (_, t) = read(dir.path(), &[]).await;
    let c = codes(&t);
    let incomplete: Vec<_> = t
        .findings
        .iter()
        .filter(|f| f.code == "backup_incomplete")
        .collect();
    assert!(incomplete
        .iter()
        .any(|f| f.message.contains(&no_control) && f.message.contains("pg_control")));
    assert!(incomplete
        .iter()
        .any(|f| f.message.contains(&no_data) && f.message.contains("no data tar")));
    for expected in [
        "broken_delta_chain",
        "unreadable_sentinel",
        "bad_backup_name",
        "unknown_wal_objects",
        "garbage_folder",
        "duplicate_compression",
        "zero_size_objects",
        "wal_metadata_sidecars",
        "unreadable_history",
        "mixed_system_identifiers",
        "stale_sentinel_permanence",
    ] {
        assert!(
            c.contains(&expected),
            "missing {expected}: {:#?}",
            t.findings
        );
    }
    let unreadable: Vec<_> = t
        .findings
        .iter()
        .filter(|f| f.code == "unreadable_sentinel")
        .collect();
    assert_eq!(unreadable.len(), 3);
    assert!(unreadable.iter().all(|f| f
        .object
        .as_deref()
        .unwrap_or("")
        .contains("base_0000000100000000000000")));
    // The good backup is still there and restorable.
    let g = t.backups.iter().find(|x| x.name == good).unwrap();
    assert!(g.restorable);
    assert!(t
        .backups
        .iter()
        .find(|x| x.name.contains("_D_"))
        .is_some_and(|d| !d.restorable));
    assert!(t
        .backups
        .iter()
        .any(|x| x.permanent && x.name.ends_with("50")));
    assert!(t.has_errors());
}

#[tokio::test]
async fn missing_consistency_wal_and_abandoned_branch() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 60, at(0), Duration::minutes(10));
    let broken = b.backup(&BackupSpec::at(1, 20, at(10)));
    b.remove("000000010000000000000015"); // segment 21: second segment of the backup
    b.history(2, &[(1, 40 * SEG + 0x200)], at(30));
    b.wal(2, 40, 70, at(30), Duration::minutes(10));
    let ok = b.backup(&BackupSpec::at(2, 45, at(35)));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    let bb = t.backups.iter().find(|x| x.name == broken).unwrap();
    assert!(!bb.restorable);
    let f = t
        .findings
        .iter()
        .find(|f| f.code == "missing_consistency_wal")
        .unwrap();
    assert!(
        f.message.contains("000000010000000000000015"),
        "{}",
        f.message
    );
    assert!(t.backups.iter().find(|x| x.name == ok).unwrap().restorable);
    // Timeline 1 kept writing segments 40..60 after the switch: an abandoned branch.
    assert_eq!(t.timelines[0].abandoned_segments, 21);
    assert!(codes(&t).contains(&"abandoned_segments"));
}

#[tokio::test]
async fn branches_and_latest() {
    // 1 -> 2 at segment 30, and 1 -> 3 at segment 50 (a second PITR from the old timeline).
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 29, at(0), Duration::minutes(10));
    b.history(2, &[(1, 30 * SEG + 1)], at(20));
    b.wal(2, 30, 40, at(20), Duration::minutes(10));
    b.history(3, &[(1, 25 * SEG + 1)], at(40));
    b.wal(3, 25, 60, at(40), Duration::minutes(10));
    b.backup(&BackupSpec::at(1, 12, at(2)));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    // One lineage per timeline: 1 kept archiving after 3 forked from it, so it is a restore path of its own.
    assert_eq!(t.lineages.len(), 3);
    assert_eq!(t.main_lineage, Some(3));
    assert!(codes(&t).contains(&"branches"));
    // recovery_target_timeline=latest from timeline 1 would pick 3 (2 and 3 both exist); 3 branched from 1: fine.
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => assert_eq!(p.recovery_target_timeline, "3"),
        r => panic!("{r:?}"),
    }
    match t.choose_backup(&Target::Latest, Some(2)) {
        PlanOutcome::Plan(p) => assert_eq!(p.recovery_target_timeline, "2"),
        r => panic!("{r:?}"),
    }
    match t.choose_backup(&Target::Latest, Some(9)) {
        PlanOutcome::Refusal(r) => assert_eq!(r.code, "unknown_timeline"),
        p => panic!("{p:?}"),
    }
}

/// The branched archive of the wal-g fidelity review: a clone restored with production's WALG_* settings
/// promoted to timeline 2 and archived into production's prefix, while production kept archiving on timeline 1.
/// PostgreSQL restores timeline 1 when `recovery_target_timeline = '1'` names it (any timeline whose history holds
/// the backup's checkpoint); wal-g's `wal-verify` follows the current timeline's history and reports the higher
/// timeline as someone else writing into the archive (`timeline_check_runner.go`).
#[tokio::test]
async fn a_branched_archive_follows_the_timeline_with_the_newest_wal() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 40, at(0), Duration::minutes(10));
    let early = b.backup(&BackupSpec::at(1, 12, at(2)));
    let newest = b.backup(&BackupSpec::at(1, 30, at(20)));
    b.history(2, &[(1, 20 * SEG + 0x100)], at(25));
    b.partial(1, 20, at(25));
    b.wal(2, 20, 23, at(25), Duration::minutes(10));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    assert_eq!(t.main_lineage, Some(1));
    assert!(t.backups.iter().all(|x| x.restorable), "{:?}", t.backups);
    let branched: Vec<_> = t
        .findings
        .iter()
        .filter(|f| f.code == "archive_branched")
        .collect();
    assert_eq!(branched.len(), 1, "{:?}", t.findings);
    assert_eq!(branched[0].severity, walg::Severity::Error);
    assert!(
        branched[0]
            .message
            .contains("timeline 2 forked from timeline 1 at 0/14000100, but timeline 1 kept archiving until 000000010000000000000028"),
        "{}",
        branched[0].message
    );
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, newest);
            assert_eq!(p.recovery_target_timeline, "1");
            assert_eq!(p.wal_to, "000000010000000000000028");
        }
        r => panic!("{r:?}"),
    }
    // A time after the fork, before the clone wrote anything: production's timeline 1, not the clone's.
    match t.choose_backup(&Target::Time(at(15)), None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, early);
            assert_eq!(p.recovery_target_timeline, "1");
        }
        r => panic!("{r:?}"),
    }
    // The clone's timeline is still a restore path when chosen.
    match t.choose_backup(&Target::Latest, Some(2)) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, early);
            assert_eq!(p.recovery_target_timeline, "2");
        }
        r => panic!("{r:?}"),
    }
}

/// A backup that started on timeline 1 before the standby's promotion and finished after it (split brain during
/// a backup): its backup-end record is on the abandoned timeline 1, so along timeline 2 PostgreSQL stops with
/// "WAL ends before end of online backup". wal-g uploads its sentinel anyway (`bundle.go#checkTimelineChanged`
/// only withholds it when the backed-up server's own timeline changed).
#[tokio::test]
async fn a_backup_straddling_a_promotion_is_judged_by_its_finish_lsn() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 30, at(0), Duration::minutes(10));
    let before = b.backup(&BackupSpec::at(1, 12, at(2)));
    let mut spec = BackupSpec::at(1, 20, at(10));
    spec.finish_lsn = 22 * SEG + 0x1F8;
    spec.finish_time = at(12) + Duration::minutes(1);
    let straddling = b.backup(&spec);
    b.history(2, &[(1, 21 * SEG + 0x100)], at(11));
    b.partial(1, 21, at(11));
    b.wal(
        2,
        21,
        35,
        at(11) + Duration::minutes(1),
        Duration::minutes(10),
    );
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    assert_eq!(t.main_lineage, Some(2));
    let bx = t.backups.iter().find(|x| x.name == straddling).unwrap();
    let on: Vec<u32> = bx.windows.iter().map(|w| w.lineage).collect();
    assert_eq!(on, [1], "only timeline 1's own history reaches its end");
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, before, "not {straddling}");
            assert_eq!(p.recovery_target_timeline, "2");
        }
        r => panic!("{r:?}"),
    }
}

/// wal-g's `wal-verify` calls missing segments among the newest `WALG_UPLOAD_CONCURRENCY` (16) MISSING_UPLOADING,
/// a warning (`integrity_check_runner.go#runWalIntegrityScan`); PostgreSQL restoring to the end stops at the last
/// contiguous segment. So `--latest` plans to it instead of refusing.
#[tokio::test]
async fn a_hole_at_the_tip_while_uploading_is_a_warning_and_latest_stops_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 60, at(0), Duration::minutes(10));
    b.backup_in_wal_order(&BackupSpec::at(1, 12, at(2)));
    let newest = b.backup_in_wal_order(&BackupSpec::at(1, 40, at(30)));
    b.remove("00000001000000000000003A"); // segment 58; 59 and 60 are archived
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    assert!(!t.has_errors(), "{:?}", t.findings);
    assert!(codes(&t).contains(&"wal_uploading"), "{:?}", t.findings);
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => {
            assert_eq!(p.backup, newest);
            assert_eq!(p.wal_to, "000000010000000000000039");
            assert!(
                p.notes
                    .iter()
                    .any(|n| n.contains("probably still uploading")),
                "{:?}",
                p.notes
            );
        }
        r => panic!("{r:?}"),
    }
}

/// `backup-mark` plus `delete retain FULL`: wal-g keeps only the permanent backup's own WAL (`delete_util.go`) and
/// `wal-verify` never takes a permanent backup as its left border (`checkBackupIsCorrect`), so the hole after it
/// is expected and `verify` has nothing to fail on.
#[tokio::test]
async fn a_permanent_backup_after_retention_is_not_a_wal_gap() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 10, 11, at(0), Duration::minutes(10));
    let permanent = b.backup_in_wal_order(&BackupSpec::at(1, 10, at(0)).permanent());
    b.wal(1, 100, 160, at(90), Duration::minutes(10));
    b.backup_in_wal_order(&BackupSpec::at(1, 110, at(100)));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    assert!(!t.has_errors(), "{:?}", t.findings);
    // wal-g's order: the stop segment (11) was archived before the backup's finish time.
    let p = t.backups.iter().find(|x| x.name == permanent).unwrap();
    assert!(t.segment(1, 11).unwrap().1 < p.finish_time.unwrap());
    assert!(p.restorable, "{:?}", p.problems);
    assert!(codes(&t).contains(&"wal_gap_before_backups"));
    assert!(codes(&t).contains(&"permanent_end_point_only"));
}

#[tokio::test]
async fn empty_and_unreachable_storage() {
    let dir = tempfile::tempdir().unwrap();
    let (idx, t) = read(dir.path(), &[]).await;
    assert!(idx.wal.is_empty());
    assert_eq!(codes(&t), vec!["empty_storage"]);
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Refusal(r) => assert_eq!(r.code, "no_backup"),
        p => panic!("{p:?}"),
    }
    // WAL but zero backups.
    let mut b = BucketBuilder::new();
    b.wal(1, 1, 5, at(0), Duration::minutes(10));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    assert!(codes(&t).contains(&"no_backups"));
    match t.choose_backup(&Target::Time(at(3)), None) {
        PlanOutcome::Refusal(r) => {
            assert!(r.reason.contains("no complete base backup"), "{}", r.reason)
        }
        p => panic!("{p:?}"),
    }
    let cfg = StorageConfig::from_url("file:///no/such/walg/dir", &HashMap::new()).unwrap();
    let err = Reader::new(&cfg).unwrap_err().to_string();
    assert!(err.contains("/no/such/walg/dir"), "{err}");
}

#[tokio::test]
async fn refresh_lists_only_new_keys_and_matches_a_full_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 1, 600, at(0), Duration::minutes(1));
    b.backup(&BackupSpec::at(1, 3, at(2)));
    b.write_dir(dir.path()).unwrap();
    let r = reader_for(dir.path(), &[]);
    let (mut idx, s) = r.build().await.unwrap();
    assert!(s.full);
    assert_eq!(s.new_sentinels, 1);

    // New WAL, a new history + timeline, a new backup; and a segment that arrives late, below the newest key.
    let mut more = BucketBuilder::new();
    more.wal(1, 602, 700, at(602), Duration::minutes(1));
    more.history(2, &[(1, 701 * SEG)], at(701));
    more.wal(2, 701, 720, at(701), Duration::minutes(1));
    more.backup(&BackupSpec::at(1, 650, at(650)));
    more.write_dir(dir.path()).unwrap();
    let mut late = BucketBuilder::new();
    late.wal(1, 601, 601, at(601), Duration::minutes(1));
    late.write_dir(dir.path()).unwrap();

    let s = r.refresh(&mut idx).await.unwrap();
    assert!(!s.full);
    assert_eq!(s.new_sentinels, 1);
    assert_eq!(s.new_histories, 1);
    // Listed: the overlap (256) + what is new, not the 600 old segments.
    assert!(s.listed < 600, "listed {}", s.listed);

    let (full, _) = r.build().await.unwrap();
    let a = Timeline::from_index(&idx, NOW).report();
    let b = Timeline::from_index(&full, NOW).report();
    assert_eq!(a, b);
    assert_eq!(idx.wal, full.wal);
    assert_eq!(idx.backups, full.backups);

    // The index survives serialization (the CLI's cache file, or a SQLite blob).
    let json = serde_json::to_vec(&idx).unwrap();
    let back: Index = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, idx);
    // A second refresh with nothing new changes nothing.
    let mut again = back;
    let s = r.refresh(&mut again).await.unwrap();
    assert_eq!((s.new_sentinels, s.new_histories), (0, 0));
    assert_eq!(again.wal, idx.wal);
}

#[tokio::test]
async fn segment_size_from_env() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.segment_size = 64 * 1024 * 1024;
    b.wal(1, 1, 20, at(0), Duration::minutes(10));
    let mut spec = BackupSpec::at(1, 3, at(2));
    spec.start_lsn = 3 * b.segment_size + 0x28;
    spec.finish_lsn = 4 * b.segment_size + 0x28;
    b.backup(&spec);
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[("WALG_PG_WAL_SIZE", "64")]).await;
    assert!(t.backups[0].restorable, "{:?}", t.findings);
    assert!(!codes(&t).contains(&"name_lsn_mismatch"));
    // With the wrong size the names and LSNs disagree: said plainly.
    let (_, t) = read(dir.path(), &[]).await;
    assert!(codes(&t).contains(&"name_lsn_mismatch"), "{:?}", t.findings);
}

#[tokio::test]
async fn many_gaps_are_summarised() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.wal(1, 1, 4, at(0), Duration::minutes(10));
    for n in (6..=200).step_by(2) {
        b.wal(1, n, n, at(n as i64), Duration::minutes(10));
    }
    b.backup(&BackupSpec::at(1, 1, at(0)));
    b.write_dir(dir.path()).unwrap();
    let (_, t) = read(dir.path(), &[]).await;
    let gaps: Vec<_> = t.findings.iter().filter(|f| f.code == "wal_gap").collect();
    assert_eq!(gaps.len(), walg::timeline::MAX_GAP_FINDINGS + 1);
    assert!(
        gaps.iter()
            .any(|f| f.message.starts_with("48 more WAL gaps")),
        "{gaps:?}"
    );
    assert_eq!(t.timelines[0].gaps.len(), 98);
}
