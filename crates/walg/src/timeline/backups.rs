//! Pass 3, the backups: one [`Backup`] per readable sentinel with a wal-g name, its problems (missing data,
//! impossible LSNs) and its delta chain; plus what is wrong around the backups (mixed clusters, folders without a
//! sentinel, stray objects).
//!
//! Invariants: a backup exists iff its sentinel is readable and its name parses; values come from metadata.json
//! first for times, permanence and sizes, from the sentinel first for LSNs and the system identifier; the finish
//! time falls back to the sentinel's LastModified (flagged approximate). The backups keep the index's order
//! (by name); windows and restorability are left for the [`super::restorable`] pass.

use super::findings::{FindingCode, Findings, Severity};
use super::{human_bytes, ms_to_time, plural, Backup, Options};
use crate::documents::{Metadata, Sentinel};
use crate::index::{BackupEntry, Doc, Index};
use crate::names::{segment_of, BackupName, Lsn};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// The complete backups, in the index's order (by name).
#[derive(Debug, Default)]
pub(crate) struct BackupSet {
    pub backups: Vec<Backup>,
}

impl BackupSet {
    /// Whether a backup was taken on `tli`.
    pub(crate) fn has_timeline(&self, tli: u32) -> bool {
        self.backups.iter().any(|b| b.timeline == tli)
    }

    /// The restorable backups.
    pub(crate) fn restorable(&self) -> impl Iterator<Item = &Backup> {
        self.backups.iter().filter(|b| b.restorable)
    }
}

/// Runs the pass.
pub(crate) fn collect(
    index: &Index,
    now: OffsetDateTime,
    opts: Options,
    findings: &mut Findings,
) -> BackupSet {
    let mut system_ids: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut backups = Vec::new();
    for entry in index.backups.values() {
        if let Some(backup) = read_backup(index, entry, findings) {
            if let Some(id) = backup.system_identifier {
                system_ids.entry(id).or_default().push(backup.name.clone());
            }
            backups.push(backup);
        }
    }
    report_incomplete(&backups, findings);
    link_delta_chains(index, &mut backups, findings);
    report_mixed_system_identifiers(&system_ids, findings);
    report_folders_without_sentinel(index, now, opts, findings);
    report_stray_objects(index, findings);
    BackupSet { backups }
}

/// `basebackups_005/<name>`, the object findings about a backup point at.
fn backup_object(name: &str) -> Option<String> {
    Some(format!("basebackups_005/{name}"))
}

/// One backup from its index entry; `None` when its name or sentinel cannot be used.
fn read_backup(index: &Index, entry: &BackupEntry, findings: &mut Findings) -> Option<Backup> {
    let name = parse_name(entry, findings)?;
    let sentinel = usable_sentinel(entry, findings)?;
    let metadata = usable_metadata(entry, findings);
    let segsize = index.segment_size;
    let start_lsn = sentinel.lsn.or(metadata.and_then(|m| m.start_lsn));
    let finish_lsn = sentinel.finish_lsn.or(metadata.and_then(|m| m.finish_lsn));
    let finish_time = metadata
        .and_then(|m| m.finish_time)
        .or(sentinel.finish_time);
    let system_identifier = sentinel
        .system_identifier
        .or(metadata.and_then(|m| m.system_identifier));
    let mut problems = Vec::new();
    match start_lsn {
        None => problems.push("its sentinel has no start LSN".to_string()),
        Some(lsn) => check_name_matches_lsn(entry, &name, lsn, segsize, findings),
    }
    if let (Some(start), Some(finish)) = (start_lsn, finish_lsn) {
        if finish < start {
            problems.push(format!(
                "its finish LSN {} is before its start LSN {}",
                Lsn(finish),
                Lsn(start)
            ));
        }
    }
    problems.extend(data_problems(index, entry, &name));
    if entry.metadata == Doc::Missing {
        findings.push(
            Severity::Info,
            FindingCode::MissingMetadata,
            format!(
                "Backup {} has no metadata.json (old wal-g or WAL-E); times and permanence come from the sentinel.",
                entry.name
            ),
            backup_object(&entry.name),
        );
    }
    Some(Backup {
        name: entry.name.clone(),
        timeline: name.timeline,
        start_lsn,
        finish_lsn,
        start_time: metadata.and_then(|m| m.start_time).or(sentinel.start_time),
        finish_time: finish_time.or(Some(ms_to_time(entry.sentinel_modified_ms))),
        finish_time_approximate: finish_time.is_none(),
        permanent: resolve_permanence(entry, sentinel, metadata, findings),
        delta_from: sentinel.delta_from.clone(),
        delta_chain: Vec::new(),
        system_identifier,
        pg_version: metadata.and_then(|m| m.pg_version).or(sentinel.pg_version),
        hostname: metadata
            .and_then(|m| m.hostname.clone())
            .or(sentinel.hostname.clone()),
        compressed_size: metadata
            .and_then(|m| m.compressed_size)
            .or(sentinel.compressed_size),
        uncompressed_size: metadata
            .and_then(|m| m.uncompressed_size)
            .or(sentinel.uncompressed_size),
        sentinel_modified: ms_to_time(entry.sentinel_modified_ms),
        restorable: false,
        problems,
        windows: Vec::new(),
    })
}

fn parse_name(entry: &BackupEntry, findings: &mut Findings) -> Option<BackupName> {
    let parsed = BackupName::parse(&entry.name);
    if parsed.is_none() {
        findings.push(
            Severity::Warning,
            FindingCode::BadBackupName,
            format!(
                "Backup sentinel '{}' does not follow wal-g's naming (base_<24 hex digits>[_D_<24 hex digits>]); \
                 it was ignored.",
                entry.name
            ),
            backup_object(&entry.name),
        );
    }
    parsed
}

/// The sentinel when it was read; its field problems are reported.
fn usable_sentinel<'a>(entry: &'a BackupEntry, findings: &mut Findings) -> Option<&'a Sentinel> {
    let sentinel = match &entry.sentinel {
        Doc::Ok(sentinel) => sentinel,
        Doc::Error(err) => {
            findings.push(
                Severity::Error,
                FindingCode::UnreadableSentinel,
                format!(
                    "Backup {} cannot be used: its sentinel is unreadable ({err}).",
                    entry.name
                ),
                backup_object(&entry.name),
            );
            return None;
        }
        Doc::Missing => return None,
    };
    for problem in &sentinel.problems {
        findings.push(
            Severity::Warning,
            FindingCode::SentinelField,
            format!("Sentinel of {}: {problem}.", entry.name),
            backup_object(&entry.name),
        );
    }
    Some(sentinel)
}

/// metadata.json when it was read; its field problems and an unreadable file are reported.
fn usable_metadata<'a>(entry: &'a BackupEntry, findings: &mut Findings) -> Option<&'a Metadata> {
    match &entry.metadata {
        Doc::Ok(metadata) => {
            for problem in &metadata.problems {
                findings.push(
                    Severity::Warning,
                    FindingCode::MetadataField,
                    format!("metadata.json of {}: {problem}.", entry.name),
                    backup_object(&entry.name),
                );
            }
            Some(metadata)
        }
        Doc::Error(err) => {
            findings.push(
                Severity::Warning,
                FindingCode::UnreadableMetadata,
                format!(
                    "metadata.json of {} is unreadable ({err}); the sentinel's values are used.",
                    entry.name
                ),
                backup_object(&entry.name),
            );
            None
        }
        Doc::Missing => None,
    }
}

/// Permanence from metadata.json, else the sentinel; a sentinel that disagrees is reported.
fn resolve_permanence(
    entry: &BackupEntry,
    sentinel: &Sentinel,
    metadata: Option<&Metadata>,
    findings: &mut Findings,
) -> bool {
    let from_metadata = metadata.and_then(|m| m.is_permanent);
    if let (Some(meta), Some(sent)) = (from_metadata, sentinel.is_permanent) {
        if meta != sent {
            let word = |p: bool| if p { "permanent" } else { "not permanent" };
            findings.push(
                Severity::Info,
                FindingCode::StaleSentinelPermanence,
                format!(
                    "Backup {} is {} according to metadata.json, but its sentinel still says {} (backup-mark \
                     rewrites only metadata.json). metadata.json is used.",
                    entry.name,
                    word(meta),
                    word(sent)
                ),
                backup_object(&entry.name),
            );
        }
    }
    from_metadata.or(sentinel.is_permanent).unwrap_or(false)
}

/// Reports a name whose segment is not the start LSN's (a WAL segment size that does not match).
fn check_name_matches_lsn(
    entry: &BackupEntry,
    name: &BackupName,
    start_lsn: u64,
    segsize: u64,
    findings: &mut Findings,
) {
    let Some(named) = name.start_segment(segsize) else {
        return;
    };
    if named != segment_of(start_lsn, segsize) && name.wale_offset.is_none() {
        findings.push(
            Severity::Warning,
            FindingCode::NameLsnMismatch,
            format!(
                "Backup {} starts at {} but its name points at segment {}; WALG_PG_WAL_SIZE may not match the \
                 cluster's WAL segment size ({} MiB assumed).",
                entry.name,
                Lsn(start_lsn),
                name.start_wal,
                segsize >> 20
            ),
            backup_object(&entry.name),
        );
    }
}

/// What is missing from the backup's folder (data tars, pg_control).
fn data_problems(index: &Index, entry: &BackupEntry, name: &BackupName) -> Vec<String> {
    let Some(folder) = index.folders.get(&entry.name) else {
        return vec!["its data folder is missing".to_string()];
    };
    let mut problems = Vec::new();
    let has_data = folder
        .tars
        .iter()
        .any(|t| t.starts_with("part_") || t.starts_with("copy_"));
    if !has_data {
        problems.push("it has no data tar (tar_partitions/part_*)".to_string());
    }
    let has_control = folder.tars.iter().any(|t| t.starts_with("pg_control.tar"));
    if !has_control && name.wale_offset.is_none() {
        problems.push("pg_control.tar is missing".to_string());
    }
    problems
}

fn report_incomplete(backups: &[Backup], findings: &mut Findings) {
    for backup in backups.iter().filter(|b| !b.problems.is_empty()) {
        findings.push(
            Severity::Error,
            FindingCode::BackupIncomplete,
            format!(
                "Backup {} cannot be restored: {}.",
                backup.name,
                backup.problems.join("; ")
            ),
            backup_object(&backup.name),
        );
    }
}

/// Fills each delta backup's chain (nearest ancestor first). In index order, so a child sees the problems of a
/// parent whose own chain broke.
fn link_delta_chains(index: &Index, backups: &mut [Backup], findings: &mut Findings) {
    let by_name: HashMap<String, usize> = backups
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.clone(), i))
        .collect();
    for i in 0..backups.len() {
        let (chain, broken) = trace_delta_chain(backups, &by_name, i);
        let name = backups[i].name.clone();
        if let Some(why) = broken {
            findings.push(
                Severity::Error,
                FindingCode::BrokenDeltaChain,
                format!("Delta backup {name} cannot be restored: {why}."),
                backup_object(&name),
            );
            backups[i].problems.push(why);
        } else if let (Some(root), Some(declared)) =
            (chain.last(), declared_full_name(index, &name))
        {
            if *root != declared {
                findings.push(
                    Severity::Warning,
                    FindingCode::DeltaFullNameMismatch,
                    format!(
                        "Delta backup {name} says its full backup is {declared}, but its chain ends at {root}."
                    ),
                    backup_object(&name),
                );
            }
        }
        backups[i].delta_chain = chain;
    }
}

/// The sentinel's `DeltaFullName`, when the sentinel was read and has one.
fn declared_full_name(index: &Index, name: &str) -> Option<String> {
    index
        .backups
        .get(name)
        .and_then(|e| e.sentinel.ok())
        .and_then(|s| s.delta_full_name.clone())
}

/// The ancestors of backup `i` and why the chain is broken, if it is.
fn trace_delta_chain(
    backups: &[Backup],
    by_name: &HashMap<String, usize>,
    i: usize,
) -> (Vec<String>, Option<String>) {
    let mut chain: Vec<String> = Vec::new();
    let mut parent = backups[i].delta_from.clone();
    let mut broken = None;
    while let Some(p) = parent {
        if chain.contains(&p) || chain.len() > 10_000 || p == backups[i].name {
            broken = Some(format!("its delta chain loops at {p}"));
            break;
        }
        let Some(&j) = by_name.get(&p) else {
            broken = Some(format!("its delta parent {p} does not exist (no sentinel)"));
            chain.push(p);
            break;
        };
        if !backups[j].problems.is_empty() {
            broken = Some(format!(
                "its delta parent {p} is unusable ({})",
                backups[j].problems.join("; ")
            ));
        }
        chain.push(p);
        parent = backups[j].delta_from.clone();
    }
    (chain, broken)
}

fn report_mixed_system_identifiers(
    system_ids: &BTreeMap<u64, Vec<String>>,
    findings: &mut Findings,
) {
    if system_ids.len() <= 1 {
        return;
    }
    let described: Vec<String> = system_ids
        .iter()
        .map(|(id, names)| format!("{id} ({})", plural(names.len() as u64, "backup", "backups")))
        .collect();
    findings.push(
        Severity::Error,
        FindingCode::MixedSystemIdentifiers,
        format!(
            "Backups from more than one database cluster share this prefix (system identifiers {}). WAL names \
             collide between clusters, and wal-g's retention may delete the wrong cluster's files. Give each \
             cluster its own prefix.",
            described.join(", ")
        ),
        None,
    );
}

/// Folders without a sentinel: an upload in progress (recent and newer than every sentinel) or garbage.
fn report_folders_without_sentinel(
    index: &Index,
    now: OffsetDateTime,
    opts: Options,
    findings: &mut Findings,
) {
    let newest_sentinel = index
        .backups
        .values()
        .map(|b| b.sentinel_modified_ms)
        .max()
        .unwrap_or(i64::MIN);
    for (name, folder) in &index.folders {
        if index.backups.contains_key(name) {
            continue;
        }
        let object = Some(format!("basebackups_005/{name}/"));
        let recent = (now - ms_to_time(folder.newest_modified_ms)).whole_seconds()
            < opts.in_progress_seconds;
        if recent && folder.newest_modified_ms >= newest_sentinel {
            findings.push(
                Severity::Info,
                FindingCode::BackupInProgress,
                format!("Backup {name} has data but no sentinel yet: probably still uploading."),
                object,
            );
        } else {
            findings.push(
                Severity::Warning,
                FindingCode::GarbageFolder,
                format!(
                    "basebackups_005/{name}/ holds {} ({}) but no sentinel: a failed or half-deleted backup. It \
                     cannot be restored; `wal-g delete garbage` removes it.",
                    plural(folder.objects, "object", "objects"),
                    human_bytes(folder.bytes)
                ),
                object,
            );
        }
    }
}

fn report_stray_objects(index: &Index, findings: &mut Findings) {
    let stray = &index.stray_keys;
    if stray.is_empty() {
        return;
    }
    findings.push(
        Severity::Info,
        FindingCode::StrayObjects,
        format!(
            "{} in basebackups_005/ {} neither a sentinel nor inside a backup folder (e.g. {}); ignored.",
            plural(stray.len() as u64, "object", "objects"),
            if stray.len() == 1 { "is" } else { "are" },
            stray.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ),
        None,
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{at, backup, empty_index, ms};
    use super::*;
    use crate::index::Folder;

    fn run(index: &Index) -> (BackupSet, Findings) {
        let mut findings = Findings::default();
        let set = collect(index, at(100), Options::default(), &mut findings);
        (set, findings)
    }

    #[test]
    fn a_complete_backup_takes_metadata_first() {
        let mut index = empty_index();
        let mut fixture = backup(1, 2, 4);
        fixture.sentinel.finish_time = Some(at(99));
        fixture.sentinel.is_permanent = Some(true);
        if let Doc::Ok(m) = &mut fixture.metadata {
            m.is_permanent = Some(true);
            m.hostname = Some("db1".into());
        }
        let name = fixture.add_to(&mut index);
        let (set, findings) = run(&index);
        assert!(findings.codes().is_empty(), "{:?}", findings.codes());
        let b = &set.backups[0];
        assert_eq!(b.name, name);
        assert_eq!(b.timeline, 1);
        assert_eq!(b.finish_time, Some(at(4)));
        assert!(!b.finish_time_approximate);
        assert!(b.permanent);
        assert_eq!(b.hostname.as_deref(), Some("db1"));
        assert!(b.problems.is_empty());
        assert!(!b.restorable, "restorability is the restorable pass's job");
    }

    #[test]
    fn missing_pieces_are_problems_and_findings() {
        let mut index = empty_index();
        let mut fixture = backup(1, 2, 4);
        fixture.folder = None;
        fixture.metadata = Doc::Missing;
        fixture.sentinel.lsn = None;
        fixture.add_to(&mut index);
        let (set, findings) = run(&index);
        let b = &set.backups[0];
        assert_eq!(
            b.problems,
            [
                "its sentinel has no start LSN",
                "its data folder is missing"
            ]
        );
        assert!(b.finish_time_approximate);
        assert_eq!(
            findings.codes(),
            [FindingCode::MissingMetadata, FindingCode::BackupIncomplete]
        );
    }

    #[test]
    fn unusable_sentinels_and_names_leave_no_backup() {
        let mut index = empty_index();
        let mut fixture = backup(1, 2, 4);
        fixture.name = "base_nonsense".into();
        fixture.add_to(&mut index);
        let name = backup(1, 6, 8).add_to(&mut index);
        if let Some(entry) = index.backups.get_mut(&name) {
            entry.sentinel = Doc::Error("not valid JSON".into());
        }
        let (set, findings) = run(&index);
        assert!(set.backups.is_empty());
        // In the index's order: `base_0...` before `base_n...`.
        assert_eq!(
            findings.codes(),
            [FindingCode::UnreadableSentinel, FindingCode::BadBackupName]
        );
    }

    #[test]
    fn delta_chains_are_linked_and_broken_ones_reported() {
        let mut index = empty_index();
        let full = backup(1, 2, 3).add_to(&mut index);
        let delta = backup(1, 5, 6).delta_of(&full).add_to(&mut index);
        let delta2 = backup(1, 8, 9).delta_of(&delta).add_to(&mut index);
        let orphan = backup(1, 12, 13)
            .delta_of("base_000000010000000000000001")
            .add_to(&mut index);
        let (set, findings) = run(&index);
        let chain_of = |name: &str| {
            set.backups
                .iter()
                .find(|b| b.name == name)
                .map(|b| b.delta_chain.clone())
                .unwrap_or_default()
        };
        assert_eq!(chain_of(&full), Vec::<String>::new());
        assert_eq!(chain_of(&delta2), [delta.clone(), full.clone()]);
        assert_eq!(chain_of(&orphan), ["base_000000010000000000000001"]);
        let broken = findings.with_code(FindingCode::BrokenDeltaChain);
        assert_eq!(broken.len(), 1);
        assert!(broken[0].message.contains("does not exist (no sentinel)"));
    }

    #[test]
    fn folders_without_sentinel_are_in_progress_or_garbage() {
        let mut index = empty_index();
        backup(1, 2, 3).add_to(&mut index);
        let folder = |minute| Folder {
            objects: 2,
            bytes: 2048,
            newest_modified_ms: ms(minute),
            ..Folder::default()
        };
        index.folders.insert("base_old".into(), folder(1));
        index.folders.insert("base_new".into(), folder(99));
        index.stray_keys.push("README".into());
        let (_, findings) = run(&index);
        assert_eq!(
            findings.codes(),
            [
                FindingCode::BackupInProgress,
                FindingCode::GarbageFolder,
                FindingCode::StrayObjects
            ]
        );
        let garbage = &findings.with_code(FindingCode::GarbageFolder)[0];
        assert!(garbage.message.contains("holds 2 objects (2.0 KiB)"));
    }

    #[test]
    fn backups_of_two_clusters_are_an_error() {
        let mut index = empty_index();
        backup(1, 2, 3).add_to(&mut index);
        let mut other = backup(1, 5, 6);
        other.sentinel.system_identifier = Some(8);
        other.add_to(&mut index);
        let (_, findings) = run(&index);
        let mixed = findings.with_code(FindingCode::MixedSystemIdentifiers);
        assert_eq!(mixed.len(), 1);
        assert!(mixed[0].message.contains("7 (1 backup), 8 (1 backup)"));
    }
}
