//! Pass 4, the timeline tree: every timeline seen anywhere (segments, histories, backups) and the leaves, the
//! timelines no other history names as an ancestor.
//!
//! Invariants: a timeline above 1 without a `.history` object is a root (reported); a history must extend its
//! parent's history record for record (reported otherwise); `leaves` is ascending.

use super::backups::BackupSet;
use super::findings::{FindingCode, Findings, Severity};
use super::histories::Histories;
use super::wal_scan::WalScan;
use std::collections::BTreeSet;

/// The timelines and the ends of their histories.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Every timeline id seen.
    pub all: BTreeSet<u32>,
    /// Timelines that are nobody's ancestor, ascending.
    pub leaves: Vec<u32>,
}

impl Tree {
    /// Whether the timelines branch (more than one history end).
    pub(crate) fn branches(&self) -> bool {
        self.leaves.len() > 1
    }
}

/// Runs the pass.
pub(crate) fn build(
    wal: &WalScan,
    histories: &Histories,
    backups: &BackupSet,
    findings: &mut Findings,
) -> Tree {
    let mut all: BTreeSet<u32> = wal.segs.keys().copied().collect();
    all.extend(histories.keys().copied());
    all.extend(wal.history_tlis.iter().copied());
    all.extend(backups.backups.iter().map(|b| b.timeline));
    for &tli in &all {
        check_history_present(tli, wal, histories, findings);
        check_history_has_wal(tli, wal, histories, backups, findings);
        check_history_extends_parent(tli, histories, findings);
    }
    let ancestors: BTreeSet<u32> = histories
        .values()
        .flat_map(|h| h.iter().map(|r| r.parent))
        .collect();
    let leaves = all
        .iter()
        .copied()
        .filter(|t| !ancestors.contains(t))
        .collect();
    Tree { all, leaves }
}

fn history_object(tli: u32) -> Option<String> {
    Some(format!("wal_005/{tli:08X}.history"))
}

fn check_history_present(tli: u32, wal: &WalScan, histories: &Histories, findings: &mut Findings) {
    if tli > 1 && !histories.contains_key(&tli) && !wal.history_tlis.contains(&tli) {
        findings.push(
            Severity::Warning,
            FindingCode::MissingHistory,
            format!(
                "Timeline {tli} has no {tli:08X}.history file, so its parent and switch point are unknown; it is \
                 treated as a root. recovery_target_timeline=latest cannot reach it from an older timeline."
            ),
            history_object(tli),
        );
    }
}

fn check_history_has_wal(
    tli: u32,
    wal: &WalScan,
    histories: &Histories,
    backups: &BackupSet,
    findings: &mut Findings,
) {
    if tli > 1
        && histories.contains_key(&tli)
        && !wal.segs.contains_key(&tli)
        && !backups.has_timeline(tli)
    {
        findings.push(
            Severity::Info,
            FindingCode::HistoryWithoutWal,
            format!(
                "Timeline {tli} has a history file but no WAL segments: it was created (promotion or PITR) but \
                 never archived WAL, or its WAL was deleted."
            ),
            history_object(tli),
        );
    }
}

/// Each child's history must start with its parent's history.
fn check_history_extends_parent(tli: u32, histories: &Histories, findings: &mut Findings) {
    let Some(history) = histories.get(&tli) else {
        return;
    };
    let Some(last) = history.last() else { return };
    let Some(parent_history) = histories.get(&last.parent) else {
        return;
    };
    let extends = history.len() == parent_history.len() + 1
        && history
            .iter()
            .zip(parent_history.iter())
            .all(|(a, b)| a.parent == b.parent && a.switch_lsn == b.switch_lsn);
    if !extends {
        findings.push(
            Severity::Warning,
            FindingCode::HistoryMismatch,
            format!(
                "The history of timeline {tli} does not start with the history of its parent {}; one of the \
                 .history files was edited or comes from another cluster.",
                last.parent
            ),
            history_object(tli),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_history, add_segments, backup, empty_index};
    use super::super::{backups, histories, wal_scan};
    use super::*;
    use crate::index::Index;

    fn run(index: &Index) -> (Tree, Findings) {
        let mut findings = Findings::default();
        let wal = wal_scan::scan(index, &mut findings);
        let histories = histories::read(index, &mut findings);
        let set = backups::collect(
            index,
            super::super::fixture::at(0),
            Default::default(),
            &mut findings,
        );
        let mut tree_findings = Findings::default();
        let tree = build(&wal, &histories, &set, &mut tree_findings);
        (tree, tree_findings)
    }

    #[test]
    fn a_promotion_makes_the_new_timeline_the_only_leaf() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 5);
        add_history(&mut index, 2, &[(1, 4)]);
        add_segments(&mut index, 2, 4, 6);
        let (tree, findings) = run(&index);
        assert_eq!(tree.all, BTreeSet::from([1, 2]));
        assert_eq!(tree.leaves, [2]);
        assert!(!tree.branches());
        assert!(findings.codes().is_empty());
    }

    #[test]
    fn siblings_branch_and_history_problems_are_reported() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 5);
        add_history(&mut index, 2, &[(1, 4)]);
        add_segments(&mut index, 2, 4, 6);
        // Timeline 3 branched from 1 too, but records a different switch than 2's history does for 1.
        add_history(&mut index, 3, &[(1, 3), (2, 5)]);
        // Timeline 4: a history but no WAL and no backup.
        add_history(&mut index, 4, &[(1, 2)]);
        // Timeline 5: segments and a backup but no history.
        add_segments(&mut index, 5, 9, 9);
        backup(5, 9, 9).add_to(&mut index);
        let (tree, findings) = run(&index);
        assert_eq!(tree.leaves, [3, 4, 5]);
        assert!(tree.branches());
        assert_eq!(
            findings.codes(),
            [
                FindingCode::HistoryWithoutWal,
                FindingCode::HistoryMismatch,
                FindingCode::HistoryWithoutWal,
                FindingCode::MissingHistory,
            ]
        );
    }
}
