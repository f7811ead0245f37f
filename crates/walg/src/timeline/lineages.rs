//! Pass 5, the lineages: for every timeline (not only the leaves), the history recovery follows to it (its
//! steps), which timeline owns each segment, the present segment runs across switches and the gaps between them;
//! the main lineage; and whether the archive branched (an ancestor kept archiving after a child forked from it).
//!
//! PostgreSQL restores any timeline whose history contains the backup's checkpoint when it is named explicitly in
//! `recovery_target_timeline`, so every timeline is a restore path: an old primary that kept archiving on
//! timeline 1 after a clone or standby was promoted to timeline 2 is restored along timeline 1.
//!
//! Invariants: one lineage per timeline of the tree, ascending; on a lineage the newest timeline whose switch
//! segment is at or below `n` owns segment `n` (the switch segment belongs to the new timeline); runs are ascending
//! and separated by at least one missing segment; the main lineage is the one with the newest segment, across all
//! timelines (ties: the highest timeline).

use super::findings::{FindingCode, Findings, Severity};
use super::histories::Histories;
use super::tree::Tree;
use super::wal_scan::WalScan;
use super::{ms_to_time, plural, short_time, Lineage, LineageGap, LineageStep, SegRange};
use crate::documents::HistoryRecord;
use crate::names::{segment_of, wal_file_name, Lsn};
use std::collections::BTreeSet;

/// One lineage per timeline, and the default one.
#[derive(Debug, Default)]
pub(crate) struct Lineages {
    pub lineages: Vec<Lineage>,
    /// The timeline with the newest WAL on its lineage.
    pub main: Option<u32>,
    /// The lineages that reach WAL no other lineage reaches: the leaves, and ancestors that kept archiving after a
    /// child forked from them. The others are prefixes of a descendant's lineage (restorable, but they add no
    /// window of their own).
    pub distinct: BTreeSet<u32>,
}

impl Lineages {
    /// The lineages in [`Lineages::distinct`], leaves (per `tree`) first.
    pub(crate) fn distinct_leaves_first<'a>(&'a self, tree: &Tree) -> Vec<&'a Lineage> {
        let mut listed: Vec<&Lineage> = self
            .lineages
            .iter()
            .filter(|l| self.distinct.contains(&l.leaf))
            .collect();
        listed.sort_by_key(|l| (!tree.leaves.contains(&l.leaf), l.leaf));
        listed
    }
}

/// Runs the pass.
pub(crate) fn trace(
    tree: &Tree,
    histories: &Histories,
    wal: &WalScan,
    segsize: u64,
    findings: &mut Findings,
) -> Lineages {
    let lineages: Vec<Lineage> = tree
        .all
        .iter()
        .map(|&leaf| {
            let history = histories.get(&leaf).map(Vec::as_slice).unwrap_or_default();
            trace_one(leaf, history, wal, segsize)
        })
        .collect();
    let main = choose_main(&lineages, wal);
    if tree.branches() {
        report_branches(&tree.leaves, main, findings);
    }
    let mut distinct: BTreeSet<u32> = tree.leaves.iter().copied().collect();
    distinct.extend(report_archive_branched(
        histories, wal, segsize, main, findings,
    ));
    Lineages {
        lineages,
        main,
        distinct,
    }
}

/// An ancestor that has full segments at or after the segment where a child forked from it is a restore path of
/// its own (returned). When it also archived after the child was created (after the child's `.history` was
/// uploaded: an old primary after a promotion, or production after a clone archived into its prefix), the archive
/// branched while both were live, and which one a restore follows matters: an error. An ancestor whose WAL all
/// predates the child (a deliberate point-in-time restore) is only `abandoned_segments`.
fn report_archive_branched(
    histories: &Histories,
    wal: &WalScan,
    segsize: u64,
    main: Option<u32>,
    findings: &mut Findings,
) -> BTreeSet<u32> {
    let mut kept_archiving = BTreeSet::new();
    for (&child, history) in histories {
        let Some(fork) = history.last() else { continue };
        let parent = fork.parent;
        let table = wal.table(parent);
        let Some(&last) = table.segnos.last() else {
            continue;
        };
        if last < segment_of(fork.switch_lsn, segsize) {
            continue;
        }
        kept_archiving.insert(parent);
        let newest_ms = table.mtimes.iter().copied().max().unwrap_or(i64::MIN);
        let created_ms = wal.history_modified_ms.get(&child).copied();
        if created_ms.is_some_and(|created| newest_ms <= created) {
            continue;
        }
        findings.push(
            Severity::Error,
            FindingCode::ArchiveBranched,
            format!(
                "The archive branched: timeline {child} forked from timeline {parent} at {}, but timeline {parent} \
                 kept archiving until {} (about {}). Both are restore paths; restores follow timeline {} (the \
                 newest WAL) unless you choose another with --timeline.",
                Lsn(fork.switch_lsn),
                wal_file_name(parent, last, segsize),
                short_time(ms_to_time(newest_ms)),
                main.map(|m| m.to_string()).unwrap_or_default()
            ),
            Some(format!("wal_005/{child:08X}.history")),
        );
    }
    kept_archiving
}

fn trace_one(leaf: u32, history: &[HistoryRecord], wal: &WalScan, segsize: u64) -> Lineage {
    let steps = steps_of(leaf, history, segsize);
    let runs = present_runs(&steps, wal);
    let mut lineage = Lineage {
        leaf,
        steps,
        runs,
        gaps: Vec::new(),
    };
    lineage.gaps = gaps_between_runs(&lineage, wal);
    lineage
}

/// The ancestors in order, then the leaf, each with the segments it owns.
fn steps_of(leaf: u32, history: &[HistoryRecord], segsize: u64) -> Vec<LineageStep> {
    let mut steps = Vec::with_capacity(history.len() + 1);
    let mut begin = 0u64;
    for record in history {
        steps.push(LineageStep {
            timeline: record.parent,
            begin_lsn: begin,
            end_lsn: Some(record.switch_lsn),
            owned: None,
        });
        begin = record.switch_lsn;
    }
    steps.push(LineageStep {
        timeline: leaf,
        begin_lsn: begin,
        end_lsn: None,
        owned: None,
    });
    // Ownership: the newest timeline wins within a segment.
    let begins: Vec<u64> = steps
        .iter()
        .map(|s| segment_of(s.begin_lsn, segsize))
        .collect();
    for (i, step) in steps.iter_mut().enumerate() {
        let from = begins[i];
        let to = match begins.get(i + 1) {
            Some(&next) if next <= from => None,
            Some(&next) => Some(next - 1),
            None => Some(u64::MAX),
        };
        step.owned = to.map(|to| SegRange { from, to });
    }
    steps
}

/// Present segments of each step's owned range, merged into contiguous runs across switches.
fn present_runs(steps: &[LineageStep], wal: &WalScan) -> Vec<SegRange> {
    let mut runs: Vec<SegRange> = Vec::new();
    for step in steps {
        let Some(owned) = step.owned else { continue };
        let table = wal.table(step.timeline);
        let a = table.segnos.partition_point(|&s| s < owned.from);
        let b = table.segnos.partition_point(|&s| s <= owned.to);
        for &n in &table.segnos[a..b] {
            match runs.last_mut() {
                Some(run) if run.to + 1 == n => run.to = n,
                _ => runs.push(SegRange { from: n, to: n }),
            }
        }
    }
    runs
}

fn gaps_between_runs(lineage: &Lineage, wal: &WalScan) -> Vec<LineageGap> {
    lineage
        .runs
        .windows(2)
        .map(|pair| {
            let missing = SegRange {
                from: pair[0].to + 1,
                to: pair[1].from - 1,
            };
            LineageGap {
                timeline: lineage.owner(missing.from).unwrap_or(lineage.leaf),
                missing,
                after: wal.time_on(lineage, pair[0].to),
                before: wal.time_on(lineage, pair[1].from),
            }
        })
        .collect()
}

/// The timeline whose lineage has the newest segment (ties: the highest timeline).
fn choose_main(lineages: &[Lineage], wal: &WalScan) -> Option<u32> {
    lineages
        .iter()
        .map(|lineage| {
            let newest = lineage
                .runs
                .last()
                .and_then(|run| wal.time_on(lineage, run.to))
                .map(|t| t.unix_timestamp())
                .unwrap_or(i64::MIN);
            (newest, lineage.leaf)
        })
        .max()
        .map(|(_, leaf)| leaf)
}

fn report_branches(leaves: &[u32], main: Option<u32>, findings: &mut Findings) {
    let listed: Vec<String> = leaves.iter().map(|l| l.to_string()).collect();
    findings.push(
        Severity::Warning,
        FindingCode::Branches,
        format!(
            "The timelines branch: {} are each the end of a different history (timelines {}). Restores follow \
             timeline {} unless you choose another.",
            plural(leaves.len() as u64, "timeline", "timelines"),
            listed.join(", "),
            main.map(|m| m.to_string()).unwrap_or_default()
        ),
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_history, add_segments, at, empty_index, SEG};
    use super::super::{histories, tree, wal_scan};
    use super::*;
    use crate::index::Index;

    fn run(index: &Index) -> (Lineages, Findings) {
        let mut findings = Findings::default();
        let wal = wal_scan::scan(index, &mut findings);
        let histories = histories::read(index, &mut findings);
        let tree = tree::build(&wal, &histories, &Default::default(), &mut findings);
        let mut lineage_findings = Findings::default();
        let lineages = trace(&tree, &histories, &wal, SEG, &mut lineage_findings);
        (lineages, lineage_findings)
    }

    #[test]
    fn a_switch_hands_segments_to_the_new_timeline() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 6);
        add_history(&mut index, 2, &[(1, 4)]);
        add_segments(&mut index, 2, 4, 5);
        add_segments(&mut index, 2, 8, 9);
        let (lineages, findings) = run(&index);
        // Timeline 1 has full segments 4..=6 after timeline 2 forked at segment 4: the archive branched.
        assert_eq!(findings.codes(), [FindingCode::ArchiveBranched]);
        assert_eq!(lineages.main, Some(2));
        let lineage = &lineages.lineages[1];
        assert_eq!(lineage.leaf, 2);
        assert_eq!(
            lineage.steps.iter().map(|s| s.owned).collect::<Vec<_>>(),
            [
                Some(SegRange { from: 0, to: 3 }),
                Some(SegRange {
                    from: 4,
                    to: u64::MAX
                })
            ]
        );
        // Timeline 1's segments 4..=6 are not on the lineage: 2 owns them.
        assert_eq!(lineage.owner(5), Some(2));
        assert_eq!(
            lineage.runs,
            [SegRange { from: 1, to: 5 }, SegRange { from: 8, to: 9 }]
        );
        assert_eq!(lineage.gaps.len(), 1);
        let gap = &lineage.gaps[0];
        assert_eq!(
            (gap.timeline, gap.missing),
            (2, SegRange { from: 6, to: 7 })
        );
        assert_eq!((gap.after, gap.before), (Some(at(5)), Some(at(8))));
    }

    #[test]
    fn a_switch_inside_a_segment_gives_the_old_timeline_nothing_there() {
        let steps = steps_of(
            2,
            &[HistoryRecord {
                parent: 1,
                switch_lsn: 100,
                reason: String::new(),
            }],
            SEG,
        );
        assert_eq!(steps[0].owned, None);
        assert_eq!(steps[0].end_lsn, Some(100));
        assert_eq!(steps[1].begin_lsn, 100);
    }

    #[test]
    fn branches_are_reported_with_the_newest_leaf_as_main() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 4);
        add_history(&mut index, 2, &[(1, 3)]);
        add_segments(&mut index, 2, 3, 9);
        add_history(&mut index, 3, &[(1, 4)]);
        add_segments(&mut index, 3, 4, 6);
        let (lineages, findings) = run(&index);
        assert_eq!(lineages.main, Some(2));
        // Every timeline is a restore path, timeline 1 (which kept archiving after both forks) included.
        let leaves: Vec<u32> = lineages.lineages.iter().map(|l| l.leaf).collect();
        assert_eq!(leaves, [1, 2, 3]);
        let branches = findings.with_code(FindingCode::Branches);
        assert_eq!(branches.len(), 1);
        assert!(branches[0]
            .message
            .contains("2 timelines are each the end of a different history (timelines 2, 3). Restores follow timeline 2"));
    }

    /// A clone restored with production's WALG_* settings promoted to timeline 2 and archived into the same prefix
    /// while production kept archiving on timeline 1. PostgreSQL restores timeline 1 when
    /// `recovery_target_timeline = '1'` names it; wal-g's `wal-verify` follows the current timeline's own history
    /// (`integrity_check_runner.go#NewIntegrityCheckRunner`) and its `timeline` check reports the higher timeline
    /// as someone else writing into the archive (`timeline_check_runner.go#newTimelineCheckResult`).
    #[test]
    fn an_ancestor_that_kept_archiving_after_a_fork_is_a_restore_path_and_the_default_when_newest()
    {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 9);
        add_history(&mut index, 2, &[(1, 4)]);
        add_segments(&mut index, 2, 4, 6);
        let (lineages, findings) = run(&index);
        let ends: Vec<u32> = lineages.lineages.iter().map(|l| l.leaf).collect();
        assert_eq!(ends, [1, 2]);
        assert_eq!(lineages.main, Some(1), "timeline 1 has the newest WAL");
        assert_eq!(lineages.distinct, BTreeSet::from([1, 2]));
        assert_eq!(lineages.lineages[0].runs, [SegRange { from: 1, to: 9 }]);
        let branched = findings.with_code(FindingCode::ArchiveBranched);
        assert_eq!(branched.len(), 1);
        assert_eq!(branched[0].severity, Severity::Error);
        assert!(
            branched[0].message.starts_with(&format!(
                "The archive branched: timeline 2 forked from timeline 1 at 0/4000000, but timeline 1 kept \
                 archiving until {} (about 2026-01-01 00:09 UTC).",
                super::super::fixture::segment_name(1, 9)
            )),
            "{}",
            branched[0].message
        );
        assert!(branched[0].message.ends_with("restores follow timeline 1 (the newest WAL) unless you choose another with --timeline."));
    }

    /// A normal promotion: the old timeline stops at the fork (its last segment is archived as `.partial`, which
    /// is not WAL), so its lineage is a prefix of the new one's and no branch is reported.
    #[test]
    fn an_ancestor_that_stopped_at_the_fork_is_a_prefix_lineage() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 3);
        add_history(&mut index, 2, &[(1, 4)]);
        add_segments(&mut index, 2, 4, 6);
        let (lineages, findings) = run(&index);
        assert!(findings.codes().is_empty());
        assert_eq!(lineages.main, Some(2));
        assert_eq!(lineages.distinct, BTreeSet::from([2]));
        assert_eq!(lineages.lineages.len(), 2);
    }

    /// A deliberate point-in-time restore: timeline 2 forked from 1 at segment 4 after timeline 1 had stopped
    /// archiving (its `.history` is newer than all of timeline 1's WAL). Timeline 1's later segments are an
    /// abandoned branch, still a restore path, but nothing was written to both at once: no error.
    #[test]
    fn a_point_in_time_restore_after_the_old_timeline_stopped_is_not_a_branched_archive() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 9);
        add_history(&mut index, 2, &[(1, 4)]);
        if let Some(object) = index.wal.iter_mut().find(|o| o.name == "00000002.history") {
            object.modified_ms = super::super::fixture::ms(10);
        }
        add_segments(&mut index, 2, 10, 12);
        let (lineages, findings) = run(&index);
        assert!(findings.codes().is_empty(), "{:?}", findings.codes());
        assert_eq!(lineages.distinct, BTreeSet::from([1, 2]));
        assert_eq!(lineages.main, Some(2));
    }
}
