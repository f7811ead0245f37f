//! Pass 8, the windows: per lineage, the restorable backups' windows (finish time to the end of their WAL run)
//! merged where they overlap; the lineage's WAL gaps as findings; permanent backups that can only be restored to
//! their end point; the earliest and latest restorable times of the main lineage.
//!
//! Invariants: merged windows are grouped by lineage (in lineage order), ascending and disjoint within one
//! lineage; a gap is an error when it ends at or after the start segment of the lineage's first restorable backup
//! (it cuts a window), information otherwise; at most [`MAX_GAP_FINDINGS`] gaps per lineage are listed one by one.

use super::backups::BackupSet;
use super::findings::{FindingCode, Findings, Severity};
use super::lineages::Lineages;
use super::tree::Tree;
use super::{plural, short_time, Lineage, LineageGap, Window, MAX_GAP_FINDINGS};
use crate::names::wal_file_name;
use time::OffsetDateTime;

/// The merged windows and the restorable range of the main lineage.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    pub merged: Vec<Window>,
    pub earliest_restorable: Option<OffsetDateTime>,
    pub latest_restorable: Option<OffsetDateTime>,
}

/// Runs the pass.
pub(crate) fn merge(
    set: &BackupSet,
    lineages: &Lineages,
    tree: &Tree,
    segsize: u64,
    findings: &mut Findings,
) -> Windows {
    let mut merged = Vec::new();
    for lineage in &lineages.lineages {
        merge_lineage(set, lineage, &mut merged);
        report_gaps(set, lineage, tree.branches(), segsize, findings);
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
fn report_gaps(
    set: &BackupSet,
    lineage: &Lineage,
    branches: bool,
    segsize: u64,
    findings: &mut Findings,
) {
    // Gaps are harmful after the start of the first restorable backup on this lineage.
    let first_start = set
        .restorable()
        .filter(|b| b.windows.iter().any(|w| w.lineage == lineage.leaf))
        .filter_map(|b| b.start_segment(segsize))
        .min();
    let lineage_note = if branches {
        format!(" (lineage of timeline {})", lineage.leaf)
    } else {
        String::new()
    };
    for gap in lineage.gaps.iter().take(MAX_GAP_FINDINGS) {
        report_gap(lineage, gap, first_start, &lineage_note, segsize, findings);
    }
    let unreported = lineage.gaps.len().saturating_sub(MAX_GAP_FINDINGS);
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

fn report_gap(
    lineage: &Lineage,
    gap: &LineageGap,
    first_start: Option<u64>,
    lineage_note: &str,
    segsize: u64,
    findings: &mut Findings,
) {
    let name = |tli: u32, n: u64| wal_file_name(tli, n, segsize);
    let last_owner = lineage.owner(gap.missing.to).unwrap_or(gap.timeline);
    let names = format!(
        "{} to {}",
        name(gap.timeline, gap.missing.from),
        name(last_owner, gap.missing.to)
    );
    let object = Some(format!("wal_005/{}", name(gap.timeline, gap.missing.from)));
    if first_start.is_some_and(|s| gap.missing.to >= s) {
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
    use super::super::fixture::{add_segments, at, backup, empty_index, segment_name, SEG};
    use super::super::{backups, histories, lineages, restorable, tree, wal_scan};
    use super::*;
    use crate::index::{Doc, Index};

    fn run(index: &Index) -> (Windows, Findings) {
        let mut earlier = Findings::default();
        let wal = wal_scan::scan(index, &mut earlier);
        let histories = histories::read(index, &mut earlier);
        let set = backups::collect(index, at(100), Default::default(), &mut earlier);
        let tree = tree::build(&wal, &histories, &set, &mut earlier);
        let lineages = lineages::trace(&tree, &histories, &wal, SEG, &mut earlier);
        let set = restorable::place(set, &lineages, &wal, SEG, &mut earlier);
        let mut findings = Findings::default();
        let windows = merge(&set, &lineages, &tree, SEG, &mut findings);
        (windows, findings)
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
        let mut fixture = backup(1, 2, 3);
        if let Doc::Ok(m) = &mut fixture.metadata {
            m.is_permanent = Some(true);
        }
        fixture.add_to(&mut index);
        let (_, findings) = run(&index);
        assert_eq!(findings.codes(), [FindingCode::PermanentEndPointOnly]);
    }
}
