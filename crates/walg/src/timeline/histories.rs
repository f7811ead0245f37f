//! Pass 2, the histories: the readable `.history` files whose timelines increase, by timeline.
//!
//! Invariants: a history that lists non-increasing timelines (or a parent not below its own timeline) is left out
//! (PostgreSQL would reject it) and reported; an unreadable one is left out and reported, so its timeline is a
//! root; skipped lines of a kept history are reported as information.

use super::findings::{FindingCode, Findings, Severity};
use crate::documents::HistoryRecord;
use crate::index::{Doc, HistoryEntry, Index};
use std::collections::BTreeMap;

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
                    "Cannot read timeline history {}: {e}. Timeline {} is treated as having no known parent.",
                    entry.name, entry.tli
                ),
                object,
            ),
            Doc::Missing => {}
        }
    }
    histories
}

fn is_out_of_order(entry: &HistoryEntry, records: &[HistoryRecord]) -> bool {
    records.windows(2).any(|w| w[0].parent >= w[1].parent)
        || records.last().is_some_and(|last| last.parent >= entry.tli)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_history, empty_index};
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
            ]
        );
        let unreadable = &findings.with_code(FindingCode::UnreadableHistory)[0];
        assert!(unreadable.message.contains("not a text file"));
        assert_eq!(
            unreadable.object.as_deref(),
            Some("wal_005/00000005.history")
        );
    }
}
