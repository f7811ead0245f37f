//! The stored index: the cost of a refresh that finds new WAL objects, stored in the database, relative to a full
//! build of the same bucket (goal: ≤ 5 % end to end for 1,000 new objects in a 300,000-object bucket).
//!
//! `cargo bench -p walden-core --bench backups` (not run by `cargo test`). Writes a local-file bucket with
//! `walg::testkit::generate_large` into a temp dir, then measures (medians): a full build with its timeline; the
//! first store (every row inserted); loading the stored index; a refresh through a service that kept its copy
//! in memory (the console's worker) and through a new service on a newly opened database that loads the stored
//! index first (the CLI: `db::open`, with its `quick_check` and migrations, is timed and printed apart), each
//! after `WALDEN_BENCH_NEW` new segments and including the save and the timeline, with the split of each (the
//! service's `Refreshed::took`, the timeline, and what a copy of the index would cost); at the end it checks that
//! the refreshed and the stored index equal a full build. Variables: `WALDEN_BENCH_WAL`
//! (300,000), `WALDEN_BENCH_NEW` (1,000), `WALDEN_BENCH_RUNS` (3).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use walden_core::backups::{Backups, Refreshed};
use walden_core::db;
use walg::testkit::{extend_large, generate_large};
use walg::{Index, Reader, StorageConfig, Timeline};

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
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let wal = env_u64("WALDEN_BENCH_WAL", 300_000);
    let new = env_u64("WALDEN_BENCH_NEW", 1_000);
    let runs = env_u64("WALDEN_BENCH_RUNS", 3).max(1);
    let bucket = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let objects = generate_large(bucket.path(), wal, (wal / 1_000).max(1)).expect("generate");
    println!(
        "generated {objects} objects in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let cfg = StorageConfig::from_url(&bucket.path().display().to_string(), &HashMap::new())
        .expect("storage");
    let reader = Reader::new(&cfg).expect("reader");
    let pool = db::open(data.path()).await.expect("database");

    let mut full = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let (index, _) = reader.build().await.expect("build");
        let _timeline = Timeline::from_index(&index, OffsetDateTime::now_utc());
        full.push(t.elapsed());
    }
    let full = median(full);

    let worker = Backups::new(pool.clone());
    let t = Instant::now();
    let first = worker.refresh(&reader).await.expect("first store");
    let first_store = t.elapsed();
    assert!(first.written.replaced);

    let mut load = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let stored = worker.stored(reader.url()).await.expect("load");
        load.push(t.elapsed());
        assert!(stored.is_some());
    }

    // The worker's refreshes first: a refresh by another service in between would make its copy stale.
    let mut next = wal + 1;
    let mut warm = Vec::new();
    let mut warm_split = Vec::new();
    for _ in 0..runs {
        extend_large(bucket.path(), next, new).expect("extend");
        next += new;
        let t = Instant::now();
        let refreshed = worker.refresh(&reader).await.expect("refresh");
        let before_timeline = t.elapsed();
        let _timeline = refreshed.timeline(OffsetDateTime::now_utc());
        warm.push(t.elapsed());
        warm_split.push(Split::of(&refreshed, t.elapsed() - before_timeline));
        assert_eq!(refreshed.written.wal_written, new);
        assert!(!refreshed.written.replaced && !refreshed.stats.full);
    }
    let mut cold = Vec::new();
    let mut cold_split = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        extend_large(bucket.path(), next, new).expect("extend");
        next += new;
        // What `walden timeline` does: open the database file (a pool of its own, nothing cached in it), load,
        // refresh, store, compute the timeline.
        let t = Instant::now();
        let cli_pool = db::open(data.path()).await.expect("database");
        let opened = t.elapsed();
        let refreshed = Backups::new(cli_pool.clone())
            .refresh(&reader)
            .await
            .expect("refresh");
        let before_timeline = t.elapsed();
        let _timeline = refreshed.timeline(OffsetDateTime::now_utc());
        cold.push(t.elapsed());
        let mut split = Split::of(&refreshed, t.elapsed() - before_timeline);
        split.open = opened;
        cold_split.push(split);
        assert_eq!(refreshed.written.wal_written, new);
        last = Some(refreshed.index);
        cli_pool.close().await;
    }
    // The refreshed index, as stored, is what a full build of the storage finds.
    let (mut built, _) = reader.build().await.expect("build");
    let refreshed = last.expect("a refresh");
    (built.built_at_ms, built.refreshed_at_ms) = (refreshed.built_at_ms, refreshed.refreshed_at_ms);
    assert!(
        *refreshed == built,
        "the refreshed index differs from a full build"
    );
    let stored = worker
        .stored(reader.url())
        .await
        .expect("load")
        .expect("stored");
    assert!(
        stored == built,
        "the stored index differs from a full build"
    );
    let (load, warm, cold) = (median(load), median(warm), median(cold));
    let ratio = |d: Duration| d.as_secs_f64() / full.as_secs_f64();
    println!("full build + timeline:                    {}", ms(full));
    println!(
        "first store (full build + every row):     {} ({:.2} of a full build)",
        ms(first_store),
        ratio(first_store)
    );
    println!(
        "load the stored index:                    {} ({:.3})",
        ms(load),
        ratio(load)
    );
    println!(
        "refresh +{new}, kept in memory, stored:   {} ({:.3})",
        ms(warm),
        ratio(warm)
    );
    println!(
        "refresh +{new}, opened + loaded, stored:  {} ({:.3})",
        ms(cold),
        ratio(cold)
    );
    for (who, split) in [
        ("kept", Split::median(&warm_split)),
        ("loaded", Split::median(&cold_split)),
    ] {
        println!(
            "  {who:>6}: open the database {}, base {}, read (probe + merge) {}, save (diff + commit) {}, timeline {}; \
             a copy of the index (not made) {}",
            ms(split.open),
            ms(split.base),
            ms(split.read),
            ms(split.save),
            ms(split.timeline),
            ms(split.copy)
        );
    }
}

/// The parts of one refresh: the service's own (`Took`), its timeline, and what copying its index would cost.
#[derive(Clone, Copy)]
struct Split {
    /// The CLI's `db::open` of the database file (zero for the worker, whose pool is open).
    open: Duration,
    base: Duration,
    read: Duration,
    save: Duration,
    timeline: Duration,
    copy: Duration,
}

impl Split {
    fn of(refreshed: &Refreshed, timeline: Duration) -> Split {
        let t = Instant::now();
        let copy = Index::clone(&refreshed.index);
        let copy_time = t.elapsed();
        drop(copy);
        Split {
            open: Duration::ZERO,
            base: refreshed.took.base,
            read: refreshed.took.read,
            save: refreshed.took.save,
            timeline,
            copy: copy_time,
        }
    }

    /// Each part's median on its own.
    fn median(all: &[Split]) -> Split {
        let part = |f: fn(&Split) -> Duration| median(all.iter().map(f).collect());
        Split {
            open: part(|s| s.open),
            base: part(|s| s.base),
            read: part(|s| s.read),
            save: part(|s| s.save),
            timeline: part(|s| s.timeline),
            copy: part(|s| s.copy),
        }
    }
}
