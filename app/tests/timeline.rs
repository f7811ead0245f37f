//! The cluster page's timeline: `TimelineView` converted from real wal-g trees read with `walg::Reader` (the
//! testkit's sample bucket, a 100,000-segment bucket, an empty one), and the SVG component rendered to HTML on
//! the server from those views and from fixed values (a branch, one backup), asserting on the SVG.
#![cfg(feature = "ssr")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;

use leptos::prelude::*;
use time::OffsetDateTime;
use walden_app::api::timeline::{
    restorable_sentence, BackupView, CommitView, RunView, SwitchView, TimelineView, WindowView,
};
use walden_app::components::timeline::TimelineChart;

const HOUR: i64 = 3_600_000;

/// Reads the wal-g tree in `dir` and converts its timeline at `now`.
async fn view_of(dir: &Path, now: OffsetDateTime) -> TimelineView {
    let url = format!("file://{}", dir.display());
    let cfg = walg::StorageConfig::from_url(&url, &HashMap::new()).unwrap();
    let reader = walg::Reader::connect(&cfg).await.unwrap();
    let (index, _) = reader.build().await.unwrap();
    TimelineView::from(&walg::BucketTimeline::from_index(&index, now))
}

/// The chart rendered on the server, as the page embeds it.
fn render(view: TimelineView) -> String {
    Owner::new().with(|| {
        view! { <TimelineChart org="demo".to_owned() app="demo-db".to_owned() view /> }.to_html()
    })
}

fn count(html: &str, test: &str) -> usize {
    html.matches(&format!("data-test=\"{test}\"")).count()
}

/// SVG shapes in the chart: what the browser has to lay out.
fn shapes(html: &str) -> usize {
    ["<rect", "<path", "<line", "<text"]
        .iter()
        .map(|tag| html.matches(tag).count())
        .sum()
}

#[tokio::test]
async fn the_sample_bucket_converts_and_draws_switch_gap_and_backups() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    walg::testkit::sample_builder(now)
        .write_dir(dir.path())
        .unwrap();
    let v = view_of(dir.path(), now).await;

    // Conversion: two timelines, one switch, the one-hour hole, five backups (a delta, a permanent one).
    assert_eq!(v.now_ms, (now.unix_timestamp_nanos() / 1_000_000) as i64);
    assert_eq!(v.main_timeline, Some(2));
    let mut tlis: Vec<u32> = v.runs.iter().map(|r| r.timeline).collect();
    tlis.dedup();
    assert_eq!(tlis, [1, 2]);
    assert_eq!(v.switches.len(), 1);
    assert_eq!((v.switches[0].timeline, v.switches[0].parent), (2, 1));
    assert!(v.switches[0].at_ms.is_some());
    assert_eq!(v.gaps.len(), 1, "{:?}", v.gaps);
    let gap = &v.gaps[0];
    assert_eq!((gap.timeline, gap.missing), (2, 6));
    assert!(gap.first_missing.starts_with("00000002") && gap.after_ms < gap.before_ms);
    assert_eq!(v.backups.len(), 5);
    assert_eq!(v.backups.iter().filter(|b| b.permanent).count(), 1);
    let delta = v.backups.iter().find(|b| b.delta_from.is_some()).unwrap();
    assert!(v
        .backups
        .iter()
        .any(|b| Some(&b.name) == delta.delta_from.as_ref()));
    assert!(v
        .backups
        .iter()
        .all(|b| b.start_lsn.as_deref().is_some_and(|l| l.contains('/'))));
    assert!(!v.windows.is_empty() && v.latest_restorable_ms.is_some());
    let gap_finding = v.findings.iter().find(|f| f.code == "wal_gap").unwrap();
    assert_eq!(gap_finding.severity, "error");
    assert!(
        gap_finding.advice.contains("base backup"),
        "{}",
        gap_finding.advice
    );
    assert!(v.findings.iter().all(|f| !f.advice.is_empty()));
    // The run before the hole ends at the segment just before it, the one after starts after it.
    let tl2: Vec<&RunView> = v.runs.iter().filter(|r| r.timeline == 2).collect();
    assert_eq!(tl2.len(), 2);
    assert_eq!(Some(tl2[0].to_ms), gap.after_ms);
    assert_eq!(Some(tl2[1].from_ms), gap.before_ms);

    // Drawing: every element of the view has its mark, each with a hover title.
    let html = render(v.clone());
    assert_eq!(count(&html, "timeline-chart"), 1);
    assert_eq!(count(&html, "run"), v.runs.len());
    assert_eq!(count(&html, "gap"), 1);
    assert_eq!(count(&html, "switch"), 1);
    assert_eq!(count(&html, "backup"), 5);
    assert_eq!(count(&html, "delta-link"), 1);
    assert_eq!(html.matches("data-kind=\"permanent\"").count(), 1);
    assert_eq!(count(&html, "window"), v.windows.len());
    assert_eq!((count(&html, "now"), count(&html, "latest")), (1, 1));
    assert!(count(&html, "tick") >= 2);
    assert!(html.contains("<title>hole on timeline 2: 6 segment(s) missing"));
    assert!(html.contains("timeline 2 began from timeline 1"));
    // On the server, times are UTC.
    assert!(html.contains(" UTC"));
    assert!(count(&html, "timeline-empty") == 0);
}

#[tokio::test]
async fn a_hundred_thousand_segments_are_one_run_and_a_bounded_drawing() {
    let dir = tempfile::tempdir().unwrap();
    walg::testkit::generate_large(dir.path(), 100_000, 4).unwrap();
    let v = view_of(dir.path(), OffsetDateTime::now_utc()).await;
    assert_eq!(v.runs.len(), 1);
    assert_eq!(v.runs[0].segments, 100_000);
    assert!(v.gaps.is_empty());
    assert_eq!(v.backups.len(), 4);
    let html = render(v);
    assert_eq!(count(&html, "run"), 1);
    assert!(shapes(&html) < 80, "{} shapes", shapes(&html));
    assert!(html.len() < 40_000, "{} bytes", html.len());
}

#[tokio::test]
async fn an_empty_bucket_draws_an_empty_chart() {
    let dir = tempfile::tempdir().unwrap();
    let v = view_of(dir.path(), OffsetDateTime::now_utc()).await;
    assert!(v.runs.is_empty() && v.backups.is_empty() && v.windows.is_empty());
    assert!(v.findings.iter().any(|f| f.severity == "error"));
    assert_eq!(
        restorable_sentence(&v),
        "Nothing is restorable from this storage yet."
    );
    let html = render(v);
    assert_eq!(count(&html, "timeline-empty"), 1);
    assert_eq!(
        count(&html, "run") + count(&html, "backup") + count(&html, "window"),
        0
    );
    assert_eq!(count(&html, "latest"), 0);
    assert_eq!(count(&html, "now"), 1);
}

/// A fixed view: one full backup at `now - 20 h`, WAL from then to now on timeline 1, one window.
fn one_backup(now: i64) -> TimelineView {
    TimelineView {
        now_ms: now,
        main_timeline: Some(1),
        earliest_restorable_ms: Some(now - 20 * HOUR),
        latest_restorable_ms: Some(now - HOUR / 6),
        windows: vec![WindowView {
            timeline: 1,
            from_ms: now - 20 * HOUR,
            to_ms: now - HOUR / 6,
        }],
        runs: vec![RunView {
            timeline: 1,
            first: "000000010000000000000001".into(),
            last: "0000000100000000000000F0".into(),
            segments: 240,
            from_ms: now - 21 * HOUR,
            to_ms: now - HOUR / 6,
            abandoned: false,
        }],
        backups: vec![BackupView {
            name: "base_000000010000000000000002".into(),
            timeline: 1,
            start_ms: Some(now - 21 * HOUR),
            finish_ms: now - 20 * HOUR,
            duration_secs: Some(3600),
            compressed_bytes: Some(1 << 30),
            uncompressed_bytes: Some(3 << 30),
            start_lsn: Some("0/2000028".into()),
            finish_lsn: Some("0/30001F8".into()),
            permanent: false,
            delta_from: None,
            restorable: true,
            problems: Vec::new(),
        }],
        ..TimelineView::default()
    }
}

#[test]
fn one_backup_is_one_full_marker_inside_a_clickable_window() {
    // 2026-11-29 14:10 UTC.
    let now = 1_795_961_400_000;
    let html = render(one_backup(now));
    assert_eq!(count(&html, "backup"), 1);
    assert_eq!(html.matches("data-kind=\"full\"").count(), 1);
    assert_eq!(count(&html, "delta-link"), 0);
    assert_eq!(count(&html, "window"), 1);
    assert!(html.contains("base_000000010000000000000002 — full backup, timeline 1"));
    assert!(html.contains("1.0 GiB compressed; restorable"));
    // The zoom and pan controls, and the time zone toggle (UTC on the server).
    for test in [
        "zoom-24h",
        "zoom-7d",
        "zoom-30d",
        "zoom-all",
        "pan-back",
        "pan-forward",
        "utc-toggle",
    ] {
        assert_eq!(count(&html, test), 1, "{test}");
    }
    let toggle = html.split("data-test=\"utc-toggle\"").nth(1).unwrap();
    assert!(
        toggle[..toggle.find('>').unwrap()].contains("checked"),
        "the server's times are UTC, and the toggle says so"
    );
}

#[test]
fn a_branch_and_its_abandoned_wal_are_marked() {
    let now = 1_795_961_400_000;
    let mut v = one_backup(now);
    v.runs[0].to_ms = now - 8 * HOUR;
    v.runs.push(RunView {
        timeline: 1,
        first: "000000010000000000000100".into(),
        last: "000000010000000000000110".into(),
        segments: 17,
        from_ms: now - 8 * HOUR,
        to_ms: now - 6 * HOUR,
        abandoned: true,
    });
    v.runs.push(RunView {
        timeline: 2,
        first: "000000020000000000000100".into(),
        last: "000000020000000000000180".into(),
        segments: 129,
        from_ms: now - 8 * HOUR,
        to_ms: now - HOUR / 6,
        abandoned: false,
    });
    v.switches.push(SwitchView {
        timeline: 2,
        parent: 1,
        switch_lsn: "1/00000000".into(),
        at_ms: Some(now - 8 * HOUR),
        branch: true,
    });
    let html = render(v);
    assert_eq!(count(&html, "branch"), 1);
    assert_eq!(count(&html, "switch"), 0);
    assert!(html.contains("the parent kept archiving: a branch"));
    assert!(html.contains("(abandoned branch)"));
    assert_eq!(count(&html, "lane"), 2, "a lane per timeline");
}

#[test]
fn the_sentence_explains_an_idle_database_by_its_last_commit() {
    // Last commit 14:02, archived up to 14:10 (2026-11-29 UTC).
    let now = 1_795_961_400_000;
    let mut v = one_backup(now);
    v.latest_restorable_ms = Some(now - 8 * 60_000);
    v.last_commit = Some(CommitView {
        timeline: 1,
        time_ms: now - 8 * 60_000,
        kind: "commit".into(),
        segment: "0000000100000000000000F0".into(),
        archived_until_ms: Some(now),
    });
    assert_eq!(
        restorable_sentence(&v),
        "Restorable from 2026-11-28 18:10 UTC to 2026-11-29 14:02 UTC (last commit 14:02; archived up \
         to 14:10; nothing was written after 14:02)."
    );
}
