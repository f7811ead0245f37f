//! Pass 8, the windows: per distinct lineage (a leaf, or an ancestor that kept archiving after a child forked;
//! the other lineages are prefixes of these), the restorable backups' windows (finish time to the end of their WAL run)
//! merged where they overlap; the lineage's WAL gaps as findings; permanent backups that can only be restored to
//! their end point; the earliest and latest restorable times of the main lineage.
//!
//! Invariants: merged windows are grouped by lineage (in lineage order), ascending and disjoint within one
//! lineage; a gap is an error when it ends at or after the start segment of the lineage's first restorable backup
//! (it cuts a window), information otherwise; at most [`MAX_GAP_FINDINGS`] gaps per lineage are listed one by one;
//! lineages share their ancestors' WAL, so a gap is reported once: on the first leaf lineage that has it, else on
//! the first ancestor lineage that kept archiving. A gap among the newest `upload_concurrency` segments of a
//! lineage is `wal_uploading` (a warning, as wal-g's MISSING_UPLOADING); a gap after a permanent backup and before
//! the oldest other usable backup is expected retention (information), since a permanent backup is never the left
//! border of wal-g's `wal-verify`.

use super::backups::BackupSet;
use super::findings::{FindingCode, Findings, Severity};
use super::lineages::Lineages;
use super::tree::Tree;
use super::{plural, short_time, Lineage, LineageGap, Window, MAX_GAP_FINDINGS};
use crate::names::wal_file_name;
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The merged windows and the restorable range of the main lineage.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    pub merged: Vec<Window>,
    pub earliest_restorable: Option<OffsetDateTime>,
    pub latest_restorable: Option<OffsetDateTime>,
}

/// What the pass needs besides the backups and lineages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub tree: &'a Tree,
    pub segsize: u64,
    /// See [`super::Options::upload_concurrency`].
    pub upload_concurrency: u64,
}

/// Runs the pass.
pub(crate) fn merge(
    set: &BackupSet,
    lineages: &Lineages,
    scope: Scope,
    findings: &mut Findings,
) -> Windows {
    let Scope {
        tree,
        segsize,
        upload_concurrency,
    } = scope;
    let mut merged = Vec::new();
    for lineage in &lineages.lineages {
        if lineages.distinct.contains(&lineage.leaf) {
            merge_lineage(set, lineage, &mut merged);
        }
    }
    let mut reported = BTreeSet::new();
    for lineage in lineages.distinct_leaves_first(tree) {
        let note = tree.branches() || !tree.leaves.contains(&lineage.leaf);
        let context = GapContext {
            note,
            segsize,
            upload_concurrency,
        };
        report_gaps(set, lineage, context, &mut reported, findings);
    }
    report_permanent_end_points(set, segsize, findings);
    let main: Vec<&Window> = merged
        .iter()
        .filter(|w| Some(w.timeline) == lineages.main)
        .collect();
    Windows {
        earliest_restorable: main.iter().map(|w| w.from).min(),
        latest_restorable: main.iter().map(|w| w.to).max(),
        merged,
    }
}

/// Appends the merged windows of `lineage` to `merged`.
fn merge_lineage(set: &BackupSet, lineage: &Lineage, merged: &mut Vec<Window>) {
    let mut intervals: Vec<(OffsetDateTime, OffsetDateTime)> = set
        .restorable()
        .filter_map(|b| {
            let window = b.windows.iter().find(|w| w.lineage == lineage.leaf)?;
            let from = b.finish_time?;
            (window.end_time >= from).then_some((from, window.end_time))
        })
        .collect();
    intervals.sort();
    for (from, to) in intervals {
        match merged.last_mut() {
            Some(last) if last.timeline == lineage.leaf && from <= last.to => {
                if to > last.to {
                    last.to = to;
                }
            }
            _ => merged.push(Window {
                timeline: lineage.leaf,
                from,
                to,
            }),
        }
    }
}

/// One finding per gap of the lineage (up to [`MAX_GAP_FINDINGS`], then one for the rest).
/// How gaps of one lineage are told.
#[derive(Debug, Clone, Copy)]
struct GapContext {
    /// Name the lineage in messages.
    note: bool,
    segsize: u64,
    upload_concurrency: u64,
}

fn report_gaps(
    set: &BackupSet,
    lineage: &Lineage,
    context: GapContext,
    reported: &mut BTreeSet<(u32, u64, u64)>,
    findings: &mut Findings,
) {
    let GapContext {
        note: branches,
        segsize,
        upload_concurrency,
    } = context;
    // Gaps are harmful after the start of the first restorable backup on this lineage. A permanent backup is not
    // a left border (wal-g's `checkBackupIsCorrect`): retention keeps only its own WAL, so the hole after it is
    // expected.
    let first_start = set
        .restorable()
        .filter(|b| !b.permanent)
        .filter(|b| b.windows.iter().any(|w| w.lineage == lineage.leaf))
        .filter_map(|b| b.start_segment(segsize))
        .min();
    let first_permanent = set
        .restorable()
        .filter(|b| b.permanent)
        .filter(|b| b.windows.iter().any(|w| w.lineage == lineage.leaf))
        .filter_map(|b| b.consistency_segment(segsize))
        .min();
    let lineage_note = if branches {
        format!(" (lineage of timeline {})", lineage.leaf)
    } else {
        String::new()
    };
    let new_gaps: Vec<&LineageGap> = lineage
        .gaps
        .iter()
        .filter(|g| reported.insert((g.timeline, g.missing.from, g.missing.to)))
        .collect();
    let borders = Borders {
        first_start,
        first_permanent,
        upload_concurrency,
    };
    for gap in new_gaps.iter().take(MAX_GAP_FINDINGS) {
        report_gap(lineage, gap, borders, &lineage_note, segsize, findings);
    }
    let unreported = new_gaps.len().saturating_sub(MAX_GAP_FINDINGS);
    if unreported > 0 {
        findings.push(
            Severity::Error,
            FindingCode::WalGap,
            format!(
                "{} more WAL gaps on the history of timeline {} are not listed one by one.",
                unreported, lineage.leaf
            ),
            None,
        );
    }
}

/// Where gaps start to matter on a lineage.
#[derive(Debug, Clone, Copy)]
struct Borders {
    /// Start segment of the oldest restorable backup that is not permanent.
    first_start: Option<u64>,
    /// Consistency segment of the oldest restorable permanent backup.
    first_permanent: Option<u64>,
    /// See [`super::Options::upload_concurrency`].
    upload_concurrency: u64,
}

fn report_gap(
    lineage: &Lineage,
    gap: &LineageGap,
    borders: Borders,
    lineage_note: &str,
    segsize: u64,
    findings: &mut Findings,
) {
    let Borders {
        first_start,
        first_permanent,
        upload_concurrency,
    } = borders;
    let name = |tli: u32, n: u64| wal_file_name(tli, n, segsize);
    let last_owner = lineage.owner(gap.missing.to).unwrap_or(gap.timeline);
    let names = format!(
        "{} to {}",
        name(gap.timeline, gap.missing.from),
        name(last_owner, gap.missing.to)
    );
    let object = Some(format!("wal_005/{}", name(gap.timeline, gap.missing.from)));
    if lineage.is_uploading(gap, upload_concurrency) {
        report_uploading(
            lineage,
            gap,
            upload_concurrency,
            &names,
            lineage_note,
            segsize,
            findings,
        );
    } else if first_start.is_some_and(|s| gap.missing.to >= s) {
        let times = match (gap.after, gap.before) {
            (Some(a), Some(b)) => format!(
                " Times from about {} to {} cannot be restored",
                short_time(a),
                short_time(b)
            ),
            _ => String::new(),
        };
        findings.push(
            Severity::Error,
            FindingCode::WalGap,
            format!(
                "WAL gap on timeline {}{lineage_note}: {} missing ({names}).{times}; a restore must use a backup \
                 taken after the gap.",
                gap.timeline,
                plural(gap.missing.len(), "segment is", "segments are")
            ),
            object,
        );
    } else if first_permanent.is_some_and(|p| p < gap.missing.from) {
        findings.push(
            Severity::Info,
            FindingCode::WalGapBeforeBackups,
            format!(
                "WAL gap on timeline {}{lineage_note} between a permanent backup and the oldest other usable backup \
                 ({names}): expected after retention, which keeps only a permanent backup's own WAL (wal-g's \
                 wal-verify does not check it either); it does not affect restores.",
                gap.timeline
            ),
            object,
        );
    } else {
        findings.push(
            Severity::Info,
            FindingCode::WalGapBeforeBackups,
            format!(
                "WAL gap on timeline {}{lineage_note} before the oldest usable backup ({names}); it does not affect \
                 restores.",
                gap.timeline
            ),
            object,
        );
    }
}

/// A hole among the newest segments while newer ones exist: parallel `wal-push` uploads still in flight.
fn report_uploading(
    lineage: &Lineage,
    gap: &LineageGap,
    upload_concurrency: u64,
    names: &str,
    lineage_note: &str,
    segsize: u64,
    findings: &mut Findings,
) {
    let end = lineage
        .contiguous_end(upload_concurrency)
        .unwrap_or(gap.missing.from.saturating_sub(1));
    let stop = wal_file_name(lineage.owner(end).unwrap_or(gap.timeline), end, segsize);
    let when = gap
        .after
        .map(|t| format!(" (about {})", short_time(t)))
        .unwrap_or_default();
    let arrive = if gap.missing.len() == 1 {
        "it arrives"
    } else {
        "they arrive"
    };
    findings.push(
        Severity::Warning,
        FindingCode::WalUploading,
        format!(
            "{} missing among the newest WAL on timeline {}{lineage_note} ({names}), probably still uploading: \
             wal-push uploads up to {upload_concurrency} segments in parallel, and wal-g's wal-verify calls this \
             MISSING_UPLOADING. Until {arrive}, a restore to the latest stops at {stop}{when}.",
            plural(gap.missing.len(), "segment is", "segments are"),
            gap.timeline,
        ),
        Some(format!("wal_005/{}", wal_file_name(gap.timeline, gap.missing.from, segsize))),
    );
}

/// A permanent backup whose first window ends at its own consistency point keeps only its own WAL.
fn report_permanent_end_points(set: &BackupSet, segsize: u64, findings: &mut Findings) {
    for backup in set.restorable().filter(|b| b.permanent) {
        let Some(window) = backup.windows.first() else {
            continue;
        };
        if backup.consistency_segment(segsize) == Some(window.end_segment) {
            findings.push(
                Severity::Info,
                FindingCode::PermanentEndPointOnly,
                format!(
                    "Permanent backup {} keeps only its own WAL: it can be restored to its end point, not to later \
                     times.",
                    backup.name
                ),
                Some(format!("basebackups_005/{}", backup.name)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{
        add_segments, at, backup, empty_index, segment_name, BackupFixture, SEG,
    };
    use super::super::{backups, histories, lineages, restorable, tree, wal_scan};
    use super::*;
    use crate::index::{Doc, Index};

    /// The pass with no tip tolerance (every hole is lost WAL), as the gap tests below model.
    fn run(index: &Index) -> (Windows, Findings) {
        run_with(index, 0)
    }

    fn run_with(index: &Index, upload_concurrency: u64) -> (Windows, Findings) {
        let mut earlier = Findings::default();
        let wal = wal_scan::scan(index, &mut earlier);
        let histories = histories::read(index, &mut earlier);
        let set = backups::collect(index, at(100), Default::default(), &mut earlier);
        let tree = tree::build(&wal, &histories, &set, &mut earlier);
        let lineages = lineages::trace(&tree, &histories, &wal, SEG, &mut earlier);
        let set = restorable::place(set, &lineages, &wal, SEG, &mut earlier);
        let mut findings = Findings::default();
        let scope = Scope {
            tree: &tree,
            segsize: SEG,
            upload_concurrency,
        };
        let windows = merge(&set, &lineages, scope, &mut findings);
        (windows, findings)
    }

    /// `backup(tli, start, end)` marked permanent the way `wal-g backup-mark` does, in its metadata (which
    /// `backups::collect` reads before the sentinel).
    fn permanent_backup(tli: u32, start: u64, end: u64) -> BackupFixture {
        let mut fixture = backup(tli, start, end);
        if let Doc::Ok(m) = &mut fixture.metadata {
            m.is_permanent = Some(true);
        }
        fixture
    }

    #[test]
    fn overlapping_windows_merge_and_a_gap_splits_them() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 5);
        add_segments(&mut index, 1, 8, 12);
        backup(1, 1, 2).add_to(&mut index);
        backup(1, 3, 4).add_to(&mut index);
        backup(1, 9, 10).add_to(&mut index);
        let (windows, findings) = run(&index);
        let spans: Vec<_> = windows
            .merged
            .iter()
            .map(|w| (w.timeline, w.from, w.to))
            .collect();
        assert_eq!(spans, [(1, at(2), at(5)), (1, at(10), at(12))]);
        assert_eq!(windows.earliest_restorable, Some(at(2)));
        assert_eq!(windows.latest_restorable, Some(at(12)));
        let gaps = findings.with_code(FindingCode::WalGap);
        assert_eq!(gaps.len(), 1);
        assert_eq!(
            gaps[0].message,
            format!(
                "WAL gap on timeline 1: 2 segments are missing ({} to {}). Times from about 2026-01-01 00:05 UTC \
                 to 2026-01-01 00:08 UTC cannot be restored; a restore must use a backup taken after the gap.",
                segment_name(1, 6),
                segment_name(1, 7)
            )
        );
    }

    #[test]
    fn a_gap_before_every_backup_is_information() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 2);
        add_segments(&mut index, 1, 4, 9);
        backup(1, 5, 6).add_to(&mut index);
        let (windows, findings) = run(&index);
        assert_eq!(windows.merged.len(), 1);
        assert_eq!(findings.codes(), [FindingCode::WalGapBeforeBackups]);
    }

    #[test]
    fn many_gaps_are_summed_up_after_the_first_fifty() {
        let mut index = empty_index();
        for n in 0..=(MAX_GAP_FINDINGS as u64 + 3) {
            add_segments(&mut index, 1, 2 * n + 1, 2 * n + 1);
        }
        backup(1, 1, 1).add_to(&mut index);
        let (_, findings) = run(&index);
        let gaps = findings.with_code(FindingCode::WalGap);
        assert_eq!(gaps.len(), MAX_GAP_FINDINGS + 1);
        assert_eq!(
            gaps[MAX_GAP_FINDINGS].message,
            "3 more WAL gaps on the history of timeline 1 are not listed one by one."
        );
    }

    #[test]
    fn a_permanent_backup_without_later_wal_is_noted() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 2, 3);
        permanent_backup(1, 2, 3).add_to(&mut index);
        let (_, findings) = run(&index);
        assert_eq!(findings.codes(), [FindingCode::PermanentEndPointOnly]);
    }

    /// wal-g archives a backup's stop segment before it writes FinishTime (`backup_push_handler.go`), so a
    /// permanent backup that keeps only its own WAL is restorable to its end point, never "until" a time before it
    /// finished.
    #[test]
    fn a_permanent_backup_with_only_its_own_wal_is_restorable_until_its_finish() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 2, 2);
        crate::timeline::fixture::add_wal(
            &mut index,
            &format!("{}.lz4", segment_name(1, 3)),
            100,
            super::super::fixture::ms(2),
        );
        let name = permanent_backup(1, 2, 3).add_to(&mut index);
        let report = crate::timeline::BucketTimeline::from_index(&index, at(100)).report();
        let b = report.backups.iter().find(|b| b.name == name).unwrap();
        assert!(b.restorable, "{b:?}");
        assert_eq!(b.restorable_until, b.finish_time, "{b:?}");
    }

    /// wal-g's retention keeps a permanent backup's own WAL only (`delete_util.go`: `[seg(start_lsn - 1),
    /// seg(finish_lsn - 1)]`), and `wal-verify` never takes a permanent backup as the left border
    /// (`integrity_check_runner.go#checkBackupIsCorrect`): the hole after it is expected, not an error.
    #[test]
    fn the_hole_after_a_permanent_backup_is_expected_retention() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 2, 3);
        permanent_backup(1, 2, 3).add_to(&mut index);
        add_segments(&mut index, 1, 40, 80);
        backup(1, 41, 42).add_to(&mut index);
        let (_, findings) = run_with(&index, 16);
        assert_eq!(
            findings.codes(),
            [
                FindingCode::WalGapBeforeBackups,
                FindingCode::PermanentEndPointOnly
            ]
        );
        let gap = &findings.with_code(FindingCode::WalGapBeforeBackups)[0];
        assert!(
            gap.message.contains("expected after retention"),
            "{}",
            gap.message
        );
    }

    /// wal-g's `wal-verify` marks missing segments among the `WALG_UPLOAD_CONCURRENCY` (default 16) below the
    /// newest one MISSING_UPLOADING, a warning (`integrity_check_runner.go#runWalIntegrityScan`).
    #[test]
    fn a_hole_among_the_newest_segments_is_probably_uploading() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 40);
        add_segments(&mut index, 1, 42, 43);
        backup(1, 2, 3).add_to(&mut index);
        let (windows, findings) = run_with(&index, 16);
        assert_eq!(findings.codes(), [FindingCode::WalUploading]);
        let uploading = &findings.with_code(FindingCode::WalUploading)[0];
        assert_eq!(uploading.severity, Severity::Warning);
        assert!(
            uploading.message.starts_with(&format!(
                "1 segment is missing among the newest WAL on timeline 1 ({} to {}), probably still uploading",
                segment_name(1, 41),
                segment_name(1, 41)
            )),
            "{}",
            uploading.message
        );
        assert!(uploading.message.ends_with(&format!(
            "Until it arrives, a restore to the latest stops at {} (about 2026-01-01 00:40 UTC).",
            segment_name(1, 40)
        )));
        // The window still ends at the hole.
        assert_eq!(windows.latest_restorable, Some(at(40)));
        // Farther from the newest segment, the same hole is lost WAL.
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 40);
        add_segments(&mut index, 1, 42, 60);
        backup(1, 2, 3).add_to(&mut index);
        let (_, findings) = run_with(&index, 16);
        assert_eq!(findings.codes(), [FindingCode::WalGap]);
    }
}
