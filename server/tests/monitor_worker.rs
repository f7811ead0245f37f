//! The backups monitor worker (`walden::jobs::monitor`, `monitor_tick`): over flysim's demo cluster (loopback
//! HTTP) and its local wal-g bucket, with a real SQLite file, one run refreshes every tracked cluster through its
//! escrowed storage settings and publishes the per-cluster gauges on the process's `/metrics` recorder; a
//! cluster whose storage is unknown is counted as failed without stopping the others; the loop runs at once on
//! start and stops on cancel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::time::Duration;

mod support;

use flysim::{DEMO_APP, DEMO_ORG};
use support::fleet::Fleet;
use tokio_util::sync::CancellationToken;
use walden::jobs::{monitor, monitor_tick, MonitorTick};
use walden_core::access::{Actor, RequestMeta};
use walden_core::Walden;

/// The demo cluster and a second one, both tracked; only the demo cluster's credentials captured.
async fn tracked_demo(dir: &std::path::Path) -> (Walden, flysim::Running) {
    let Fleet { walden, run, .. } = Fleet::start(dir, 11).await;
    walden
        .escrow()
        .capture(&Actor::cli(), &RequestMeta::default(), DEMO_ORG, DEMO_APP)
        .await
        .unwrap();
    (walden, run)
}

/// The value of one sample line `name{labels} value` of the rendered metrics, if present.
fn sample(rendered: &str, name: &str, labels: &[&str]) -> Option<f64> {
    rendered
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tick_refreshes_every_tracked_cluster_and_publishes_its_gauges() {
    let handle = walden::metrics::handle();
    let dir = tempfile::tempdir().unwrap();
    let (walden, _run) = tracked_demo(dir.path()).await;
    let token = CancellationToken::new();
    // The second cluster's bucket cannot be read (a file where its directory was). Its credentials are not
    // captured yet: the monitor captures them first, as the escrow worker would, then fails on the bucket.
    let orders_bucket = dir.path().join("walg-orders");
    std::fs::remove_dir_all(&orders_bucket).unwrap();
    std::fs::write(&orders_bucket, b"not a directory").unwrap();

    let tick = monitor_tick(&walden, &token).await;
    assert_eq!(
        tick,
        MonitorTick {
            refreshed: 1,
            failed: 1
        },
        "the second cluster's bucket cannot be read"
    );
    let rendered = handle.render();
    let demo = [r#"org="demo""#, r#"app="demo-db""#];
    let wal_age = sample(&rendered, "walden_wal_age_seconds", &demo).unwrap();
    assert!(wal_age >= 0.0, "{rendered}");
    for name in [
        "walden_base_backup_age_seconds",
        "walden_restorable_earliest_timestamp_seconds",
        "walden_restorable_latest_timestamp_seconds",
        "walden_cluster_refresh_duration_seconds",
    ] {
        assert!(
            sample(&rendered, name, &demo).is_some(),
            "{name}: {rendered}"
        );
    }
    // The leader's volume, read once: its use, and no forecast yet from one sample (NaN, not a stale value).
    let used = sample(&rendered, "walden_volume_used_bytes", &demo).unwrap();
    let total = sample(&rendered, "walden_volume_total_bytes", &demo).unwrap();
    assert!(used > 0.0 && used < total, "{rendered}");
    assert!(
        sample(&rendered, "walden_volume_full_seconds", &demo).is_some_and(f64::is_nan),
        "{rendered}"
    );
    assert_eq!(
        sample(
            &rendered,
            "walden_findings",
            &[demo[0], demo[1], r#"severity="error""#]
        ),
        Some(1.0),
        "the demo history's one WAL gap (flysim demo_history): {rendered}"
    );
    assert_eq!(
        sample(&rendered, "walden_cluster_refresh_ok", &demo),
        Some(1.0)
    );
    let orders = [r#"org="demo""#, r#"app="orders-db""#];
    assert_eq!(
        sample(&rendered, "walden_cluster_refresh_ok", &orders),
        Some(0.0)
    );
    assert!(sample(&rendered, "walden_cluster_refresh_errors_total", &orders).unwrap() >= 1.0);
    assert_eq!(sample(&rendered, "walden_wal_age_seconds", &orders), None);

    // A shut-down run refreshes nothing.
    token.cancel();
    assert_eq!(monitor_tick(&walden, &token).await, MonitorTick::default());
}

/// The loop's first run is at start (not after an interval), and the loop ends when cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_refreshes_at_start_and_stops_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let (walden, _run) = tracked_demo(dir.path()).await;
    let token = CancellationToken::new();
    let task = tokio::spawn(monitor(
        walden.clone(),
        token.clone(),
        Duration::from_secs(3600),
    ));
    // Wait (generous deadline: a slow machine is not a failure) for the first refresh of the demo cluster.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let done: Option<String> =
            sqlx::query_scalar("SELECT good_at FROM cluster_health WHERE org = ? AND app = ?")
                .bind(DEMO_ORG)
                .bind(DEMO_APP)
                .fetch_optional(walden.pool())
                .await
                .unwrap()
                .flatten();
        if done.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refresh within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    task.await.unwrap();
}
