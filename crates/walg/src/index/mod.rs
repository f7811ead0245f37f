//! The incremental index: everything read from a bucket, serializable, refreshed by listing only keys after the
//! last seen key of each prefix (on local file storage: by probing the WAL names wal-g writes next, see
//! [`Reader::refresh`]) and parsing only new sentinels and history files.
//!
//! The index holds raw facts (keys, sizes, times, parsed documents). The [`crate::BucketTimeline`] is computed from it.

use crate::codec;
use crate::config::{ConfigError, StorageConfig};
use crate::documents::{parse_history, HistoryRecord, Metadata, Sentinel};
use crate::names::{classify_wal_file, WalKey, WalKind, BASEBACKUPS, SENTINEL_SUFFIX, WAL};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

mod probe;
pub use probe::{PROBE_LOOKAHEAD, PROBE_MAX_GAP_NAMES, PROBE_TIMELINES};

/// Version of the serialized index; a different value forces a full build.
pub const INDEX_FORMAT: u32 = 1;

/// How many trailing WAL keys a refresh lists again, so that segments uploaded out of order (wal-g uploads in
/// parallel) are not skipped.
pub const WAL_REFRESH_OVERLAP: usize = 256;

/// Age of the last full build after which [`Reader::refresh_or_build`] builds in full again (one hour). A refresh
/// does not notice deletions, and on local storage it probes expected names instead of listing (see
/// [`Reader::refresh`]); a periodic full build catches whatever that misses.
pub const FULL_BUILD_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// One object in `wal_005/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalObject {
    /// File name relative to `wal_005/`.
    pub name: String,
    pub size: u64,
    /// Storage LastModified, Unix milliseconds.
    pub modified_ms: i64,
    pub key: WalKey,
}

/// A parsed document, a read/parse error (in plain words), or absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Doc<T> {
    Ok(T),
    Error(String),
    Missing,
}

impl<T> Doc<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Doc::Ok(t) => Some(t),
            _ => None,
        }
    }
}

/// What was listed under `basebackups_005/<name>/`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Folder {
    /// File names under `tar_partitions/`.
    pub tars: Vec<String>,
    pub has_metadata: bool,
    pub has_files_metadata: bool,
    pub objects: u64,
    pub bytes: u64,
    pub newest_modified_ms: i64,
}

/// A completed backup: its sentinel exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    pub name: String,
    pub sentinel_modified_ms: i64,
    pub sentinel: Doc<Sentinel>,
    pub metadata: Doc<Metadata>,
}

/// A `.history` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub name: String,
    pub tli: u32,
    pub records: Doc<Vec<HistoryRecord>>,
    pub bad_lines: usize,
}

/// Everything read from one wal-g root.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    /// The storage URL (no credentials) the index was built from.
    pub url: String,
    pub segment_size: u64,
    /// All `wal_005/` objects, sorted by name.
    pub wal: Vec<WalObject>,
    /// Backup folders by backup name.
    pub folders: BTreeMap<String, Folder>,
    /// Complete backups by name.
    pub backups: BTreeMap<String, BackupEntry>,
    /// History files by object name.
    pub histories: BTreeMap<String, HistoryEntry>,
    /// Keys in `basebackups_005/` that fit no known shape (relative to it).
    pub stray_keys: Vec<String>,
    /// Per prefix (`wal_005/`, `basebackups_005/`): list after this key (relative to the prefix) next time.
    pub cursors: BTreeMap<String, String>,
    /// Unix milliseconds of the last full build and of the last refresh.
    pub built_at_ms: i64,
    pub refreshed_at_ms: i64,
}

impl Index {
    /// Time since the last full build (zero when the clock went backwards).
    pub fn full_build_age(&self, now: time::OffsetDateTime) -> std::time::Duration {
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        std::time::Duration::from_millis(now_ms.saturating_sub(self.built_at_ms).max(0) as u64)
    }
}

/// Counters from a build or a refresh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadStats {
    pub listed: u64,
    pub new_sentinels: u64,
    pub new_histories: u64,
    pub full: bool,
    /// Local storage: names a probing refresh tried with a stat (0 when it listed instead).
    #[serde(default)]
    pub probed: u64,
    /// How many of the index's first WAL objects the read left exactly as they were (0 for a full build): a
    /// caller that stored the index before can rewrite only what comes after them, without a copy to diff.
    #[serde(default)]
    pub wal_kept: usize,
}

/// Storage could not be read at all (per-object problems become findings instead).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot list {url}/{prefix}: {source}")]
    List {
        url: String,
        prefix: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Reads one wal-g root through `object_store`.
#[derive(Clone)]
pub struct Reader {
    store: Arc<dyn ObjectStore>,
    root: String,
    url: String,
    segment_size: u64,
    key: Option<codec::LibsodiumKey>,
    concurrency: usize,
    /// `WALG_UPLOAD_CONCURRENCY` of the cluster that writes this storage.
    upload_concurrency: u64,
    /// For file storage: the directory, so refreshes can filter names before reading metadata.
    local_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// One listed object, relative to the listed folder.
pub(crate) struct Listed {
    pub(crate) rel: String,
    pub(crate) size: u64,
    pub(crate) modified_ms: i64,
}

pub(crate) fn system_time_ms(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Puts the WAL cursor [`WAL_REFRESH_OVERLAP`] keys before the newest key.
fn set_wal_cursor(idx: &mut Index) {
    if idx.wal.len() > WAL_REFRESH_OVERLAP {
        let c = idx.wal[idx.wal.len() - 1 - WAL_REFRESH_OVERLAP]
            .name
            .clone();
        idx.cursors.insert(WAL.to_string(), c);
    } else {
        idx.cursors.remove(WAL);
    }
}

/// Lists `dir` recursively, keeping only keys (relative, `/`-separated) after `after`, and reading metadata only
/// for those. object_store's local `list_with_offset` converts every entry to a URL path before comparing; for a
/// flat folder of a million WAL files that costs as much as the listing itself.
fn list_local_after(dir: &std::path::Path, after: &str) -> std::io::Result<Vec<Listed>> {
    fn walk(
        dir: &std::path::Path,
        prefix: &str,
        after: &str,
        out: &mut Vec<Listed>,
    ) -> std::io::Result<()> {
        // Within `dir`, file names can be compared directly with the rest of `after` when it is inside `dir`.
        let rest = if prefix.is_empty() {
            Some(after)
        } else {
            after.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
        };
        let (dir_fd, entries) = match read_names(dir, rest) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for (name, kind) in entries {
            if name.contains('#') {
                continue; // object_store's in-progress upload files
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let is_dir = match kind {
                EntryKind::Dir => true,
                EntryKind::File => false,
                EntryKind::Other => dir.join(&name).is_dir(),
            };
            if is_dir {
                // Every key below starts with "rel/": skip the directory when all of them sort before `after`.
                let lowest = format!("{rel}/");
                if lowest.as_str() < after && !after.starts_with(lowest.as_str()) {
                    continue;
                }
                walk(&dir.join(&name), &rel, after, out)?;
            } else if rel.as_str() > after {
                let Some((size, modified_ms)) = file_meta(&dir_fd, dir, &name)? else {
                    continue;
                };
                out.push(Listed {
                    rel,
                    size,
                    modified_ms,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", after, &mut out)?;
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
    /// Symlink or unknown type: decided with a stat.
    Other,
}

/// The open directory its entries are stat'ed relative to (Linux), or nothing (elsewhere: by path).
#[cfg(target_os = "linux")]
type DirFd = rustix::fd::OwnedFd;
#[cfg(not(target_os = "linux"))]
type DirFd = ();

/// Size and LastModified (Unix ms) of `name` in `dir`, following symlinks; `None` when it is not a regular file.
/// On Linux one `statx` relative to the open directory, asking only for type, size and mtime (no path walk).
#[cfg(target_os = "linux")]
fn file_meta(
    dir_fd: &DirFd,
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<Option<(u64, i64)>> {
    use rustix::fs::{AtFlags, FileType, StatxFlags};
    let st = match rustix::fs::statx(
        dir_fd,
        name,
        AtFlags::empty(),
        StatxFlags::TYPE | StatxFlags::SIZE | StatxFlags::MTIME,
    ) {
        Ok(st) => st,
        // A kernel before 4.11: stat by path.
        Err(rustix::io::Errno::NOSYS) => return file_meta_by_path(&dir.join(name)),
        Err(e) => return Err(e.into()),
    };
    if !FileType::from_raw_mode(u32::from(st.stx_mode)).is_file() {
        return Ok(None);
    }
    let (secs, nanos) = (st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec);
    let mtime = if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::new(secs.unsigned_abs(), nanos)
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
            + std::time::Duration::from_nanos(u64::from(nanos))
    };
    Ok(Some((st.stx_size, system_time_ms(mtime))))
}

#[cfg(not(target_os = "linux"))]
fn file_meta(
    _dir_fd: &DirFd,
    dir: &std::path::Path,
    name: &str,
) -> std::io::Result<Option<(u64, i64)>> {
    file_meta_by_path(&dir.join(name))
}

fn file_meta_by_path(path: &std::path::Path) -> std::io::Result<Option<(u64, i64)>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Ok(None);
    }
    Ok(Some((
        meta.len(),
        meta.modified().map(system_time_ms).unwrap_or(0),
    )))
}

/// Names in `dir` (UTF-8 only), leaving out regular files whose name is `<= skip_upto`, with the open directory.
/// On Linux this reads the directory with large `getdents64` batches and compares names in place, without an
/// allocation per entry.
#[cfg(target_os = "linux")]
fn read_names(
    dir: &std::path::Path,
    skip_upto: Option<&str>,
) -> std::io::Result<(DirFd, Vec<(String, EntryKind)>)> {
    use rustix::fs::{FileType, Mode, OFlags, RawDir};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 1 << 20];
    let mut raw = RawDir::new(&fd, &mut buf);
    let mut out = Vec::new();
    while let Some(entry) = raw.next() {
        let entry = entry?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        let kind = match entry.file_type() {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Dir,
            _ => EntryKind::Other,
        };
        if kind == EntryKind::File && skip_upto.is_some_and(|s| bytes <= s.as_bytes()) {
            continue;
        }
        if let Ok(name) = std::str::from_utf8(bytes) {
            out.push((name.to_string(), kind));
        }
    }
    Ok((fd, out))
}

#[cfg(not(target_os = "linux"))]
fn read_names(
    dir: &std::path::Path,
    skip_upto: Option<&str>,
) -> std::io::Result<(DirFd, Vec<(String, EntryKind)>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let ft = entry.file_type()?;
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        if kind == EntryKind::File && skip_upto.is_some_and(|s| name.as_str() <= s) {
            continue;
        }
        out.push((name, kind));
    }
    Ok(((), out))
}

impl Reader {
    /// A reader for a configured storage.
    pub fn new(cfg: &StorageConfig) -> Result<Reader, ConfigError> {
        Ok(Reader {
            store: cfg.build_store()?,
            root: cfg.root.clone(),
            url: cfg.display_url(),
            segment_size: cfg.segment_size,
            key: cfg.libsodium_key.clone(),
            concurrency: 16,
            upload_concurrency: cfg.upload_concurrency,
            local_dir: match &cfg.backend {
                crate::config::Backend::File { path } => Some(path.clone()),
                _ => None,
            },
        })
    }

    /// [`Reader::new`] after [`StorageConfig::detect_region`]: an AWS bucket without `AWS_REGION` is read in its
    /// own region, as wal-g reads it.
    pub async fn connect(cfg: &StorageConfig) -> Result<Reader, ConfigError> {
        let mut cfg = cfg.clone();
        cfg.detect_region().await?;
        Reader::new(&cfg)
    }

    /// A reader over an existing store (`root` is the wal-g root inside it).
    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        root: &str,
        url: &str,
        segment_size: u64,
        key: Option<codec::LibsodiumKey>,
    ) -> Reader {
        Reader {
            store,
            root: root.trim_matches('/').to_string(),
            url: url.to_string(),
            segment_size,
            key,
            concurrency: 16,
            upload_concurrency: crate::timeline::UPLOAD_CONCURRENCY,
            local_dir: None,
        }
    }

    /// The analysis thresholds for this storage: the defaults, with the configured `WALG_UPLOAD_CONCURRENCY`.
    pub fn timeline_options(&self) -> crate::timeline::Options {
        crate::timeline::Options {
            upload_concurrency: self.upload_concurrency,
            ..crate::timeline::Options::default()
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    fn path(&self, rel: &str) -> Path {
        if self.root.is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{rel}", self.root))
        }
    }

    fn rel_prefix_len(&self, folder: &str) -> usize {
        if self.root.is_empty() {
            folder.len() + 1
        } else {
            self.root.len() + folder.len() + 2
        }
    }

    async fn list(&self, folder: &str, after: Option<&str>) -> Result<Vec<Listed>, ReadError> {
        // Local files are read directly, for full builds too: object_store's local listing (walkdir, a URL
        // path per entry, a path-based stat) took 2.2 times as long as `find -printf` (see benches/timeline.rs).
        if let Some(dir) = self.local_folder(folder) {
            let after = after.unwrap_or_default().to_string();
            return self
                .blocking(folder, move || list_local_after(&dir, &after))
                .await;
        }
        let skip = self.rel_prefix_len(folder);
        let prefix = self.path(folder);
        let stream = match after {
            Some(a) => self
                .store
                .list_with_offset(Some(&prefix), &self.path(&format!("{folder}/{a}"))),
            None => self.store.list(Some(&prefix)),
        };
        let metas: Vec<ObjectMeta> =
            stream
                .try_collect()
                .await
                .map_err(|source| ReadError::List {
                    url: self.url.clone(),
                    prefix: format!("{folder}/"),
                    source,
                })?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                Some(Listed {
                    rel: m.location.as_ref().get(skip..)?.to_string(),
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                })
            })
            .collect())
    }

    /// Lists both prefixes and nothing else (the baseline the benchmark compares a build with).
    pub async fn raw_list(&self) -> Result<u64, ReadError> {
        let (a, b) = futures::try_join!(self.list(WAL, None), self.list(BASEBACKUPS, None))?;
        Ok((a.len() + b.len()) as u64)
    }

    /// A full build.
    pub async fn build(&self) -> Result<(Index, ReadStats), ReadError> {
        let mut idx = Index {
            format: INDEX_FORMAT,
            url: self.url.clone(),
            segment_size: self.segment_size,
            wal: Vec::new(),
            folders: BTreeMap::new(),
            backups: BTreeMap::new(),
            histories: BTreeMap::new(),
            stray_keys: Vec::new(),
            cursors: BTreeMap::new(),
            built_at_ms: now_ms(),
            refreshed_at_ms: now_ms(),
        };
        let mut stats = self.update(&mut idx, false).await?;
        stats.full = true;
        Ok((idx, stats))
    }

    /// Brings `index` up to date. On S3, GCS and Azure it lists only keys after each prefix's cursor. On local
    /// file storage, where a directory cannot be read "after a key", it probes the names wal-g will write next
    /// (see [`crate::PROBE_LOOKAHEAD`] and the README for what that cannot see) and lists `basebackups_005/`
    /// after its cursor; when probing cannot stand in for a listing it reads the directory. Falls back to a full
    /// build when the index belongs to another storage, segment size or format. Deletions (retention) are
    /// noticed only by a full build: use [`Reader::refresh_or_build`] or build now and then.
    pub async fn refresh(&self, index: &mut Index) -> Result<ReadStats, ReadError> {
        if index.format != INDEX_FORMAT
            || index.url != self.url
            || index.segment_size != self.segment_size
        {
            let (idx, stats) = self.build().await?;
            *index = idx;
            return Ok(stats);
        }
        let stats = self.update(index, true).await?;
        index.refreshed_at_ms = now_ms();
        Ok(stats)
    }

    /// A full build when the index's last full build is older than `max_age` (e.g. [`FULL_BUILD_MAX_AGE`]),
    /// otherwise a [`Reader::refresh`].
    pub async fn refresh_or_build(
        &self,
        index: &mut Index,
        max_age: std::time::Duration,
    ) -> Result<ReadStats, ReadError> {
        if index.full_build_age(time::OffsetDateTime::now_utc()) > max_age {
            let (idx, stats) = self.build().await?;
            *index = idx;
            return Ok(stats);
        }
        self.refresh(index).await
    }

    /// The local directory of `folder` under the wal-g root, for file storage.
    fn local_folder(&self, folder: &str) -> Option<std::path::PathBuf> {
        let mut dir = self.local_dir.clone()?;
        for part in self
            .root
            .split('/')
            .filter(|p| !p.is_empty())
            .chain(std::iter::once(folder))
        {
            dir.push(part);
        }
        Some(dir)
    }

    /// Runs blocking file-system work; errors name the storage and folder.
    async fn blocking<T: Send + 'static>(
        &self,
        folder: &str,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, ReadError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(ReadError::List {
                url: self.url.clone(),
                prefix: format!("{folder}/"),
                source: object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                },
            }),
            Err(e) => Err(ReadError::List {
                url: self.url.clone(),
                prefix: format!("{folder}/"),
                source: object_store::Error::JoinError { source: e },
            }),
        }
    }

    fn wal_object(&self, m: Listed) -> WalObject {
        WalObject {
            size: m.size,
            modified_ms: m.modified_ms,
            key: classify_wal_file(&m.rel, self.segment_size),
            name: m.rel,
        }
    }

    async fn read_histories(
        &self,
        idx: &mut Index,
        new: Vec<(String, u32, crate::names::Compression)>,
    ) {
        let histories: Vec<HistoryEntry> = futures::stream::iter(new)
            .map(|(name, tli, compression)| self.read_history(name, tli, compression))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for h in histories {
            idx.histories.insert(h.name.clone(), h);
        }
    }

    async fn read_backups(&self, idx: &mut Index, new: Vec<(String, i64)>) {
        let backups: Vec<BackupEntry> = futures::stream::iter(new)
            .map(|(name, ms)| self.read_backup(name, ms))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        for b in backups {
            idx.backups.insert(b.name.clone(), b);
        }
    }

    /// A local refresh by probing (see the module `probe`). `Ok(None)`: probing cannot stand in for a listing
    /// here; the caller lists instead (history files found so far are already in the index).
    async fn update_local(
        &self,
        idx: &mut Index,
        wal_dir: std::path::PathBuf,
        base_cursor: Option<String>,
        wal_kept: &mut usize,
    ) -> Result<Option<ReadStats>, ReadError> {
        let mut stats = ReadStats::default();
        // 1. History files of new timelines (their switch points start the new timelines' probes).
        let names = probe::history_candidates(idx);
        stats.probed += names.len() as u64;
        let d = wal_dir.clone();
        let found = self
            .blocking(WAL, move || probe::stat_all(&d, &names))
            .await?;
        let found: Vec<WalObject> = found.into_iter().map(|l| self.wal_object(l)).collect();
        let new_histories: Vec<_> = found
            .iter()
            .filter(|w| w.key.kind == WalKind::History && !idx.histories.contains_key(&w.name))
            .map(|w| (w.name.clone(), w.key.tli, w.key.compression))
            .collect();
        stats.listed += found.len() as u64;
        stats.new_histories = new_histories.len() as u64;
        *wal_kept = (*wal_kept).min(probe::merge(idx, found));
        self.read_histories(idx, new_histories).await;

        // 2. Segments (and their sidecars) per timeline, gaps, partials.
        let Some(plan) = probe::plan(idx, wal_dir.clone()) else {
            return Ok(None);
        };
        let (found, tried) = self.blocking(WAL, move || probe::run(&plan)).await?;
        stats.probed += tried;
        stats.listed += found.len() as u64;
        let found: Vec<WalObject> = found.into_iter().map(|l| self.wal_object(l)).collect();
        *wal_kept = (*wal_kept).min(probe::merge(idx, found));
        set_wal_cursor(idx);

        // 3. Base backups: listed after the cursor (a small folder).
        let base = self.list(BASEBACKUPS, base_cursor.as_deref()).await?;
        stats.listed += base.len() as u64;
        let new_sentinels = self.ingest_base(idx, base, base_cursor.as_deref());
        stats.new_sentinels = new_sentinels.len() as u64;
        let new_names: Vec<String> = new_sentinels.iter().map(|(n, _)| n.clone()).collect();
        self.read_backups(idx, new_sentinels).await;

        // 4. PostgreSQL's `.backup` history files of the new backups.
        let mut names = Vec::new();
        for n in &new_names {
            let tli = crate::names::BackupName::parse(n).map(|b| b.timeline);
            let lsn = idx
                .backups
                .get(n)
                .and_then(|b| b.sentinel.ok())
                .and_then(|s| s.lsn);
            if let (Some(tli), Some(lsn)) = (tli, lsn) {
                names.extend(probe::backup_history_names(idx, tli, lsn));
            }
        }
        if !names.is_empty() {
            stats.probed += names.len() as u64;
            let found = self
                .blocking(WAL, move || probe::stat_all(&wal_dir, &names))
                .await?;
            stats.listed += found.len() as u64;
            let found: Vec<WalObject> = found.into_iter().map(|l| self.wal_object(l)).collect();
            *wal_kept = (*wal_kept).min(probe::merge(idx, found));
            set_wal_cursor(idx);
        }
        stats.wal_kept = *wal_kept;
        Ok(Some(stats))
    }

    async fn update(&self, idx: &mut Index, refresh: bool) -> Result<ReadStats, ReadError> {
        let wal_cursor = idx.cursors.get(WAL).cloned();
        let base_cursor = idx.cursors.get(BASEBACKUPS).cloned();
        let mut probed_histories = 0;
        let mut wal_kept = idx.wal.len();
        if refresh {
            if let Some(dir) = self.local_folder(WAL) {
                let before = idx.histories.len();
                if let Some(stats) = self
                    .update_local(idx, dir, base_cursor.clone(), &mut wal_kept)
                    .await?
                {
                    return Ok(stats);
                }
                probed_histories = (idx.histories.len() - before) as u64;
            }
        }
        let (wal, base) = futures::try_join!(
            self.list(WAL, wal_cursor.as_deref()),
            self.list(BASEBACKUPS, base_cursor.as_deref())
        )?;
        let mut stats = ReadStats {
            listed: (wal.len() + base.len()) as u64,
            ..Default::default()
        };
        let (new_histories, truncated) = self.ingest_wal(idx, wal, wal_cursor.as_deref());
        stats.wal_kept = wal_kept.min(truncated);
        let new_sentinels = self.ingest_base(idx, base, base_cursor.as_deref());
        stats.new_histories = new_histories.len() as u64 + probed_histories;
        stats.new_sentinels = new_sentinels.len() as u64;

        // Fetch new documents concurrently.
        self.read_histories(idx, new_histories).await;
        self.read_backups(idx, new_sentinels).await;
        Ok(stats)
    }

    /// Merges a WAL listing; returns the history files to read and how many objects stayed before the listed ones.
    fn ingest_wal(
        &self,
        idx: &mut Index,
        listed: Vec<Listed>,
        cursor: Option<&str>,
    ) -> (Vec<(String, u32, crate::names::Compression)>, usize) {
        let mut fresh: Vec<WalObject> = listed.into_iter().map(|m| self.wal_object(m)).collect();
        fresh.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if let Some(c) = cursor {
            let keep = idx.wal.partition_point(|w| w.name.as_str() <= c);
            idx.wal.truncate(keep);
        } else {
            idx.wal.clear();
        }
        let histories: Vec<_> = fresh
            .iter()
            .filter(|w| w.key.kind == WalKind::History && !idx.histories.contains_key(&w.name))
            .map(|w| (w.name.clone(), w.key.tli, w.key.compression))
            .collect();
        let kept = idx.wal.len();
        idx.wal.extend(fresh);
        set_wal_cursor(idx);
        (histories, kept)
    }

    /// Merges a base-backup listing; returns new sentinels (name, LastModified).
    fn ingest_base(
        &self,
        idx: &mut Index,
        listed: Vec<Listed>,
        cursor: Option<&str>,
    ) -> Vec<(String, i64)> {
        if let Some(c) = cursor {
            // Folders listed after the cursor are listed again in full.
            idx.folders
                .retain(|name, _| format!("{name}/").as_str() <= c);
            idx.stray_keys.retain(|k| k.as_str() <= c);
        } else {
            idx.folders.clear();
            idx.stray_keys.clear();
            idx.backups.clear();
        }
        let mut sentinels = Vec::new();
        for m in listed {
            let rel = m.rel.as_str();
            if let Some(name) = rel.strip_suffix(SENTINEL_SUFFIX) {
                if !name.contains('/') {
                    if !idx.backups.contains_key(name) {
                        sentinels.push((name.to_string(), m.modified_ms));
                    }
                    continue;
                }
            }
            match rel.split_once('/') {
                Some((name, inner)) => {
                    let f = idx.folders.entry(name.to_string()).or_default();
                    f.objects += 1;
                    f.bytes += m.size;
                    f.newest_modified_ms = f.newest_modified_ms.max(m.modified_ms);
                    match inner {
                        "metadata.json" => f.has_metadata = true,
                        "files_metadata.json" => f.has_files_metadata = true,
                        _ => {
                            if let Some(t) = inner.strip_prefix("tar_partitions/") {
                                f.tars.push(t.to_string());
                            }
                        }
                    }
                }
                None => idx.stray_keys.push(rel.to_string()),
            }
        }
        for f in idx.folders.values_mut() {
            f.tars.sort();
            f.tars.dedup();
        }
        idx.stray_keys.sort();
        let last = idx
            .backups
            .keys()
            .chain(sentinels.iter().map(|(n, _)| n))
            .max()
            .map(|n| format!("{n}{SENTINEL_SUFFIX}"));
        match last {
            Some(c) => {
                idx.cursors.insert(BASEBACKUPS.to_string(), c);
            }
            None => {
                idx.cursors.remove(BASEBACKUPS);
            }
        }
        sentinels
    }

    async fn get(&self, rel: &str) -> Result<Option<bytes::Bytes>, String> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => r
                .bytes()
                .await
                .map(Some)
                .map_err(|e| format!("cannot read {rel}: {e}")),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(format!("cannot read {rel}: {e}")),
        }
    }

    /// The decoded (decrypted when a key is configured, decompressed) bytes of WAL segment `segno` of `tli`, or
    /// `None` when no object has its name. The compression is not known from the timeline, so the extensions are
    /// tried in turn, wal-g's default (lz4) first; `prefer` (the one that worked last time) goes before it.
    pub async fn wal_segment(
        &self,
        tli: u32,
        segno: u64,
        prefer: Option<crate::names::Compression>,
    ) -> Result<Option<(Vec<u8>, crate::names::Compression)>, String> {
        use crate::names::Compression as C;
        let base = crate::names::wal_file_name(tli, segno, self.segment_size);
        let order = [
            C::Lz4,
            C::Zstd,
            C::Brotli,
            C::Lzma,
            C::Gzip,
            C::None,
            C::LegacyDot,
        ];
        for c in prefer.into_iter().chain(order) {
            let key = format!("{WAL}/{}", c.key_for(&base));
            let Some(data) = self.get(&key).await? else {
                continue;
            };
            let decoded = match &self.key {
                Some(k) => codec::decode(&data, c, Some(k))
                    .or_else(|e| codec::decode(&data, c, None).map_err(|_| e)),
                None => codec::decode(&data, c, None),
            };
            return decoded
                .map(|bytes| Some((bytes, c)))
                .map_err(|e| format!("{key}: {e}"));
        }
        Ok(None)
    }

    async fn read_backup(&self, name: String, sentinel_modified_ms: i64) -> BackupEntry {
        let skey = format!("{BASEBACKUPS}/{name}{SENTINEL_SUFFIX}");
        let mkey = format!("{BASEBACKUPS}/{name}/metadata.json");
        let (s, m) = futures::join!(self.get(&skey), self.get(&mkey));
        let sentinel = match s {
            Ok(Some(b)) => match Sentinel::parse(&b) {
                Ok(s) => Doc::Ok(s),
                Err(e) => Doc::Error(format!("{skey}: {e}")),
            },
            Ok(None) => Doc::Error(format!("{skey} disappeared while reading")),
            Err(e) => Doc::Error(e),
        };
        let metadata = match m {
            Ok(Some(b)) => match Metadata::parse(&b) {
                Ok(m) => Doc::Ok(m),
                Err(e) => Doc::Error(format!("{mkey}: {e}")),
            },
            Ok(None) => Doc::Missing,
            Err(e) => Doc::Error(e),
        };
        BackupEntry {
            name,
            sentinel_modified_ms,
            sentinel,
            metadata,
        }
    }

    async fn read_history(
        &self,
        name: String,
        tli: u32,
        compression: crate::names::Compression,
    ) -> HistoryEntry {
        let key = format!("{WAL}/{name}");
        let entry = |records, bad_lines| HistoryEntry {
            name: name.clone(),
            tli,
            records,
            bad_lines,
        };
        let data = match self.get(&key).await {
            Ok(Some(d)) => d,
            Ok(None) => return entry(Doc::Error(format!("{key} disappeared while reading")), 0),
            Err(e) => return entry(Doc::Error(e), 0),
        };
        let decoded = match &self.key {
            Some(k) => codec::decode(&data, compression, Some(k))
                .or_else(|e| codec::decode(&data, compression, None).map_err(|_| e)),
            None => codec::decode(&data, compression, None),
        };
        let bytes = match decoded {
            Ok(b) => b,
            Err(e) => {
                let hint = if self.key.is_none() {
                    " (if the bucket is encrypted, give WALG_LIBSODIUM_KEY)"
                } else {
                    ""
                };
                return entry(Doc::Error(format!("{key}: {e}{hint}")), 0);
            }
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(_) => {
                let hint = if self.key.is_none() {
                    " (it may be encrypted: give WALG_LIBSODIUM_KEY)"
                } else {
                    ""
                };
                return entry(Doc::Error(format!("{key}: not a text file{hint}")), 0);
            }
        };
        let (records, bad) = parse_history(text);
        if records.is_empty() && bad > 0 {
            return entry(
                Doc::Error(format!(
                    "{key}: no readable history line ({bad} unreadable)"
                )),
                bad,
            );
        }
        entry(Doc::Ok(records), bad)
    }
}
