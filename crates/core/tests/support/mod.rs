//! Set-up the tests share. The restore tests' emulator and console are in [`restore`]; here, for the audit
//! tests: tampering with the audit log as someone who can write the SQLite file would, behind the log's back
//! (its append-only triggers dropped, then put back so the damage is not visible).
// Each test crate that declares `mod support;` uses part of this.
#![allow(dead_code)]

pub mod cutover;
pub mod restore;

use std::path::Path;

use sqlx::{Connection, SqliteConnection};
use walden_core::db;

/// Drops the two triggers that make `audit_log` append-only.
pub const DROP_TRIGGERS: &str =
    "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;";

/// Recreates them as the migration wrote them.
pub const TRIGGERS: &str = "
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END;";

/// One connection of its own on the database file in `data_dir`, as an attacker's `sqlite3` would open. (Not
/// a pool: a pooled connection whose schema cache predates a `DROP TRIGGER` run on another one refuses the
/// `CREATE TRIGGER` that follows with "already exists".)
pub async fn attacker(data_dir: &Path) -> SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(data_dir.join(db::DB_FILE));
    SqliteConnection::connect_with(&options).await.unwrap()
}

/// Runs `sql` (one or more statements) on `conn` with the triggers dropped, then recreates them.
pub async fn behind_the_triggers(conn: &mut SqliteConnection, sql: &str) {
    let sql = sql.trim_end().trim_end_matches(';');
    sqlx::raw_sql(&format!("{DROP_TRIGGERS} {sql}; {TRIGGERS}"))
        .execute(conn)
        .await
        .unwrap();
}

/// Tampers with the database file in `data_dir`: `sql` behind the triggers, on a connection of its own.
pub async fn tamper(data_dir: &Path, sql: &str) {
    behind_the_triggers(&mut attacker(data_dir).await, sql).await;
}
