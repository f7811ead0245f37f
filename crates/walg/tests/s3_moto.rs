//! The whole reader against a real S3-protocol server: moto (`moto_server`, Python), started by the test on
//! 127.0.0.1 with a free port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use walg::codec::LibsodiumKey;
use walg::names::Compression;
use walg::plan::{PlanOutcome, Target};
use walg::testkit::{sample_builder, BackupSpec, BucketBuilder, MotoServer};
use walg::{ReadError, Reader, StorageConfig, Timeline};

const BUCKET: &str = "walden-test";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn start_moto() -> MotoServer {
    MotoServer::start(BUCKET)
}

fn env(moto: &MotoServer, prefix: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut e: HashMap<String, String> = moto.walg_env(prefix).into_iter().collect();
    for (k, v) in extra {
        e.insert(k.to_string(), v.to_string());
    }
    e
}

async fn upload(moto: &MotoServer, prefix: &str, b: &BucketBuilder) {
    let cfg = StorageConfig::from_env_map(&env(moto, prefix, &[])).unwrap();
    let store: Arc<dyn object_store::ObjectStore> = cfg.build_store().unwrap();
    b.write_store(store.as_ref(), &cfg.root).await.unwrap();
}

fn at(k: i64) -> OffsetDateTime {
    datetime!(2026-03-01 12:00 UTC) + Duration::minutes(10 * k)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_bucket_over_s3() {
    let moto = start_moto();
    let now = OffsetDateTime::now_utc();
    let sample = sample_builder(now);
    upload(&moto, "pg/sample", &sample).await;

    let cfg = StorageConfig::from_env_map(&env(&moto, "pg/sample", &[])).unwrap();
    let reader = Reader::new(&cfg).unwrap();
    let (idx, stats) = reader.build().await.unwrap();
    assert_eq!(stats.new_sentinels, 5);
    assert_eq!(stats.new_histories, 1);
    let t = Timeline::from_index(&idx, now);

    // Same structure as the file-storage read of the same tree (LastModified differs: S3 sets upload time).
    let dir = tempfile::tempdir().unwrap();
    sample.write_dir(dir.path()).unwrap();
    let fcfg = StorageConfig::from_url(&dir.path().display().to_string(), &HashMap::new()).unwrap();
    let (fidx, _) = Reader::new(&fcfg).unwrap().build().await.unwrap();
    let ft = Timeline::from_index(&fidx, now);
    let names = |t: &Timeline| {
        t.backups
            .iter()
            .map(|b| (b.name.clone(), b.restorable))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&t), names(&ft));
    assert_eq!(t.timelines.len(), 2);
    assert_eq!(t.timelines[1].parent, Some(1));
    assert_eq!(t.timelines[1].gaps, ft.timelines[1].gaps);
    assert!(t.findings.iter().any(|f| f.code == "wal_gap"));
    assert_eq!(idx.wal.len(), fidx.wal.len());
    assert!(t.backups.iter().all(|b| b.restorable));
    // The newest backup is after the gap: "latest" picks it.
    match t.choose_backup(&Target::Latest, None) {
        PlanOutcome::Plan(p) => assert_eq!(p.backup, "base_000000020000002C00000004"),
        r => panic!("{r:?}"),
    }

    // Refresh over S3 (list with start-after) after new uploads equals a full build.
    let mut idx = idx;
    let mut more = BucketBuilder::new();
    more.wal(2, 0x2A00 + 576, 0x2A00 + 600, now, Duration::minutes(10));
    more.backup(&BackupSpec::at(2, 0x2A00 + 580, now));
    upload(&moto, "pg/sample", &more).await;
    let s = reader.refresh(&mut idx).await.unwrap();
    assert_eq!(s.new_sentinels, 1);
    assert!(s.listed < 400, "listed {}", s.listed);
    let (full, _) = reader.build().await.unwrap();
    assert_eq!(idx.wal, full.wal);
    assert_eq!(idx.backups, full.backups);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_bucket_over_s3_and_storage_prefix() {
    let moto = start_moto();
    let secret = "an encryption key of 32 bytes!!!";
    let key = LibsodiumKey::from_setting(secret, None).unwrap();
    let mut b = BucketBuilder::new()
        .compression(Compression::Zstd)
        .encrypt(key);
    b.wal(1, 10, 40, at(0), Duration::minutes(10));
    b.history(2, &[(1, 41 * 16 * 1024 * 1024)], at(31));
    b.wal(2, 41, 50, at(31), Duration::minutes(10));
    b.backup(&BackupSpec::at(1, 12, at(2)));
    upload(&moto, "enc/sub", &b).await;

    // WALG_STORAGE_PREFIX is appended to the prefix, as wal-g does.
    let e = env(
        &moto,
        "enc",
        &[
            ("WALG_STORAGE_PREFIX", "sub"),
            ("WALG_LIBSODIUM_KEY", secret),
        ],
    );
    let (idx, _) = Reader::new(&StorageConfig::from_env_map(&e).unwrap())
        .unwrap()
        .build()
        .await
        .unwrap();
    let t = Timeline::from_index(&idx, OffsetDateTime::now_utc());
    assert_eq!(t.timelines[1].parent, Some(1), "{:?}", t.findings);
    assert!(t.backups[0].restorable);

    let e = env(&moto, "enc", &[("WALG_STORAGE_PREFIX", "sub")]);
    let (idx, _) = Reader::new(&StorageConfig::from_env_map(&e).unwrap())
        .unwrap()
        .build()
        .await
        .unwrap();
    let t = Timeline::from_index(&idx, OffsetDateTime::now_utc());
    let f = t
        .findings
        .iter()
        .find(|f| f.code == "unreadable_history")
        .expect("finding");
    assert!(f.message.contains("WALG_LIBSODIUM_KEY"), "{}", f.message);

    // An empty prefix in an existing bucket.
    let e = env(&moto, "nothing-here", &[]);
    let (idx, _) = Reader::new(&StorageConfig::from_env_map(&e).unwrap())
        .unwrap()
        .build()
        .await
        .unwrap();
    let t = Timeline::from_index(&idx, OffsetDateTime::now_utc());
    assert_eq!(t.findings[0].code, "empty_storage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_storage_is_a_clear_error() {
    let port = free_port(); // nothing listens there
    let mut e = HashMap::new();
    e.insert("WALG_S3_PREFIX".to_string(), "s3://gone/pg".to_string());
    e.insert(
        "AWS_ENDPOINT".to_string(),
        format!("http://127.0.0.1:{port}"),
    );
    e.insert("AWS_S3_FORCE_PATH_STYLE".to_string(), "true".to_string());
    e.insert("AWS_ACCESS_KEY_ID".to_string(), "x".to_string());
    e.insert(
        "AWS_SECRET_ACCESS_KEY".to_string(),
        "very-secret-value".to_string(),
    );
    let r = Reader::new(&StorageConfig::from_env_map(&e).unwrap()).unwrap();
    let err = r.build().await.unwrap_err();
    assert!(matches!(err, ReadError::List { .. }));
    let msg = err.to_string();
    assert!(msg.contains("s3://gone/pg"), "{msg}");
    assert!(!msg.contains("very-secret-value"), "{msg}");
}
