//! Refresh of a LOCAL-file index by probing names instead of reading the whole `wal_005/` directory.
//!
//! A local directory cannot be read "after a key": ext4 (and most file systems) return entries in hash order, so
//! finding the new keys of a million-entry folder means reading all of it. But wal-g archives segments in order
//! per timeline, so the names to expect next are known: from the newest known segment of each timeline the
//! prober stats the following names (with the extensions the bucket uses) until [`PROBE_LOOKAHEAD`] misses in a
//! row, stats the names inside known gaps again (a gap filled later is found), the `.history` files of the next
//! [`PROBE_TIMELINES`] timeline ids (and of timelines that have segments but no history), the `.partial` at each
//! known switch point, and the `.backup` files of new backups.
//!
//! Not seen by a probing refresh (a full build sees them; see [`crate::index::FULL_BUILD_MAX_AGE`]):
//! segments more than [`PROBE_LOOKAHEAD`] names after the newest known one of their timeline; timelines more
//! than [`PROBE_TIMELINES`] ids above the highest known one; deletions and renames; objects of other shapes
//! (`-<8hex>.partial`, `.backup` files of old backups, unknown names); a new compression (or suffix) whose first
//! object fills a known gap or follows a missing name (found once the name right after the last hit arrives).

use super::{HistoryEntry, Index, Listed, WalObject};
use crate::names::{segment_of, wal_file_name, Compression, WalKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Names in a row that a refresh probes past the newest known segment of a timeline before it stops.
pub const PROBE_LOOKAHEAD: u64 = 1024;
/// Timeline ids after the highest known one whose `.history` file a refresh looks for.
pub const PROBE_TIMELINES: u32 = 8;
/// When the known gaps hold more names than this, a local refresh reads the directory instead of probing.
pub const PROBE_MAX_GAP_NAMES: u64 = 65_536;

/// Every compression wal-g may have used, as a file-name suffix.
const ALL_COMPRESSIONS: [Compression; 8] = [
    Compression::Lz4,
    Compression::Zstd,
    Compression::Lzma,
    Compression::Brotli,
    Compression::Gzip,
    Compression::Lzo,
    Compression::None,
    Compression::LegacyDot,
];

/// Suffixes appended to a 24-hex segment name, as in the bucket: `.lz4`, `_delta.zst`, `.json`, ...
fn suffix(kind_suffix: &str, c: Compression) -> String {
    c.key_for(kind_suffix)
}

/// Every suffix a segment-number-keyed object can have.
fn all_suffixes() -> Vec<String> {
    let mut v: Vec<String> = ALL_COMPRESSIONS.iter().map(|c| suffix("", *c)).collect();
    v.extend(ALL_COMPRESSIONS.iter().map(|c| suffix("_delta", *c)));
    v.push(".json".to_string());
    v
}

/// What a probing refresh will stat, computed from the index.
#[derive(Debug)]
pub(crate) struct Plan {
    dir: PathBuf,
    segsize: u64,
    /// Suffixes seen in the index for segment-keyed objects (tried for every name).
    known: Vec<String>,
    /// The rest (tried at the name right after a hit, to notice a changed compression).
    others: Vec<String>,
    /// (timeline, first segment number to probe forward).
    forward: Vec<(u32, u64)>,
    /// (timeline, segment number) inside known gaps.
    gaps: Vec<(u32, u64)>,
    /// Whole file names to stat once (partials at switch points).
    extra: Vec<String>,
}

/// The `.history` names to look for (all compressions), given what the index knows.
pub(crate) fn history_candidates(idx: &Index) -> Vec<String> {
    let mut tlis: BTreeSet<u32> = BTreeSet::new();
    let mut max = 1;
    let mut with_history: BTreeSet<u32> = BTreeSet::new();
    for h in idx.histories.values() {
        with_history.insert(h.tli);
        max = max.max(h.tli);
    }
    let mut previous = None;
    for w in &idx.wal {
        match w.key.kind {
            WalKind::History => {
                with_history.insert(w.key.tli);
                max = max.max(w.key.tli);
            }
            // Sorted by name, so each timeline's objects come together: one set insert per timeline.
            WalKind::Segment | WalKind::Partial if previous != Some(w.key.tli) => {
                previous = Some(w.key.tli);
                max = max.max(w.key.tli);
                if w.key.tli > 1 {
                    tlis.insert(w.key.tli);
                }
            }
            _ => {}
        }
    }
    tlis.retain(|t| !with_history.contains(t));
    for k in 1..=PROBE_TIMELINES {
        if let Some(t) = max.checked_add(k) {
            tlis.insert(t);
        }
    }
    tlis.into_iter()
        .flat_map(|t| {
            ALL_COMPRESSIONS
                .iter()
                .map(move |c| c.key_for(&format!("{t:08X}.history")))
        })
        .collect()
}

/// Where timeline `tli` starts (the switch segment), from its history file.
fn switch_of(histories: &BTreeMap<String, HistoryEntry>, tli: u32) -> Option<(u32, u64)> {
    histories
        .values()
        .filter(|h| h.tli == tli)
        .find_map(|h| h.records.ok().and_then(|r| r.last()))
        .map(|r| (r.parent, r.switch_lsn))
}

/// Plans the segment probes. `None` when probing cannot stand in for a listing (nothing known to probe from, a
/// new timeline whose start is unknown, or too many names inside gaps): the caller reads the directory instead.
pub(crate) fn plan(idx: &Index, dir: PathBuf) -> Option<Plan> {
    let segsize = idx.segment_size;
    // One pass over the sorted index (by name, so by segment number within a timeline): per timeline the first
    // and last segment and the missing ranges between them.
    struct Seen {
        first: u64,
        last: u64,
        gaps: Vec<(u64, u64)>,
    }
    let mut present: BTreeMap<u32, Seen> = BTreeMap::new();
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut gap_names = 0u64;
    let mut last_compression = None;
    for w in &idx.wal {
        match w.key.kind {
            WalKind::Segment => {
                let (tli, n) = (w.key.tli, w.key.segno);
                match present.get_mut(&tli) {
                    Some(s) => {
                        if n > s.last + 1 {
                            s.gaps.push((s.last + 1, n - 1));
                            gap_names += n - 1 - s.last;
                            if gap_names > PROBE_MAX_GAP_NAMES {
                                return None;
                            }
                        }
                        s.last = s.last.max(n);
                    }
                    None => {
                        present.insert(
                            tli,
                            Seen {
                                first: n,
                                last: n,
                                gaps: Vec::new(),
                            },
                        );
                    }
                }
                if last_compression != Some(w.key.compression) {
                    last_compression = Some(w.key.compression);
                    known.insert(suffix("", w.key.compression));
                }
            }
            WalKind::Delta => {
                known.insert(suffix("_delta", w.key.compression));
            }
            WalKind::Metadata => {
                known.insert(".json".to_string());
            }
            _ => {}
        }
    }
    if present.is_empty() {
        return None;
    }
    let others: Vec<String> = all_suffixes()
        .into_iter()
        .filter(|s| !known.contains(s))
        .collect();
    let mut forward = Vec::new();
    let mut gaps: Vec<(u32, u64)> = Vec::new();
    let mut extra = Vec::new();
    // Timelines with a history file: the switch point starts them; the parent may hold a `.partial` there.
    let mut tlis: BTreeSet<u32> = idx.histories.values().map(|h| h.tli).collect();
    tlis.extend(present.keys().copied());
    for tli in tlis {
        let switch = switch_of(&idx.histories, tli);
        if let Some((parent, lsn)) = switch {
            let base = wal_file_name(parent, segment_of(lsn, segsize), segsize);
            for c in ALL_COMPRESSIONS {
                extra.push(c.key_for(&format!("{base}.partial")));
            }
        }
        let start = switch.map(|(_, lsn)| segment_of(lsn, segsize));
        match present.get(&tli) {
            Some(s) => {
                // Names between the switch point and the first known segment count as a gap.
                if let Some(st) = start.filter(|st| *st < s.first) {
                    gap_names += s.first - st;
                    if gap_names > PROBE_MAX_GAP_NAMES {
                        return None;
                    }
                    gaps.extend((st..s.first).map(|n| (tli, n)));
                }
                for &(a, b) in &s.gaps {
                    gaps.extend((a..=b).map(|n| (tli, n)));
                }
                forward.push((tli, s.last + 1));
            }
            None => match start {
                Some(st) => forward.push((tli, st)),
                // A timeline with a history file that cannot be read: its start is unknown.
                None if tli > 1 => return None,
                None => {}
            },
        }
    }
    extra.retain(|n| {
        idx.wal
            .binary_search_by(|w| w.name.as_str().cmp(n.as_str()))
            .is_err()
    });
    Some(Plan {
        dir,
        segsize,
        known: known.into_iter().collect(),
        others,
        forward,
        gaps,
        extra,
    })
}

/// The directory probed, opened once: on Linux each name is one `statx` relative to it (no path walk, no
/// allocation of the full path), as the listing does.
struct Dir<'a> {
    path: &'a Path,
    /// `None` when the directory does not exist (then nothing is in it).
    fd: Option<super::DirFd>,
}

impl<'a> Dir<'a> {
    #[cfg(target_os = "linux")]
    fn open(path: &'a Path) -> std::io::Result<Dir<'a>> {
        use rustix::fs::{Mode, OFlags};
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Some(fd),
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Dir { path, fd })
    }

    #[cfg(not(target_os = "linux"))]
    fn open(path: &'a Path) -> std::io::Result<Dir<'a>> {
        Ok(Dir { path, fd: Some(()) })
    }

    /// Stats `name`: `Some` for a regular file, `None` when absent.
    fn stat(&self, name: &str) -> std::io::Result<Option<Listed>> {
        let Some(fd) = &self.fd else {
            return Ok(None);
        };
        match super::file_meta(fd, self.path, name) {
            Ok(found) => Ok(found.map(|(size, modified_ms)| Listed {
                rel: name.to_string(),
                size,
                modified_ms,
            })),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn stat_all(&self, names: &[String]) -> std::io::Result<Vec<Listed>> {
        let mut out = Vec::new();
        for n in names {
            if let Some(l) = self.stat(n)? {
                out.push(l);
            }
        }
        Ok(out)
    }
}

/// Stats each name in `dir`; returns those that exist.
pub(crate) fn stat_all(dir: &Path, names: &[String]) -> std::io::Result<Vec<Listed>> {
    Dir::open(dir)?.stat_all(names)
}

/// Runs the plan; returns what was found and the number of names tried.
pub(crate) fn run(plan: &Plan) -> std::io::Result<(Vec<Listed>, u64)> {
    let mut out = Vec::new();
    let mut tried = 0u64;
    let dir = Dir::open(plan.dir.as_path())?;
    let mut probe = |tli: u32, n: u64, try_others: bool, out: &mut Vec<Listed>| {
        let base = wal_file_name(tli, n, plan.segsize);
        let mut hit = false;
        for s in &plan.known {
            tried += 1;
            if let Some(l) = dir.stat(&format!("{base}{s}"))? {
                out.push(l);
                hit = true;
            }
        }
        if !hit && try_others {
            for s in &plan.others {
                tried += 1;
                if let Some(l) = dir.stat(&format!("{base}{s}"))? {
                    out.push(l);
                    hit = true;
                }
            }
        }
        Ok::<bool, std::io::Error>(hit)
    };
    for &(tli, n) in &plan.gaps {
        probe(tli, n, false, &mut out)?;
    }
    let max_segno = crate::names::segments_per_xlog_id(plan.segsize).saturating_mul(1 << 32);
    for &(tli, start) in &plan.forward {
        let mut misses = 0;
        let mut previous_hit = true;
        let mut n = start;
        while misses < PROBE_LOOKAHEAD && n < max_segno {
            let hit = probe(tli, n, previous_hit, &mut out)?;
            misses = if hit { 0 } else { misses + 1 };
            previous_hit = hit;
            n += 1;
        }
    }
    tried += plan.extra.len() as u64;
    out.extend(dir.stat_all(&plan.extra)?);
    Ok((out, tried))
}

/// The `.backup` names (all suffixes in use) of backups that start at `lsn` on `tli`.
pub(crate) fn backup_history_names(idx: &Index, tli: u32, lsn: u64) -> Vec<String> {
    let segsize = idx.segment_size;
    let base = format!(
        "{}.{:08X}.backup",
        wal_file_name(tli, segment_of(lsn, segsize), segsize),
        lsn % segsize
    );
    let mut comps: BTreeSet<String> = BTreeSet::new();
    let mut previous = None;
    for w in idx.wal.iter().filter(|w| w.key.kind == WalKind::Segment) {
        if previous != Some(w.key.compression) {
            previous = Some(w.key.compression);
            comps.insert(w.key.compression.key_for(&base));
        }
    }
    if comps.is_empty() {
        comps.extend(ALL_COMPRESSIONS.iter().map(|c| c.key_for(&base)));
    }
    comps.into_iter().collect()
}

/// Merges probed objects into the sorted `idx.wal` (objects already there are kept as they are); returns the
/// position of the first one inserted (everything before it is untouched), `idx.wal.len()` when none was.
pub(crate) fn merge(idx: &mut Index, mut fresh: Vec<WalObject>) -> usize {
    fresh.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    fresh.dedup_by(|a, b| a.name == b.name);
    fresh.retain(|f| {
        idx.wal
            .binary_search_by(|w| w.name.as_str().cmp(f.name.as_str()))
            .is_err()
    });
    let Some(first) = fresh.first() else {
        return idx.wal.len();
    };
    let at = idx.wal.partition_point(|w| w.name < first.name);
    let in_order = at == idx.wal.len();
    idx.wal.extend(fresh);
    if !in_order {
        // Two sorted runs: the stable sort merges them in linear time.
        idx.wal.sort_by(|a, b| a.name.cmp(&b.name));
    }
    at
}
