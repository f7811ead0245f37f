//! The `Timeline` model computed from an [`Index`]: backups and delta chains, per-timeline segment runs and gaps,
//! the timeline tree, lineages, restorable windows, freshness and findings.

use crate::documents::HistoryRecord;
use crate::index::{Doc, Index};
use crate::names::{segment_of, wal_file_name, BackupName, Compression, Lsn, WalKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use time::OffsetDateTime;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// A problem or fact worth telling, in plain language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable machine-readable code (`wal_gap`, `broken_delta_chain`, ...).
    pub code: String,
    pub message: String,
    /// The object (key or backup name) it is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

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

/// One timeline as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineInfo {
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

/// The history of one leaf timeline, which is what recovery follows.
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
    fn run_containing(&self, n: u64) -> Option<SegRange> {
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stale_wal_seconds: 24 * 3600,
            stale_backup_seconds: 8 * 24 * 3600,
            in_progress_seconds: 6 * 3600,
        }
    }
}

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
    fn count_in(&self, from: u64, to: u64) -> u64 {
        let a = self.segnos.partition_point(|&s| s < from);
        let b = self.segnos.partition_point(|&s| s <= to);
        (b - a) as u64
    }
}

/// Everything known about one wal-g root.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub url: String,
    pub segment_size: u64,
    pub generated_at: OffsetDateTime,
    /// Complete backups, oldest start first.
    pub backups: Vec<Backup>,
    pub timelines: Vec<TimelineInfo>,
    /// One per leaf timeline.
    pub lineages: Vec<Lineage>,
    /// The lineage used by default: the leaf with the newest WAL.
    pub main_lineage: Option<u32>,
    pub windows: Vec<Window>,
    pub earliest_restorable: Option<OffsetDateTime>,
    pub latest_restorable: Option<OffsetDateTime>,
    pub freshness: Freshness,
    pub findings: Vec<Finding>,
    pub(crate) segs: HashMap<u32, SegTable>,
    /// Timelines that have a `.history` object (readable or not).
    pub history_tlis: BTreeSet<u32>,
}

/// Most gap findings listed one by one per lineage.
pub const MAX_GAP_FINDINGS: usize = 50;

pub(crate) fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

struct Findings(Vec<Finding>);

impl Findings {
    fn push(&mut self, severity: Severity, code: &str, message: String, object: Option<String>) {
        self.0.push(Finding {
            severity,
            code: code.to_string(),
            message,
            object,
        });
    }
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

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl Timeline {
    /// Computes the timeline with default thresholds.
    pub fn from_index(index: &Index, now: OffsetDateTime) -> Timeline {
        Self::from_index_with(index, now, Options::default())
    }

    /// Computes the timeline.
    pub fn from_index_with(index: &Index, now: OffsetDateTime, opts: Options) -> Timeline {
        let segsize = index.segment_size;
        let mut f = Findings(Vec::new());
        let name = |tli: u32, n: u64| wal_file_name(tli, n, segsize);

        // 1. WAL objects.
        let mut segs: HashMap<u32, SegTable> = HashMap::new();
        let mut history_tlis = BTreeSet::new();
        let mut dup_examples: Vec<String> = Vec::new();
        let mut dups = 0u64;
        let mut zero = Vec::new();
        let mut other = Vec::new();
        let mut legacy_dot = 0u64;
        let mut sidecars_24 = 0u64;
        let mut partials = 0u64;
        let mut newest_wal: Option<i64> = None;
        {
            let mut cur_tli = u32::MAX;
            let mut cur: Option<&mut SegTable> = None;
            for w in &index.wal {
                if w.size == 0 && w.key.kind != WalKind::Metadata {
                    zero.push(w.name.clone());
                }
                match w.key.kind {
                    WalKind::Segment => {
                        if w.key.compression == Compression::LegacyDot {
                            legacy_dot += 1;
                        }
                        if w.key.tli != cur_tli || cur.is_none() {
                            cur_tli = w.key.tli;
                            cur = Some(segs.entry(cur_tli).or_default());
                        }
                        if let Some(t) = cur.as_deref_mut() {
                            if t.segnos.last() == Some(&w.key.segno) {
                                dups += 1;
                                if dup_examples.len() < 3 {
                                    dup_examples.push(w.name.clone());
                                }
                                continue;
                            }
                            if t.segnos.last().is_some_and(|&l| l > w.key.segno) {
                                // Not sorted (should not happen: the index keeps names sorted); keep it correct.
                                let pos = t.segnos.partition_point(|&s| s < w.key.segno);
                                if t.segnos.get(pos) == Some(&w.key.segno) {
                                    dups += 1;
                                    continue;
                                }
                                t.segnos.insert(pos, w.key.segno);
                                t.sizes.insert(pos, w.size);
                                t.mtimes.insert(pos, w.modified_ms);
                            } else {
                                t.segnos.push(w.key.segno);
                                t.sizes.push(w.size);
                                t.mtimes.push(w.modified_ms);
                            }
                        }
                        newest_wal =
                            Some(newest_wal.map_or(w.modified_ms, |n: i64| n.max(w.modified_ms)));
                    }
                    WalKind::History => {
                        history_tlis.insert(w.key.tli);
                    }
                    WalKind::Partial => partials += 1,
                    WalKind::Metadata => {
                        if w.name.len() == 29 {
                            sidecars_24 += 1;
                        }
                    }
                    WalKind::BackupHistory | WalKind::Delta => {}
                    WalKind::Other => other.push(w.name.clone()),
                }
            }
        }
        if dups > 0 {
            f.push(
                Severity::Warning,
                "duplicate_compression",
                format!(
                    "{} stored more than once with different compression extensions (e.g. {}). Restores use whichever \
                     wal-g finds first; check that the copies are identical and delete the extra ones.",
                    plural(dups, "WAL segment is", "WAL segments are"),
                    dup_examples.join(", ")
                ),
                dup_examples.first().cloned(),
            );
        }
        if !zero.is_empty() {
            f.push(
                Severity::Warning,
                "zero_size_objects",
                format!(
                    "{} in wal_005/ {} empty (e.g. {}): an interrupted upload. Restores that need them will fail.",
                    plural(zero.len() as u64, "object", "objects"),
                    if zero.len() == 1 { "is" } else { "are" },
                    zero.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                ),
                zero.first().cloned(),
            );
        }
        if !other.is_empty() {
            f.push(
                Severity::Warning,
                "unknown_wal_objects",
                format!(
                    "{} in wal_005/ {} not named like anything wal-g or PostgreSQL writes (e.g. {}); they were ignored.",
                    plural(other.len() as u64, "object", "objects"),
                    if other.len() == 1 { "is" } else { "are" },
                    other.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                ),
                other.first().cloned(),
            );
        }
        if legacy_dot > 0 {
            f.push(
                Severity::Info,
                "legacy_trailing_dot",
                format!(
                    "{} named with a trailing dot (wal-g's old naming for uncompressed objects); they are read normally.",
                    plural(legacy_dot, "WAL segment is", "WAL segments are")
                ),
                None,
            );
        }
        if sidecars_24 > 0 {
            f.push(
                Severity::Info,
                "wal_metadata_sidecars",
                format!(
                    "{} (WALG_UPLOAD_WAL_METADATA) found. They are not segments, though wal-g's own wal-show and \
                     wal-verify count them as segments; this reader does not.",
                    plural(sidecars_24, "WAL metadata .json file", "WAL metadata .json files")
                ),
                None,
            );
        }
        let _ = partials;

        // 2. Histories.
        let mut histories: BTreeMap<u32, Vec<HistoryRecord>> = BTreeMap::new();
        for h in index.histories.values() {
            let obj = Some(format!("wal_005/{}", h.name));
            match &h.records {
                Doc::Ok(r) => {
                    if r.windows(2).any(|w| w[0].parent >= w[1].parent)
                        || r.last().is_some_and(|l| l.parent >= h.tli)
                    {
                        f.push(
                            Severity::Warning,
                            "history_out_of_order",
                            format!(
                                "Timeline history {} lists timelines that do not increase; PostgreSQL would reject it.",
                                h.name
                            ),
                            obj,
                        );
                        continue;
                    }
                    if h.bad_lines > 0 {
                        f.push(
                            Severity::Info,
                            "history_unreadable_lines",
                            format!("{} unreadable line(s) in {} were skipped.", h.bad_lines, h.name),
                            obj,
                        );
                    }
                    histories.insert(h.tli, r.clone());
                }
                Doc::Error(e) => f.push(
                    Severity::Warning,
                    "unreadable_history",
                    format!(
                        "Cannot read timeline history {}: {e}. Timeline {} is treated as having no known parent.",
                        h.name, h.tli
                    ),
                    obj,
                ),
                Doc::Missing => {}
            }
        }

        // 3. Backups.
        let mut backups: Vec<Backup> = Vec::new();
        let mut sysids: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for e in index.backups.values() {
            let obj = Some(format!("basebackups_005/{}", e.name));
            let parsed = BackupName::parse(&e.name);
            if parsed.is_none() {
                f.push(
                    Severity::Warning,
                    "bad_backup_name",
                    format!(
                        "Backup sentinel '{}' does not follow wal-g's naming (base_<24 hex digits>[_D_<24 hex digits>]); \
                         it was ignored.",
                        e.name
                    ),
                    obj,
                );
                continue;
            }
            let Some(bn) = parsed else { continue };
            let s = match &e.sentinel {
                Doc::Ok(s) => s,
                Doc::Error(err) => {
                    f.push(
                        Severity::Error,
                        "unreadable_sentinel",
                        format!(
                            "Backup {} cannot be used: its sentinel is unreadable ({err}).",
                            e.name
                        ),
                        obj,
                    );
                    continue;
                }
                Doc::Missing => continue,
            };
            for p in &s.problems {
                f.push(
                    Severity::Warning,
                    "sentinel_field",
                    format!("Sentinel of {}: {p}.", e.name),
                    obj.clone(),
                );
            }
            let meta = match &e.metadata {
                Doc::Ok(m) => {
                    for p in &m.problems {
                        f.push(
                            Severity::Warning,
                            "metadata_field",
                            format!("metadata.json of {}: {p}.", e.name),
                            obj.clone(),
                        );
                    }
                    Some(m)
                }
                Doc::Error(err) => {
                    f.push(
                        Severity::Warning,
                        "unreadable_metadata",
                        format!("metadata.json of {} is unreadable ({err}); the sentinel's values are used.", e.name),
                        obj.clone(),
                    );
                    None
                }
                Doc::Missing => None,
            };
            let mut problems = Vec::new();
            let start_lsn = s.lsn.or(meta.and_then(|m| m.start_lsn));
            let finish_lsn = s.finish_lsn.or(meta.and_then(|m| m.finish_lsn));
            let start_time = meta.and_then(|m| m.start_time).or(s.start_time);
            let mut finish_time = meta.and_then(|m| m.finish_time).or(s.finish_time);
            let finish_time_approximate = finish_time.is_none();
            if finish_time.is_none() {
                finish_time = Some(ms_to_time(e.sentinel_modified_ms));
            }
            let permanent = meta
                .and_then(|m| m.is_permanent)
                .or(s.is_permanent)
                .unwrap_or(false);
            if let (Some(m), Some(sp)) = (meta.and_then(|m| m.is_permanent), s.is_permanent) {
                if m != sp {
                    f.push(
                        Severity::Info,
                        "stale_sentinel_permanence",
                        format!(
                            "Backup {} is {} according to metadata.json, but its sentinel still says {} (backup-mark \
                             rewrites only metadata.json). metadata.json is used.",
                            e.name,
                            if m { "permanent" } else { "not permanent" },
                            if sp { "permanent" } else { "not permanent" }
                        ),
                        obj.clone(),
                    );
                }
            }
            match start_lsn {
                None => problems.push("its sentinel has no start LSN".to_string()),
                Some(l) => {
                    if let Some(ns) = bn.start_segment(segsize) {
                        if ns != segment_of(l, segsize) && bn.wale_offset.is_none() {
                            f.push(
                                Severity::Warning,
                                "name_lsn_mismatch",
                                format!(
                                    "Backup {} starts at {} but its name points at segment {}; WALG_PG_WAL_SIZE may not \
                                     match the cluster's WAL segment size ({} MiB assumed).",
                                    e.name,
                                    Lsn(l),
                                    bn.start_wal,
                                    segsize >> 20
                                ),
                                obj.clone(),
                            );
                        }
                    }
                }
            }
            if let (Some(a), Some(b)) = (start_lsn, finish_lsn) {
                if b < a {
                    problems.push(format!(
                        "its finish LSN {} is before its start LSN {}",
                        Lsn(b),
                        Lsn(a)
                    ));
                }
            }
            // Data present?
            match index.folders.get(&e.name) {
                None => problems.push("its data folder is missing".to_string()),
                Some(fo) => {
                    let data = fo
                        .tars
                        .iter()
                        .any(|t| t.starts_with("part_") || t.starts_with("copy_"));
                    let control = fo.tars.iter().any(|t| t.starts_with("pg_control.tar"));
                    if !data {
                        problems.push("it has no data tar (tar_partitions/part_*)".to_string());
                    }
                    if !control && bn.wale_offset.is_none() {
                        problems.push("pg_control.tar is missing".to_string());
                    }
                }
            }
            let sid = s
                .system_identifier
                .or(meta.and_then(|m| m.system_identifier));
            if let Some(id) = sid {
                sysids.entry(id).or_default().push(e.name.clone());
            }
            if e.metadata == Doc::Missing {
                f.push(
                    Severity::Info,
                    "missing_metadata",
                    format!(
                        "Backup {} has no metadata.json (old wal-g or WAL-E); times and permanence come from the sentinel.",
                        e.name
                    ),
                    obj.clone(),
                );
            }
            backups.push(Backup {
                name: e.name.clone(),
                timeline: bn.timeline,
                start_lsn,
                finish_lsn,
                start_time,
                finish_time,
                finish_time_approximate,
                permanent,
                delta_from: s.delta_from.clone(),
                delta_chain: Vec::new(),
                system_identifier: sid,
                pg_version: meta.and_then(|m| m.pg_version).or(s.pg_version),
                hostname: meta.and_then(|m| m.hostname.clone()).or(s.hostname.clone()),
                compressed_size: meta.and_then(|m| m.compressed_size).or(s.compressed_size),
                uncompressed_size: meta
                    .and_then(|m| m.uncompressed_size)
                    .or(s.uncompressed_size),
                sentinel_modified: ms_to_time(e.sentinel_modified_ms),
                restorable: false,
                problems,
                windows: Vec::new(),
            });
        }
        for b in &backups {
            if !b.problems.is_empty() {
                f.push(
                    Severity::Error,
                    "backup_incomplete",
                    format!(
                        "Backup {} cannot be restored: {}.",
                        b.name,
                        b.problems.join("; ")
                    ),
                    Some(format!("basebackups_005/{}", b.name)),
                );
            }
        }
        // Delta chains.
        let by_name: HashMap<String, usize> = backups
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let full_names: HashMap<String, Option<String>> = index
            .backups
            .values()
            .map(|e| {
                (
                    e.name.clone(),
                    e.sentinel.ok().and_then(|s| s.delta_full_name.clone()),
                )
            })
            .collect();
        for i in 0..backups.len() {
            let mut chain = Vec::new();
            let mut cur = backups[i].delta_from.clone();
            let mut broken = None;
            while let Some(p) = cur {
                if chain.contains(&p) || chain.len() > 10_000 || p == backups[i].name {
                    broken = Some(format!("its delta chain loops at {p}"));
                    break;
                }
                match by_name.get(&p) {
                    None => {
                        broken = Some(format!("its delta parent {p} does not exist (no sentinel)"));
                        chain.push(p);
                        break;
                    }
                    Some(&j) => {
                        if !backups[j].problems.is_empty() {
                            broken = Some(format!(
                                "its delta parent {p} is unusable ({})",
                                backups[j].problems.join("; ")
                            ));
                        }
                        chain.push(p);
                        cur = backups[j].delta_from.clone();
                    }
                }
            }
            if let Some(b) = broken {
                f.push(
                    Severity::Error,
                    "broken_delta_chain",
                    format!("Delta backup {} cannot be restored: {b}.", backups[i].name),
                    Some(format!("basebackups_005/{}", backups[i].name)),
                );
                backups[i].problems.push(b);
            } else if let (Some(root), Some(Some(declared))) =
                (chain.last(), full_names.get(&backups[i].name))
            {
                if root != declared {
                    f.push(
                        Severity::Warning,
                        "delta_full_name_mismatch",
                        format!(
                            "Delta backup {} says its full backup is {declared}, but its chain ends at {root}.",
                            backups[i].name
                        ),
                        Some(format!("basebackups_005/{}", backups[i].name)),
                    );
                }
            }
            backups[i].delta_chain = chain;
        }
        if sysids.len() > 1 {
            let desc: Vec<String> = sysids
                .iter()
                .map(|(id, names)| {
                    format!("{id} ({})", plural(names.len() as u64, "backup", "backups"))
                })
                .collect();
            f.push(
                Severity::Error,
                "mixed_system_identifiers",
                format!(
                    "Backups from more than one database cluster share this prefix (system identifiers {}). WAL names \
                     collide between clusters, and wal-g's retention may delete the wrong cluster's files. Give each \
                     cluster its own prefix.",
                    desc.join(", ")
                ),
                None,
            );
        }
        // Garbage folders.
        let newest_sentinel = index
            .backups
            .values()
            .map(|b| b.sentinel_modified_ms)
            .max()
            .unwrap_or(i64::MIN);
        for (name, fo) in &index.folders {
            if index.backups.contains_key(name) {
                continue;
            }
            let recent = (now - ms_to_time(fo.newest_modified_ms)).whole_seconds()
                < opts.in_progress_seconds;
            if recent && fo.newest_modified_ms >= newest_sentinel {
                f.push(
                    Severity::Info,
                    "backup_in_progress",
                    format!(
                        "Backup {name} has data but no sentinel yet: probably still uploading."
                    ),
                    Some(format!("basebackups_005/{name}/")),
                );
            } else {
                f.push(
                    Severity::Warning,
                    "garbage_folder",
                    format!(
                        "basebackups_005/{name}/ holds {} ({}) but no sentinel: a failed or half-deleted backup. It \
                         cannot be restored; `wal-g delete garbage` removes it.",
                        plural(fo.objects, "object", "objects"),
                        human_bytes(fo.bytes)
                    ),
                    Some(format!("basebackups_005/{name}/")),
                );
            }
        }
        if !index.stray_keys.is_empty() {
            f.push(
                Severity::Info,
                "stray_objects",
                format!(
                    "{} in basebackups_005/ {} neither a sentinel nor inside a backup folder (e.g. {}); ignored.",
                    plural(index.stray_keys.len() as u64, "object", "objects"),
                    if index.stray_keys.len() == 1 { "is" } else { "are" },
                    index.stray_keys.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                ),
                None,
            );
        }

        // 4. Timeline tree.
        let mut all_tlis: BTreeSet<u32> = segs.keys().copied().collect();
        all_tlis.extend(histories.keys().copied());
        all_tlis.extend(history_tlis.iter().copied());
        all_tlis.extend(backups.iter().map(|b| b.timeline));
        // Full history (ancestors) per timeline; a missing history makes the timeline a root.
        let hist_of =
            |t: u32| -> Vec<HistoryRecord> { histories.get(&t).cloned().unwrap_or_default() };
        for &t in &all_tlis {
            if t > 1 && !histories.contains_key(&t) && !history_tlis.contains(&t) {
                f.push(
                    Severity::Warning,
                    "missing_history",
                    format!(
                        "Timeline {t} has no {t:08X}.history file, so its parent and switch point are unknown; it is \
                         treated as a root. recovery_target_timeline=latest cannot reach it from an older timeline."
                    ),
                    Some(format!("wal_005/{t:08X}.history")),
                );
            }
            if t > 1
                && histories.contains_key(&t)
                && !segs.contains_key(&t)
                && !backups.iter().any(|b| b.timeline == t)
            {
                f.push(
                    Severity::Info,
                    "history_without_wal",
                    format!(
                        "Timeline {t} has a history file but no WAL segments: it was created (promotion or PITR) but \
                         never archived WAL, or its WAL was deleted."
                    ),
                    Some(format!("wal_005/{t:08X}.history")),
                );
            }
            // Validate that each child's history starts with its parent's history.
            if let Some(h) = histories.get(&t) {
                if let Some(last) = h.last() {
                    if let Some(ph) = histories.get(&last.parent) {
                        if h.len() != ph.len() + 1
                            || h.iter()
                                .zip(ph.iter())
                                .any(|(a, b)| a.parent != b.parent || a.switch_lsn != b.switch_lsn)
                        {
                            f.push(
                                Severity::Warning,
                                "history_mismatch",
                                format!(
                                    "The history of timeline {t} does not start with the history of its parent {}; one \
                                     of the .history files was edited or comes from another cluster.",
                                    last.parent
                                ),
                                Some(format!("wal_005/{t:08X}.history")),
                            );
                        }
                    }
                }
            }
        }
        let in_other_history: BTreeSet<u32> = histories
            .values()
            .flat_map(|h| h.iter().map(|r| r.parent))
            .collect();
        let leaves: Vec<u32> = all_tlis
            .iter()
            .copied()
            .filter(|t| !in_other_history.contains(t))
            .collect();

        // 5. Lineages.
        let empty = SegTable::default();
        let mut lineages: Vec<Lineage> = Vec::new();
        for &leaf in &leaves {
            let h = hist_of(leaf);
            let mut steps = Vec::new();
            let mut begin = 0u64;
            for r in &h {
                steps.push(LineageStep {
                    timeline: r.parent,
                    begin_lsn: begin,
                    end_lsn: Some(r.switch_lsn),
                    owned: None,
                });
                begin = r.switch_lsn;
            }
            steps.push(LineageStep {
                timeline: leaf,
                begin_lsn: begin,
                end_lsn: None,
                owned: None,
            });
            // Ownership: newest timeline wins within a segment.
            for i in 0..steps.len() {
                let from = segment_of(steps[i].begin_lsn, segsize);
                let to = match steps.get(i + 1) {
                    Some(next) => {
                        let nb = segment_of(next.begin_lsn, segsize);
                        if nb <= from {
                            None
                        } else {
                            Some(nb - 1)
                        }
                    }
                    None => Some(u64::MAX),
                };
                steps[i].owned = to.map(|to| SegRange { from, to });
            }
            // Present runs across steps.
            let mut runs: Vec<SegRange> = Vec::new();
            for st in &steps {
                let Some(o) = st.owned else { continue };
                let t = segs.get(&st.timeline).unwrap_or(&empty);
                let a = t.segnos.partition_point(|&s| s < o.from);
                let b = t.segnos.partition_point(|&s| s <= o.to);
                for &n in &t.segnos[a..b] {
                    match runs.last_mut() {
                        Some(r) if r.to + 1 == n => r.to = n,
                        _ => runs.push(SegRange { from: n, to: n }),
                    }
                }
            }
            let mut lin = Lineage {
                leaf,
                steps,
                runs,
                gaps: Vec::new(),
            };
            let mut gaps = Vec::new();
            for w in lin.runs.windows(2) {
                let missing = SegRange {
                    from: w[0].to + 1,
                    to: w[1].from - 1,
                };
                let tli = lin.owner(missing.from).unwrap_or(leaf);
                gaps.push(LineageGap {
                    timeline: tli,
                    missing,
                    after: seg_time(&segs, &lin, w[0].to),
                    before: seg_time(&segs, &lin, w[1].from),
                });
            }
            lin.gaps = gaps;
            lineages.push(lin);
        }
        // Main lineage: the leaf with the newest segment (ties: highest timeline).
        let main_lineage = lineages
            .iter()
            .map(|l| {
                let newest = l
                    .runs
                    .last()
                    .and_then(|r| seg_time(&segs, l, r.to))
                    .map(|t| t.unix_timestamp())
                    .unwrap_or(i64::MIN);
                (newest, l.leaf)
            })
            .max()
            .map(|x| x.1);
        if leaves.len() > 1 {
            let leaf_desc: Vec<String> = leaves.iter().map(|l| l.to_string()).collect();
            f.push(
                Severity::Warning,
                "branches",
                format!(
                    "The timelines branch: {} are each the end of a different history (timelines {}). Restores follow \
                     timeline {} unless you choose another.",
                    plural(leaves.len() as u64, "timeline", "timelines"),
                    leaf_desc.join(", "),
                    main_lineage.map(|m| m.to_string()).unwrap_or_default()
                ),
                None,
            );
        }

        // 6. Per-timeline info (wal-show view) and abandoned segments.
        let mut timelines = Vec::new();
        for &t in &all_tlis {
            let table = segs.get(&t).unwrap_or(&empty);
            let mut gaps = Vec::new();
            for w in table.segnos.windows(2) {
                if w[1] > w[0] + 1 {
                    gaps.push(SegRange {
                        from: w[0] + 1,
                        to: w[1] - 1,
                    });
                }
            }
            let h = histories.get(&t);
            // Earliest switch from t to any child.
            let child_switch = histories
                .values()
                .filter_map(|hh| hh.iter().find(|r| r.parent == t).map(|r| r.switch_lsn))
                .min();
            let mut abandoned = None;
            let mut abandoned_segments = 0;
            if let Some(sw) = child_switch {
                let first_child_seg = segment_of(sw, segsize);
                let a = table.segnos.partition_point(|&s| s < first_child_seg);
                if a < table.segnos.len() {
                    abandoned_segments = (table.segnos.len() - a) as u64;
                    abandoned = Some(SegRange {
                        from: table.segnos[a],
                        to: table.segnos[table.segnos.len() - 1],
                    });
                }
            }
            if let Some(ab) = abandoned {
                f.push(
                    Severity::Warning,
                    "abandoned_segments",
                    format!(
                        "Timeline {t} has {} from {} to {} after it switched to a new timeline at {}. They belong to an \
                         abandoned branch (the old primary kept writing: split brain?) and are never used for recovery \
                         of the newer timeline.",
                        plural(abandoned_segments, "segment", "segments"),
                        name(t, ab.from),
                        name(t, ab.to),
                        Lsn(child_switch.unwrap_or(0))
                    ),
                    Some(format!("wal_005/{}", name(t, ab.from))),
                );
            }
            timelines.push(TimelineInfo {
                timeline: t,
                parent: h.and_then(|h| h.last()).map(|r| r.parent),
                switch_lsn: h.and_then(|h| h.last()).map(|r| r.switch_lsn),
                has_history: history_tlis.contains(&t),
                history: h.cloned().unwrap_or_default(),
                first_segment: table.segnos.first().copied(),
                last_segment: table.segnos.last().copied(),
                segments: table.segnos.len() as u64,
                bytes: table.sizes.iter().sum(),
                gaps,
                abandoned,
                abandoned_segments,
                newest_modified: table.mtimes.iter().max().map(|&m| ms_to_time(m)),
            });
        }

        // 7. Backups against WAL: consistency and windows.
        for b in backups.iter_mut() {
            let (Some(start), Some(s), Some(c)) = (
                b.start_lsn,
                b.start_segment(segsize),
                b.consistency_segment(segsize),
            ) else {
                continue;
            };
            let table = segs.get(&b.timeline).unwrap_or(&empty);
            let need = c.saturating_sub(s) + 1;
            let have = table.count_in(s, c);
            if have < need {
                let first_missing = (s..=c).find(|&n| table.find(n).is_none()).unwrap_or(s);
                let msg = format!(
                    "the WAL needed to make it consistent is missing ({} of {} from {} to {}, first missing {})",
                    need - have,
                    plural(need, "segment", "segments"),
                    name(b.timeline, s),
                    name(b.timeline, c),
                    name(b.timeline, first_missing)
                );
                f.push(
                    Severity::Error,
                    "missing_consistency_wal",
                    format!("Backup {} cannot be restored: {msg}.", b.name),
                    Some(format!("wal_005/{}", name(b.timeline, first_missing))),
                );
                b.problems.push(msg);
            }
            for lin in &lineages {
                if !lin.contains(b.timeline, start) {
                    continue;
                }
                if let Some(run) = lin.run_containing(s) {
                    if run.to >= c {
                        if let Some(t) = seg_time(&segs, lin, run.to) {
                            b.windows.push(BackupWindow {
                                lineage: lin.leaf,
                                end_segment: run.to,
                                end_lsn: (run.to + 1).saturating_mul(segsize),
                                end_time: t,
                            });
                        }
                    }
                }
            }
            b.restorable = b.problems.is_empty() && !b.windows.is_empty();
        }
        backups.sort_by(|a, b| (a.start_lsn, &a.name).cmp(&(b.start_lsn, &b.name)));

        // latest(b) checks: which timeline recovery_target_timeline=latest would pick from each backup's timeline.
        let latest_from = |b: u32| -> u32 {
            let mut t = b;
            while history_tlis.contains(&(t + 1)) {
                t += 1;
            }
            t
        };
        let mut seen_tli = BTreeSet::new();
        for b in backups.iter().filter(|b| b.restorable) {
            if !seen_tli.insert(b.timeline) {
                continue;
            }
            let l = latest_from(b.timeline);
            if l == b.timeline {
                continue;
            }
            let lh = hist_of(l);
            let ok = lh
                .iter()
                .any(|r| r.parent == b.timeline && b.start_lsn.is_some_and(|s| s < r.switch_lsn));
            if !ok {
                f.push(
                    Severity::Warning,
                    "latest_not_a_child",
                    format!(
                        "For backups on timeline {}, recovery_target_timeline=latest (PostgreSQL 12+) would pick timeline \
                         {l}, which did not branch from them; recovery would stop with \"requested timeline {l} is not \
                         a child of this server's history\". Set recovery_target_timeline explicitly.",
                        b.timeline
                    ),
                    None,
                );
            } else if Some(l) != main_lineage && leaves.len() > 1 {
                f.push(
                    Severity::Warning,
                    "latest_follows_branch",
                    format!(
                        "For backups on timeline {}, recovery_target_timeline=latest would follow timeline {l}, not \
                         timeline {} which has the newest WAL.",
                        b.timeline,
                        main_lineage.unwrap_or(0)
                    ),
                    None,
                );
            }
        }

        // 8. Windows per lineage.
        let mut windows = Vec::new();
        for lin in &lineages {
            let mut iv: Vec<(OffsetDateTime, OffsetDateTime)> = backups
                .iter()
                .filter(|b| b.restorable)
                .filter_map(|b| {
                    let w = b.windows.iter().find(|w| w.lineage == lin.leaf)?;
                    let from = b.finish_time?;
                    (w.end_time >= from).then_some((from, w.end_time))
                })
                .collect();
            iv.sort();
            for (a, z) in iv {
                match windows.last_mut() {
                    Some(Window { timeline, to, .. }) if *timeline == lin.leaf && a <= *to => {
                        if z > *to {
                            *to = z;
                        }
                    }
                    _ => windows.push(Window {
                        timeline: lin.leaf,
                        from: a,
                        to: z,
                    }),
                }
            }
            // Gaps: harmful after the first restorable backup's start on this lineage.
            let first_start = backups
                .iter()
                .filter(|b| b.restorable && b.windows.iter().any(|w| w.lineage == lin.leaf))
                .filter_map(|b| b.start_segment(segsize))
                .min();
            let mut reported = 0usize;
            let mut unreported = 0u64;
            for g in &lin.gaps {
                if reported >= MAX_GAP_FINDINGS {
                    unreported += 1;
                    continue;
                }
                reported += 1;
                let gname = format!(
                    "{} to {}",
                    name(g.timeline, g.missing.from),
                    name(lin.owner(g.missing.to).unwrap_or(g.timeline), g.missing.to)
                );
                let times = match (g.after, g.before) {
                    (Some(a), Some(b)) => format!(
                        " Times from about {} to {} cannot be restored",
                        short_time(a),
                        short_time(b)
                    ),
                    _ => String::new(),
                };
                let lineage_note = if leaves.len() > 1 {
                    format!(" (lineage of timeline {})", lin.leaf)
                } else {
                    String::new()
                };
                if first_start.is_some_and(|s| g.missing.to >= s) {
                    f.push(
                        Severity::Error,
                        "wal_gap",
                        format!(
                            "WAL gap on timeline {}{lineage_note}: {} missing ({gname}).{times}; a restore must use a \
                             backup taken after the gap.",
                            g.timeline,
                            plural(g.missing.len(), "segment is", "segments are")
                        ),
                        Some(format!("wal_005/{}", name(g.timeline, g.missing.from))),
                    );
                } else {
                    f.push(
                        Severity::Info,
                        "wal_gap_before_backups",
                        format!(
                            "WAL gap on timeline {}{lineage_note} before the oldest usable backup ({gname}); it does not \
                             affect restores.",
                            g.timeline
                        ),
                        Some(format!("wal_005/{}", name(g.timeline, g.missing.from))),
                    );
                }
            }
            if unreported > 0 {
                f.push(
                    Severity::Error,
                    "wal_gap",
                    format!(
                        "{} more WAL gaps on the history of timeline {} are not listed one by one.",
                        unreported, lin.leaf
                    ),
                    None,
                );
            }
        }
        for b in backups.iter().filter(|b| b.permanent && b.restorable) {
            if let Some(w) = b.windows.first() {
                if b.consistency_segment(segsize) == Some(w.end_segment) {
                    f.push(
                        Severity::Info,
                        "permanent_end_point_only",
                        format!(
                            "Permanent backup {} keeps only its own WAL: it can be restored to its end point, not to \
                             later times.",
                            b.name
                        ),
                        Some(format!("basebackups_005/{}", b.name)),
                    );
                }
            }
        }
        let main_windows: Vec<&Window> = windows
            .iter()
            .filter(|w| Some(w.timeline) == main_lineage)
            .collect();
        let earliest_restorable = main_windows.iter().map(|w| w.from).min();
        let latest_restorable = main_windows.iter().map(|w| w.to).max();

        // 9. Freshness and emptiness.
        let newest_backup = backups
            .iter()
            .filter(|b| b.restorable)
            .filter_map(|b| b.finish_time)
            .max();
        let newest_wal = newest_wal.map(ms_to_time);
        let freshness = Freshness {
            newest_wal,
            newest_wal_age_seconds: newest_wal.map(|t| (now - t).whole_seconds()),
            newest_backup,
            newest_backup_age_seconds: newest_backup.map(|t| (now - t).whole_seconds()),
        };
        if index.backups.is_empty() && index.wal.is_empty() && index.folders.is_empty() {
            f.push(
                Severity::Error,
                "empty_storage",
                format!(
                    "Nothing found at {}: no basebackups_005/ and no wal_005/. Check the prefix (and WALG_STORAGE_PREFIX).",
                    index.url
                ),
                None,
            );
        } else if backups.is_empty() {
            f.push(
                Severity::Error,
                "no_backups",
                "No complete base backup: nothing can be restored. Run `wal-g backup-push`."
                    .to_string(),
                None,
            );
        } else if !backups.iter().any(|b| b.restorable) {
            f.push(
                Severity::Error,
                "nothing_restorable",
                "No backup can be restored (see the other findings).".to_string(),
                None,
            );
        }
        if index.wal.iter().all(|w| w.key.kind != WalKind::Segment) && !backups.is_empty() {
            f.push(
                Severity::Error,
                "no_wal",
                "There are backups but no WAL segments in wal_005/: is archive_command running?"
                    .to_string(),
                None,
            );
        }
        if let Some(age) = freshness.newest_wal_age_seconds {
            if age > opts.stale_wal_seconds {
                f.push(
                    Severity::Warning,
                    "stale_wal",
                    format!(
                        "The newest WAL segment is {} old: archiving may have stopped, and recent changes could not be restored.",
                        human_age(age)
                    ),
                    None,
                );
            }
        }
        if let Some(age) = freshness.newest_backup_age_seconds {
            if age > opts.stale_backup_seconds {
                f.push(
                    Severity::Warning,
                    "stale_backup",
                    format!(
                        "The newest restorable base backup finished {} ago; restores will replay a lot of WAL.",
                        human_age(age)
                    ),
                    None,
                );
            }
        }
        // Highest timeline vs newest backup's timeline (wal-verify's timeline check).
        if let (Some(&highest), Some(newest)) = (
            all_tlis.iter().max(),
            backups
                .iter()
                .filter(|b| b.restorable)
                .max_by_key(|b| b.finish_time),
        ) {
            if highest > newest.timeline {
                f.push(
                    Severity::Warning,
                    "backup_behind_timeline",
                    format!(
                        "The newest backup ({}) is on timeline {}, but storage has timeline {highest}: take a new base \
                         backup after a promotion so restores do not depend on the switch.",
                        newest.name, newest.timeline
                    ),
                    None,
                );
            }
        }

        let mut findings = f.0;
        findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
        Timeline {
            url: index.url.clone(),
            segment_size: segsize,
            generated_at: now,
            backups,
            timelines,
            lineages,
            main_lineage,
            windows,
            earliest_restorable,
            latest_restorable,
            freshness,
            findings,
            segs,
            history_tlis,
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

pub(crate) fn seg_time(
    segs: &HashMap<u32, SegTable>,
    lin: &Lineage,
    n: u64,
) -> Option<OffsetDateTime> {
    let tli = lin.owner(n)?;
    let t = segs.get(&tli)?;
    t.find(n).map(|i| ms_to_time(t.mtimes[i]))
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
