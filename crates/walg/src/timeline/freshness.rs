//! Pass 9, freshness and emptiness: the age of the newest WAL segment and of the newest restorable backup, and
//! what it means when there is little or nothing in storage.
//!
//! Invariants: ages are measured from `now`; at most one of `empty_storage`, `no_backups`, `nothing_restorable`
//! is reported (the first that applies); staleness uses the thresholds of [`Options`].

use super::backups::BackupSet;
use super::findings::{FindingCode, Findings, Severity};
use super::tree::Tree;
use super::wal_scan::WalScan;
use super::{human_age, ms_to_time, Freshness, Options};
use crate::index::Index;
use time::OffsetDateTime;

/// Runs the pass.
pub(crate) fn assess(
    index: &Index,
    now: OffsetDateTime,
    opts: Options,
    wal: &WalScan,
    set: &BackupSet,
    tree: &Tree,
    findings: &mut Findings,
) -> Freshness {
    let newest_backup = set.restorable().filter_map(|b| b.finish_time).max();
    let newest_wal = wal.newest_wal_ms.map(ms_to_time);
    let freshness = Freshness {
        newest_wal,
        newest_wal_age_seconds: newest_wal.map(|t| (now - t).whole_seconds()),
        newest_backup,
        newest_backup_age_seconds: newest_backup.map(|t| (now - t).whole_seconds()),
    };
    report_emptiness(index, wal, set, findings);
    report_staleness(&freshness, opts, findings);
    report_backup_behind_timeline(set, tree, findings);
    freshness
}

fn report_emptiness(index: &Index, wal: &WalScan, set: &BackupSet, findings: &mut Findings) {
    if index.backups.is_empty() && index.wal.is_empty() && index.folders.is_empty() {
        findings.push(
            Severity::Error,
            FindingCode::EmptyStorage,
            format!(
                "Nothing found at {}: no basebackups_005/ and no wal_005/. Check the prefix (and \
                 WALG_STORAGE_PREFIX).",
                index.url
            ),
            None,
        );
    } else if set.backups.is_empty() {
        findings.push(
            Severity::Error,
            FindingCode::NoBackups,
            "No complete base backup: nothing can be restored. Run `wal-g backup-push`."
                .to_string(),
            None,
        );
    } else if set.restorable().next().is_none() {
        findings.push(
            Severity::Error,
            FindingCode::NothingRestorable,
            "No backup can be restored (see the other findings).".to_string(),
            None,
        );
    }
    // The scan puts every segment (and only segments) in a table.
    if wal.segs.is_empty() && !set.backups.is_empty() {
        findings.push(
            Severity::Error,
            FindingCode::NoWal,
            "There are backups but no WAL segments in wal_005/: is archive_command running?"
                .to_string(),
            None,
        );
    }
}

fn report_staleness(freshness: &Freshness, opts: Options, findings: &mut Findings) {
    if let Some(age) = freshness.newest_wal_age_seconds {
        if age > opts.stale_wal_seconds {
            findings.push(
                Severity::Warning,
                FindingCode::StaleWal,
                format!(
                    "The newest WAL segment is {} old: archiving may have stopped, and recent changes could not be \
                     restored.",
                    human_age(age)
                ),
                None,
            );
        }
    }
    if let Some(age) = freshness.newest_backup_age_seconds {
        if age > opts.stale_backup_seconds {
            findings.push(
                Severity::Warning,
                FindingCode::StaleBackup,
                format!(
                    "The newest restorable base backup finished {} ago; restores will replay a lot of WAL.",
                    human_age(age)
                ),
                None,
            );
        }
    }
}

/// wal-verify's timeline check: the highest timeline against the newest restorable backup's.
fn report_backup_behind_timeline(set: &BackupSet, tree: &Tree, findings: &mut Findings) {
    let (Some(&highest), Some(newest)) = (
        tree.all.iter().max(),
        set.restorable().max_by_key(|b| b.finish_time),
    ) else {
        return;
    };
    if highest > newest.timeline {
        findings.push(
            Severity::Warning,
            FindingCode::BackupBehindTimeline,
            format!(
                "The newest backup ({}) is on timeline {}, but storage has timeline {highest}: take a new base \
                 backup after a promotion so restores do not depend on the switch.",
                newest.name, newest.timeline
            ),
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{add_history, add_segments, at, backup, empty_index, SEG};
    use super::super::{backups, histories, lineages, restorable, tree, wal_scan};
    use super::*;

    fn run(index: &Index, now: OffsetDateTime) -> (Freshness, Findings) {
        let mut earlier = Findings::default();
        let wal = wal_scan::scan(index, &mut earlier);
        let histories = histories::read(index, &mut earlier);
        let set = backups::collect(index, now, Default::default(), &mut earlier);
        let tree = tree::build(&wal, &histories, &set, &mut earlier);
        let lineages = lineages::trace(&tree, &histories, &wal, SEG, &mut earlier);
        let set = restorable::place(set, &lineages, &wal, SEG, &mut earlier);
        let mut findings = Findings::default();
        let freshness = assess(
            index,
            now,
            Options::default(),
            &wal,
            &set,
            &tree,
            &mut findings,
        );
        (freshness, findings)
    }

    #[test]
    fn ages_of_the_newest_wal_and_backup() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 10);
        backup(1, 2, 3).add_to(&mut index);
        let (freshness, findings) = run(&index, at(70));
        assert_eq!(freshness.newest_wal, Some(at(10)));
        assert_eq!(freshness.newest_wal_age_seconds, Some(3600));
        assert_eq!(freshness.newest_backup, Some(at(3)));
        assert_eq!(freshness.newest_backup_age_seconds, Some(67 * 60));
        assert!(findings.codes().is_empty());
    }

    #[test]
    fn stale_wal_and_backups() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 10);
        backup(1, 2, 3).add_to(&mut index);
        let (_, findings) = run(&index, at(10 * 24 * 60));
        assert_eq!(
            findings.codes(),
            [FindingCode::StaleWal, FindingCode::StaleBackup]
        );
        assert_eq!(
            findings.with_code(FindingCode::StaleWal)[0].message,
            "The newest WAL segment is 9 days old: archiving may have stopped, and recent changes could not be \
             restored."
        );
    }

    #[test]
    fn empty_storage_and_missing_pieces() {
        let (_, findings) = run(&empty_index(), at(0));
        assert_eq!(findings.codes(), [FindingCode::EmptyStorage]);

        let mut wal_only = empty_index();
        add_segments(&mut wal_only, 1, 1, 2);
        let (_, findings) = run(&wal_only, at(0));
        assert_eq!(findings.codes(), [FindingCode::NoBackups]);

        let mut backups_only = empty_index();
        backup(1, 2, 3).add_to(&mut backups_only);
        let (_, findings) = run(&backups_only, at(0));
        assert_eq!(
            findings.codes(),
            [FindingCode::NothingRestorable, FindingCode::NoWal]
        );
    }

    #[test]
    fn a_newer_timeline_than_the_newest_backup_is_reported() {
        let mut index = empty_index();
        add_segments(&mut index, 1, 1, 6);
        backup(1, 2, 3).add_to(&mut index);
        add_history(&mut index, 2, &[(1, 5)]);
        add_segments(&mut index, 2, 5, 6);
        let (_, findings) = run(&index, at(10));
        assert_eq!(findings.codes(), [FindingCode::BackupBehindTimeline]);
    }
}
