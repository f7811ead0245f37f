//! Pass 6, per timeline: wal-show's view of each timeline on its own (first and last segment, count, bytes, gaps
//! between first and last, no timeline switching) and the segments it kept writing after a child branched off.
//!
//! Invariants: one [`PgTimeline`] per timeline of the tree, ascending; `abandoned` covers the segments at or
//! after the segment of the earliest switch to any child (they are never used to recover the child).

use super::findings::{FindingCode, Findings, Severity};
use super::histories::Histories;
use super::tree::Tree;
use super::wal_scan::WalScan;
use super::{ms_to_time, plural, PgTimeline, SegRange, SegTable};
use crate::names::{segment_of, wal_file_name, Lsn};

/// Runs the pass.
pub(crate) fn describe(
    tree: &Tree,
    histories: &Histories,
    wal: &WalScan,
    segsize: u64,
    findings: &mut Findings,
) -> Vec<PgTimeline> {
    tree.all
        .iter()
        .map(|&tli| describe_one(tli, histories, wal, segsize, findings))
        .collect()
}

fn describe_one(
    tli: u32,
    histories: &Histories,
    wal: &WalScan,
    segsize: u64,
    findings: &mut Findings,
) -> PgTimeline {
    let table = wal.table(tli);
    let history = histories.get(&tli);
    let last_record = history.and_then(|h| h.last());
    let child_switch = earliest_child_switch(tli, histories);
    let abandoned = child_switch.and_then(|lsn| abandoned_after(table, segment_of(lsn, segsize)));
    if let (Some((range, count)), Some(lsn)) = (abandoned, child_switch) {
        report_abandoned(tli, range, count, lsn, segsize, findings);
    }
    PgTimeline {
        timeline: tli,
        parent: last_record.map(|r| r.parent),
        switch_lsn: last_record.map(|r| r.switch_lsn),
        has_history: wal.history_tlis.contains(&tli),
        history: history.cloned().unwrap_or_default(),
        first_segment: table.segnos.first().copied(),
        last_segment: table.segnos.last().copied(),
        segments: table.segnos.len() as u64,
        bytes: table.sizes.iter().sum(),
        gaps: segment_gaps(table),
        abandoned: abandoned.map(|(range, _)| range),
        abandoned_segments: abandoned.map_or(0, |(_, count)| count),
        newest_modified: table.mtimes.iter().max().map(|&m| ms_to_time(m)),
    }
}

/// Missing segment numbers between the first and the last present one.
fn segment_gaps(table: &SegTable) -> Vec<SegRange> {
    table
        .segnos
        .windows(2)
        .filter(|w| w[1] > w[0] + 1)
        .map(|w| SegRange {
            from: w[0] + 1,
            to: w[1] - 1,
        })
        .collect()
}

/// The earliest LSN at which any child switched away from `tli`.
fn earliest_child_switch(tli: u32, histories: &Histories) -> Option<u64> {
    histories
        .values()
        .filter_map(|h| h.iter().find(|r| r.parent == tli).map(|r| r.switch_lsn))
        .min()
}

/// Present segments at or after `first_child_segment`: their range and count.
fn abandoned_after(table: &SegTable, first_child_segment: u64) -> Option<(SegRange, u64)> {
    let a = table.segnos.partition_point(|&s| s < first_child_segment);
    let last = *table.segnos.last()?;
    let first = *table.segnos.get(a)?;
    Some((
        SegRange {
            from: first,
            to: last,
        },
        (table.segnos.len() - a) as u64,
    ))
}

fn report_abandoned(
    tli: u32,
    range: SegRange,
    count: u64,
    switch_lsn: u64,
    segsize: u64,
    findings: &mut Findings,
) {
    let name = |n: u64| wal_file_name(tli, n, segsize);
    findings.push(
        Severity::Warning,
        FindingCode::AbandonedSegments,
        format!(
            "Timeline {tli} has {} from {} to {} after it switched to a new timeline at {}. They belong to an \
             abandoned branch (the old primary kept writing: split brain?) and are never used for recovery of the \
             newer timeline.",
            plural(count, "segment", "segments"),
            name(range.from),
            name(range.to),
            Lsn(switch_lsn)
        ),
        Some(format!("wal_005/{}", name(range.from))),
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_history, add_segments, at, empty_index, segment_name, SEG};
    use super::super::{histories, tree, wal_scan};
    use super::*;

    #[test]
    fn each_timeline_with_gaps_and_abandoned_segments() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 2);
        add_segments(&mut index, 1, 5, 7);
        add_history(&mut index, 2, &[(1, 6)]);
        add_segments(&mut index, 2, 6, 8);
        let mut findings = Findings::default();
        let wal = wal_scan::scan(&index, &mut findings);
        let histories = histories::read(&index, &mut findings);
        let tree = tree::build(&wal, &histories, &Default::default(), &mut findings);
        let mut own = Findings::default();
        let infos = describe(&tree, &histories, &wal, SEG, &mut own);
        assert_eq!(infos.len(), 2);
        let one = &infos[0];
        assert_eq!(
            (one.timeline, one.parent, one.has_history),
            (1, None, false)
        );
        assert_eq!((one.first_segment, one.last_segment), (Some(1), Some(7)));
        assert_eq!((one.segments, one.bytes), (5, 500));
        assert_eq!(one.gaps, [SegRange { from: 3, to: 4 }]);
        assert_eq!(one.abandoned, Some(SegRange { from: 6, to: 7 }));
        assert_eq!(one.abandoned_segments, 2);
        assert_eq!(one.newest_modified, Some(at(7)));
        let two = &infos[1];
        assert_eq!((two.parent, two.switch_lsn), (Some(1), Some(6 * SEG)));
        assert!(two.has_history && two.gaps.is_empty() && two.abandoned.is_none());
        let abandoned = own.with_code(FindingCode::AbandonedSegments);
        assert_eq!(abandoned.len(), 1);
        assert!(abandoned[0].message.starts_with(&format!(
            "Timeline 1 has 2 segments from {} to {} after it switched to a new timeline at 0/6000000.",
            segment_name(1, 6),
            segment_name(1, 7)
        )));
    }
}
