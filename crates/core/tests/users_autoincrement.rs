//! The migration that makes `users.id` AUTOINCREMENT (security review L7), run as it runs in production: on a
//! database created by the earlier migrations and holding their data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::path::{Path, PathBuf};

use sqlx::migrate::Migrator;
use sqlx::SqlitePool;
use walden_core::db;

const VERSION: i64 = 20261130000300;

fn migrations_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations")
}

/// A database at the schema just before the migration (every earlier migration applied, from the same files).
async fn before_migration(dir: &Path) -> SqlitePool {
    let earlier = dir.join("earlier");
    std::fs::create_dir_all(&earlier).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(migrations_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version < VERSION {
            std::fs::copy(&path, earlier.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert!(copied >= 3);
    let pool = db::open_file(&dir.join("walden.db")).await.unwrap();
    Migrator::new(earlier.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool
}

async fn exec(pool: &SqlitePool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

type UserRow = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<i64>,
    String,
    String,
);

async fn users(pool: &SqlitePool) -> Vec<UserRow> {
    sqlx::query_as(
        "SELECT id, name, password_hash, role, disabled, session_epoch, totp_secret, totp_pending, \
         totp_last_step, created_at, updated_at FROM users ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn invites(pool: &SqlitePool) -> Vec<(i64, Option<i64>, Option<i64>)> {
    sqlx::query_as("SELECT id, created_by, used_by FROM invites ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn insert_user(pool: &SqlitePool, name: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) \
         VALUES (?, '$argon2id$v=19$x', 'viewer', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z') \
         RETURNING id",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rows_survive_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let pool = before_migration(dir.path()).await;
    // Old schema, old data: three users (one with a sealed TOTP secret), invitations made and used by them,
    // and an audit row naming user 9, whose row is gone (ids were reusable then).
    exec(
        &pool,
        "INSERT INTO users (id, name, password_hash, role, disabled, session_epoch, totp_secret, totp_pending, \
         totp_last_step, created_at, updated_at) VALUES \
         (1, 'alice', '$argon2id$v=19$a', 'admin', 0, 3, x'0102', NULL, 123, '2026-01-01T00:00:00.000Z', \
          '2026-01-02T00:00:00.000Z'), \
         (2, 'bob', '$argon2id$v=19$b', 'operator', 1, 0, NULL, x'03', NULL, '2026-01-01T00:00:00.000Z', \
          '2026-01-01T00:00:00.000Z'), \
         (5, 'carol', '$argon2id$v=19$c', 'viewer', 0, 0, NULL, NULL, NULL, '2026-01-01T00:00:00.000Z', \
          '2026-01-01T00:00:00.000Z')",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO invites (id, token_hash, role, created_by, created_at, expires_at, used_at, used_by) VALUES \
         (1, zeroblob(32), 'viewer', 1, 'a', 'b', 'c', 5), \
         (2, randomblob(32), 'operator', 2, 'a', 'b', NULL, NULL), \
         (3, randomblob(32), 'admin', NULL, 'a', 'b', NULL, NULL)",
    )
    .await;
    exec(
        &pool,
        "INSERT INTO audit_log (at, actor_id, actor_name, action, outcome, prev_hash, hash) \
         VALUES ('2026-01-01T00:00:00.000Z', 9, 'gone', 'auth.login', 'ok', zeroblob(32), zeroblob(32))",
    )
    .await;
    let users_before = users(&pool).await;
    let invites_before = invites(&pool).await;

    db::migrate(&pool, &dir.path().join("walden.db"))
        .await
        .unwrap();

    // Every row, every value, as it was; the references still hold.
    assert_eq!(users(&pool).await, users_before);
    assert_eq!(invites(&pool).await, invites_before);
    let dangling: Vec<(String, i64, String, i64)> = sqlx::query_as("PRAGMA foreign_key_check")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(dangling.is_empty(), "{dangling:?}");
    let schema: String =
        sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'users'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(schema.contains("AUTOINCREMENT"), "{schema}");
    assert!(schema.contains("STRICT"), "{schema}");

    // The constraints are all still there.
    for bad in [
        // the same name in another case
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES ('ALICE', '$argon2id$x', 'viewer', 'a', 'a')",
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES ('dan', 'plain', 'viewer', 'a', 'a')",
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES ('dan', '$argon2id$x', 'root', 'a', 'a')",
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES ('', '$argon2id$x', 'viewer', 'a', 'a')",
        "INSERT INTO users (name, password_hash, role, disabled, created_at, updated_at) VALUES ('dan', '$argon2id$x', 'viewer', 2, 'a', 'a')",
        "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES ('dan', '$argon2id$x', 'viewer', 'a', NULL)",
        // STRICT: no text in an integer column
        "INSERT INTO users (name, password_hash, role, session_epoch, created_at, updated_at) VALUES ('dan', '$argon2id$x', 'viewer', 'many', 'a', 'a')",
        // an invitation naming no user
        "INSERT INTO invites (token_hash, role, created_by, created_at, expires_at) VALUES (randomblob(32), 'viewer', 42, 'a', 'b')",
    ] {
        assert!(sqlx::query(bad).execute(&pool).await.is_err(), "{bad}");
    }

    // The sequence starts above every id the database still names (user 9 in the audit log).
    let dan = insert_user(&pool, "dan").await;
    assert_eq!(dan, 10);
    // A removed top id is not given again.
    exec(&pool, "DELETE FROM users WHERE id = 10").await;
    assert_eq!(insert_user(&pool, "erin").await, 11);
}

#[tokio::test]
async fn an_empty_database_migrates_and_counts_from_one() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    assert_eq!(insert_user(&pool, "first").await, 1);
    assert_eq!(insert_user(&pool, "second").await, 2);
    exec(&pool, "DELETE FROM users WHERE id = 2").await;
    assert_eq!(insert_user(&pool, "third").await, 3);
}
