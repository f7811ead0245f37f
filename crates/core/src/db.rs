//! Opening Walden's SQLite database and applying its migrations.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

/// The migrations in `migrations/`, embedded in the binary at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The file name of the database inside the data directory.
pub const DB_FILE: &str = "walden.db";

/// Why the database could not be opened. Each message names the file and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("{path} is not a Walden database (not SQLite, or damaged): {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("database migration failed on {path}: {reason}")]
    Migrate { path: PathBuf, reason: String },
}

/// Open (creating if missing) the database in `data_dir`, in WAL mode with foreign keys on, check that it is
/// sound and apply the embedded migrations. Any failure comes back as one clear [`OpenError`].
pub async fn open(data_dir: &Path) -> Result<SqlitePool, OpenError> {
    std::fs::create_dir_all(data_dir).map_err(|source| OpenError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let path = data_dir.join(DB_FILE);
    let pool = open_file(&path).await?;
    migrate(&pool, &path).await?;
    Ok(pool)
}

/// Open one SQLite file with Walden's settings, without migrating it.
pub async fn open_file(path: &Path) -> Result<SqlitePool, OpenError> {
    let options = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| OpenError::Open {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| classify(path, e))?;
    // `quick_check` reads every page header: a damaged or foreign file fails here, not on the first request.
    let verdict: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&pool)
        .await
        .map_err(|e| classify(path, e))?;
    if verdict != "ok" {
        return Err(OpenError::Corrupt {
            path: path.to_path_buf(),
            reason: verdict,
        });
    }
    Ok(pool)
}

/// Apply the embedded migrations.
pub async fn migrate(pool: &SqlitePool, path: &Path) -> Result<(), OpenError> {
    MIGRATOR.run(pool).await.map_err(|e| OpenError::Migrate {
        path: path.to_path_buf(),
        reason: match e {
            MigrateError::VersionMissing(v) => format!(
                "migration {v} was applied to this database but this Walden does not know it \
                 (was the database written by a newer Walden?)"
            ),
            MigrateError::VersionMismatch(v) => {
                format!("migration {v} was changed after it was applied to this database")
            }
            other => other.to_string(),
        },
    })
}

/// The number of migrations applied to the database, for the status page.
pub async fn applied_migrations(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
        .fetch_one(pool)
        .await
}

/// `true` when the database answers a trivial query (for `/readyz`).
pub async fn ping(pool: &SqlitePool) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok()
}

fn classify(path: &Path, e: sqlx::Error) -> OpenError {
    let reason = e.to_string();
    let lower = reason.to_ascii_lowercase();
    if lower.contains("not a database") || lower.contains("malformed") || lower.contains("corrupt")
    {
        OpenError::Corrupt {
            path: path.to_path_buf(),
            reason,
        }
    } else {
        OpenError::Open {
            path: path.to_path_buf(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn creates_the_directory_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested").join("data");
        let pool = open(&data).await.unwrap();
        assert!(data.join(DB_FILE).exists());
        assert!(ping(&pool).await);
        assert_eq!(
            applied_migrations(&pool).await.unwrap(),
            MIGRATOR.iter().count() as i64
        );
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(fk, 1);
        // Opening twice is harmless: migrations are applied once.
        pool.close().await;
        let again = open(&data).await.unwrap();
        assert!(ping(&again).await);
    }

    #[tokio::test]
    async fn a_file_that_is_not_sqlite_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x42u8; 8192]).unwrap();
        let err = open(dir.path()).await.unwrap_err();
        assert!(matches!(err, OpenError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(DB_FILE), "{err}");
    }

    #[tokio::test]
    async fn a_data_dir_below_a_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = open(&file.join("data")).await.unwrap_err();
        assert!(matches!(err, OpenError::DataDir { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_walden_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(dir.path()).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', 1, x'00', 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let err = open(dir.path()).await.unwrap_err();
        assert!(matches!(err, OpenError::Migrate { .. }), "{err}");
        assert!(err.to_string().contains("newer Walden"), "{err}");
    }
}
