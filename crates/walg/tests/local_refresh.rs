//! Refresh on local file storage (probing expected names instead of reading `wal_005/`): each case compares the
//! refreshed index and Timeline with a fresh full build of the same files, except the documented blind spots.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use walg::names::{wal_file_name, Compression};
use walg::testkit::{BackupSpec, BucketBuilder};
use walg::{
    Index, ReadStats, Reader, StorageConfig, Timeline, FULL_BUILD_MAX_AGE, PROBE_LOOKAHEAD,
};

const NOW: OffsetDateTime = datetime!(2026-03-05 12:00 UTC);
const SEG: u64 = 16 * 1024 * 1024;

fn at(k: i64) -> OffsetDateTime {
    datetime!(2026-03-01 12:00 UTC) + Duration::minutes(k)
}

fn reader_for(dir: &std::path::Path) -> Reader {
    let mut e = HashMap::new();
    e.insert("WALG_FILE_PREFIX".to_string(), dir.display().to_string());
    Reader::new(&StorageConfig::from_env_map(&e).unwrap()).unwrap()
}

fn write(dir: &std::path::Path, f: impl FnOnce(&mut BucketBuilder)) {
    let mut b = BucketBuilder::new();
    f(&mut b);
    b.write_dir(dir).unwrap();
}

/// Refreshes `idx` (asserting the probing path was taken) and returns the stats.
async fn refresh(r: &Reader, idx: &mut Index) -> ReadStats {
    let s = r.refresh(idx).await.unwrap();
    assert!(!s.full);
    assert!(s.probed > 0, "the local refresh probed: {s:?}");
    s
}

/// The refreshed index equals a full build of the same files.
async fn assert_same_as_full(r: &Reader, idx: &Index) -> Timeline {
    let (full, _) = r.build().await.unwrap();
    let names = |i: &Index| i.wal.iter().map(|w| w.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(idx), names(&full));
    assert_eq!(idx.wal, full.wal);
    assert_eq!(idx.backups, full.backups);
    assert_eq!(idx.histories, full.histories);
    assert_eq!(idx.folders, full.folders);
    let a = Timeline::from_index(idx, NOW);
    let b = Timeline::from_index(&full, NOW);
    assert_eq!(a.report(), b.report());
    a
}

#[tokio::test]
async fn appended_segments_and_a_late_segment_are_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 50, at(0), Duration::minutes(1));
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    // 52..=80 arrive; 51 arrives later (parallel upload).
    write(dir.path(), |b| {
        b.wal(1, 52, 80, at(52), Duration::minutes(1));
    });
    let s = refresh(&r, &mut idx).await;
    assert_eq!(s.listed, 29);
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines[0].gaps.len(), 1);
    write(dir.path(), |b| {
        b.wal(1, 51, 51, at(51), Duration::minutes(1));
    });
    refresh(&r, &mut idx).await;
    let t = assert_same_as_full(&r, &idx).await;
    assert!(t.timelines[0].gaps.is_empty());
    assert_eq!(t.timelines[0].last_segment, Some(80));
    // Nothing new: nothing changes.
    let before = idx.wal.clone();
    let s = refresh(&r, &mut idx).await;
    assert_eq!((s.listed, s.new_histories, s.new_sentinels), (0, 0, 0));
    assert_eq!(idx.wal, before);
}

#[tokio::test]
async fn a_gap_filled_later_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 20, at(0), Duration::minutes(1));
        b.wal(1, 31, 40, at(31), Duration::minutes(1)); // gap 21..=30
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    assert_eq!(
        Timeline::from_index(&idx, NOW).timelines[0].gaps[0].len(),
        10
    );
    // Part of the gap is filled, and more WAL arrives after a gap smaller than the lookahead.
    let far = 41 + PROBE_LOOKAHEAD - 24;
    write(dir.path(), |b| {
        b.wal(1, 21, 25, at(21), Duration::minutes(1));
        b.wal(1, far, far + 3, at(far as i64), Duration::minutes(1));
    });
    refresh(&r, &mut idx).await;
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines[0].last_segment, Some(far + 3));
    // The rest of the old gap is filled.
    write(dir.path(), |b| {
        b.wal(1, 26, 30, at(26), Duration::minutes(1));
    });
    refresh(&r, &mut idx).await;
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines[0].gaps.len(), 1, "only the gap before {far}");
}

#[tokio::test]
async fn a_timeline_switch_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 44, at(0), Duration::minutes(1));
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    // Promotion in segment 45: the old timeline's .partial, timeline 2's history, its segments and a backup.
    write(dir.path(), |b| {
        b.partial(1, 45, at(45));
        b.history(2, &[(1, 45 * SEG + 0x100)], at(45));
        b.wal(2, 45, 60, at(45), Duration::minutes(1));
        b.backup(&BackupSpec::at(2, 50, at(50)));
    });
    let s = refresh(&r, &mut idx).await;
    assert_eq!((s.new_histories, s.new_sentinels), (1, 1));
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines.len(), 2);
    assert_eq!(t.timelines[1].parent, Some(1));
    assert_eq!(t.main_lineage, Some(2));
    // A second promotion three timeline ids later (ids skipped by failed promotions are allowed).
    write(dir.path(), |b| {
        b.history(5, &[(1, 45 * SEG + 0x100), (2, 58 * SEG)], at(70));
        b.wal(5, 58, 65, at(70), Duration::minutes(1));
        b.wal(2, 61, 61, at(61), Duration::minutes(1));
    });
    let s = refresh(&r, &mut idx).await;
    assert_eq!(s.new_histories, 1);
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines.len(), 3);
}

#[tokio::test]
async fn new_backups_deltas_and_backup_history_files_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = String::new();
    write(dir.path(), |b| {
        b.wal(1, 1, 30, at(0), Duration::minutes(1));
        first = b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    write(dir.path(), |b| {
        b.wal(1, 31, 60, at(31), Duration::minutes(1));
        let full = b.backup(&BackupSpec::at(1, 35, at(35)));
        b.backup(&BackupSpec::at(1, 45, at(45)).delta_of(&full));
        // PostgreSQL's backup history file for the full backup (start LSN 35 * SEG + 0x28).
        let name = format!("{}.00000028.backup.lz4", wal_file_name(1, 35, SEG));
        b.raw(&format!("wal_005/{name}"), b"START WAL LOCATION", at(36));
    });
    let s = refresh(&r, &mut idx).await;
    assert_eq!(s.new_sentinels, 2);
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.backups.len(), 3);
    assert_eq!(
        t.backups.iter().filter(|b| b.delta_from.is_some()).count(),
        1
    );
    assert!(t.backups.iter().all(|b| b.restorable), "{:?}", t.backups);
    assert!(idx.wal.iter().any(|w| w.name.ends_with(".backup.lz4")));
    assert!(idx.backups.contains_key(&first));
}

#[tokio::test]
async fn a_changed_compression_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 30, at(0), Duration::minutes(1));
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    // WALG_COMPRESSION_METHOD changed from lz4 to zstd; wal-g also writes WAL metadata sidecars now.
    let mut b = BucketBuilder::new().compression(Compression::Zstd);
    b.wal(1, 31, 50, at(31), Duration::minutes(1));
    for n in 31..=50 {
        let name = format!("wal_005/{}.json", wal_file_name(1, n, SEG));
        b.raw(&name, b"{}", at(n as i64));
    }
    b.write_dir(dir.path()).unwrap();
    refresh(&r, &mut idx).await;
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines[0].last_segment, Some(50));
}

#[tokio::test]
async fn a_gap_longer_than_the_lookahead_hides_later_segments_until_a_full_build() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 30, at(0), Duration::minutes(1));
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    // Segments 31 ..= 30 + PROBE_LOOKAHEAD are missing; the next ones exist.
    let far = 31 + PROBE_LOOKAHEAD;
    write(dir.path(), |b| {
        b.wal(1, far, far + 4, at(far as i64), Duration::minutes(1));
    });
    let s = refresh(&r, &mut idx).await;
    assert_eq!(s.listed, 0);
    // Documented blind spot: the refresh does not see them; a full build does.
    let (full, _) = r.build().await.unwrap();
    assert_eq!(full.wal.len(), idx.wal.len() + 5);
    let t = Timeline::from_index(&idx, NOW);
    assert_eq!(t.timelines[0].last_segment, Some(30));
    assert_eq!(
        Timeline::from_index(&full, NOW).timelines[0].last_segment,
        Some(far + 4)
    );
    // Once a segment inside the lookahead arrives, probing reaches the rest again.
    write(dir.path(), |b| {
        b.wal(
            1,
            31 + PROBE_LOOKAHEAD / 2,
            31 + PROBE_LOOKAHEAD / 2,
            at(40),
            Duration::minutes(1),
        );
    });
    refresh(&r, &mut idx).await;
    assert_same_as_full(&r, &idx).await;
}

#[tokio::test]
async fn refresh_or_build_builds_in_full_when_the_last_full_build_is_old() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 30, at(0), Duration::minutes(1));
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    let built = idx.built_at_ms;
    // Recent: a refresh (which keeps the time of the last full build).
    let s = r
        .refresh_or_build(&mut idx, FULL_BUILD_MAX_AGE)
        .await
        .unwrap();
    assert!(!s.full);
    assert_eq!(idx.built_at_ms, built);
    // A deletion (retention) is invisible to a refresh...
    std::fs::remove_file(
        dir.path()
            .join("wal_005")
            .join(format!("{}.lz4", wal_file_name(1, 1, SEG))),
    )
    .unwrap();
    r.refresh(&mut idx).await.unwrap();
    assert_eq!(idx.wal.len(), 30);
    // ...and seen by the full build that an old index gets.
    idx.built_at_ms -= 2 * 3600 * 1000;
    let s = r
        .refresh_or_build(&mut idx, FULL_BUILD_MAX_AGE)
        .await
        .unwrap();
    assert!(s.full);
    assert_eq!(idx.wal.len(), 29);
    assert!(idx.full_build_age(OffsetDateTime::now_utc()) < FULL_BUILD_MAX_AGE);
    assert_same_as_full(&r, &idx).await;
}

#[tokio::test]
async fn an_unreadable_history_of_a_new_timeline_falls_back_to_reading_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), |b| {
        b.wal(1, 1, 30, at(0), Duration::minutes(1));
        b.backup(&BackupSpec::at(1, 3, at(2)));
    });
    let r = reader_for(dir.path());
    let (mut idx, _) = r.build().await.unwrap();
    // Timeline 2's history cannot be decoded, so where it starts is unknown: the refresh lists instead.
    write(dir.path(), |b| {
        b.raw("wal_005/00000002.history.lz4", b"not lz4", at(31));
        b.wal(2, 31, 40, at(31), Duration::minutes(1));
    });
    let s = r.refresh(&mut idx).await.unwrap();
    assert!(!s.full);
    let t = assert_same_as_full(&r, &idx).await;
    assert_eq!(t.timelines.len(), 2);
    assert!(t.findings.iter().any(|f| f.code == "unreadable_history"));
}
