//! The restore side: resolving `dataRestoreCommand`, then backup-fetch and WAL replay as the keeper
//! does them (roles, databases and `postgresql.conf` come out of the backup's own tar). Invariants: a
//! backup starts only under its own Postgres major; replay follows the archive's timeline history
//! (`latest` unless told otherwise) and, with a recovery target, needs a commit after it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::archive::commit_of;
use super::list::list_backups;
use super::{decompress, mtime_ms, storage_root, wal_name, SEG_SIZE};
use crate::model::*;

pub(crate) struct ResolvedBackup {
    pub name: String,
    pub compressed_size: u64,
}

/// Resolve `dataRestoreCommand` (`wal-g backup-fetch %d LATEST|<name>`) against the keeper's env.
pub(crate) fn resolve_restore_command(
    cmd: &str,
    env: &BTreeMap<String, String>,
) -> Result<ResolvedBackup, String> {
    let argv = shlex::split(cmd)
        .ok_or_else(|| format!("sh: 1: Syntax error: Unterminated quoted string ({cmd})"))?;
    let prog = argv
        .first()
        .map(|s| s.rsplit('/').next().unwrap_or(s))
        .unwrap_or("");
    if prog != "wal-g" {
        return Err(format!(
            "sh: 1: {}: not found (flysim emulates `wal-g backup-fetch` as dataRestoreCommand)",
            argv.first().cloned().unwrap_or_default()
        ));
    }
    if argv.get(1).map(|s| s.as_str()) != Some("backup-fetch") {
        return Err(format!(
            "flysim: dataRestoreCommand {cmd:?} is not `wal-g backup-fetch %d <backup>`"
        ));
    }
    let which = argv.get(3).cloned().unwrap_or_else(|| "LATEST".into());
    let root = storage_root(env, 0)?;
    let backups = list_backups(&root);
    let found = if which == "LATEST" {
        backups
            .last()
            .cloned()
            .ok_or_else(|| "ERROR: No backups found".to_string())?
    } else {
        backups
            .iter()
            .find(|b| b.name == which)
            .cloned()
            .ok_or_else(|| format!("ERROR: Backup '{which}' does not exist."))?
    };
    Ok(ResolvedBackup {
        compressed_size: found.sentinel["CompressedSize"].as_u64().unwrap_or(0),
        name: found.name,
    })
}

pub(super) fn parse_pg_time(s: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    let s = s.trim();
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(crate::clock::ms(t));
    }
    // Postgres' own form: "2022-05-07 20:34:02.998+00"
    let norm = if s.ends_with("+00") || s.ends_with("-00") {
        format!("{s}:00")
    } else {
        s.to_string()
    };
    let f1 = format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory]:[offset_minute]");
    let f2 = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    time::OffsetDateTime::parse(&norm, f1)
        .or_else(|_| time::OffsetDateTime::parse(&norm, f2))
        .ok()
        .map(crate::clock::ms)
}

/// A physical backup starts only under the Postgres major it was taken with: PostgreSQL refuses the
/// data directory (`ValidatePgVersion`) and the keeper retries starting it. flyctl's
/// `flypg/launcher.go` launches the latest `flyio/postgres` tag unless `--image-ref` says otherwise.
fn check_major_version(backup_version: u64, server_version: u32) -> Result<(), String> {
    let backup_major = backup_version / 10000;
    let server_major = u64::from(server_version / 10000);
    if backup_version == 0 || backup_major == server_major {
        return Ok(());
    }
    Err(format!(
        "FATAL:  database files are incompatible with server\nDETAIL:  The data directory was initialized by PostgreSQL version {backup_major}, which is not compatible with this version {server_major}.{}.",
        server_version % 10000
    ))
}

/// One timeline on the way from the backup's to the one replay ends on: replay reads it below
/// `until_seg` (the segment holding its switch point belongs to the next timeline).
#[derive(Debug, Clone, Copy)]
struct TimelineStep {
    timeline: u32,
    until_seg: u64,
}

/// The timeline a segment is read from.
fn timeline_of_segment(path: &[TimelineStep], seg: u64) -> u32 {
    path.iter()
        .find(|step| seg < step.until_seg)
        .or(path.last())
        .map_or(1, |step| step.timeline)
}

/// The timelines replay follows from `backup_tli`. `recovery_target_timeline` defaults to `latest`
/// (PostgreSQL 12+; stolon's keeper sets it explicitly without a target, `keeper.go`
/// `createRecoveryOptions`): the newest timeline whose history file (`NNNNNNNN.history` in `wal_005`)
/// descends from the backup's; `current` stays; a number picks that timeline.
fn timeline_path(root: &Path, backup_tli: u32, setting: Option<&str>) -> Vec<TimelineStep> {
    let stay = vec![TimelineStep {
        timeline: backup_tli,
        until_seg: u64::MAX,
    }];
    let histories = read_histories(root);
    let target = match setting.map(str::trim) {
        Some("current") => return stay,
        Some(number) if number != "latest" => match number.parse::<u32>() {
            Ok(timeline) => timeline,
            Err(_) => return stay,
        },
        _ => histories
            .iter()
            .filter(|(_, parents)| parents.iter().any(|(parent, _)| *parent == backup_tli))
            .map(|(timeline, _)| *timeline)
            .max()
            .unwrap_or(backup_tli),
    };
    let Some(parents) = histories.get(&target) else {
        return stay;
    };
    let mut path: Vec<TimelineStep> = parents
        .iter()
        .filter(|(parent, _)| *parent >= backup_tli)
        .map(|(parent, switch_lsn)| TimelineStep {
            timeline: *parent,
            until_seg: switch_lsn / SEG_SIZE,
        })
        .collect();
    path.push(TimelineStep {
        timeline: target,
        until_seg: u64::MAX,
    });
    path
}

/// PostgreSQL's `findNewestTimeLine` (`src/backend/access/transam/timeline.c`), which `StartupXLOG` uses to
/// pick the timeline a finished archive recovery switches to (`newTLI = findNewestTimeLine(recoveryTargetTLI) +
/// 1`): from the recovery target timeline upward, the last number whose history file the restore command
/// finds, so a restore never reuses a timeline someone else already archived.
fn newest_timeline(root: &Path, target: u32) -> u32 {
    let histories = read_histories(root);
    let mut newest = target;
    while histories.contains_key(&(newest + 1)) {
        newest += 1;
    }
    newest
}

/// Every history file in the archive: timeline → its ancestors with their switch LSNs, oldest first.
fn read_histories(root: &Path) -> BTreeMap<u32, Vec<(u32, u64)>> {
    let mut histories = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(root.join("wal_005")) else {
        return histories;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((stem, _)) = name.split_once(".history") else {
            continue;
        };
        let Ok(timeline) = u32::from_str_radix(stem, 16) else {
            continue;
        };
        let text = std::fs::read(entry.path())
            .ok()
            .and_then(|raw| decompress(&raw, &name).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).to_string())
            .unwrap_or_default();
        histories.insert(timeline, parse_history(&text));
    }
    histories
}

/// `parentTLI<TAB>X/Y<TAB>reason` lines.
fn parse_history(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let parent: u32 = fields.next()?.trim().parse().ok()?;
            let (high, low) = fields.next()?.trim().split_once('/')?;
            let high = u64::from_str_radix(high, 16).ok()?;
            let low = u64::from_str_radix(low, 16).ok()?;
            Some((parent, (high << 32) | low))
        })
        .collect()
}

/// `name = 'value'` lines of a stolon-written `postgresql.conf`.
fn parse_postgresql_conf(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
            Some((name.trim().to_string(), value.replace("''", "'")))
        })
        .collect()
}

/// The newest commit in an archived segment: its stamp, or (an unstamped segment of an older flysim)
/// its modification time.
fn segment_commit(path: &Path) -> Option<i64> {
    let stamped = std::fs::read(path)
        .ok()
        .and_then(|raw| decompress(&raw, &path.to_string_lossy()).ok())
        .and_then(|page| commit_of(&page));
    match stamped {
        Some(commit) => commit,
        None => mtime_ms(path),
    }
}

/// WAL replay from the backup's start segment on its timeline; returns the segment after the last one
/// replayed and how many were. Without a target it runs to the end of the archive. With
/// `recovery_target_time` it stops after the first segment holding a commit later than the target
/// (`recovery_target_inclusive` defaults to on); stolon sets `recovery_target_action=promote`
/// (keeper.go `createRecoveryOptions`), so when the archive ends first PostgreSQL 13+ stops with
/// `recovery ended before configured recovery target was reached` and the keeper retries.
fn replay(
    root: &Path,
    path: &[TimelineStep],
    (start_seg, finish_seg): (u64, u64),
    target_ms: Option<i64>,
) -> Result<(u64, u64), String> {
    let mut seg = start_seg;
    let mut replayed = 0u64;
    loop {
        let tli = timeline_of_segment(path, seg);
        let wal = wal_name(tli, seg);
        let Some(path) = find_segment(root, &wal) else {
            if seg <= finish_seg {
                return Err(format!("ERROR: Archive '{wal}' does not exist.\nFATAL:  WAL ends before end of online backup"));
            }
            if target_ms.is_some() {
                return Err(format!("LOG:  redo done at segment {}\nFATAL:  recovery ended before configured recovery target was reached", wal_name(tli, seg.saturating_sub(1))));
            }
            return Ok((seg, replayed));
        };
        replayed += 1;
        seg += 1;
        if let (Some(target), Some(commit)) = (target_ms, segment_commit(&path)) {
            if commit > target && seg > finish_seg {
                return Ok((seg, replayed));
            }
        }
        if replayed > 1_000_000 {
            return Ok((seg, replayed));
        }
    }
}

pub(super) fn find_segment(root: &Path, name: &str) -> Option<PathBuf> {
    let dir = root.join("wal_005");
    for ext in [".lz4", ".", "", ".zst", ".lzma", ".br", ".gz"] {
        let p = dir.join(format!("{name}{ext}"));
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

/// `backup-fetch` + WAL replay as the keeper does it; the restored roles and databases come out of the
/// backup's own tar.
/// `server_version` is the keeper image's Postgres (`major * 10000 + minor`).
pub(crate) fn fetch_for_recovery(
    name: &str,
    spec: &Value,
    env: &BTreeMap<String, String>,
    server_version: u32,
) -> Result<RestoredData, String> {
    let root = storage_root(env, 0)?;
    let backups = list_backups(&root);
    let b = backups
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("ERROR: Backup '{name}' does not exist."))?;
    let parts = root
        .join("basebackups_005")
        .join(name)
        .join("tar_partitions");
    let part = ["part_001.tar.lz4", "part_001.tar.", "part_001.tar"]
        .iter()
        .map(|n| parts.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("ERROR: failed to fetch backup {name}: part_001.tar not found"))?;
    let raw = std::fs::read(&part)
        .map_err(|e| format!("ERROR: failed to read {}: {e}", part.display()))?;
    let tarb = decompress(&raw, &part.to_string_lossy())
        .map_err(|e| format!("ERROR: failed to decompress {}: {e}", part.display()))?;
    let mut ar = tar::Archive::new(tarb.as_slice());
    let mut conf: Option<BTreeMap<String, String>> = None;
    let mut roles: Option<BTreeMap<String, String>> = None;
    let mut dbs: Option<BTreeMap<String, BTreeMap<String, u64>>> = None;
    let entries = ar
        .entries()
        .map_err(|e| format!("ERROR: bad tar in {name}: {e}"))?;
    for e in entries {
        let mut e = e.map_err(|e| format!("ERROR: bad tar in {name}: {e}"))?;
        let path = e
            .path()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf)
            .map_err(|e| format!("ERROR: bad tar in {name}: {e}"))?;
        match path.as_str() {
            "global/flysim_authid.json" => roles = serde_json::from_slice(&buf).ok(),
            "base/flysim_databases.json" => dbs = serde_json::from_slice(&buf).ok(),
            "postgresql.conf" => conf = Some(parse_postgresql_conf(&String::from_utf8_lossy(&buf))),
            _ => {}
        }
    }
    let (Some(roles), Some(databases)) = (roles, dbs) else {
        return Err(format!(
            "flysim: backup {name} was not written by flysim: its data cannot be emulated"
        ));
    };
    let backup_version = b.sentinel["PgVersion"].as_u64().unwrap_or(0);
    check_major_version(backup_version, server_version)?;
    let start_lsn = b.sentinel["LSN"].as_u64().unwrap_or(0);
    let finish_lsn = b.sentinel["FinishLSN"].as_u64().unwrap_or(start_lsn);
    let sysid = b.sentinel["SystemIdentifier"].as_u64().unwrap_or(0);
    let finish_ms = b
        .sentinel
        .get("FinishTime")
        .and_then(|v| v.as_str())
        .and_then(parse_pg_time)
        .unwrap_or(b.modified_ms);
    let tli = u32::from_str_radix(name.get(5..13).unwrap_or("1"), 16).unwrap_or(1);
    let restore_cmd = spec
        .pointer("/pitrConfig/archiveRecoverySettings/restoreCommand")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let target = spec
        .pointer("/pitrConfig/recoveryTargetSettings/recoveryTargetTime")
        .and_then(|v| v.as_str());
    let target_ms = match target {
        Some(t) => Some(parse_pg_time(t).ok_or_else(|| {
            format!("FATAL:  invalid value for parameter \"recovery_target_time\": \"{t}\"")
        })?),
        None => None,
    };
    if let Some(t) = target_ms {
        if t < finish_ms {
            return Err(
                "FATAL:  requested recovery stop point is before consistent recovery point".into(),
            );
        }
    }
    let start_seg = start_lsn / SEG_SIZE;
    let finish_seg = finish_lsn / SEG_SIZE;
    if !restore_cmd.contains("wal-fetch") {
        return Err("FATAL:  WAL ends before end of online backup\nHINT:  All WAL generated while online backup was taken must be available at recovery. (no restore_command: archiveRecoverySettings.restoreCommand is not wal-g wal-fetch)".into());
    }
    let timeline_setting = spec
        .pointer("/pitrConfig/recoveryTargetSettings/recoveryTargetTimeline")
        .and_then(|v| v.as_str());
    let path = timeline_path(&root, tli, timeline_setting);
    let (seg, replayed) = replay(&root, &path, (start_seg, finish_seg), target_ms)?;
    let tli = path.last().map_or(tli, |step| step.timeline);
    Ok(RestoredData {
        roles,
        databases,
        system_identifier: sysid,
        timeline: tli,
        newest_timeline: newest_timeline(&root, tli),
        end_lsn: seg * SEG_SIZE,
        replayed_segments: replayed,
        pg_parameters: conf,
    })
}
