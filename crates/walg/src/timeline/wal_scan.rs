//! Pass 1, the WAL scan: every `wal_005/` object into per-timeline segment tables, plus the timelines that have a
//! `.history` object and the newest segment time.
//!
//! Invariants: each [`SegTable`] holds every segment number of its timeline once, in ascending order (a segment
//! stored under several compressions counts once: the first by name wins, as in the index's order); objects that
//! are not segments never enter a table. Reports duplicates, empty objects, unknown names, legacy trailing dots and
//! WAL metadata sidecars.

use super::findings::{FindingCode, Findings, Severity};
use super::{ms_to_time, plural, Lineage, SegTable};
use crate::index::{Index, WalObject};
use crate::names::{Compression, WalKind};
use std::collections::{BTreeSet, HashMap};
use time::OffsetDateTime;

/// What the WAL scan found.
#[derive(Debug, Default)]
pub(crate) struct WalScan {
    /// Segment tables by timeline.
    pub segs: HashMap<u32, SegTable>,
    /// Timelines that have a `.history` object (readable or not).
    pub history_tlis: BTreeSet<u32>,
    /// LastModified (Unix ms) of the newest segment.
    pub newest_wal_ms: Option<i64>,
    /// LastModified (Unix ms) of each timeline's `.history` object: when the timeline was created.
    pub history_modified_ms: HashMap<u32, i64>,
    /// `(timeline, segment)` of each `.partial` object: the old timeline's last segment at a promotion.
    pub partials: BTreeSet<(u32, u64)>,
}

impl WalScan {
    /// The table of `tli` (empty when it has no segment).
    pub(crate) fn table(&self, tli: u32) -> &SegTable {
        static EMPTY: SegTable = SegTable {
            segnos: Vec::new(),
            sizes: Vec::new(),
            mtimes: Vec::new(),
        };
        self.segs.get(&tli).unwrap_or(&EMPTY)
    }

    /// LastModified of segment `n` of the timeline that owns it on `lineage`.
    pub(crate) fn time_on(&self, lineage: &Lineage, n: u64) -> Option<OffsetDateTime> {
        let table = self.segs.get(&lineage.owner(n)?)?;
        table.find(n).map(|i| ms_to_time(table.mtimes[i]))
    }
}

/// Objects that are odd but not fatal, counted during the scan and reported after it.
#[derive(Debug, Default)]
struct Oddities {
    duplicates: u64,
    duplicate_examples: Vec<String>,
    zero_size: Vec<String>,
    unknown: Vec<String>,
    legacy_dot: u64,
    sidecars: u64,
}

/// Runs the pass.
pub(crate) fn scan(index: &Index, findings: &mut Findings) -> WalScan {
    let mut segs: HashMap<u32, SegTable> = HashMap::new();
    let mut history_tlis = BTreeSet::new();
    let mut newest_wal_ms: Option<i64> = None;
    let mut partials = BTreeSet::new();
    let mut history_modified_ms = HashMap::new();
    let mut odd = Oddities::default();
    // The table of the current timeline, kept while the (sorted) objects stay on it.
    let mut current: Option<(u32, &mut SegTable)> = None;
    for object in &index.wal {
        if object.size == 0 && object.key.kind != WalKind::Metadata {
            odd.zero_size.push(object.name.clone());
        }
        match object.key.kind {
            WalKind::Segment => {
                if object.key.compression == Compression::LegacyDot {
                    odd.legacy_dot += 1;
                }
                let tli = object.key.tli;
                if current.as_ref().is_none_or(|(t, _)| *t != tli) {
                    current = Some((tli, segs.entry(tli).or_default()));
                }
                if let Some((_, table)) = current.as_mut() {
                    if add_segment(table, object, &mut odd) {
                        newest_wal_ms = Some(
                            newest_wal_ms.map_or(object.modified_ms, |n| n.max(object.modified_ms)),
                        );
                    }
                }
            }
            WalKind::History => {
                history_tlis.insert(object.key.tli);
                history_modified_ms
                    .entry(object.key.tli)
                    .or_insert(object.modified_ms);
            }
            // A 24-hex name plus `.json`: a WALG_UPLOAD_WAL_METADATA sidecar of a segment.
            WalKind::Metadata if object.name.len() == 29 => odd.sidecars += 1,
            WalKind::Other => odd.unknown.push(object.name.clone()),
            WalKind::Partial => {
                partials.insert((object.key.tli, object.key.segno));
            }
            WalKind::Metadata | WalKind::BackupHistory | WalKind::Delta => {}
        }
    }
    report(&odd, findings);
    WalScan {
        segs,
        history_tlis,
        newest_wal_ms,
        history_modified_ms,
        partials,
    }
}

/// Adds a segment object to its timeline's table; false (and counted) when the segment is already there.
fn add_segment(table: &mut SegTable, object: &WalObject, odd: &mut Oddities) -> bool {
    let segno = object.key.segno;
    match table.segnos.last() {
        Some(&last) if last == segno => {
            odd.duplicates += 1;
            if odd.duplicate_examples.len() < 3 {
                odd.duplicate_examples.push(object.name.clone());
            }
            false
        }
        Some(&last) if last > segno => {
            // Not sorted (should not happen: the index keeps names sorted); keep it correct.
            let pos = table.segnos.partition_point(|&s| s < segno);
            if table.segnos.get(pos) == Some(&segno) {
                odd.duplicates += 1;
                return false;
            }
            table.segnos.insert(pos, segno);
            table.sizes.insert(pos, object.size);
            table.mtimes.insert(pos, object.modified_ms);
            true
        }
        _ => {
            table.segnos.push(segno);
            table.sizes.push(object.size);
            table.mtimes.push(object.modified_ms);
            true
        }
    }
}

/// `a, b, c` from the first three names.
fn examples(names: &[String]) -> String {
    names.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
}

fn is_or_are(n: usize) -> &'static str {
    if n == 1 {
        "is"
    } else {
        "are"
    }
}

fn report(odd: &Oddities, findings: &mut Findings) {
    if odd.duplicates > 0 {
        findings.push(
            Severity::Warning,
            FindingCode::DuplicateCompression,
            format!(
                "{} stored more than once with different compression extensions (e.g. {}). Restores use whichever \
                 wal-g finds first; check that the copies are identical and delete the extra ones.",
                plural(odd.duplicates, "WAL segment is", "WAL segments are"),
                odd.duplicate_examples.join(", ")
            ),
            odd.duplicate_examples.first().cloned(),
        );
    }
    if !odd.zero_size.is_empty() {
        findings.push(
            Severity::Warning,
            FindingCode::ZeroSizeObjects,
            format!(
                "{} in wal_005/ {} empty (e.g. {}): an interrupted upload. Restores that need them will fail.",
                plural(odd.zero_size.len() as u64, "object", "objects"),
                is_or_are(odd.zero_size.len()),
                examples(&odd.zero_size)
            ),
            odd.zero_size.first().cloned(),
        );
    }
    if !odd.unknown.is_empty() {
        findings.push(
            Severity::Warning,
            FindingCode::UnknownWalObjects,
            format!(
                "{} in wal_005/ {} not named like anything wal-g or PostgreSQL writes (e.g. {}); they were ignored.",
                plural(odd.unknown.len() as u64, "object", "objects"),
                is_or_are(odd.unknown.len()),
                examples(&odd.unknown)
            ),
            odd.unknown.first().cloned(),
        );
    }
    if odd.legacy_dot > 0 {
        findings.push(
            Severity::Info,
            FindingCode::LegacyTrailingDot,
            format!(
                "{} named with a trailing dot (wal-g's old naming for uncompressed objects); they are read normally.",
                plural(odd.legacy_dot, "WAL segment is", "WAL segments are")
            ),
            None,
        );
    }
    if odd.sidecars > 0 {
        findings.push(
            Severity::Info,
            FindingCode::WalMetadataSidecars,
            format!(
                "{} (WALG_UPLOAD_WAL_METADATA) found. They are not segments, though wal-g's own wal-show and \
                 wal-verify count them as segments; this reader does not.",
                plural(odd.sidecars, "WAL metadata .json file", "WAL metadata .json files")
            ),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_wal, empty_index, segment_name};
    use super::*;

    #[test]
    fn segments_land_in_sorted_tables_per_timeline() {
        let mut index = empty_index();
        for n in [3, 1, 2] {
            add_wal(
                &mut index,
                &format!("{}.lz4", segment_name(1, n)),
                10,
                n as i64 * 1000,
            );
        }
        add_wal(&mut index, &format!("{}.zst", segment_name(2, 7)), 20, 9000);
        add_wal(&mut index, "00000002.history", 50, 1);
        let mut findings = Findings::default();
        let scan = scan(&index, &mut findings);
        assert_eq!(scan.table(1).segnos, [1, 2, 3]);
        assert_eq!(scan.table(1).mtimes, [1000, 2000, 3000]);
        assert_eq!(scan.table(2).sizes, [20]);
        assert!(scan.table(5).segnos.is_empty());
        assert_eq!(scan.history_tlis, BTreeSet::from([2]));
        assert_eq!(scan.newest_wal_ms, Some(9000));
        assert!(findings.codes().is_empty());
    }

    #[test]
    fn duplicates_count_once_and_are_reported() {
        let mut index = empty_index();
        add_wal(&mut index, &format!("{}.br", segment_name(1, 1)), 10, 5000);
        add_wal(&mut index, &format!("{}.lz4", segment_name(1, 1)), 10, 7000);
        let mut findings = Findings::default();
        let scan = scan(&index, &mut findings);
        assert_eq!(scan.table(1).segnos, [1]);
        // The duplicate's time does not count as the newest WAL.
        assert_eq!(scan.newest_wal_ms, Some(5000));
        let dup = findings.with_code(FindingCode::DuplicateCompression);
        assert_eq!(dup.len(), 1);
        assert!(dup[0]
            .message
            .starts_with("1 WAL segment is stored more than once"));
        assert_eq!(
            dup[0].object.as_deref(),
            Some(format!("{}.lz4", segment_name(1, 1)).as_str())
        );
    }

    #[test]
    fn odd_objects_are_reported() {
        let mut index = empty_index();
        add_wal(&mut index, &format!("{}.lz4", segment_name(1, 1)), 0, 1);
        add_wal(&mut index, &format!("{}.", segment_name(1, 2)), 10, 1);
        add_wal(&mut index, &format!("{}.json", segment_name(1, 2)), 0, 1);
        add_wal(&mut index, "notes.txt", 10, 1);
        let mut findings = Findings::default();
        let scan = scan(&index, &mut findings);
        assert_eq!(scan.table(1).segnos, [1, 2]);
        assert_eq!(
            findings.codes(),
            [
                FindingCode::ZeroSizeObjects,
                FindingCode::UnknownWalObjects,
                FindingCode::LegacyTrailingDot,
                FindingCode::WalMetadataSidecars,
            ]
        );
        // The empty sidecar is not an empty object: sidecars may be empty.
        assert!(findings.with_code(FindingCode::ZeroSizeObjects)[0]
            .message
            .starts_with("1 object in wal_005/ is empty"));
    }
}
