//! The backups service against real SQLite files (made by `db::open`) and real buckets written by
//! `walg::testkit` into temp dirs.

use std::collections::HashMap;
use std::path::Path;

use time::{Duration, OffsetDateTime};
use walg::testkit::{sample_builder, BackupSpec, BucketBuilder};
use walg::StorageConfig;

use super::*;

struct Fixture {
    _data: tempfile::TempDir,
    pool: SqlitePool,
}

async fn fixture() -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let pool = crate::db::open(data.path()).await.unwrap();
    Fixture { _data: data, pool }
}

fn reader(dir: &Path) -> Reader {
    let cfg = StorageConfig::from_url(&dir.display().to_string(), &HashMap::new()).unwrap();
    Reader::new(&cfg).unwrap()
}

fn sample_bucket() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    sample_builder(OffsetDateTime::now_utc())
        .write_dir(dir.path())
        .unwrap();
    dir
}

/// Fifteen more segments on timeline 2 and a new backup, as the CLI test adds them.
fn add_wal_and_a_backup(dir: &Path) {
    let mut more = BucketBuilder::new();
    let now = OffsetDateTime::now_utc();
    more.wal(2, 0x2A00 + 576, 0x2A00 + 590, now, Duration::seconds(1));
    more.backup(&BackupSpec::at(2, 0x2A00 + 580, now));
    more.write_dir(dir).unwrap();
}

async fn count(pool: &SqlitePool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `wal_005/` objects stored, over every storage (the blocks' counts).
async fn wal_objects(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(objects), 0) FROM backup_index_wal_blocks")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The timeline's JSON without the fields that depend on when it was computed.
fn report(index: &Index) -> serde_json::Value {
    let now = OffsetDateTime::now_utc();
    let mut json = serde_json::to_value(Timeline::from_index(index, now).report()).unwrap();
    json["generated_at"] = serde_json::Value::Null;
    json["freshness"] = serde_json::Value::Null;
    json
}

#[tokio::test]
async fn an_index_is_stored_and_loaded_back_equal() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let backups = Backups::new(f.pool.clone());

    let first = backups.refresh(&reader).await.unwrap();
    assert!(first.stats.full, "nothing stored: a full build");
    assert!(first.written.replaced);
    assert_eq!(first.written.wal_written, first.index.wal.len() as u64);
    assert_eq!(wal_objects(&f.pool).await, first.index.wal.len() as i64);
    assert_eq!(first.index.backups.len(), 5);

    let stored = backups.stored(reader.url()).await.unwrap().unwrap();
    assert_eq!(stored, *first.index);
    let (built, _) = reader.build().await.unwrap();
    assert_eq!(report(&stored), report(&built));
}

#[tokio::test]
async fn a_refresh_stores_only_the_new_objects_and_sees_them() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let backups = Backups::new(f.pool.clone());
    let first = backups.refresh(&reader).await.unwrap();

    let unchanged = backups.refresh(&reader).await.unwrap();
    assert!(!unchanged.stats.full);
    assert_eq!(
        unchanged.written.wal_written + unchanged.written.wal_deleted,
        0
    );
    assert_eq!(unchanged.written.entries_written, 0);

    add_wal_and_a_backup(bucket.path());
    let second = backups.refresh(&reader).await.unwrap();
    assert!(!second.stats.full && !second.written.replaced, "{second:?}");
    let new_objects = second.index.wal.len() - first.index.wal.len();
    assert!(new_objects >= 15, "{new_objects}");
    assert_eq!(second.written.wal_written, new_objects as u64);
    assert_eq!(second.written.wal_deleted, 0);
    assert_eq!(second.index.backups.len(), 6);
    let json = report(&second.index);
    assert_eq!(
        json["timelines"][1]["last_segment"],
        "000000020000002C0000004E"
    );

    // Another process (a new service on the same database) loads what was stored, and it is up to date.
    let other = Backups::new(f.pool.clone());
    let stored = other.stored(reader.url()).await.unwrap().unwrap();
    assert_eq!(stored, *second.index);
    let (built, _) = reader.build().await.unwrap();
    assert_eq!(report(&stored), report(&built));
}

#[tokio::test]
async fn a_full_build_after_the_maximum_age_applies_deletions() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let backups = Backups::new(f.pool.clone());
    let first = backups.refresh(&reader).await.unwrap();
    let oldest = first.index.wal[0].name.clone();
    std::fs::remove_file(bucket.path().join("wal_005").join(&oldest)).unwrap();

    // A refresh does not notice deletions...
    let refreshed = backups.refresh(&reader).await.unwrap();
    assert!(refreshed.index.wal.iter().any(|w| w.name == oldest));

    // ...but once the stored full build is over the maximum age, the next refresh builds in full.
    sqlx::query("UPDATE backup_indexes SET built_at_ms = built_at_ms - 2 * 3600 * 1000")
        .execute(&f.pool)
        .await
        .unwrap();
    let later = Backups::new(f.pool.clone());
    let rebuilt = later.refresh(&reader).await.unwrap();
    assert!(rebuilt.stats.full);
    assert!(!rebuilt.written.replaced, "only the difference is written");
    assert_eq!(rebuilt.written.wal_deleted, 1);
    assert_eq!(rebuilt.written.wal_written, 0);
    assert!(rebuilt.index.built_at_ms > first.index.built_at_ms - 3600 * 1000);
    let stored = later.stored(reader.url()).await.unwrap().unwrap();
    assert!(!stored.wal.iter().any(|w| w.name == oldest));
    assert_eq!(stored, *rebuilt.index);

    // The same through the maximum age of the service, and through an explicit rebuild.
    std::fs::remove_file(bucket.path().join("wal_005").join(&stored.wal[0].name)).unwrap();
    let rebuilt = Backups::new(f.pool.clone()).with_full_build_max_age(std::time::Duration::ZERO);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = rebuilt.refresh(&reader).await.unwrap();
    assert!(again.stats.full);
    assert_eq!(again.written.wal_deleted, 1);
    std::fs::remove_file(bucket.path().join("wal_005").join(&again.index.wal[0].name)).unwrap();
    let explicit = backups.rebuild(&reader).await.unwrap();
    assert!(explicit.stats.full);
    assert_eq!(explicit.written.wal_deleted, 1);
    assert_eq!(explicit.index.wal.len(), first.index.wal.len() - 3);
}

#[tokio::test]
async fn a_large_listing_is_stored_in_blocks_and_a_refresh_rewrites_only_the_tail() {
    let f = fixture().await;
    let bucket = tempfile::tempdir().unwrap();
    walg::testkit::generate_large(bucket.path(), 3_000, 3).unwrap();
    let reader = reader(bucket.path());
    let blocks = |index: &Index| index.wal.len().div_ceil(wal_blocks::BLOCK) as i64;
    let first = Backups::new(f.pool.clone()).refresh(&reader).await.unwrap();
    assert!(first.index.wal.len() > 2 * wal_blocks::BLOCK);
    assert_eq!(
        count(&f.pool, "backup_index_wal_blocks").await,
        blocks(&first.index)
    );
    assert_eq!(
        first.written.wal_blocks_written as i64,
        blocks(&first.index)
    );

    // 100 new segments, refreshed by a new service (the CLI): it loads the blocks and rewrites the last ones.
    walg::testkit::extend_large(bucket.path(), 3_001, 100).unwrap();
    let cli = Backups::new(f.pool.clone());
    let second = cli.refresh(&reader).await.unwrap();
    assert!(!second.written.replaced && !second.stats.full);
    assert_eq!(second.written.wal_written, 100);
    assert!(
        (1..=2).contains(&second.written.wal_blocks_written),
        "{:?}",
        second.written
    );
    assert_eq!(wal_objects(&f.pool).await, second.index.wal.len() as i64);
    let stored = Backups::new(f.pool.clone())
        .stored(reader.url())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, *second.index);
    // A loaded list has room for the objects the next refresh appends (no reallocation and copy of it all).
    assert!(stored.wal.capacity() >= stored.wal.len() + wal_blocks::BLOCK);

    // Retention deletes the oldest segment: a full build finds it and every block after it shifts.
    std::fs::remove_file(bucket.path().join("wal_005").join(&stored.wal[0].name)).unwrap();
    let rebuilt = cli.rebuild(&reader).await.unwrap();
    assert_eq!(rebuilt.written.wal_deleted, 1);
    assert_eq!(
        rebuilt.written.wal_blocks_written as i64,
        blocks(&rebuilt.index)
    );
    assert_eq!(
        count(&f.pool, "backup_index_wal_blocks").await,
        blocks(&rebuilt.index)
    );
    let stored = Backups::new(f.pool.clone())
        .stored(reader.url())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, *rebuilt.index);
    let (built, _) = reader.build().await.unwrap();
    assert_eq!(report(&stored), report(&built));
}

#[tokio::test]
async fn two_storages_are_kept_apart() {
    let f = fixture().await;
    let sample = sample_bucket();
    let clean = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let mut b = BucketBuilder::new();
    b.wal(1, 1, 30, now - Duration::hours(5), Duration::minutes(10));
    b.backup(&BackupSpec::at(1, 2, now - Duration::hours(5)));
    b.write_dir(clean.path()).unwrap();
    let (first, second) = (reader(sample.path()), reader(clean.path()));
    let backups = Backups::new(f.pool.clone());

    let a = backups.refresh(&first).await.unwrap();
    let b = backups.refresh(&second).await.unwrap();
    assert_eq!(a.index.backups.len(), 5);
    assert_eq!(b.index.backups.len(), 1);
    assert_eq!(count(&f.pool, "backup_indexes").await, 2);
    assert_eq!(
        wal_objects(&f.pool).await,
        (a.index.wal.len() + b.index.wal.len()) as i64
    );
    let fresh = Backups::new(f.pool.clone());
    assert_eq!(fresh.stored(first.url()).await.unwrap().unwrap(), *a.index);
    assert_eq!(fresh.stored(second.url()).await.unwrap().unwrap(), *b.index);

    assert!(fresh.forget(first.url()).await.unwrap());
    assert!(fresh.stored(first.url()).await.unwrap().is_none());
    assert_eq!(fresh.stored(second.url()).await.unwrap().unwrap(), *b.index);
    assert_eq!(wal_objects(&f.pool).await, b.index.wal.len() as i64);
}

#[tokio::test]
async fn an_unreadable_row_is_a_clear_error_and_the_next_refresh_rebuilds() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let backups = Backups::new(f.pool.clone());
    let first = backups.refresh(&reader).await.unwrap();
    let (built, _) = reader.build().await.unwrap();

    for damage in [
        "UPDATE backup_index_entries SET body = '{\"name\": 5}' WHERE kind = 'backup'",
        "UPDATE backup_indexes SET cursors = '{\"wal_005/\": 5}'",
        "UPDATE backup_index_entries SET body = '{\"name\": \"someone else\", \"tli\": 2, \
         \"records\": \"missing\", \"bad_lines\": 0}' WHERE kind = 'history'",
        // A WAL block cut short, and blocks that say they hold fewer objects than they do.
        "UPDATE backup_index_wal_blocks SET body = substr(body, 1, length(body) - 1)",
        "UPDATE backup_index_wal_blocks SET objects = objects - 1",
    ] {
        sqlx::query(damage).execute(&f.pool).await.unwrap();
        let err = backups.stored(reader.url()).await.unwrap_err();
        assert!(
            matches!(err, BackupsError::Corrupt { .. }),
            "{damage}: {err}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&storage_key(reader.url())) && message.contains("unreadable"),
            "{message}"
        );

        let fresh = Backups::new(f.pool.clone());
        let rebuilt = fresh.refresh(&reader).await.unwrap();
        assert!(rebuilt.rebuilt_because.is_some(), "{damage}");
        assert!(rebuilt.stats.full && rebuilt.written.replaced, "{damage}");
        assert_eq!(report(&rebuilt.index), report(&built), "{damage}");
        assert_eq!(wal_objects(&f.pool).await, first.index.wal.len() as i64);
        let stored = fresh.stored(reader.url()).await.unwrap().unwrap();
        assert_eq!(stored, *rebuilt.index, "{damage}");
    }
}

#[tokio::test]
async fn a_writer_that_lost_the_race_stores_a_whole_index() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let (console, cli) = (Backups::new(f.pool.clone()), Backups::new(f.pool.clone()));
    console.refresh(&reader).await.unwrap();
    cli.refresh(&reader).await.unwrap();
    add_wal_and_a_backup(bucket.path());
    // The console's copy in memory is older than the stored revision: it loads the stored one first.
    let refreshed = console.refresh(&reader).await.unwrap();
    assert!(!refreshed.written.replaced);
    assert_eq!(refreshed.index.backups.len(), 6);
    let stored = cli.stored(reader.url()).await.unwrap().unwrap();
    assert_eq!(stored, *refreshed.index);
}

#[tokio::test]
async fn a_storage_forgotten_and_stored_again_is_not_mistaken_for_the_old_row() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let (console, cli) = (Backups::new(f.pool.clone()), Backups::new(f.pool.clone()));
    let first = console.refresh(&reader).await.unwrap();
    assert!(cli.forget(reader.url()).await.unwrap());
    let oldest = first.index.wal[0].name.clone();
    std::fs::remove_file(bucket.path().join("wal_005").join(&oldest)).unwrap();
    cli.refresh(&reader).await.unwrap();
    // The new row has the first revision again; the console's copy must not be taken for it.
    let refreshed = console.refresh(&reader).await.unwrap();
    assert!(!refreshed.index.wal.iter().any(|w| w.name == oldest));
    let stored = cli.stored(reader.url()).await.unwrap().unwrap();
    assert_eq!(stored, *refreshed.index);
}

#[tokio::test]
async fn without_storing_nothing_is_written() {
    let f = fixture().await;
    let bucket = sample_bucket();
    let reader = reader(bucket.path());
    let timeline = timeline_without_storing(&reader, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(timeline.report().backups.len(), 5);
    assert_eq!(count(&f.pool, "backup_indexes").await, 0);
}

#[test]
fn storage_keys_hold_no_credentials() {
    assert_eq!(storage_key("s3://bucket/prefix"), "s3://bucket/prefix");
    assert_eq!(
        storage_key("s3://AKIA:secret@bucket/prefix?X-Amz-Signature=abc#frag"),
        "s3://bucket/prefix"
    );
    assert_eq!(
        storage_key("azure://account@container/pg?sv=2020&sig=xyz"),
        "azure://container/pg"
    );
    assert_eq!(
        storage_key("file:///var/lib/wal-g"),
        "file:///var/lib/wal-g"
    );
    assert_eq!(storage_key("gs://bucket"), "gs://bucket");
}

#[tokio::test]
async fn a_gap_filled_in_the_middle_rewrites_the_blocks_from_it_on() {
    let f = fixture().await;
    let bucket = tempfile::tempdir().unwrap();
    walg::testkit::generate_large(bucket.path(), 3_000, 3).unwrap();
    let reader = reader(bucket.path());
    let backups = Backups::new(f.pool.clone());
    let first = backups.refresh(&reader).await.unwrap();
    let blocks = first.index.wal.len().div_ceil(wal_blocks::BLOCK) as u64;
    // A segment of the second block goes missing, is built without, then arrives late (a slow upload).
    let at = wal_blocks::BLOCK + 100;
    let late = bucket
        .path()
        .join("wal_005")
        .join(&first.index.wal[at].name);
    let body = std::fs::read(&late).unwrap();
    std::fs::remove_file(&late).unwrap();
    drop(first);
    let without = backups.rebuild(&reader).await.unwrap();
    assert_eq!(without.written.wal_deleted, 1);
    drop(without); // the service's kept copy is then its own: refreshed in place
    std::fs::write(&late, body).unwrap();
    let filled = backups.refresh(&reader).await.unwrap();
    assert!(!filled.written.replaced && !filled.stats.full);
    assert_eq!(filled.stats.wal_kept, at);
    assert_eq!(filled.written.wal_written, 1);
    assert_eq!(
        filled.written.wal_blocks_written,
        blocks - 1,
        "{:?}",
        filled.written
    );
    let stored = Backups::new(f.pool.clone())
        .stored(reader.url())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, *filled.index);
    let (mut built, _) = reader.build().await.unwrap();
    (built.built_at_ms, built.refreshed_at_ms) = (stored.built_at_ms, stored.refreshed_at_ms);
    assert_eq!(stored, built);
}
