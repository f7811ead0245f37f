//! Benchmark: the cluster page's server render from a 100,000-segment index (issue #12 item 9: ≤ 50 ms).
//!
//! Run: `cargo bench -p walden-app --features ssr --bench cluster_page` (never under `cargo test`). It writes a
//! local-file wal-g bucket with `walg::testkit::generate_large`, builds its index once, then times (medians) each
//! step the console takes for the page: the timeline from the index as `core::monitor::timeline` computes it
//! after a restart (`BucketTimeline::from_index`; the monitor's refresh then adds `attach_last_commit`, timed
//! apart), its conversion to the page's data (the same
//! `TimelineView::from` the server function uses), and the page's body (`ClusterBody`: the sentence, the SVG
//! chart, the backups table, the findings) rendered to HTML with Leptos SSR. The whole HTTP answer is
//! `cargo bench -p walden --bench cluster_http`. Variables: `WALDEN_BENCH_WAL` (100,000), `WALDEN_BENCH_BACKUPS`
//! (100), `WALDEN_BENCH_RUNS` (20).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a benchmark stops loudly

use std::collections::HashMap;
use std::time::{Duration, Instant};

use leptos::prelude::*;
use time::OffsetDateTime;
use walden_app::api::timeline::{ClusterTimeline, TimelineView};
use walden_app::pages::cluster::ClusterBody;
use walg::{BucketTimeline, Reader, StorageConfig};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The page's body as the server renders it into the response.
fn render(t: ClusterTimeline) -> String {
    Owner::new().with(|| view! { <ClusterBody t /> }.to_html())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "cluster_page bench: skipped \
             (run with `cargo bench -p walden-app --features ssr --bench cluster_page`)"
        );
        return;
    }
    let wal = env_u64("WALDEN_BENCH_WAL", 100_000);
    let backups = env_u64("WALDEN_BENCH_BACKUPS", 100);
    let runs = env_u64("WALDEN_BENCH_RUNS", 20).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let objects = walg::testkit::generate_large(dir.path(), wal, backups).expect("generate");
    println!(
        "generated {objects} objects ({wal} WAL segments, {backups} backups) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let cfg = StorageConfig::from_url(&format!("file://{}", dir.path().display()), &HashMap::new())
        .expect("storage");
    let reader = Reader::new(&cfg).expect("reader");
    let t = Instant::now();
    let (index, _) = rt.block_on(reader.build()).expect("build");
    println!(
        "index built in {} ({} WAL objects)",
        ms(t.elapsed()),
        index.wal.len()
    );

    let (mut analysis, mut commit, mut convert, mut html_t, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let mut timeline = BucketTimeline::from_index(&index, OffsetDateTime::now_utc());
        let analysed = start.elapsed();
        analysis.push(analysed);

        // Part of the monitor's refresh, not of a page request: kept out of the total.
        let t = Instant::now();
        rt.block_on(reader.attach_last_commit(&mut timeline, None, walg::LAST_COMMIT_SEGMENTS));
        commit.push(t.elapsed());

        let t = Instant::now();
        let view = TimelineView::from(&timeline);
        convert.push(t.elapsed());
        assert_eq!(view.runs.len(), 1, "one run of {wal} segments");

        let t = Instant::now();
        let html = render(ClusterTimeline {
            org: "demo".into(),
            app: "demo-db".into(),
            storage: Some(reader.url().to_owned()),
            error: None,
            timeline: Some(view),
            volume: Some("Leader's volume: 41 % full, not growing.".into()),
        });
        let rendered = t.elapsed();
        html_t.push(rendered);
        total.push(analysed + *convert.last().expect("converted") + rendered);
        assert!(html.contains("data-test=\"timeline-chart\""));
        size = html.len();
    }
    println!("medians of {runs} runs (the index already built, as the stored index or the worker's copy):");
    println!(
        "  timeline from the index (from_index):   {}",
        ms(median(analysis))
    );
    println!(
        "  last commit (attach_last_commit, at refresh time; not in the total): {}",
        ms(median(commit))
    );
    println!(
        "  page data (TimelineView::from):         {}",
        ms(median(convert))
    );
    println!(
        "  render ClusterBody to HTML ({} KiB):    {}",
        size / 1024,
        ms(median(html_t))
    );
    println!(
        "  total (timeline + page data + HTML):    {}  (target <= 50 ms)",
        ms(median(total))
    );
}
