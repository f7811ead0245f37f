//! Audit log benchmarks: append throughput, and chain verification over 1,000,000 rows.
//!
//! `cargo bench -p walden-core --bench audit`. The 1M-row database is built once per run (through the real
//! `append`, 10,000 rows per transaction) in a temp dir; its build rate is printed as the batched append
//! throughput.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sqlx::SqlitePool;
use walden_core::audit::{self, Actor, Event, Outcome, RequestMeta, Target};
use walden_core::db;
use walden_core::users::Role;

const ROWS: u64 = 1_000_000;
const BATCH: u64 = 10_000;

fn event(i: u64) -> (Actor, RequestMeta, Event) {
    let actor = Actor::User {
        id: (i % 7) as i64 + 1,
        name: format!("user{}", i % 7),
        role: Role::Operator,
    };
    let meta = RequestMeta {
        request_id: Some(format!("{i:016x}")),
        client_ip: Some("198.51.100.23".into()),
    };
    let mut ev = Event::new(
        if i.is_multiple_of(3) {
            "restore.step"
        } else {
            "auth.login"
        },
        Outcome::Ok,
    )
    .target(Target {
        cluster_id: Some(format!("cluster-{}", i % 13)),
        app_name: Some("prod-pg".into()),
        run_id: (i.is_multiple_of(3)).then(|| format!("run-{}", i / 100)),
        subject: Some(format!("user:{}", i % 7 + 1)),
    })
    .detail(serde_json::json!({ "step": "create_machine", "n": i }));
    if i.is_multiple_of(10) {
        ev = ev.reason("scheduled restore drill, ticket OPS-1234");
    }
    (actor, meta, ev)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn fill(pool: &SqlitePool, n: u64) {
    let mut i = 0;
    while i < n {
        let mut tx = audit::begin(pool).await.expect("begin");
        for _ in 0..BATCH.min(n - i) {
            let (a, m, e) = event(i);
            audit::append(&mut tx, &a, &m, &e).await.expect("append");
            i += 1;
        }
        tx.commit().await.expect("commit");
    }
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = rt.block_on(db::open(dir.path())).expect("open");
    let mut g = c.benchmark_group("audit_append");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(5));
    let mut i = 0u64;
    g.bench_function("record, one transaction per row", |b| {
        b.iter(|| {
            i += 1;
            let (a, m, e) = event(i);
            rt.block_on(audit::record(&pool, &a, &m, &e))
                .expect("record");
        })
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    let rt = runtime();
    // WALDEN_BENCH_DIR keeps the 1M-row database between runs (it is built only when empty).
    let keep = std::env::var_os("WALDEN_BENCH_DIR").map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    let pool = rt.block_on(db::open(&path)).expect("open");
    let have: i64 = rt
        .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&pool))
        .expect("count");
    if have == 0 {
        let t = Instant::now();
        rt.block_on(fill(&pool, ROWS));
        let secs = t.elapsed().as_secs_f64();
        println!(
            "built {ROWS} rows with append, {BATCH} per transaction: {secs:.1} s = {:.0} rows/s",
            ROWS as f64 / secs
        );
    }
    let report = rt.block_on(audit::verify(&pool)).expect("verify");
    assert!(report.is_intact() && report.rows == ROWS, "{report:?}");

    let mut g = c.benchmark_group("audit_verify");
    g.throughput(Throughput::Elements(ROWS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("verify 1M rows", |b| {
        b.iter(|| {
            let r = rt.block_on(audit::verify(&pool)).expect("verify");
            assert_eq!(r.rows, ROWS);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_append, bench_verify);
criterion_main!(benches);
