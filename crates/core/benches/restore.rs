//! Issue #13 item 9: the console-side time of a whole restore (goal ≤ 2 s) — every step of a plan of the seeded
//! cluster's latest point, from the run's start to `done`, against flysim over loopback HTTP with no added
//! latency.
//!
//! `cargo bench -p walden-core --bench restore` (not run by `cargo test`). The set-up is the restore tests'
//! (`tests/support/restore.rs`: a Stolon cluster with 26 h of WAL, tracked and escrowed), with a Fly client
//! without its own rate limiter (Fly's real-time rates would be measured, not Walden). What is measured is
//! Walden's own time — the engine's work, its SQLite records and audit rows, its HTTP calls and the emulator
//! answering them — not the emulator's simulated waits: its manual clock is moved on by 30 simulated seconds
//! every real millisecond, and the engine polls every millisecond, so a boot or a replay that takes minutes on
//! Fly costs a few polls here. Prints the median of `WALDEN_BENCH_RUNS` (5) runs, each into a new app, and the
//! steps of the median run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench stops loudly

#[allow(dead_code)] // the bench uses part of the tests' set-up
#[path = "../tests/support/restore.rs"]
mod restore;

use std::time::{Duration, Instant};

use restore::{fast_options, fixture, meta, request, tick_clock_by};
use walden_core::access::Actor;
use walden_core::restore::engine::{Advance, Engine, EngineOptions, RunState, RunView};
use walden_core::restore::RestoreTarget;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

/// The engine as fast as the emulator lets it be: polls and retries every millisecond.
fn bench_options() -> EngineOptions {
    EngineOptions {
        backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
        poll_interval: Duration::from_millis(1),
        ..fast_options()
    }
}

async fn run() {
    let runs: usize = std::env::var("WALDEN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    let f = fixture(30).await.unthrottled().await;
    let _clock = tick_clock_by(&f.sim, Duration::from_secs(30), Duration::from_millis(1));
    let mut timed: Vec<(Duration, RunView)> = Vec::new();
    for i in 0..runs {
        let to = format!("bench-{i}");
        let restores = f.walden.restores();
        let plan = restores
            .plan(&Actor::cli(), &meta(), &request(RestoreTarget::Latest, &to))
            .await
            .unwrap();
        let started = restores
            .start_run(&Actor::cli(), &meta(), &plan.hash, &to)
            .await
            .unwrap();
        let t = Instant::now();
        let view = match Engine::new(f.walden.restores(), bench_options())
            .advance(&started.id, usize::MAX)
            .await
            .unwrap()
        {
            Advance::Ran(view) => view,
            Advance::Held => panic!("the run is held"),
        };
        let took = t.elapsed();
        assert_eq!(view.state, RunState::Done, "{view:#?}");
        println!("run {i}: {:.0} ms", took.as_secs_f64() * 1000.0);
        timed.push((took, view));
    }
    timed.sort_by_key(|(took, _)| *took);
    let (median, view) = &timed[timed.len() / 2];
    println!(
        "whole restore, console side: median {:.0} ms of {runs} runs (goal ≤ 2000 ms: {})",
        median.as_secs_f64() * 1000.0,
        if median.as_secs_f64() <= 2.0 {
            "met"
        } else {
            "not met"
        }
    );
    if let Some(report) = &view.report {
        for step in &report.steps {
            println!(
                "  {:>2} {:<15} {:>7.0} ms",
                step.index,
                step.kind,
                step.seconds * 1000.0
            );
        }
    }
}
