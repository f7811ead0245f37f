//! Backups: the index of each wal-g storage, kept in the database and brought up to date on demand, so that the
//! `walden timeline/verify/plan` commands and the console's pages and workers share one index per storage.
//!
//! [`Backups::refresh`] loads the stored index of a storage (or reuses the copy it kept in memory), asks
//! [`walg::Reader::refresh_or_build`] to bring it up to date (a full build when the last one is older than
//! [`walg::FULL_BUILD_MAX_AGE`], since a refresh misses deletions), and writes back only what changed (see the
//! `store` submodule): a refresh that finds 1,000 new objects in a bucket of 300,000 rewrites the last block of
//! the WAL listing and adds one or two (`wal_blocks`: 1,024 objects a row, so a load reads 293 rows, not 300,000).
//!
//! Invariants:
//! - A storage is identified by its URL without credentials ([`storage_key`]: no userinfo, query or fragment);
//!   nothing secret is ever stored.
//! - Only this module writes the `backup_index*` tables, and every write bumps the storage's `revision` (row ids
//!   are never reused). A copy kept in memory is used only while the stored (id, revision) is the one it was
//!   saved as; otherwise the stored index is loaded again.
//! - A stored index that cannot be decoded is never used: [`Backups::stored`] reports it as
//!   [`BackupsError::Corrupt`], and [`Backups::refresh`] builds the index again in full and replaces it (saying
//!   so in [`Refreshed::rebuilt_because`]), so a damaged row can never produce a wrong restore window.
//! - Refreshes of one storage are serialized within a process; across processes (the CLI next to the console)
//!   the version check in the save's `BEGIN IMMEDIATE` transaction makes a writer that lost the race replace
//!   every row instead of applying a difference to a base that is no longer stored.

mod store;
mod wal_blocks;

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use sqlx::SqlitePool;
use walg::{Index, ReadStats, Reader, Timeline};

pub use store::Written;

/// Why an index could not be read, brought up to date or stored.
#[derive(Debug, thiserror::Error)]
pub enum BackupsError {
    /// The storage could not be read (it names the storage and the prefix).
    #[error(transparent)]
    Read(#[from] walg::ReadError),
    #[error(
        "the stored index of {url} is unreadable ({reason}); the next refresh builds it again in full"
    )]
    Corrupt { url: String, reason: String },
    #[error("cannot read or write the stored index of {url}: {source}")]
    Database {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot store the index of {url}: {reason}")]
    Encode { url: String, reason: String },
}

/// The outcome of [`Backups::refresh`].
#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The index, up to date.
    pub index: Arc<Index>,
    /// What reading the storage did (`stats.full` for a full build).
    pub stats: ReadStats,
    /// What was written to the database.
    pub written: Written,
    /// Set when the stored index was unreadable and was built again in full: why.
    pub rebuilt_because: Option<String>,
    /// The storage's analysis thresholds (its `WALG_UPLOAD_CONCURRENCY`).
    pub options: walg::timeline::Options,
    /// Where the time went (logged; the benchmark reports it).
    pub took: Took,
}

/// The parts of a [`Backups::refresh`]: finding the index to start from (the kept copy, or a load), reading the
/// storage (the refresh or full build), and saving the difference.
#[derive(Debug, Clone, Copy, Default)]
pub struct Took {
    pub base: Duration,
    pub read: Duration,
    pub save: Duration,
}

impl Refreshed {
    /// The timeline computed from the index at `now`.
    pub fn timeline(&self, now: time::OffsetDateTime) -> Timeline {
        Timeline::from_index_with(&self.index, now, self.options)
    }
}

/// The copy of a storage's index kept in memory, with the stored version it was saved as.
struct Kept {
    version: store::Version,
    index: Arc<Index>,
}

/// One lock per storage: refreshes of one storage wait for each other.
type Slot = Arc<tokio::sync::Mutex<Option<Kept>>>;

/// The backups service: keeps each storage's index in the database (see the module documentation).
#[derive(Clone)]
pub struct Backups {
    pool: SqlitePool,
    full_build_max_age: Duration,
    kept: Arc<std::sync::Mutex<HashMap<String, Slot>>>,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("full_build_max_age", &self.full_build_max_age)
            .finish_non_exhaustive()
    }
}

impl Backups {
    /// The service over Walden's database; full builds after [`walg::FULL_BUILD_MAX_AGE`].
    pub fn new(pool: SqlitePool) -> Self {
        Backups {
            pool,
            full_build_max_age: walg::FULL_BUILD_MAX_AGE,
            kept: Arc::default(),
        }
    }

    /// The same service, building in full when the stored index's last full build is older than `age`.
    pub fn with_full_build_max_age(mut self, age: Duration) -> Self {
        self.full_build_max_age = age;
        self
    }

    /// Brings the storage's index up to date and stores it: a refresh of the stored index, or a full build when
    /// nothing usable is stored or its last full build is too old.
    #[tracing::instrument(skip_all, fields(storage = %storage_key(reader.url())), err)]
    pub async fn refresh(&self, reader: &Reader) -> Result<Refreshed, BackupsError> {
        self.update(reader, Reading::RefreshOrBuild).await
    }

    /// Reads the whole storage again (a full build, which also notices deletions) and stores it.
    #[tracing::instrument(skip_all, fields(storage = %storage_key(reader.url())), err)]
    pub async fn rebuild(&self, reader: &Reader) -> Result<Refreshed, BackupsError> {
        self.update(reader, Reading::Full).await
    }

    /// The storage's timeline at `now`, from its index brought up to date ([`Backups::refresh`]).
    pub async fn timeline(
        &self,
        reader: &Reader,
        now: time::OffsetDateTime,
    ) -> Result<Timeline, BackupsError> {
        Ok(self.refresh(reader).await?.timeline(now))
    }

    /// The stored index of `url` as it is, without reading the storage; `None` when none is stored.
    #[tracing::instrument(skip_all, fields(storage = %storage_key(url)), err)]
    pub async fn stored(&self, url: &str) -> Result<Option<Index>, BackupsError> {
        let key = storage_key(url);
        match store::load(&self.pool, &key, url).await {
            Ok(found) => Ok(found.map(|(_, index)| index)),
            Err(e) => Err(load_error(&key, e)),
        }
    }

    /// Removes the stored index of `url` (a storage no longer tracked); `true` when there was one.
    #[tracing::instrument(skip_all, fields(storage = %storage_key(url)), err)]
    pub async fn forget(&self, url: &str) -> Result<bool, BackupsError> {
        let key = storage_key(url);
        let slot = self.slot(&key);
        let mut kept = slot.lock().await;
        *kept = None;
        let deleted = sqlx::query("DELETE FROM backup_indexes WHERE url = ?")
            .bind(&key)
            .execute(&self.pool)
            .await
            .map_err(|source| database_error(&key, source))?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn update(&self, reader: &Reader, reading: Reading) -> Result<Refreshed, BackupsError> {
        let key = storage_key(reader.url());
        let slot = self.slot(&key);
        let mut kept = slot.lock().await;
        // Taken out: if anything below fails, the next call starts again from the database.
        let started = Instant::now();
        let (base, rebuilt_because) = self.base(&key, reader.url(), kept.take()).await?;
        let mut took = Took {
            base: started.elapsed(),
            ..Took::default()
        };
        let started = Instant::now();
        // What the save diffs against: the base's entries and WAL length (the WAL objects it needs come from the
        // stored blocks), so the base itself can be brought up to date in place instead of copied.
        let before = base
            .as_ref()
            .map(|b| store::Before::of(&b.index, b.version));
        let (index, stats) = match (base, reading) {
            (Some(base), Reading::RefreshOrBuild) => {
                // The caller's `Refreshed` may still share the kept copy; then (only then) it is copied.
                let mut index =
                    Arc::try_unwrap(base.index).unwrap_or_else(|shared| Index::clone(&shared));
                let stats = reader
                    .refresh_or_build(&mut index, self.full_build_max_age)
                    .await?;
                (index, stats)
            }
            _ => reader.build().await?,
        };
        let before = before.map(|b| b.with_wal_kept(stats.wal_kept));
        took.read = started.elapsed();
        let started = Instant::now();
        let (version, written) = match store::save(&self.pool, &key, before, &index).await {
            Ok(saved) => saved,
            Err(store::SaveError::Database(source)) => return Err(database_error(&key, source)),
            Err(store::SaveError::Encode(reason)) => {
                return Err(BackupsError::Encode { url: key, reason })
            }
        };
        took.save = started.elapsed();
        tracing::debug!(
            full = stats.full,
            base_ms = took.base.as_millis() as u64,
            read_ms = took.read.as_millis() as u64,
            save_ms = took.save.as_millis() as u64,
            wal_written = written.wal_written,
            wal_deleted = written.wal_deleted,
            wal_blocks_written = written.wal_blocks_written,
            replaced = written.replaced,
            "index stored"
        );
        let index = Arc::new(index);
        *kept = Some(Kept {
            version,
            index: Arc::clone(&index),
        });
        Ok(Refreshed {
            index,
            stats,
            written,
            rebuilt_because,
            options: reader.timeline_options(),
            took,
        })
    }

    /// The index to start from: the copy in memory while it is the stored version, else the stored one; none
    /// when nothing is stored or the stored one is unreadable (then with the reason).
    async fn base(
        &self,
        key: &str,
        url: &str,
        kept: Option<Kept>,
    ) -> Result<(Option<Kept>, Option<String>), BackupsError> {
        let stored = store::version(&self.pool, key)
            .await
            .map_err(|source| database_error(key, source))?;
        match (kept, stored) {
            (_, None) => Ok((None, None)),
            (Some(kept), Some(version)) if kept.version == version => Ok((Some(kept), None)),
            _ => match store::load(&self.pool, key, url).await {
                Ok(Some((version, index))) => Ok((
                    Some(Kept {
                        version,
                        index: Arc::new(index),
                    }),
                    None,
                )),
                Ok(None) => Ok((None, None)),
                Err(store::LoadError::Corrupt(reason)) => {
                    tracing::warn!(storage = key, %reason, "the stored index is unreadable: building it again in full");
                    Ok((None, Some(reason)))
                }
                Err(store::LoadError::Database(source)) => Err(database_error(key, source)),
            },
        }
    }

    fn slot(&self, key: &str) -> Slot {
        let mut slots = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(slots.entry(key.to_string()).or_default())
    }
}

#[derive(Debug, Clone, Copy)]
enum Reading {
    RefreshOrBuild,
    Full,
}

/// Reads the whole storage and computes its timeline at `now`, storing nothing (`walden timeline --no-cache`,
/// or when no database can be opened).
#[tracing::instrument(skip_all, fields(storage = %storage_key(reader.url())), err)]
pub async fn timeline_without_storing(
    reader: &Reader,
    now: time::OffsetDateTime,
) -> Result<Timeline, BackupsError> {
    let (index, _) = reader.build().await?;
    Ok(Timeline::from_index_with(
        &index,
        now,
        reader.timeline_options(),
    ))
}

/// The URL that identifies a storage in the database: `url` without userinfo (`user:password@`), query or
/// fragment, so that no credential is ever stored.
pub fn storage_key(url: &str) -> String {
    let without_fragment = url.split('#').next().unwrap_or_default();
    let without_query = without_fragment.split('?').next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_string(),
    }
}

fn database_error(key: &str, source: sqlx::Error) -> BackupsError {
    BackupsError::Database {
        url: key.to_string(),
        source,
    }
}

fn load_error(key: &str, e: store::LoadError) -> BackupsError {
    match e {
        store::LoadError::Database(source) => database_error(key, source),
        store::LoadError::Corrupt(reason) => BackupsError::Corrupt {
            url: key.to_string(),
            reason,
        },
    }
}

#[cfg(test)]
mod tests;
