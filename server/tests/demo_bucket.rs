//! Cross-check of two independent halves: the bucket the emulator's Stolon cluster archives (flysim's wal-g
//! writer) must read cleanly with Walden's own wal-g reader (walg), as a real wal-g bucket would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;

use tokio_util::sync::CancellationToken;
use walg::{PlanOutcome, Reader, StorageConfig, Target, Timeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_clusters_bucket_reads_cleanly_and_is_restorable() {
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
    let timeline = Timeline::from_index(&index, time::OffsetDateTime::now_utc());

    assert!(timeline.backups.len() >= 3, "{:?}", timeline.backups);
    assert!(
        !timeline.has_errors(),
        "error findings: {:?}",
        timeline.findings
    );
    let earliest = timeline.earliest_restorable.expect("a restorable window");
    let latest = timeline.latest_restorable.expect("a restorable window");
    assert!(
        latest - earliest > time::Duration::hours(20),
        "{earliest} .. {latest}"
    );

    // A time in the middle of the window has a plan, from a backup that finished before it.
    let target = earliest + (latest - earliest) / 2;
    match timeline.choose_backup(&Target::Time(target), None) {
        PlanOutcome::Plan(plan) => {
            let chosen = timeline
                .backups
                .iter()
                .find(|b| b.name == plan.backup)
                .expect("the chosen backup exists");
            assert!(chosen.finish_time.expect("finish time") <= target);
        }
        PlanOutcome::Refusal(r) => panic!("refused: {r:?}"),
    }
    running.shutdown().await.unwrap();
}
