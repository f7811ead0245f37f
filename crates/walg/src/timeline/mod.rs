//! The [`BucketTimeline`] (old name `Timeline`) computed from an [`Index`]: backups and delta chains, per-timeline segment runs and gaps,
//! the timeline tree, lineages, restorable windows, freshness and findings.
//!
//! [`BucketTimeline::from_index_with`] runs named passes in order; each takes the typed output of earlier passes plus
//! the `Findings` collector and returns its own typed result:
//!
//! 1. `wal_scan`: `wal_005/` objects into per-timeline segment tables (`WalScan`); duplicates, empty and
//!    unknown objects.
//! 2. `histories`: readable, well-ordered `.history` files (`Histories`), and for unreadable ones the parent and
//!    switch segment inferred from `.partial` and segment names.
//! 3. `backups`: complete backups, their problems and delta chains (`BackupSet`); folders without sentinel.
//! 4. `tree`: every timeline and the leaves of the timeline tree (`Tree`).
//! 5. `lineages`: one [`Lineage`] per timeline (segment ownership, runs, gaps), the main lineage, and whether
//!    the archive branched.
//! 6. `per_timeline`: one [`PgTimeline`] per timeline (wal-show's view) and abandoned segments.
//! 7. `restorable`: backups against the WAL (consistency WAL, per-lineage windows, restorability) and what
//!    `recovery_target_timeline=latest` would pick.
//! 8. `windows`: merged restorable windows per lineage, WAL gap findings, earliest and latest restorable.
//! 9. `freshness`: newest WAL and backup, staleness and emptiness.
//!
//! Invariants: the passes only read the [`Index`]; the result depends on the index, `now` and [`Options`]
//! alone; findings come out sorted by severity then code (see `Findings`).

mod backups;
mod findings;
#[cfg(test)]
mod fixture;
mod freshness;
mod histories;
mod lineages;
mod per_timeline;
mod restorable;
mod tree;
mod wal_scan;
mod windows;

pub use findings::{Finding, FindingCode, Severity};

/// The old name of [`BucketTimeline`], kept so existing code (`walg::Timeline::from_index`) still compiles.
pub use self::BucketTimeline as Timeline;
/// The old name of [`PgTimeline`].
pub use self::PgTimeline as TimelineInfo;

use crate::documents::HistoryRecord;
use crate::index::Index;
use crate::names::{segment_of, wal_file_name};
use findings::Findings;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

/// An inclusive range of segment numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegRange {
    pub from: u64,
    pub to: u64,
}

impl SegRange {
    pub fn len(&self) -> u64 {
        self.to - self.from + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A restorable window of a backup on one lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupWindow {
    /// The lineage (its leaf timeline).
    pub lineage: u32,
    /// Last segment reached contiguously from the backup's start segment.
    pub end_segment: u64,
    /// Upper bound of the LSNs that can be replayed.
    pub end_lsn: u64,
    /// Approximate: LastModified of the last contiguous segment.
    pub end_time: OffsetDateTime,
}

/// A complete base backup (its sentinel exists).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub name: String,
    pub timeline: u32,
    pub start_lsn: Option<u64>,
    pub finish_lsn: Option<u64>,
    pub start_time: Option<OffsetDateTime>,
    pub finish_time: Option<OffsetDateTime>,
    /// `finish_time` is the sentinel's LastModified because neither metadata.json nor the sentinel had a time.
    pub finish_time_approximate: bool,
    /// From metadata.json when present (authoritative), else the sentinel.
    pub permanent: bool,
    pub delta_from: Option<String>,
    /// Ancestors of a delta backup, nearest first (empty for a full backup).
    pub delta_chain: Vec<String>,
    pub system_identifier: Option<u64>,
    pub pg_version: Option<i64>,
    pub hostname: Option<String>,
    pub compressed_size: Option<i64>,
    pub uncompressed_size: Option<i64>,
    pub sentinel_modified: OffsetDateTime,
    /// Complete, chain intact and its consistency WAL present.
    pub restorable: bool,
    /// Why it is not restorable (empty when it is).
    pub problems: Vec<String>,
    /// Windows on each lineage the backup belongs to.
    pub windows: Vec<BackupWindow>,
}

impl Backup {
    /// Segment that holds the start LSN.
    pub fn start_segment(&self, segsize: u64) -> Option<u64> {
        self.start_lsn.map(|l| segment_of(l, segsize))
    }
    /// Last segment needed for consistency: `seg(finish_lsn - 1)`.
    pub fn consistency_segment(&self, segsize: u64) -> Option<u64> {
        match (self.start_lsn, self.finish_lsn) {
            (Some(s), Some(f)) if f > s => Some(segment_of(f - 1, segsize)),
            (Some(s), _) => Some(segment_of(s, segsize)),
            _ => None,
        }
    }
}

/// One PostgreSQL timeline as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PgTimeline {
    pub timeline: u32,
    /// Direct parent from the `.history` file (last record).
    pub parent: Option<u32>,
    /// Where the parent ended and this timeline began.
    pub switch_lsn: Option<u64>,
    pub has_history: bool,
    /// The full history (ancestors in order) when the file was read.
    pub history: Vec<HistoryRecord>,
    pub first_segment: Option<u64>,
    pub last_segment: Option<u64>,
    pub segments: u64,
    pub bytes: u64,
    /// Missing segment numbers between first and last (wal-show's view, no timeline switching).
    pub gaps: Vec<SegRange>,
    /// Segments after this timeline's earliest switch to a child: an abandoned branch.
    pub abandoned: Option<SegRange>,
    pub abandoned_segments: u64,
    pub newest_modified: Option<OffsetDateTime>,
}

/// One step of a lineage: the part of the history of `leaf` that ran on `timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageStep {
    pub timeline: u32,
    pub begin_lsn: u64,
    /// `None` for the leaf itself.
    pub end_lsn: Option<u64>,
    /// Segments owned by this step (empty when a later switch falls in the same segment).
    pub owned: Option<SegRange>,
}

/// A hole in the WAL of a lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageGap {
    /// Timeline that owns the first missing segment.
    pub timeline: u32,
    pub missing: SegRange,
    /// LastModified of the segment just before the gap (the last time one can restore to before it).
    pub after: Option<OffsetDateTime>,
    /// LastModified of the segment just after the gap.
    pub before: Option<OffsetDateTime>,
}

/// The history of one timeline (`leaf`, the timeline it ends at), which is what recovery follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub leaf: u32,
    pub steps: Vec<LineageStep>,
    /// Present segment runs (contiguous across switches).
    pub runs: Vec<SegRange>,
    pub gaps: Vec<LineageGap>,
}

impl Lineage {
    /// The timeline that owns segment `n` on this lineage.
    pub fn owner(&self, n: u64) -> Option<u32> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.owned.is_some_and(|o| o.from <= n && n <= o.to))
            .map(|s| s.timeline)
    }
    /// Whether `tli` is on this lineage and `lsn` lies before it ended.
    pub fn contains(&self, tli: u32, lsn: u64) -> bool {
        self.steps
            .iter()
            .any(|s| s.timeline == tli && s.end_lsn.is_none_or(|e| lsn < e))
    }
    /// The newest segment of this lineage.
    pub fn newest_segment(&self) -> Option<u64> {
        self.runs.last().map(|r| r.to)
    }
    /// Whether `gap` lies among the `concurrency` segment numbers below the newest segment, where wal-g's
    /// `wal-verify` calls a missing segment MISSING_UPLOADING (a warning, not lost WAL).
    pub fn is_uploading(&self, gap: &LineageGap, concurrency: u64) -> bool {
        self.newest_segment()
            .is_some_and(|newest| gap.missing.from >= newest.saturating_sub(concurrency))
    }
    /// The last segment reached from the older WAL without crossing a gap that is not still uploading (see
    /// [`Lineage::is_uploading`]): where recovery to the end stops until the missing newest segments arrive.
    pub fn contiguous_end(&self, concurrency: u64) -> Option<u64> {
        let newest = self.newest_segment()?;
        let limit = newest.saturating_sub(concurrency);
        self.runs
            .iter()
            .find(|r| r.to + 1 >= limit)
            .map(|r| r.to)
            .or(Some(newest))
    }
    pub(crate) fn run_containing(&self, n: u64) -> Option<SegRange> {
        let i = self.runs.partition_point(|r| r.to < n);
        self.runs.get(i).copied().filter(|r| r.from <= n)
    }
}

/// A merged restorable window on a lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub timeline: u32,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
}

/// Age of the newest WAL and newest backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Freshness {
    pub newest_wal: Option<OffsetDateTime>,
    pub newest_wal_age_seconds: Option<i64>,
    pub newest_backup: Option<OffsetDateTime>,
    pub newest_backup_age_seconds: Option<i64>,
}

/// Thresholds for the analysis.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Newest WAL older than this is a warning.
    pub stale_wal_seconds: i64,
    /// Newest complete backup older than this is a warning.
    pub stale_backup_seconds: i64,
    /// A folder without sentinel newer than this (and newer than every sentinel) is "in progress".
    pub in_progress_seconds: i64,
    /// Missing segments among this many below the newest one are probably still uploading (wal-g's
    /// `WALG_UPLOAD_CONCURRENCY`, default [`UPLOAD_CONCURRENCY`]); 0 treats every hole as lost.
    pub upload_concurrency: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stale_wal_seconds: 24 * 3600,
            stale_backup_seconds: 8 * 24 * 3600,
            in_progress_seconds: 6 * 3600,
            upload_concurrency: UPLOAD_CONCURRENCY,
        }
    }
}

/// The segments of one timeline: parallel columns sorted by segment number (each number once).
#[derive(Debug, Clone, Default)]
pub(crate) struct SegTable {
    pub segnos: Vec<u64>,
    pub sizes: Vec<u64>,
    pub mtimes: Vec<i64>,
}

impl SegTable {
    pub(crate) fn find(&self, n: u64) -> Option<usize> {
        self.segnos.binary_search(&n).ok()
    }
    pub(crate) fn count_in(&self, from: u64, to: u64) -> u64 {
        let a = self.segnos.partition_point(|&s| s < from);
        let b = self.segnos.partition_point(|&s| s <= to);
        (b - a) as u64
    }
}

/// Everything known about one wal-g root.
#[derive(Debug, Clone)]
pub struct BucketTimeline {
    pub url: String,
    pub segment_size: u64,
    pub generated_at: OffsetDateTime,
    /// Complete backups, oldest start first.
    pub backups: Vec<Backup>,
    pub timelines: Vec<PgTimeline>,
    /// One per timeline: each is a restore path.
    pub lineages: Vec<Lineage>,
    /// The lineage used by default: the timeline with the newest WAL.
    pub main_lineage: Option<u32>,
    pub windows: Vec<Window>,
    pub earliest_restorable: Option<OffsetDateTime>,
    pub latest_restorable: Option<OffsetDateTime>,
    pub freshness: Freshness,
    pub findings: Vec<Finding>,
    /// [`Options::upload_concurrency`] as used for this analysis.
    pub upload_concurrency: u64,
    pub(crate) segs: HashMap<u32, SegTable>,
    /// Timelines that have a `.history` object (readable or not).
    pub history_tlis: BTreeSet<u32>,
    /// The last commits read from WAL, one per lineage asked about ([`crate::Reader::attach_last_commit`]); empty
    /// when WAL was not read, and planning then keeps to segment upload times.
    pub commit_searches: Vec<crate::last_commit::CommitSearch>,
}

/// wal-g's default `WALG_UPLOAD_CONCURRENCY` (`internal/config/config.go`): how many segments below the newest
/// one `wal-verify` treats as possibly still uploading (`integrity_check_runner.go#runWalIntegrityScan`).
pub const UPLOAD_CONCURRENCY: u64 = 16;

/// Most gap findings listed one by one per lineage.
pub const MAX_GAP_FINDINGS: usize = 50;

pub(crate) fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// `YYYY-MM-DD HH:MM UTC` for messages.
pub(crate) fn short_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute()
    )
}

pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl BucketTimeline {
    /// Computes the timeline with default thresholds.
    pub fn from_index(index: &Index, now: OffsetDateTime) -> BucketTimeline {
        Self::from_index_with(index, now, Options::default())
    }

    /// Computes the timeline: the passes in order, each adding its findings.
    pub fn from_index_with(index: &Index, now: OffsetDateTime, opts: Options) -> BucketTimeline {
        let segsize = index.segment_size;
        let mut findings = Findings::default();
        let wal = wal_scan::scan(index, &mut findings);
        let mut histories = histories::read(index, &mut findings);
        let inferred = histories::infer_unreadable(&wal, &mut histories, segsize, &mut findings);
        let backup_set = backups::collect(index, now, opts, &mut findings);
        let tree = tree::build(&wal, &histories, &backup_set, &mut findings);
        let lineages = lineages::trace(&tree, &histories, &wal, segsize, &mut findings);
        let timelines = per_timeline::describe(&tree, &histories, &wal, segsize, &mut findings);
        let backup_set = restorable::place(backup_set, &lineages, &wal, segsize, &mut findings);
        let known = restorable::Known {
            histories: &histories,
            inferred: &inferred,
        };
        restorable::check_latest(&backup_set, known, &wal, &lineages, &mut findings);
        let scope = windows::Scope {
            tree: &tree,
            segsize,
            upload_concurrency: opts.upload_concurrency,
        };
        let merged = windows::merge(&backup_set, &lineages, scope, &mut findings);
        let freshness =
            freshness::assess(index, now, opts, &wal, &backup_set, &tree, &mut findings);
        BucketTimeline {
            url: index.url.clone(),
            segment_size: segsize,
            generated_at: now,
            backups: backup_set.backups,
            timelines,
            lineages: lineages.lineages,
            main_lineage: lineages.main,
            windows: merged.merged,
            earliest_restorable: merged.earliest_restorable,
            latest_restorable: merged.latest_restorable,
            freshness,
            findings: findings.into_sorted(),
            upload_concurrency: opts.upload_concurrency,
            segs: wal.segs,
            history_tlis: wal.history_tlis,
            commit_searches: Vec::new(),
        }
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// The lineage ending at `leaf`.
    pub fn lineage(&self, leaf: u32) -> Option<&Lineage> {
        self.lineages.iter().find(|l| l.leaf == leaf)
    }

    /// Size and LastModified of segment `n` on `tli`.
    pub fn segment(&self, tli: u32, n: u64) -> Option<(u64, OffsetDateTime)> {
        let t = self.segs.get(&tli)?;
        let i = t.find(n)?;
        Some((t.sizes[i], ms_to_time(t.mtimes[i])))
    }

    /// 24-hex WAL file name.
    pub fn wal_name(&self, tli: u32, n: u64) -> String {
        wal_file_name(tli, n, self.segment_size)
    }
}

/// `1.5 GiB` style sizes.
pub fn human_bytes(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// `3 days`, `5 hours`, `12 minutes`.
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 2 * 86400 {
        format!("{} days", s / 86400)
    } else if s >= 2 * 3600 {
        format!("{} hours", s / 3600)
    } else if s >= 120 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}
