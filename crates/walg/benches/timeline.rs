//! Benchmark: full build vs listing the same tree, and refresh vs full build, on a generated local-file tree.
//!
//! The listings the build is compared with, side by side in each run (issue #12 item 9: a full build ≤ 1.3 × the
//! fastest listing of names, sizes and mtimes the OS offers): `find DIR -printf '%s %T@ %p\n' > /dev/null`
//! (spawned); a plain Rust walk (`read_dir`, i.e. `getdents64`, and a `statx` per entry through
//! `DirEntry::metadata`); `Reader::raw_list` (the reader's own listing of both prefixes, without parsing); and
//! object_store's local listing, which full builds used before (kept to show what changed).
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

/// `find DIR -printf '%s %T@ %p\n' > /dev/null`, spawned and waited for.
fn find_listing(dir: &std::path::Path) -> Duration {
    let t = Instant::now();
    let status = std::process::Command::new("find")
        .arg(dir)
        .args(["-printf", "%s %T@ %p\n"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("spawn find");
    assert!(status.success(), "find failed");
    t.elapsed()
}

/// Every file under `dir` with its name, size and mtime: `read_dir` (`getdents64`) and one `statx` per entry
/// (`DirEntry::metadata` stats relative to the open directory). Returns the number of files.
fn walk(dir: &std::path::Path) -> u64 {
    let mut files = 0;
    let mut checksum = 0u64;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("stat");
        if meta.is_dir() {
            files += walk(&entry.path());
        } else {
            let mtime = meta.modified().expect("mtime");
            checksum = checksum
                .wrapping_add(meta.len())
                .wrapping_add(entry.file_name().len() as u64)
                .wrapping_add(
                    mtime
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                );
            files += 1;
        }
    }
    std::hint::black_box(checksum);
    files
}

/// object_store's `LocalFileSystem::list` of the whole tree (metadata included). Returns the number of objects.
async fn object_store_list(dir: &std::path::Path) -> u64 {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir).expect("store");
    let metas: Vec<object_store::ObjectMeta> = store
        .list(None)
        .try_collect()
        .await
        .expect("object_store list");
    metas.len() as u64
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

    let (mut find, mut rust, mut os_list) = (Vec::new(), Vec::new(), Vec::new());
    let mut raw = Vec::new();
    let mut full = Vec::new();
    let mut analysis = Vec::new();
    let mut index = None;
    for _ in 0..runs {
        find.push(find_listing(&dir));

        let t = Instant::now();
        let walked = walk(&dir);
        rust.push(t.elapsed());
        assert!(walked >= listed, "the walk sees every object");

        let t = Instant::now();
        rt.block_on(reader.raw_list()).expect("raw list");
        raw.push(t.elapsed());

        let t = Instant::now();
        rt.block_on(object_store_list(&dir));
        os_list.push(t.elapsed());

        let t = Instant::now();
        let (idx, _) = rt.block_on(reader.build()).expect("build");
        let a = Instant::now();
        let tl = Timeline::from_index(&idx, OffsetDateTime::now_utc());
        analysis.push(a.elapsed());
        full.push(t.elapsed());
        assert!(!tl.backups.is_empty());
        index = Some(idx);
    }
    let (find, rust, os_list) = (median(find), median(rust), median(os_list));
    let (raw, full, analysis) = (median(raw), median(full), median(analysis));
    println!("medians of {runs} runs, side by side:");
    println!("find -printf '%s %T@ %p\\n':  {}", secs(find));
    println!("Rust read_dir + statx walk:  {}", secs(rust));
    println!("Reader::raw_list:            {}", secs(raw));
    println!("object_store local list:     {}", secs(os_list));
    println!(
        "full build:                  {} (of which timeline analysis {})",
        secs(full),
        secs(analysis)
    );
    let fastest = find.min(rust);
    println!(
        "full / fastest OS listing:   {:.3}  (target <= 1.3)",
        full.as_secs_f64() / fastest.as_secs_f64()
    );
    println!(
        "full / find:                 {:.3}",
        full.as_secs_f64() / find.as_secs_f64()
    );
    println!(
        "full / raw_list:             {:.3}",
        full.as_secs_f64() / raw.as_secs_f64()
    );
    println!(
        "object_store list / find:    {:.3}",
        os_list.as_secs_f64() / find.as_secs_f64()
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
