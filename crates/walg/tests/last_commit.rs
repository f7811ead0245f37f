//! The last commit read from archived WAL on local storage: every codec wal-g writes, libsodium encryption, a
//! commit record continued into the next segment, and planning with it. The WAL is hand-built by
//! `walg::xlog_writer` (the real-PostgreSQL tier, `real_postgres.rs`, checks real WAL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use walg::codec::{encode, LibsodiumKey};
use walg::names::{wal_file_name, Compression};
use walg::plan::{PlanOutcome, Target};
use walg::testkit::{BackupSpec, BucketBuilder};
use walg::xlog::XactKind;
use walg::xlog_writer::WalWriter;
use walg::{CommitSearch, Reader, StorageConfig, Timeline};

/// 1 MiB segments (`WALG_PG_WAL_SIZE=1`), so that every codec's round trip stays quick.
const SEG: u64 = 1024 * 1024;
const NOW: OffsetDateTime = datetime!(2026-03-01 14:00 UTC);
const KEY: &str = "a-libsodium-key-of-32-bytes-long";

fn at(minutes: i64) -> OffsetDateTime {
    datetime!(2026-03-01 12:00 UTC) + Duration::minutes(minutes)
}

/// Microseconds since 2000-01-01 of `t`.
fn pg_us(t: OffsetDateTime) -> i64 {
    ((t - datetime!(2000-01-01 00:00 UTC)).whole_microseconds()) as i64
}

/// The last commit's time: 12:31:07.654321.
fn last_commit_time() -> OffsetDateTime {
    at(31) + Duration::seconds(7) + Duration::microseconds(654_321)
}

/// Segments 5 and 6 of timeline 1 as PostgreSQL would write them: commits in 5, the last one continued into 6,
/// then only non-transactional records in 6 (e.g. checkpoints of an idle server). Returns them and the last
/// commit's LSN.
fn real_segments() -> (Vec<u8>, Vec<u8>, u64) {
    let mut w = WalWriter::new(SEG, 5 * SEG);
    w.magic = 0xD110;
    let mut i = 0;
    while w.lsn() < 6 * SEG - 5000 {
        i += 1;
        w.heap(i, &[1; 900]);
        if i.is_multiple_of(20) {
            w.commit(i, pg_us(at(20)) + i64::from(i), &[]);
        }
    }
    let last = w.commit(9999, pg_us(last_commit_time()), &[0; 12_000]);
    for _ in 0..30 {
        w.heap(0, &[2; 100]);
    }
    w.finish_segment();
    assert!(last < 6 * SEG && w.buf.len() as u64 == 2 * SEG);
    let six = w.buf.split_off(SEG as usize);
    (w.buf, six, last)
}

/// A bucket: backup at segment 2, WAL 1..=6 on timeline 1 (1 to 4 placeholders, 5 and 6 real WAL).
fn bucket(dir: &std::path::Path, c: Compression, key: Option<LibsodiumKey>) -> u64 {
    let mut b = BucketBuilder::new().compression(c);
    b.segment_size = SEG;
    if let Some(k) = key.clone() {
        b = b.encrypt(k);
    }
    b.wal(1, 1, 4, at(1), Duration::minutes(2));
    b.backup(&backup_spec());
    let (five, six, last) = real_segments();
    for (n, bytes, when) in [(5, five, at(30)), (6, six, at(45))] {
        let name = wal_file_name(1, n, SEG);
        let data = encode(&bytes, c, key.as_ref()).unwrap();
        b.raw(&format!("wal_005/{}", c.key_for(&name)), &data, when);
    }
    b.write_dir(dir).unwrap();
    last
}

/// A backup of segments 2 and 3, finished at 12:07.
fn backup_spec() -> BackupSpec {
    let mut spec = BackupSpec::at(1, 2, at(2));
    spec.start_lsn = 2 * SEG + 0x28;
    spec.finish_lsn = 3 * SEG + 0x1F8;
    spec
}

fn reader(dir: &std::path::Path, encrypted: bool) -> Reader {
    let mut env = HashMap::from([
        ("WALG_FILE_PREFIX".to_string(), dir.display().to_string()),
        ("WALG_PG_WAL_SIZE".to_string(), "1".to_string()),
    ]);
    if encrypted {
        env.insert("WALG_LIBSODIUM_KEY".into(), KEY.into());
    }
    Reader::new(&StorageConfig::from_env_map(&env).unwrap()).unwrap()
}

async fn timeline(reader: &Reader) -> Timeline {
    let (index, _) = reader.build().await.unwrap();
    Timeline::from_index(&index, NOW)
}

#[tokio::test]
async fn the_last_commit_is_read_through_every_codec_and_encryption() {
    let key = LibsodiumKey::from_setting(KEY, None).unwrap();
    let cases = [
        (Compression::Lz4, None),
        (Compression::Zstd, None),
        (Compression::Brotli, None),
        (Compression::Lzma, None),
        (Compression::Gzip, None),
        (Compression::None, None),
        (Compression::Lz4, Some(key.clone())),
        (Compression::Brotli, Some(key)),
    ];
    for (c, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let encrypted = key.is_some();
        let lsn = bucket(dir.path(), c, key);
        let reader = reader(dir.path(), encrypted);
        let t = timeline(&reader).await;
        match reader.last_commit(&t, 1, walg::LAST_COMMIT_SEGMENTS).await {
            CommitSearch::Found(found) => {
                assert_eq!(found.time, last_commit_time(), "{c:?}");
                assert_eq!(found.lsn, lsn, "{c:?}");
                assert_eq!(found.kind, XactKind::Commit);
                assert_eq!(found.segment, wal_file_name(1, 5, SEG));
                assert_eq!(found.archived_until, Some(at(45)));
            }
            other => panic!("{c:?} encrypted={encrypted}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn only_the_newest_segments_are_read_and_unreadable_wal_is_said_plainly() {
    let dir = tempfile::tempdir().unwrap();
    bucket(dir.path(), Compression::Lz4, None);
    let reader = reader(dir.path(), false);
    let t = timeline(&reader).await;
    // Segment 6 has no commit of its own.
    assert_eq!(
        reader.last_commit(&t, 1, 1).await,
        CommitSearch::NotFound {
            timeline: 1,
            segments: 1,
            archived_until: Some(at(45))
        }
    );
    // An encrypted bucket read without its key: the segment does not decode.
    let dir = tempfile::tempdir().unwrap();
    let key = LibsodiumKey::from_setting(KEY, None).unwrap();
    bucket(dir.path(), Compression::Lz4, Some(key));
    let reader = self::reader(dir.path(), false);
    let t = timeline(&reader).await;
    match reader.last_commit(&t, 1, 4).await {
        CommitSearch::Failed { reason, .. } => {
            assert!(reason.contains("000000010000000000000006"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A placeholder segment that is not WAL: nothing is claimed.
    let dir = tempfile::tempdir().unwrap();
    let mut b = BucketBuilder::new();
    b.segment_size = SEG;
    b.wal(1, 1, 4, at(1), Duration::minutes(2));
    b.backup(&backup_spec());
    b.write_dir(dir.path()).unwrap();
    let reader = self::reader(dir.path(), false);
    let t = timeline(&reader).await;
    assert!(matches!(
        reader.last_commit(&t, 1, 4).await,
        CommitSearch::Failed { .. }
    ));
    assert!(matches!(
        reader.last_commit(&t, 9, 4).await,
        CommitSearch::Failed { .. }
    ));
}

fn refusal(outcome: PlanOutcome) -> walg::Refusal {
    match outcome {
        PlanOutcome::Refusal(r) => r,
        PlanOutcome::Plan(p) => panic!("planned: {p:?}"),
    }
}

fn plan(outcome: PlanOutcome) -> walg::Plan {
    match outcome {
        PlanOutcome::Plan(p) => *p,
        PlanOutcome::Refusal(r) => panic!("refused: {r:?}"),
    }
}

#[tokio::test]
async fn a_target_at_or_after_the_last_commit_is_refused_and_one_before_is_planned() {
    let dir = tempfile::tempdir().unwrap();
    bucket(dir.path(), Compression::Lz4, None);
    let reader = reader(dir.path(), false);
    let mut t = timeline(&reader).await;
    let last = last_commit_time();
    // Without the WAL read: planned, with the old warning.
    let p = plan(t.choose_backup(&Target::Time(last + Duration::minutes(5)), None));
    assert!(
        p.notes.iter().any(|n| n.contains("needs a commit after")),
        "{:?}",
        p.notes
    );

    reader
        .attach_last_commit(&mut t, None, walg::LAST_COMMIT_SEGMENTS)
        .await;
    for target in [last, last + Duration::minutes(5)] {
        let r = refusal(t.choose_backup(&Target::Time(target), None));
        assert_eq!(r.code, "after_last_commit");
        assert!(
            r.reason.starts_with(
                "The last commit archived on timeline 1 is at 2026-03-01 12:31:07.654321 UTC; PostgreSQL \
                 cannot stop at "
            ),
            "{}",
            r.reason
        );
        assert!(
            r.reason.ends_with(
                "because no commit follows it. Choose a time before 2026-03-01 12:31:07.654321 UTC, or --latest."
            ),
            "{}",
            r.reason
        );
    }
    // Just before it: a commit follows, so no caveat.
    let p = plan(t.choose_backup(&Target::Time(last - Duration::microseconds(1)), None));
    assert_eq!(
        p.recovery_target_time.as_deref(),
        Some("2026-03-01 12:31:07.654320+00")
    );
    assert!(p.notes.is_empty(), "{:?}", p.notes);
    // After the newest WAL: still the older refusal.
    let r = refusal(t.choose_backup(&Target::Time(NOW), None));
    assert_eq!(r.code, "after_latest");
    // --latest states the last commit.
    let p = plan(t.choose_backup(&Target::Latest, None));
    assert!(
        p.notes.iter().any(|n| n.contains(
            "The last commit archived on timeline 1 is at 2026-03-01 12:31:07.654321 UTC"
        )),
        "{:?}",
        p.notes
    );
    // When no commit was found in what was read, the old caveat stays and says why.
    let mut t = timeline(&reader).await;
    reader.attach_last_commit(&mut t, Some(1), 1).await;
    let p = plan(t.choose_backup(&Target::Time(last + Duration::minutes(5)), None));
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("No commit was found in the newest segment")),
        "{:?}",
        p.notes
    );
}

#[tokio::test]
async fn the_report_states_the_last_commit_and_an_idle_database() {
    let dir = tempfile::tempdir().unwrap();
    bucket(dir.path(), Compression::Lz4, None);
    let reader = reader(dir.path(), false);
    let mut t = timeline(&reader).await;
    let before = serde_json::to_value(t.report()).unwrap();
    assert!(before.get("last_commit").is_none(), "{before}");
    // A report written before the field existed still reads.
    let old: walg::report::TimelineReport = serde_json::from_value(before).unwrap();
    assert_eq!(old.last_commit, None);

    reader.attach_last_commit(&mut t, None, 4).await;
    let report = t.report();
    let last = report.last_commit.clone().unwrap();
    assert_eq!(last.time.as_deref(), Some("2026-03-01T12:31:07.654321Z"));
    assert_eq!(last.archived_until.as_deref(), Some("2026-03-01T12:45:00Z"));
    assert_eq!(last.segment.as_deref(), Some("000000010000000000000005"));
    assert_eq!(last.kind, Some(XactKind::Commit));
    let text = t.render_text();
    assert!(
        text.contains(
            "Last commit: 2026-03-01 12:31:07.654321 UTC on timeline 1 (archived up to 2026-03-01 12:45 UTC); \
             nothing was written after 2026-03-01 12:31:07.654321 UTC but housekeeping (an idle database), so a \
             target time after it cannot be restored: use --latest"
        ),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    let back: walg::report::TimelineReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);

    reader.attach_last_commit(&mut t, None, 1).await;
    assert!(t.render_text().contains(
        "Last commit: no commit in the newest segment of timeline 1 (archived up to 2026-03-01 12:45 UTC)"
    ));
}
