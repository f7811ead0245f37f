//! Benchmark: full build vs raw listing, and refresh vs full build, on a generated local-file tree.
//!
//! Run: `cargo bench -p walg --bench timeline` (it never runs under `cargo test`).
//! Environment: `WALG_BENCH_WAL` (default 1000000), `WALG_BENCH_BACKUPS` (1000), `WALG_BENCH_NEW` (1000),
//! `WALG_BENCH_RUNS` (3), `WALG_BENCH_DIR` (reuse or create the tree there; default: a temporary directory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::time::{Duration, Instant};
use time::OffsetDateTime;
use walg::testkit::{extend_large, generate_large};
use walg::{Reader, StorageConfig, Timeline};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("timeline bench: skipped (run with `cargo bench -p walg --bench timeline`)");
        return;
    }
    let wal = env_u64("WALG_BENCH_WAL", 1_000_000);
    let backups = env_u64("WALG_BENCH_BACKUPS", 1_000);
    let new = env_u64("WALG_BENCH_NEW", 1_000);
    let runs = env_u64("WALG_BENCH_RUNS", 3).max(1);

    let tmp;
    let dir = match std::env::var("WALG_BENCH_DIR") {
        Ok(d) => std::path::PathBuf::from(d),
        Err(_) => {
            tmp = tempfile::tempdir().expect("temporary directory");
            tmp.path().to_path_buf()
        }
    };
    let marker = dir.join(format!(".generated-{wal}-{backups}"));
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench directory");
        let t = Instant::now();
        let n = generate_large(&dir, wal, backups).expect("generate tree");
        std::fs::write(&marker, b"").expect("marker");
        println!(
            "generated {n} objects ({wal} WAL segments, {backups} backups) in {}",
            secs(t.elapsed())
        );
    } else {
        println!("reusing the tree in {}", dir.display());
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cfg =
        StorageConfig::from_url(&dir.display().to_string(), &Default::default()).expect("config");
    let reader = Reader::new(&cfg).expect("reader");

    // Warm the page cache the same way for both measurements.
    let listed = rt.block_on(reader.raw_list()).expect("raw list");
    println!("objects listed: {listed}");

    let mut raw = Vec::new();
    let mut full = Vec::new();
    let mut analysis = Vec::new();
    let mut index = None;
    for _ in 0..runs {
        let t = Instant::now();
        rt.block_on(reader.raw_list()).expect("raw list");
        raw.push(t.elapsed());

        let t = Instant::now();
        let (idx, _) = rt.block_on(reader.build()).expect("build");
        let a = Instant::now();
        let tl = Timeline::from_index(&idx, OffsetDateTime::now_utc());
        analysis.push(a.elapsed());
        full.push(t.elapsed());
        assert!(!tl.backups.is_empty());
        index = Some(idx);
    }
    let (raw, full, analysis) = (median(raw), median(full), median(analysis));
    println!("raw listing:        {}", secs(raw));
    println!(
        "full build:         {} (of which timeline analysis {})",
        secs(full),
        secs(analysis)
    );
    println!(
        "full / raw ratio:   {:.3}  (target <= 1.3)",
        full.as_secs_f64() / raw.as_secs_f64()
    );

    let mut idx = index.expect("index");
    let mut refresh = Vec::new();
    let mut next = wal + 1;
    let mut last_stats = None;
    for _ in 0..runs {
        extend_large(&dir, next, new).expect("extend");
        next += new;
        let t = Instant::now();
        let stats = rt.block_on(reader.refresh(&mut idx)).expect("refresh");
        let _tl = Timeline::from_index(&idx, OffsetDateTime::now_utc());
        refresh.push(t.elapsed());
        assert!(!stats.full);
        assert_eq!(
            stats.listed, new,
            "the refresh found exactly the new objects"
        );
        last_stats = Some(stats);
    }
    let refresh = median(refresh);
    println!("refresh (+{new} WAL): {} ", secs(refresh));
    if let Some(s) = last_stats {
        println!(
            "  (last refresh: {} objects found, {} names probed with a stat)",
            s.listed, s.probed
        );
    }
    println!(
        "refresh / full:     {:.3}  (target <= 0.05)",
        refresh.as_secs_f64() / full.as_secs_f64()
    );
    // The refreshed index must equal a full build of the same tree.
    let (rebuilt, _) = rt.block_on(reader.build()).expect("build");
    assert_eq!(
        rebuilt.wal, idx.wal,
        "refreshed WAL differs from a full build"
    );
    assert_eq!(rebuilt.backups, idx.backups);
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        Timeline::from_index(&rebuilt, now).report(),
        Timeline::from_index(&idx, now).report()
    );
    println!("refreshed index == full build: yes");
    if std::env::var("WALG_BENCH_DIR").is_ok() {
        // Leave the tree as generated for the next run.
        for n in wal + 1..next {
            let name = format!(
                "{}.lz4",
                walg::names::wal_file_name(1, n, walg::names::DEFAULT_SEGMENT_SIZE)
            );
            let _ = std::fs::remove_file(dir.join("wal_005").join(name));
        }
    }
}
