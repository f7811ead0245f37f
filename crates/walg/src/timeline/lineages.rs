//! Pass 5, the lineages: for each leaf timeline, the history recovery follows (its steps), which timeline owns
//! each segment, the present segment runs across switches and the gaps between them; and the main lineage.
//!
//! Invariants: on a lineage the newest timeline whose switch segment is at or below `n` owns segment `n` (the
//! switch segment belongs to the new timeline); runs are ascending and separated by at least one missing segment;
//! the main lineage is the leaf with the newest segment (ties: the highest timeline).

use super::findings::{FindingCode, Findings, Severity};
use super::histories::Histories;
use super::tree::Tree;
use super::wal_scan::WalScan;
use super::{plural, Lineage, LineageGap, LineageStep, SegRange};
use crate::documents::HistoryRecord;
use crate::names::segment_of;

/// One lineage per leaf, and the default one.
#[derive(Debug, Default)]
pub(crate) struct Lineages {
    pub lineages: Vec<Lineage>,
    /// The leaf with the newest WAL.
    pub main: Option<u32>,
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
        .leaves
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
    Lineages { lineages, main }
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

/// The leaf with the newest segment (ties: the highest timeline).
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
        assert!(findings.codes().is_empty());
        assert_eq!(lineages.main, Some(2));
        let lineage = &lineages.lineages[0];
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
        let leaves: Vec<u32> = lineages.lineages.iter().map(|l| l.leaf).collect();
        assert_eq!(leaves, [2, 3]);
        let branches = findings.with_code(FindingCode::Branches);
        assert_eq!(branches.len(), 1);
        assert!(branches[0]
            .message
            .contains("2 timelines are each the end of a different history (timelines 2, 3). Restores follow timeline 2"));
    }
}
