//! Cross-check of two independent halves: the bucket the emulator's Stolon cluster archives (flysim's wal-g
//! writer) must read with Walden's own wal-g reader (walg) as a real wal-g bucket would, and show every element
//! of the clusters dashboard's timeline from the first start of demo mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;

use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use walg::{FindingCode, PlanOutcome, Reader, Severity, StorageConfig, Target, Timeline};

/// Start demo mode and read its bucket with Walden's reader; the bucket is read as of `now`.
async fn demo_timeline() -> (flysim::Running, Timeline, OffsetDateTime, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (running, info) = flysim::start_demo(
        listener,
        dir.path().join("walg"),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let url = format!("file://{}", info.storage.display());
    let config = StorageConfig::from_url(&url, &HashMap::new()).unwrap();
    let (index, _) = Reader::new(&config).unwrap().build().await.unwrap();
    let now = OffsetDateTime::now_utc();
    (running, Timeline::from_index(&index, now), now, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_bucket_shows_every_element_of_the_timeline_and_is_restorable_to_now() {
    let (running, timeline, now, _dir) = demo_timeline().await;

    full_backups_over_weeks(&timeline, now);
    a_delta_chain(&timeline);
    a_permanent_backup(&timeline);
    a_timeline_switch(&timeline);
    exactly_one_gap(&timeline);
    an_idle_stretch_inside_one_window(&timeline);
    restorable_to_now(&timeline, now);

    running.shutdown().await.unwrap();
}

/// At least three complete full backups, the oldest more than two weeks old.
fn full_backups_over_weeks(timeline: &Timeline, now: OffsetDateTime) {
    let fulls: Vec<_> = timeline
        .backups
        .iter()
        .filter(|b| b.delta_from.is_none())
        .collect();
    assert!(fulls.len() >= 3, "{:?}", timeline.backups);
    let oldest = fulls.iter().filter_map(|b| b.start_time).min().unwrap();
    assert!(now - oldest > Duration::days(14), "oldest full {oldest}");
    assert!(
        timeline.backups.iter().all(|b| b.problems.is_empty()),
        "{:?}",
        timeline.backups
    );
}

/// A restorable delta with at least two ancestors: delta → delta → full.
fn a_delta_chain(timeline: &Timeline) {
    let delta = timeline
        .backups
        .iter()
        .find(|b| b.delta_chain.len() >= 2)
        .unwrap_or_else(|| panic!("no delta chain of length 2: {:?}", timeline.backups));
    assert!(delta.restorable, "{delta:?}");
    let root = delta.delta_chain.last().unwrap();
    let full = timeline.backups.iter().find(|b| &b.name == root).unwrap();
    assert!(full.delta_from.is_none(), "{full:?}");
}

fn a_permanent_backup(timeline: &Timeline) {
    assert!(
        timeline.backups.iter().any(|b| b.permanent && b.restorable),
        "{:?}",
        timeline.backups
    );
}

/// Timelines 1 and 2, with 2's history naming 1 and a switch point, and backups on both.
fn a_timeline_switch(timeline: &Timeline) {
    let ids: Vec<u32> = timeline.timelines.iter().map(|t| t.timeline).collect();
    assert_eq!(ids, [1, 2], "{:?}", timeline.timelines);
    let second = &timeline.timelines[1];
    assert!(second.has_history, "{second:?}");
    assert_eq!(second.parent, Some(1), "{second:?}");
    assert!(second.switch_lsn.is_some(), "{second:?}");
    assert_eq!(timeline.main_lineage, Some(2));
    for tli in [1, 2] {
        assert!(
            timeline.backups.iter().any(|b| b.timeline == tli),
            "no backup on timeline {tli}"
        );
    }
}

/// One hole in the WAL, told once as an error, and no other error.
fn exactly_one_gap(timeline: &Timeline) {
    let gaps: Vec<_> = timeline
        .findings
        .iter()
        .filter(|f| f.code == FindingCode::WalGap)
        .collect();
    assert_eq!(gaps.len(), 1, "{:?}", timeline.findings);
    let other_errors: Vec<_> = timeline
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error && f.code != FindingCode::WalGap)
        .collect();
    assert!(other_errors.is_empty(), "{other_errors:?}");
    let main = timeline.lineage(2).unwrap();
    assert_eq!(main.gaps.len(), 1, "{:?}", main.gaps);
}

/// Consecutive segments on the main lineage more than 5 hours apart (a quiet database switches no segment),
/// with one restorable window spanning the whole interval.
fn an_idle_stretch_inside_one_window(timeline: &Timeline) {
    let main = timeline.lineage(2).unwrap();
    let uploaded = |n: u64| {
        let tli = main.owner(n).unwrap();
        timeline.segment(tli, n).unwrap().1
    };
    let (before, after) = main
        .runs
        .iter()
        .flat_map(|run| (run.from..run.to).map(move |n| (n, n + 1)))
        .map(|(n, next)| (uploaded(n), uploaded(next)))
        .max_by_key(|(before, after)| *after - *before)
        .unwrap();
    assert!(after - before > Duration::hours(5), "{before} .. {after}");
    assert!(
        timeline
            .windows
            .iter()
            .any(|w| w.timeline == 2 && w.from <= before && after <= w.to),
        "idle {before} .. {after} is not inside one window: {:?}",
        timeline.windows
    );
}

/// The window reaches now (the live cluster archived just now), and a time inside it has a plan from a backup
/// that finished before it.
fn restorable_to_now(timeline: &Timeline, now: OffsetDateTime) {
    let latest = timeline.latest_restorable.expect("a restorable window");
    assert!(now - latest < Duration::minutes(10), "latest {latest}");
    let target = latest - Duration::minutes(1);
    match timeline.choose_backup(&Target::Time(target), None) {
        PlanOutcome::Plan(plan) => {
            assert!(plan.backup_finish_time.unwrap() <= target, "{plan:?}");
            assert_eq!(plan.backup_timeline, 2, "{plan:?}");
        }
        PlanOutcome::Refusal(r) => panic!("refused: {r:?}"),
    }
}
