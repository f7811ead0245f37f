//! The stored index: tables `backup_indexes` (one row per storage), `backup_index_wal_blocks` (the `wal_005/`
//! objects in blocks of 1,024, see [`super::wal_blocks`]) and `backup_index_entries` (folders, backups, history
//! files, stray keys; JSON bodies).
//!
//! Invariants: a save writes, in one `BEGIN IMMEDIATE` transaction, only the rows that differ between the index
//! it was given as the stored one ([`Before`]: its entries, and its WAL as the stored blocks from the first one
//! the read changed) and the new index (for the WAL: the blocks whose objects differ), and bumps the row's
//! `revision`. When the stored version
//! (id, revision) is not the one the caller started from (another writer came in between) or there is no base
//! (nothing stored, or the stored rows were unreadable), it replaces every row of that storage instead. A load
//! reads in one snapshot and refuses (as [`LoadError::Corrupt`]) anything that does not decode to exactly what
//! was saved.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use walg::index::{Index, WalObject};

use super::wal_blocks::{self, BLOCK};
use crate::ts;

/// Rows per multi-row `INSERT` (4 bound values a row stays far below SQLite's 32,766 limit).
const ROWS_PER_STATEMENT: usize = 1_000;
/// WAL blocks per multi-row `INSERT` (a block's body is about 10 KiB).
const BLOCKS_PER_STATEMENT: usize = 64;

/// What a save wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Every row of the storage was replaced (nothing usable was stored, or another writer came in between).
    pub replaced: bool,
    /// `wal_005/` objects new or changed, and gone.
    pub wal_written: u64,
    pub wal_deleted: u64,
    /// WAL blocks written (each holds up to 1,024 objects: the changed ones and their neighbours).
    pub wal_blocks_written: u64,
    /// Entry rows (folders, backups, history files, stray keys) inserted or updated, and deleted.
    pub entries_written: u64,
    pub entries_deleted: u64,
}

/// Why a stored index could not be loaded.
#[derive(Debug)]
pub(super) enum LoadError {
    Database(sqlx::Error),
    /// The rows are there but do not decode; the reason names the row.
    Corrupt(String),
}

impl From<sqlx::Error> for LoadError {
    fn from(e: sqlx::Error) -> Self {
        LoadError::Database(e)
    }
}

/// Why a save failed.
#[derive(Debug)]
pub(super) enum SaveError {
    Database(sqlx::Error),
    /// A value that SQLite cannot hold (a size above `i64::MAX`) or JSON that cannot be written.
    Encode(String),
}

impl From<sqlx::Error> for SaveError {
    fn from(e: sqlx::Error) -> Self {
        SaveError::Database(e)
    }
}

/// Which stored row, as of which write: `id` is never reused (AUTOINCREMENT) and `revision` grows with every
/// write of the row, so equal versions mean equal stored rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub(super) struct Version {
    pub id: i64,
    pub revision: i64,
}

/// The stored version of a storage's index, `None` when nothing is stored.
pub(super) async fn version(pool: &SqlitePool, key: &str) -> Result<Option<Version>, sqlx::Error> {
    sqlx::query_as("SELECT id, revision FROM backup_indexes WHERE url = ?")
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// Loads the stored index of `key` with its version; `url` becomes the index's URL (the reader's, which may
/// differ from the key only by what [`super::storage_key`] strips).
pub(super) async fn load(
    pool: &SqlitePool,
    key: &str,
    url: &str,
) -> Result<Option<(Version, Index)>, LoadError> {
    let mut tx = pool.begin().await?;
    let header: Option<(i64, i64, i64, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, format, segment_size, cursors, built_at_ms, refreshed_at_ms, revision \
         FROM backup_indexes WHERE url = ?",
    )
    .bind(key)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, format, segment_size, cursors, built_at_ms, refreshed_at_ms, revision)) = header
    else {
        return Ok(None);
    };
    let format = u32::try_from(format)
        .map_err(|_| LoadError::Corrupt(format!("the index format {format} is out of range")))?;
    let segment_size = u64::try_from(segment_size).map_err(|_| {
        LoadError::Corrupt(format!("the segment size {segment_size} is out of range"))
    })?;
    let cursors: BTreeMap<String, String> = serde_json::from_str(&cursors)
        .map_err(|e| LoadError::Corrupt(format!("the cursors do not decode: {e}")))?;
    let wal = load_wal(&mut tx, id, segment_size).await?;
    let mut index = Index {
        format,
        url: url.to_string(),
        segment_size,
        wal,
        folders: BTreeMap::new(),
        backups: BTreeMap::new(),
        histories: BTreeMap::new(),
        stray_keys: Vec::new(),
        cursors,
        built_at_ms,
        refreshed_at_ms,
    };
    load_entries(&mut tx, id, &mut index).await?;
    tx.commit().await?;
    Ok(Some((Version { id, revision }, index)))
}

/// The `wal_005/` objects, in name order (byte order like Rust's `str`), from blocks `0, 1, ...`, every one
/// but the last full (the layout [`write_changes`] relies on).
async fn load_wal(
    tx: &mut SqliteConnection,
    id: i64,
    segment_size: u64,
) -> Result<Vec<WalObject>, LoadError> {
    load_wal_from(tx, id, 0, segment_size).await
}

/// The `wal_005/` objects of blocks `first, first + 1, ...` (as [`load_wal`]).
async fn load_wal_from(
    tx: &mut SqliteConnection,
    id: i64,
    first: usize,
    segment_size: u64,
) -> Result<Vec<WalObject>, LoadError> {
    let blocks: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
        "SELECT block, objects, body FROM backup_index_wal_blocks WHERE index_id = ? AND block >= ? \
         ORDER BY block",
    )
    .bind(id)
    .bind(first as i64)
    .fetch_all(&mut *tx)
    .await?;
    let total: usize = blocks
        .iter()
        .map(|(_, objects, _)| usize::try_from(*objects).unwrap_or(0))
        .sum();
    let mut wal: Vec<WalObject> = Vec::with_capacity(total + headroom(total));
    let last = blocks.len().saturating_sub(1);
    for (i, (block, objects, body)) in blocks.iter().enumerate() {
        let objects = usize::try_from(*objects).unwrap_or(0);
        if *block != (first + i) as i64 || (i < last && objects != BLOCK) {
            return Err(LoadError::Corrupt(format!(
                "WAL block {block} is out of place (position {i}, {objects} objects)"
            )));
        }
        wal_blocks::decode(body, objects, segment_size, &mut wal)
            .map_err(|e| LoadError::Corrupt(format!("WAL block {block} does not decode: {e}")))?;
    }
    Ok(wal)
}

/// Spare room a loaded list gets for the objects the refresh that follows appends: an eighth, at least a block.
/// A list without spare capacity is reallocated and copied whole for the first new object (measured: 9 ms for
/// 300,000 objects on a quiet machine, 30-65 ms on a busy one, against nothing for the worker, whose list grew
/// before); untouched capacity costs address space, not memory.
fn headroom(objects: usize) -> usize {
    (objects / 8).max(BLOCK)
}

/// The entry rows, decoded into `index`'s maps (stray keys come in name order).
async fn load_entries(
    tx: &mut SqliteConnection,
    id: i64,
    index: &mut Index,
) -> Result<(), LoadError> {
    let mut rows = sqlx::query_as::<_, (String, String, String)>(
        "SELECT kind, name, body FROM backup_index_entries WHERE index_id = ? ORDER BY kind, name",
    )
    .bind(id)
    .fetch(&mut *tx);
    while let Some((kind, name, body)) = rows.try_next().await? {
        match kind.as_str() {
            FOLDER => {
                let folder = decode(&kind, &name, &body)?;
                index.folders.insert(name, folder);
            }
            BACKUP => {
                let backup: walg::index::BackupEntry = decode(&kind, &name, &body)?;
                same_name(&kind, &name, &backup.name)?;
                index.backups.insert(name, backup);
            }
            HISTORY => {
                let history: walg::index::HistoryEntry = decode(&kind, &name, &body)?;
                same_name(&kind, &name, &history.name)?;
                index.histories.insert(name, history);
            }
            STRAY => index.stray_keys.push(name),
            other => {
                return Err(LoadError::Corrupt(format!(
                    "an entry of unknown kind {other:?} ({name})"
                )))
            }
        }
    }
    Ok(())
}

const FOLDER: &str = "folder";
const BACKUP: &str = "backup";
const HISTORY: &str = "history";
const STRAY: &str = "stray";

fn decode<T: DeserializeOwned>(kind: &str, name: &str, body: &str) -> Result<T, LoadError> {
    serde_json::from_str(body)
        .map_err(|e| LoadError::Corrupt(format!("the {kind} entry {name} does not decode: {e}")))
}

fn same_name(kind: &str, name: &str, inside: &str) -> Result<(), LoadError> {
    if name == inside {
        Ok(())
    } else {
        Err(LoadError::Corrupt(format!(
            "the {kind} entry {name} holds the {kind} {inside}"
        )))
    }
}

/// What a save needs of the stored index the caller started from, without its WAL: the entries (a few hundred
/// rows, copied), how many WAL objects it held, and how many of them the new index kept as they were (from
/// [`walg::ReadStats::wal_kept`]). The WAL objects after those are read back from the stored blocks, which are
/// the base's exactly while the stored version is `version`.
pub(super) struct Before {
    version: Version,
    entries: Index,
    wal_len: usize,
    wal_kept: usize,
}

impl Before {
    /// The base `index`, stored as `version`; nothing of its WAL is known to be kept yet.
    pub(super) fn of(index: &Index, version: Version) -> Before {
        let mut entries = empty_like(index);
        entries.folders.clone_from(&index.folders);
        entries.backups.clone_from(&index.backups);
        entries.histories.clone_from(&index.histories);
        entries.stray_keys.clone_from(&index.stray_keys);
        Before {
            version,
            entries,
            wal_len: index.wal.len(),
            wal_kept: 0,
        }
    }

    /// The same, knowing the new index's first `wal_kept` WAL objects are the base's.
    pub(super) fn with_wal_kept(mut self, wal_kept: usize) -> Before {
        self.wal_kept = wal_kept.min(self.wal_len);
        self
    }
}

/// Saves `after` as the index of `key`. `before` describes the stored index the caller started from: only the
/// differences are written when it is still the stored one, every row otherwise. Returns the new version and
/// what was written.
pub(super) async fn save(
    pool: &SqlitePool,
    key: &str,
    before: Option<Before>,
    after: &Index,
) -> Result<(Version, Written), SaveError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let stored: Option<Version> =
        sqlx::query_as("SELECT id, revision FROM backup_indexes WHERE url = ?")
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
    let base = match (before, stored) {
        (Some(before), Some(current)) if before.version == current && sorted(&after.wal) => {
            stored_tail(&mut tx, current.id, before, after.segment_size).await?
        }
        _ => None,
    };
    let version = save_header(&mut tx, key, after).await?;
    let id = version.id;
    let written = match base {
        Some((entries, first_block, old_tail)) => {
            write_changes(&mut tx, id, &entries, first_block, &old_tail, after).await?
        }
        _ => {
            sqlx::query("DELETE FROM backup_index_wal_blocks WHERE index_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM backup_index_entries WHERE index_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let empty = empty_like(after);
            let after = sorted_like(after);
            let mut written = write_changes(&mut tx, id, &empty, 0, &[], &after).await?;
            written.replaced = true;
            written
        }
    };
    tx.commit().await?;
    Ok((version, written))
}

/// The base of a difference: its entries, the first WAL block that may have changed, and the stored WAL objects
/// from that block on. `None` (write every row instead) when the stored blocks do not hold what `before` says.
async fn stored_tail(
    tx: &mut SqliteConnection,
    id: i64,
    before: Before,
    segment_size: u64,
) -> Result<Option<(Index, usize, Vec<WalObject>)>, SaveError> {
    let first_block = before.wal_kept / BLOCK;
    let tail = match load_wal_from(tx, id, first_block, segment_size).await {
        Ok(tail) => tail,
        Err(LoadError::Database(e)) => return Err(SaveError::Database(e)),
        Err(LoadError::Corrupt(reason)) => {
            tracing::warn!(%reason, "the stored WAL blocks are unreadable: replacing every row");
            return Ok(None);
        }
    };
    if first_block * BLOCK + tail.len() != before.wal_len {
        return Ok(None);
    }
    Ok(Some((before.entries, first_block, tail)))
}

/// Inserts or updates the storage's row, bumping its revision; returns its new version.
async fn save_header(
    tx: &mut SqliteConnection,
    key: &str,
    index: &Index,
) -> Result<Version, SaveError> {
    let cursors =
        serde_json::to_string(&index.cursors).map_err(|e| SaveError::Encode(e.to_string()))?;
    let segment_size = i64::try_from(index.segment_size)
        .map_err(|_| SaveError::Encode(format!("segment size {}", index.segment_size)))?;
    let version: Version = sqlx::query_as(
        "INSERT INTO backup_indexes \
           (url, format, segment_size, cursors, built_at_ms, refreshed_at_ms, revision, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, 1, ?) \
         ON CONFLICT (url) DO UPDATE SET format = excluded.format, segment_size = excluded.segment_size, \
           cursors = excluded.cursors, built_at_ms = excluded.built_at_ms, \
           refreshed_at_ms = excluded.refreshed_at_ms, revision = backup_indexes.revision + 1, \
           updated_at = excluded.updated_at \
         RETURNING id, revision",
    )
    .bind(key)
    .bind(i64::from(index.format))
    .bind(segment_size)
    .bind(cursors)
    .bind(index.built_at_ms)
    .bind(index.refreshed_at_ms)
    .bind(ts::format(ts::now()))
    .fetch_one(&mut *tx)
    .await?;
    Ok(version)
}

/// An index with `like`'s header and nothing in it (the base of a full write).
fn empty_like(like: &Index) -> Index {
    Index {
        format: like.format,
        url: like.url.clone(),
        segment_size: like.segment_size,
        wal: Vec::new(),
        folders: BTreeMap::new(),
        backups: BTreeMap::new(),
        histories: BTreeMap::new(),
        stray_keys: Vec::new(),
        cursors: BTreeMap::new(),
        built_at_ms: like.built_at_ms,
        refreshed_at_ms: like.refreshed_at_ms,
    }
}

fn sorted(wal: &[WalObject]) -> bool {
    wal.is_sorted_by(|a, b| a.name < b.name)
}

/// `index` with its WAL in strictly increasing name order (the last of equal names kept), as blocks store it.
fn sorted_like(index: &Index) -> Cow<'_, Index> {
    if sorted(&index.wal) {
        return Cow::Borrowed(index);
    }
    let mut fixed = index.clone();
    fixed.wal.reverse();
    fixed.wal.sort_by(|a, b| a.name.cmp(&b.name));
    fixed.wal.dedup_by(|later, first| later.name == first.name);
    Cow::Owned(fixed)
}

/// Same name, size and LastModified (the key is derived from the name).
fn same_objects(a: &[WalObject], b: &[WalObject]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.name == y.name && x.size == y.size && x.modified_ms == y.modified_ms)
}

/// Writes the rows that differ between `base` and `after` (both with their WAL sorted by name): the entries one
/// by one, the WAL as the blocks whose objects differ, and no block past the new last one. The WAL blocks before
/// `first_block` are the same in both; `old_tail` is the base's WAL from that block on (`base.wal` is unused).
async fn write_changes(
    tx: &mut SqliteConnection,
    id: i64,
    base: &Index,
    first_block: usize,
    old_tail: &[WalObject],
    after: &Index,
) -> Result<Written, SaveError> {
    let new_tail = after.wal.get(first_block * BLOCK..).unwrap_or_default();
    let (wal_upserts, wal_deletes) = diff_wal(old_tail, new_tail);
    let mut entry_upserts = Vec::new();
    let mut entry_deletes = Vec::new();
    diff_entries(
        FOLDER,
        &base.folders,
        &after.folders,
        &mut entry_upserts,
        &mut entry_deletes,
    )?;
    diff_entries(
        BACKUP,
        &base.backups,
        &after.backups,
        &mut entry_upserts,
        &mut entry_deletes,
    )?;
    diff_entries(
        HISTORY,
        &base.histories,
        &after.histories,
        &mut entry_upserts,
        &mut entry_deletes,
    )?;
    diff_stray(
        &base.stray_keys,
        &after.stray_keys,
        &mut entry_upserts,
        &mut entry_deletes,
    );

    let (old, new) = (old_tail.chunks(BLOCK), new_tail.chunks(BLOCK));
    let (old_blocks, new_blocks) = (first_block + old.len(), first_block + new.len());
    let mut old = old.map(Some).chain(std::iter::repeat(None));
    let changed: Vec<(i64, &[WalObject])> = new
        .enumerate()
        .filter(|(_, block)| !old.next().flatten().is_some_and(|o| same_objects(o, block)))
        .map(|(k, block)| ((first_block + k) as i64, block))
        .collect();
    upsert_blocks(tx, id, &changed).await?;
    if old_blocks > new_blocks {
        sqlx::query("DELETE FROM backup_index_wal_blocks WHERE index_id = ? AND block >= ?")
            .bind(id)
            .bind(new_blocks as i64)
            .execute(&mut *tx)
            .await?;
    }
    upsert_entries(tx, id, &entry_upserts).await?;
    delete_entries(tx, id, &entry_deletes).await?;
    Ok(Written {
        replaced: false,
        wal_written: wal_upserts.len() as u64,
        wal_deleted: wal_deletes.len() as u64,
        wal_blocks_written: changed.len() as u64,
        entries_written: entry_upserts.len() as u64,
        entries_deleted: entry_deletes.len() as u64,
    })
}

/// Objects new or changed in `after`, and names gone from it; both lists sorted by name (one merge pass).
fn diff_wal<'a, 'b>(
    base: &'a [WalObject],
    after: &'b [WalObject],
) -> (Vec<&'b WalObject>, Vec<&'a str>) {
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < base.len() || j < after.len() {
        match (base.get(i), after.get(j)) {
            (Some(old), Some(new)) if old.name == new.name => {
                if old.size != new.size || old.modified_ms != new.modified_ms {
                    upserts.push(new);
                }
                i += 1;
                j += 1;
            }
            (Some(old), Some(new)) if old.name < new.name => {
                deletes.push(old.name.as_str());
                i += 1;
            }
            (_, Some(new)) => {
                upserts.push(new);
                j += 1;
            }
            (Some(old), None) => {
                deletes.push(old.name.as_str());
                i += 1;
            }
            (None, None) => break,
        }
    }
    (upserts, deletes)
}

/// One entry row to write: kind, name, JSON body.
type EntryRow<'a> = (&'static str, &'a str, String);

fn diff_entries<'a, T: PartialEq + Serialize>(
    kind: &'static str,
    base: &'a BTreeMap<String, T>,
    after: &'a BTreeMap<String, T>,
    upserts: &mut Vec<EntryRow<'a>>,
    deletes: &mut Vec<(&'static str, &'a str)>,
) -> Result<(), SaveError> {
    for (name, value) in after {
        if base.get(name) != Some(value) {
            let body = serde_json::to_string(value)
                .map_err(|e| SaveError::Encode(format!("the {kind} entry {name}: {e}")))?;
            upserts.push((kind, name.as_str(), body));
        }
    }
    deletes.extend(
        base.keys()
            .filter(|name| !after.contains_key(*name))
            .map(|name| (kind, name.as_str())),
    );
    Ok(())
}

fn diff_stray<'a>(
    base: &'a [String],
    after: &'a [String],
    upserts: &mut Vec<EntryRow<'a>>,
    deletes: &mut Vec<(&'static str, &'a str)>,
) {
    let old: BTreeSet<&str> = base.iter().map(String::as_str).collect();
    let new: BTreeSet<&str> = after.iter().map(String::as_str).collect();
    upserts.extend(
        new.difference(&old)
            .map(|name| (STRAY, *name, "null".to_string())),
    );
    deletes.extend(old.difference(&new).map(|name| (STRAY, *name)));
}

async fn upsert_blocks(
    tx: &mut SqliteConnection,
    id: i64,
    blocks: &[(i64, &[WalObject])],
) -> Result<(), SaveError> {
    for chunk in blocks.chunks(BLOCKS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO backup_index_wal_blocks (index_id, block, objects, body) ",
        );
        query.push_values(chunk, |mut row, (block, objects)| {
            row.push_bind(id)
                .push_bind(*block)
                .push_bind(objects.len() as i64)
                .push_bind(wal_blocks::encode(objects));
        });
        query.push(
            " ON CONFLICT (index_id, block) DO UPDATE \
             SET objects = excluded.objects, body = excluded.body",
        );
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

async fn upsert_entries(
    tx: &mut SqliteConnection,
    id: i64,
    rows: &[EntryRow<'_>],
) -> Result<(), SaveError> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO backup_index_entries (index_id, kind, name, body) ",
        );
        query.push_values(chunk, |mut row, (kind, name, body)| {
            row.push_bind(id)
                .push_bind(*kind)
                .push_bind(*name)
                .push_bind(body.as_str());
        });
        query.push(" ON CONFLICT (index_id, kind, name) DO UPDATE SET body = excluded.body");
        query.build().execute(&mut *tx).await?;
    }
    Ok(())
}

async fn delete_entries(
    tx: &mut SqliteConnection,
    id: i64,
    rows: &[(&'static str, &str)],
) -> Result<(), SaveError> {
    for (kind, name) in rows {
        sqlx::query(
            "DELETE FROM backup_index_entries WHERE index_id = ? AND kind = ? AND name = ?",
        )
        .bind(id)
        .bind(*kind)
        .bind(*name)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use walg::names::classify_wal_file;

    fn object(name: &str, size: u64) -> WalObject {
        WalObject {
            name: name.to_string(),
            size,
            modified_ms: 1,
            key: classify_wal_file(name, 16 << 20),
        }
    }

    #[test]
    fn the_wal_diff_finds_new_changed_and_gone_objects() {
        let base = [
            object("a", 1),
            object("b", 1),
            object("d", 1),
            object("e", 1),
        ];
        let after = [
            object("b", 2),
            object("c", 1),
            object("d", 1),
            object("f", 1),
        ];
        let (upserts, deletes) = diff_wal(&base, &after);
        let names: Vec<&str> = upserts.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(names, ["b", "c", "f"]);
        assert_eq!(deletes, ["a", "e"]);
        let (upserts, deletes) = diff_wal(&after, &after);
        assert!(upserts.is_empty() && deletes.is_empty());
    }
}
