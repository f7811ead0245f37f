//! Benchmark: decoding one 16 MiB WAL segment (`walg::xlog::scan`), alone and after lz4 decompression, as
//! `Reader::last_commit` does for each segment it reads.
//!
//! Run: `cargo bench -p walg --bench xlog` (it never runs under `cargo test`). `WALG_BENCH_RUNS` (default 10).
//! The segment is hand-built by `walg::xlog_writer` like a busy OLTP segment: small heap records with a block
//! reference, a full-page image every 20 records, a commit every 4 records.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench stops loudly

use std::time::{Duration, Instant};
use walg::names::{Compression, DEFAULT_SEGMENT_SIZE};
use walg::xlog_writer::{Block, WalWriter};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn segment() -> Vec<u8> {
    let seg = DEFAULT_SEGMENT_SIZE;
    let mut w = WalWriter::new(seg, 100 * seg);
    let mut i: u32 = 0;
    while w.lsn() < 101 * seg - 16 * 1024 {
        i += 1;
        let image = i.is_multiple_of(20).then(|| (vec![i as u8; 8000], false));
        let block = Block {
            data: vec![i as u8; 60 + (i as usize % 100)],
            image,
            same_rel: false,
        };
        w.record(10, 0, i, &[block], &[0; 3]);
        if i.is_multiple_of(4) {
            w.commit(i, i64::from(i) * 1000, &[]);
        }
    }
    w.finish_segment();
    w.buf
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("xlog bench: skipped (run with `cargo bench -p walg --bench xlog`)");
        return;
    }
    let runs = std::env::var("WALG_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10usize)
        .max(1);
    let seg = DEFAULT_SEGMENT_SIZE;
    let wal = segment();
    let compressed = walg::codec::compress(&wal, Compression::Lz4).unwrap();
    let mut decode = Vec::new();
    let mut both = Vec::new();
    let mut found = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let scan = walg::xlog::scan(&wal, seg, 100 * seg);
        decode.push(t.elapsed());
        found = scan.xacts.len();
        assert!(found > 1000, "{:?}", scan.stop);

        let t = Instant::now();
        let plain = walg::codec::decompress(&compressed, Compression::Lz4).unwrap();
        let scan = walg::xlog::scan(&plain, seg, 100 * seg);
        both.push(t.elapsed());
        assert_eq!(scan.xacts.len(), found);
    }
    let (decode, both) = (median(decode), median(both));
    let mib = seg as f64 / (1024.0 * 1024.0);
    println!(
        "segment: 16 MiB, {found} commits, lz4 {} bytes",
        compressed.len()
    );
    println!(
        "decode one segment:          {:.1} ms ({:.0} MiB/s)",
        decode.as_secs_f64() * 1000.0,
        mib / decode.as_secs_f64()
    );
    println!(
        "lz4 decompress + decode:     {:.1} ms",
        both.as_secs_f64() * 1000.0
    );
}
