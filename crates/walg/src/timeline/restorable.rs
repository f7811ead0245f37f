//! Pass 7, backups against the WAL: whether each backup's consistency WAL is present, its window on each lineage
//! it belongs to, whether it is restorable; then what `recovery_target_timeline=latest` would pick from each
//! backup timeline.
//!
//! Invariants: the consistency WAL of a backup is `seg(start) ..= seg(finish - 1)` on its own timeline; a backup
//! serves a lineage only if its consistency point (the end of its backup-end record, `finish_lsn`) lies before
//! the lineage leaves the backup's timeline (PostgreSQL otherwise stops with "WAL ends before end of online
//! backup"); a window on a lineage ends at the last segment reached contiguously from the start segment and needs
//! that run to cover the consistency segment; a backup is restorable iff it has no problem and at least one
//! window, and a backup that is not restorable always has a problem saying why. The backups come out sorted by
//! start LSN, then name.

use super::backups::BackupSet;
use super::findings::{FindingCode, Findings, Severity};
use super::histories::Histories;
use super::lineages::Lineages;
use super::wal_scan::WalScan;
use super::{plural, Backup, BackupWindow};
use crate::names::wal_file_name;
use std::collections::BTreeSet;

/// Runs the first half of the pass: consistency, windows and restorability, then the sort.
pub(crate) fn place(
    mut set: BackupSet,
    lineages: &Lineages,
    wal: &WalScan,
    segsize: u64,
    findings: &mut Findings,
) -> BackupSet {
    for backup in set.backups.iter_mut() {
        place_one(backup, lineages, wal, segsize, findings);
    }
    set.backups
        .sort_by(|a, b| (a.start_lsn, &a.name).cmp(&(b.start_lsn, &b.name)));
    set
}

fn place_one(
    backup: &mut Backup,
    lineages: &Lineages,
    wal: &WalScan,
    segsize: u64,
    findings: &mut Findings,
) {
    let (Some(start_lsn), Some(start), Some(consistent)) = (
        backup.start_lsn,
        backup.start_segment(segsize),
        backup.consistency_segment(segsize),
    ) else {
        return;
    };
    check_consistency_wal(backup, start, consistent, wal, segsize, findings);
    let consistency_point = consistency_point(backup, start_lsn);
    for lineage in &lineages.lineages {
        if !lineage.contains(backup.timeline, consistency_point) {
            continue;
        }
        let Some(run) = lineage.run_containing(start) else {
            continue;
        };
        if run.to < consistent {
            continue;
        }
        if let Some(end_time) = wal.time_on(lineage, run.to) {
            backup.windows.push(BackupWindow {
                lineage: lineage.leaf,
                end_segment: run.to,
                end_lsn: (run.to + 1).saturating_mul(segsize),
                end_time,
            });
        }
    }
    if backup.problems.is_empty() && backup.windows.is_empty() {
        backup.problems.push(format!(
            "no timeline's WAL reaches from its start segment {} to its consistency segment {} without a gap",
            wal_file_name(backup.timeline, start, segsize),
            wal_file_name(backup.timeline, consistent, segsize)
        ));
    }
    backup.restorable = backup.problems.is_empty() && !backup.windows.is_empty();
}

/// The last LSN of the backup's backup-end record: recovery must reach it on the backup's own timeline.
fn consistency_point(backup: &Backup, start_lsn: u64) -> u64 {
    backup
        .finish_lsn
        .filter(|&finish| finish > start_lsn)
        .map_or(start_lsn, |finish| finish - 1)
}

/// Every segment from `start` to `consistent` on the backup's timeline must be present.
fn check_consistency_wal(
    backup: &mut Backup,
    start: u64,
    consistent: u64,
    wal: &WalScan,
    segsize: u64,
    findings: &mut Findings,
) {
    let table = wal.table(backup.timeline);
    let need = consistent.saturating_sub(start) + 1;
    let have = table.count_in(start, consistent);
    if have >= need {
        return;
    }
    let name = |n: u64| wal_file_name(backup.timeline, n, segsize);
    let first_missing = (start..=consistent)
        .find(|&n| table.find(n).is_none())
        .unwrap_or(start);
    let why = format!(
        "the WAL needed to make it consistent is missing ({} of {} from {} to {}, first missing {})",
        need - have,
        plural(need, "segment", "segments"),
        name(start),
        name(consistent),
        name(first_missing)
    );
    findings.push(
        Severity::Error,
        FindingCode::MissingConsistencyWal,
        format!("Backup {} cannot be restored: {why}.", backup.name),
        Some(format!("wal_005/{}", name(first_missing))),
    );
    backup.problems.push(why);
}

/// The second half: from each timeline with a restorable backup, would `recovery_target_timeline=latest` (the
/// highest timeline with consecutive `.history` ids) follow a history that contains the backup, and the main one?
/// The histories as far as they are known.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known<'a> {
    pub histories: &'a Histories,
    /// Timelines whose history was inferred from object names, not read.
    pub inferred: &'a BTreeSet<u32>,
}

pub(crate) fn check_latest(
    set: &BackupSet,
    known: Known,
    wal: &WalScan,
    lineages: &Lineages,
    findings: &mut Findings,
) {
    let mut seen = BTreeSet::new();
    for backup in set.restorable() {
        if !seen.insert(backup.timeline) {
            continue;
        }
        let latest = latest_from(backup.timeline, &wal.history_tlis);
        if latest == backup.timeline {
            continue;
        }
        // Without the real history file, whether `latest` is a child is unknown (the history findings say so).
        if known.inferred.contains(&latest) || !known.histories.contains_key(&latest) {
            continue;
        }
        let histories = known.histories;
        let branched_after_backup = histories.get(&latest).is_some_and(|h| {
            h.iter().any(|r| {
                r.parent == backup.timeline && backup.start_lsn.is_some_and(|s| s < r.switch_lsn)
            })
        });
        if !branched_after_backup {
            findings.push(
                Severity::Warning,
                FindingCode::LatestNotAChild,
                format!(
                    "For backups on timeline {}, recovery_target_timeline=latest (PostgreSQL 12+) would pick timeline \
                     {latest}, which did not branch from them; recovery would stop with \"requested timeline \
                     {latest} is not a child of this server's history\". Set recovery_target_timeline explicitly.",
                    backup.timeline
                ),
                None,
            );
        } else if Some(latest) != lineages.main {
            findings.push(
                Severity::Warning,
                FindingCode::LatestFollowsBranch,
                format!(
                    "For backups on timeline {}, recovery_target_timeline=latest would follow timeline {latest}, not \
                     timeline {} which has the newest WAL.",
                    backup.timeline,
                    lineages.main.unwrap_or(0)
                ),
                None,
            );
        }
    }
}

/// What PostgreSQL's `latest` finds from `tli`: the last of the consecutive ids that have a `.history` object.
fn latest_from(tli: u32, history_tlis: &BTreeSet<u32>) -> u32 {
    let mut latest = tli;
    while history_tlis.contains(&(latest + 1)) {
        latest += 1;
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_history, add_segments, at, backup, empty_index, SEG};
    use super::super::{backups, histories, lineages, tree, wal_scan};
    use super::*;
    use crate::index::Index;

    struct Run {
        set: BackupSet,
        findings: Findings,
    }

    fn run(index: &Index) -> Run {
        let mut earlier = Findings::default();
        let wal = wal_scan::scan(index, &mut earlier);
        let histories = histories::read(index, &mut earlier);
        let set = backups::collect(index, at(100), Default::default(), &mut earlier);
        let tree = tree::build(&wal, &histories, &set, &mut earlier);
        let lineages = lineages::trace(&tree, &histories, &wal, SEG, &mut earlier);
        let mut findings = Findings::default();
        let set = place(set, &lineages, &wal, SEG, &mut findings);
        let inferred = BTreeSet::new();
        let known = Known {
            histories: &histories,
            inferred: &inferred,
        };
        check_latest(&set, known, &wal, &lineages, &mut findings);
        Run { set, findings }
    }

    #[test]
    fn a_backup_with_its_wal_gets_a_window_to_the_end_of_its_run() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 6);
        add_segments(&mut index, 1, 9, 9);
        backup(1, 2, 3).add_to(&mut index);
        let Run { set, findings } = run(&index);
        let b = &set.backups[0];
        assert!(b.restorable, "{:?}", b.problems);
        assert_eq!(b.windows.len(), 1);
        let w = &b.windows[0];
        assert_eq!((w.lineage, w.end_segment, w.end_lsn), (1, 6, 7 * SEG));
        assert_eq!(w.end_time, at(6));
        assert!(findings.codes().is_empty());
    }

    #[test]
    fn missing_consistency_wal_makes_a_backup_unrestorable() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 2);
        add_segments(&mut index, 1, 4, 6);
        let name = backup(1, 2, 4).add_to(&mut index);
        let early = backup(1, 1, 1).add_to(&mut index);
        let Run { set, findings } = run(&index);
        // Sorted by start LSN.
        assert_eq!(set.backups[0].name, early);
        let b = &set.backups[1];
        assert_eq!(b.name, name);
        assert!(!b.restorable);
        assert!(b.windows.is_empty());
        assert_eq!(findings.codes(), [FindingCode::MissingConsistencyWal]);
        assert!(b.problems[0]
            .starts_with("the WAL needed to make it consistent is missing (1 of 3 segments"));
    }

    #[test]
    fn latest_that_did_not_branch_from_the_backup_is_reported() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 9);
        backup(1, 5, 6).add_to(&mut index);
        // Timeline 2 forked from 1 at segment 3, before the backup started: `latest` would pick it, and PostgreSQL
        // would stop with "requested timeline 2 is not a child of this server's history".
        add_history(&mut index, 2, &[(1, 3)]);
        add_segments(&mut index, 2, 3, 4);
        let Run { set, findings } = run(&index);
        assert!(set.backups[0].restorable);
        assert_eq!(findings.codes(), [FindingCode::LatestNotAChild]);
    }

    /// The review's encrypted bucket read without the key: wal-g and PostgreSQL read history files through the
    /// crypter (`wal-fetch`, `timeline_history.go`), so an unreadable file says nothing about whether timeline 2 is
    /// a child; Walden must not claim it is not.
    #[test]
    fn an_unreadable_history_never_claims_not_a_child() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 9);
        backup(1, 5, 6).add_to(&mut index);
        add_history(&mut index, 2, &[(1, 3)]);
        if let Some(entry) = index.histories.get_mut("00000002.history") {
            entry.records = crate::index::Doc::Error("unreadable".into());
        }
        add_segments(&mut index, 2, 3, 4);
        let Run { set, findings } = run(&index);
        assert!(set.backups[0].restorable);
        assert!(findings.codes().is_empty(), "{:?}", findings.codes());
    }

    #[test]
    fn latest_that_follows_another_branch_than_the_main_one_is_reported() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 7);
        backup(1, 4, 5).add_to(&mut index);
        add_history(&mut index, 2, &[(1, 6)]);
        add_segments(&mut index, 2, 6, 12);
        add_history(&mut index, 3, &[(1, 7)]);
        add_segments(&mut index, 3, 7, 8);
        let Run { set, findings } = run(&index);
        // Timeline 1 kept archiving (segment 7) after 2 forked at 6: it is a restore path of its own too.
        let lineages: Vec<u32> = set.backups[0].windows.iter().map(|w| w.lineage).collect();
        assert_eq!(lineages, [1, 2, 3]);
        let follows = findings.with_code(FindingCode::LatestFollowsBranch);
        assert_eq!(follows.len(), 1);
        assert!(follows[0]
            .message
            .ends_with("would follow timeline 3, not timeline 2 which has the newest WAL."));
    }

    #[test]
    fn latest_follows_the_consecutive_history_ids() {
        let tlis = BTreeSet::from([2, 3, 5]);
        assert_eq!(latest_from(1, &tlis), 3);
        assert_eq!(latest_from(4, &tlis), 5);
        assert_eq!(latest_from(6, &tlis), 6);
    }

    /// A backup that started on timeline 1 before timeline 2 forked but finished after the fork (split brain during
    /// a backup): its backup-end record is on timeline 1 after the switch, so along timeline 2 PostgreSQL stops
    /// with "WAL ends before end of online backup". wal-g still uploads its sentinel
    /// (`bundle.go#checkTimelineChanged` only checks the backed-up server's own timeline). It serves timeline 1.
    #[test]
    fn a_backup_that_ends_after_a_fork_serves_only_its_own_timeline() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 9);
        add_history(&mut index, 2, &[(1, 5)]);
        add_segments(&mut index, 2, 5, 12);
        let before = backup(1, 2, 3).add_to(&mut index);
        let straddling = backup(1, 4, 6).add_to(&mut index);
        let Run { set, .. } = run(&index);
        let lineages_of = |name: &str| -> Vec<u32> {
            set.backups
                .iter()
                .find(|b| b.name == name)
                .map(|b| b.windows.iter().map(|w| w.lineage).collect())
                .unwrap_or_default()
        };
        assert_eq!(lineages_of(&before), [1, 2]);
        assert_eq!(lineages_of(&straddling), [1]);
    }

    #[test]
    fn a_backup_without_a_window_says_why() {
        let mut index = empty_index();
        add_segments(&mut index, 2, 4, 6);
        // Timeline 2's history says it began at segment 8, after the backup's start: no lineage holds the backup.
        add_history(&mut index, 2, &[(1, 8)]);
        let name = backup(2, 4, 5).add_to(&mut index);
        let Run { set, .. } = run(&index);
        let b = &set.backups[0];
        assert_eq!(b.name, name);
        assert!(!b.restorable);
        assert!(
            b.problems[0].starts_with("no timeline's WAL reaches from its start segment"),
            "{:?}",
            b.problems
        );
    }
}
