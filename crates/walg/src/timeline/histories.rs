//! Pass 2, the histories: the readable `.history` files whose timelines increase, by timeline; then, for a
//! timeline whose `.history` exists but cannot be read (a missing or wrong key, PGP/envelope/KMS encryption), its
//! parent and switch segment inferred from object names.
//!
//! Invariants: a history that lists non-increasing timelines (or a parent not below its own timeline) is left out
//! (PostgreSQL would reject it) and reported; an unreadable one is left out and reported; skipped lines of a kept
//! history are reported as information. An inferred history is the parent's history plus one record whose switch
//! LSN is the start of the switch segment (the exact LSN is unknown); it is reported as an assumption, and a
//! timeline whose names show nothing stays a root, reported as unknown.

use super::findings::{FindingCode, Findings, Severity};
use super::wal_scan::WalScan;
use crate::documents::HistoryRecord;
use crate::index::{Doc, HistoryEntry, Index};
use crate::names::wal_file_name;
use std::collections::{BTreeMap, BTreeSet};

/// The full history (ancestors in order) of each timeline whose `.history` could be used.
pub(crate) type Histories = BTreeMap<u32, Vec<HistoryRecord>>;

/// Runs the pass.
pub(crate) fn read(index: &Index, findings: &mut Findings) -> Histories {
    let mut histories = Histories::new();
    for entry in index.histories.values() {
        let object = Some(format!("wal_005/{}", entry.name));
        match &entry.records {
            Doc::Ok(records) if is_out_of_order(entry, records) => findings.push(
                Severity::Warning,
                FindingCode::HistoryOutOfOrder,
                format!(
                    "Timeline history {} lists timelines that do not increase; PostgreSQL would reject it.",
                    entry.name
                ),
                object,
            ),
            // PostgreSQL's writeTimeLineHistory (timeline.c) copies the parent's history and appends the
            // parent's own line, so the history of timeline 2 or later always holds a record. One that holds
            // none is not that file: encrypted without the key and decompressed into nothing (a brotli stream
            // has no magic number), or truncated.
            Doc::Ok(records) if records.is_empty() && entry.tli > 1 => findings.push(
                Severity::Warning,
                FindingCode::UnreadableHistory,
                format!(
                    "Timeline history {} holds no record (is it encrypted and WALG_LIBSODIUM_KEY not set, or \
                     truncated?). The parent and switch point of timeline {} are not known from the file itself.",
                    entry.name, entry.tli
                ),
                object,
            ),
            Doc::Ok(records) => {
                if entry.bad_lines > 0 {
                    findings.push(
                        Severity::Info,
                        FindingCode::HistoryUnreadableLines,
                        format!(
                            "{} unreadable line(s) in {} were skipped.",
                            entry.bad_lines, entry.name
                        ),
                        object,
                    );
                }
                histories.insert(entry.tli, records.clone());
            }
            Doc::Error(e) => findings.push(
                Severity::Warning,
                FindingCode::UnreadableHistory,
                format!(
                    "Cannot read timeline history {}: {e}. The parent and switch point of timeline {} are not known \
                     from the file itself.",
                    entry.name, entry.tli
                ),
                object,
            ),
            Doc::Missing => {}
        }
    }
    histories
}

/// Infers the history of each timeline that has a `.history` object but no usable history, in ascending order
/// (so an inferred parent can be extended): from `<parent><segment>.partial`, which PostgreSQL archives from the old
/// timeline at a promotion, whose segment is the new timeline's first; else from the parent timeline's segments
/// ending just before the new timeline's first one. Returns the inferred timelines.
pub(crate) fn infer_unreadable(
    wal: &WalScan,
    histories: &mut Histories,
    segsize: u64,
    findings: &mut Findings,
) -> BTreeSet<u32> {
    let unknown: Vec<u32> = wal
        .history_tlis
        .iter()
        .copied()
        .filter(|tli| *tli > 1 && !histories.contains_key(tli))
        .collect();
    let mut inferred = BTreeSet::new();
    for tli in unknown {
        let object = Some(format!("wal_005/{tli:08X}.history"));
        let Some(fork) = infer_fork(tli, wal, segsize) else {
            findings.push(
                Severity::Warning,
                FindingCode::HistoryInferred,
                format!(
                    "Timeline {tli}'s history is unknown: its .history cannot be read and no .partial or segment name \
                     shows where it began. It is treated as a root, so plans from older backups cannot cross into \
                     it; whether it continues an older timeline is not known."
                ),
                object,
            );
            continue;
        };
        let mut history = histories.get(&fork.parent).cloned().unwrap_or_default();
        history.push(HistoryRecord {
            parent: fork.parent,
            switch_lsn: fork.segment.saturating_mul(segsize),
            reason: format!("inferred from {}", fork.evidence),
        });
        findings.push(
            Severity::Warning,
            FindingCode::HistoryInferred,
            format!(
                "Timeline {tli}'s history is unknown (its .history cannot be read); from {} it is taken to have \
                 forked from timeline {} in segment {}. The exact switch LSN{} is not known: plans along timeline \
                 {tli} rest on this assumption, and a backup that ended inside that segment may be misjudged.",
                fork.evidence,
                fork.parent,
                wal_file_name(fork.parent, fork.segment, segsize),
                if histories.contains_key(&fork.parent) || fork.parent == 1 {
                    ""
                } else {
                    " and the older ancestors"
                }
            ),
            object,
        );
        histories.insert(tli, history);
        inferred.insert(tli);
    }
    inferred
}

/// Where a timeline forked, as object names show it.
struct Fork {
    parent: u32,
    /// The switch segment: the parent's last (partial) segment and the new timeline's first.
    segment: u64,
    /// The object name that shows it.
    evidence: String,
}

fn infer_fork(tli: u32, wal: &WalScan, segsize: u64) -> Option<Fork> {
    let first = wal.table(tli).segnos.first().copied();
    let partial = wal
        .partials
        .iter()
        .rev()
        .find(|&&(parent, segment)| parent < tli && first.is_none_or(|f| f == segment));
    if let Some(&(parent, segment)) = partial {
        return Some(Fork {
            parent,
            segment,
            evidence: format!(
                "the name of {}.partial",
                wal_file_name(parent, segment, segsize)
            ),
        });
    }
    let first = first?;
    let before = first.checked_sub(1)?;
    let parent = (1..tli)
        .rev()
        .find(|&candidate| wal.table(candidate).find(before).is_some())?;
    Some(Fork {
        parent,
        segment: first,
        evidence: format!(
            "its first segment {} following {}",
            wal_file_name(tli, first, segsize),
            wal_file_name(parent, before, segsize)
        ),
    })
}

fn is_out_of_order(entry: &HistoryEntry, records: &[HistoryRecord]) -> bool {
    records.windows(2).any(|w| w[0].parent >= w[1].parent)
        || records.last().is_some_and(|last| last.parent >= entry.tli)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{
        add_history, add_segments, add_wal, empty_index, ms, segment_name, SEG,
    };
    use super::*;

    #[test]
    fn readable_histories_are_kept_by_timeline() {
        let mut index = empty_index();
        add_history(&mut index, 2, &[(1, 10)]);
        add_history(&mut index, 3, &[(1, 10), (2, 20)]);
        let mut findings = Findings::default();
        let histories = read(&index, &mut findings);
        assert_eq!(histories.keys().copied().collect::<Vec<_>>(), [2, 3]);
        assert_eq!(histories[&3][1].parent, 2);
        assert!(findings.codes().is_empty());
    }

    #[test]
    fn bad_histories_are_left_out_and_reported() {
        let mut index = empty_index();
        add_history(&mut index, 3, &[(2, 20), (1, 30)]);
        add_history(&mut index, 4, &[(4, 10)]);
        add_history(&mut index, 5, &[(1, 10)]);
        if let Some(entry) = index.histories.get_mut("00000005.history") {
            entry.records = Doc::Error("not a text file".into());
        }
        add_history(&mut index, 6, &[(1, 10)]);
        if let Some(entry) = index.histories.get_mut("00000006.history") {
            entry.bad_lines = 2;
        }
        add_history(&mut index, 7, &[]);
        let mut findings = Findings::default();
        let histories = read(&index, &mut findings);
        assert_eq!(histories.keys().copied().collect::<Vec<_>>(), [6]);
        assert_eq!(
            findings.codes(),
            [
                FindingCode::HistoryOutOfOrder,
                FindingCode::HistoryOutOfOrder,
                FindingCode::UnreadableHistory,
                FindingCode::HistoryUnreadableLines,
                FindingCode::UnreadableHistory,
            ]
        );
        let empty = &findings.with_code(FindingCode::UnreadableHistory)[1];
        assert!(
            empty.message.contains("holds no record"),
            "{}",
            empty.message
        );
        let unreadable = &findings.with_code(FindingCode::UnreadableHistory)[0];
        assert!(unreadable.message.contains("not a text file"));
        assert_eq!(
            unreadable.object.as_deref(),
            Some("wal_005/00000005.history")
        );
    }

    fn scan(index: &Index) -> WalScan {
        super::super::wal_scan::scan(index, &mut Findings::default())
    }

    fn unreadable(index: &mut Index, tli: u32) {
        if let Some(entry) = index.histories.get_mut(&format!("{tli:08X}.history")) {
            entry.records = Doc::Error("cannot decrypt".into());
        }
    }

    /// At a promotion PostgreSQL archives the old timeline's last segment as `<old><segment>.partial` and the new
    /// timeline starts in that same segment: the names alone show parent and switch segment.
    #[test]
    fn an_unreadable_history_is_inferred_from_the_partial_segment() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 4);
        add_wal(
            &mut index,
            &format!("{}.partial.lz4", segment_name(1, 5)),
            10,
            ms(5),
        );
        add_history(&mut index, 2, &[(1, 5)]);
        add_segments(&mut index, 2, 5, 8);
        add_history(&mut index, 3, &[(1, 5), (2, 8)]);
        add_wal(
            &mut index,
            &format!("{}.partial.lz4", segment_name(2, 8)),
            10,
            ms(8),
        );
        add_segments(&mut index, 3, 8, 9);
        unreadable(&mut index, 2);
        unreadable(&mut index, 3);
        let mut findings = Findings::default();
        let mut histories = read(&index, &mut findings);
        let inferred = infer_unreadable(&scan(&index), &mut histories, SEG, &mut findings);
        assert_eq!(inferred, BTreeSet::from([2, 3]));
        let records: Vec<(u32, u64)> = histories[&3]
            .iter()
            .map(|r| (r.parent, r.switch_lsn / SEG))
            .collect();
        assert_eq!(records, [(1, 5), (2, 8)]);
        let said = findings.with_code(FindingCode::HistoryInferred);
        assert_eq!(said.len(), 2);
        assert!(
            said[0].message.contains(&format!(
                "from the name of {}.partial it is taken to have forked from timeline 1",
                segment_name(1, 5)
            )),
            "{}",
            said[0].message
        );
        assert!(said[0]
            .message
            .contains("The exact switch LSN is not known"));
    }

    #[test]
    fn without_a_partial_the_parent_is_the_timeline_whose_segments_end_just_before() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 4);
        add_history(&mut index, 2, &[(1, 5)]);
        add_segments(&mut index, 2, 5, 8);
        // Timeline 4: unreadable, and nothing ends right before its first segment.
        add_history(&mut index, 4, &[(2, 20)]);
        add_segments(&mut index, 4, 20, 21);
        unreadable(&mut index, 2);
        unreadable(&mut index, 4);
        let mut findings = Findings::default();
        let mut histories = read(&index, &mut findings);
        let inferred = infer_unreadable(&scan(&index), &mut histories, SEG, &mut findings);
        assert_eq!(inferred, BTreeSet::from([2]));
        assert_eq!(histories[&2][0].parent, 1);
        assert_eq!(histories[&2][0].switch_lsn, 5 * SEG);
        let said = findings.with_code(FindingCode::HistoryInferred);
        assert!(said[1].message.starts_with(
            "Timeline 4's history is unknown: its .history cannot be read and no .partial"
        ));
    }
}
