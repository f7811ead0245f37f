//! Benchmark: the whole server answer for the cluster page, `GET /clusters/{org}/{app}` over loopback HTTP
//! against the real router, for a tracked cluster whose storage holds 100,000 WAL segments (issue #12 item 9:
//! the page's server render ≤ 50 ms).
//!
//! Run: `cargo bench -p walden --bench cluster_http` (never under `cargo test`). It reuses the API tests' harness
//! (`tests/api/helpers.rs`: a console on 127.0.0.1:0 with its own SQLite file, flysim's demo org, a signed-in
//! viewer), tracks the demo cluster and escrows a local-file bucket written by `walg::testkit::generate_large` as
//! its storage. The first visit refreshes the cluster inline (a full build of the index, stored in SQLite, and
//! the last commit): timed once. Then the index is stored and the monitor keeps the timeline, as on a running
//! console; each later visit is one sign-in check, the timeline converted to the page's data and the page
//! rendered with Leptos SSR: timed `WALDEN_BENCH_RUNS` times (median, min, max). The steps alone, without HTTP,
//! are `cargo bench -p walden-app --features ssr --bench cluster_page`. Variables: `WALDEN_BENCH_WAL`
//! (100,000), `WALDEN_BENCH_BACKUPS` (100), `WALDEN_BENCH_RUNS` (20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark stops loudly

#[allow(dead_code)] // the harness has more than this benchmark uses
#[path = "../tests/api/helpers.rs"]
mod helpers;

use std::time::{Duration, Instant};

use walden_core::users::Role;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "cluster_http bench: skipped (run with `cargo bench -p walden --bench cluster_http`)"
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn run() {
    let wal = env_u64("WALDEN_BENCH_WAL", 100_000);
    let backups = env_u64("WALDEN_BENCH_BACKUPS", 100);
    let runs = env_u64("WALDEN_BENCH_RUNS", 20).max(1);
    let bucket = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let objects = walg::testkit::generate_large(bucket.path(), wal, backups).expect("generate");
    println!(
        "generated {objects} objects ({wal} WAL segments, {backups} backups) in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The monitor worker runs once at start (nothing is tracked then) and not again during the benchmark.
    let app = helpers::app_with(|c| c.monitor_secs = 86_400).await;
    helpers::track_demo(&app).await;
    let prefix = bucket.path().display().to_string();
    helpers::escrow_storage(&app, &[("WALG_FILE_PREFIX", &prefix)]).await;
    let viewer = app.signed_in(Role::Viewer).await;
    let page = app.url(&format!(
        "/clusters/{}/{}",
        flysim::DEMO_ORG,
        flysim::DEMO_APP
    ));
    let get = || async {
        let t = Instant::now();
        let res = viewer.client.get(&page).send().await.expect("GET");
        assert_eq!(res.status(), 200);
        let html = res.text().await.expect("body");
        let took = t.elapsed();
        assert!(
            html.contains("data-test=\"timeline-chart\""),
            "the page shows the timeline"
        );
        (took, html.len())
    };

    let (first, _) = get().await;
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let (took, len) = get().await;
        times.push(took);
        size = len;
    }
    times.sort();
    println!(
        "first visit (refresh inline: full build, stored, last commit): {}",
        ms(first)
    );
    println!(
        "GET {page} ({} KiB of HTML), {runs} runs: median {} (min {}, max {})  (target <= 50 ms)",
        size / 1024,
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    app.stop().await;
}
