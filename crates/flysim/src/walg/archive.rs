//! WAL archiving: the leader's `archive_command` every archive_timeout in which something was written
//! (each segment stamped with its newest commit time, which replay reads), and the history file a PITR
//! leaves on its new timeline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{compress, compression, storage_root, wal_name, with_ext, write_file, SEG_SIZE};
use crate::model::*;
use crate::sim::machine_env;
use crate::stolon::walg_stamp;

/// Estimated size of the emulated database.
pub(super) fn db_size(pg: &PgCluster) -> u64 {
    let rows = pg
        .databases
        .values()
        .flat_map(|t| t.values())
        .fold(0u64, |total, size| total.saturating_add(*size));
    (24 * 1024 * 1024u64).saturating_add(rows.saturating_mul(120))
}

/// Write WAL segment objects up to (excluding) `upto_seg` if archiving works; returns the log problem.
/// `commit_ms` is the newest commit in the first segment (the others hold no commit): replay needs a
/// commit after a recovery target to reach it (see `fetch::replay`).
pub(super) fn push_segments(
    root: &Path,
    tli: u32,
    (from_seg, upto_seg): (u64, u64),
    method: &str,
    at: i64,
    commit_ms: Option<i64>,
) -> Result<(), String> {
    for seg in from_seg..upto_seg {
        let name = wal_name(tli, seg);
        let commit = if seg == from_seg { commit_ms } else { None };
        push_wal_object(root, &name, tli, method, at, commit)?;
    }
    Ok(())
}

/// Upload one WAL object (`name` is its file name in `pg_wal`: a segment, or a segment's `.partial`) unless it
/// is there already.
pub(super) fn push_wal_object(
    root: &Path,
    name: &str,
    tli: u32,
    method: &str,
    at: i64,
    commit_ms: Option<i64>,
) -> Result<(), String> {
    let path = root.join("wal_005").join(with_ext(name, method));
    if path.exists() {
        return Ok(());
    }
    let mut page = vec![0u8; 8192];
    // XLogLongPageHeader magic of PG 14 (0xD10D) and the timeline, so the object is recognisable.
    page[0..2].copy_from_slice(&0xD10Du16.to_le_bytes());
    page[4..8].copy_from_slice(&tli.to_le_bytes());
    stamp_commit(&mut page, commit_ms);
    let data = compress(&page, method).map_err(|e| e.to_string())?;
    write_file(&path, &data, at).map_err(|e| format!("failed to upload {name}: {e}"))
}

/// The emulator's stand-in for the commit records in a segment: a marker and the newest commit time.
const COMMIT_MARKER: &[u8; 4] = b"FSC1";
const NO_COMMIT_MARKER: &[u8; 4] = b"FSC0";

fn stamp_commit(page: &mut [u8], commit_ms: Option<i64>) {
    match commit_ms {
        Some(ms) => {
            page[8..16].copy_from_slice(&ms.to_le_bytes());
            page[16..20].copy_from_slice(COMMIT_MARKER);
        }
        None => page[16..20].copy_from_slice(NO_COMMIT_MARKER),
    }
}

/// What a segment says about its commits: `Some(Some(ms))` the newest commit, `Some(None)` none,
/// `None` a segment without the stamp (written by an older flysim: the caller falls back to its mtime).
pub(super) fn commit_of(page: &[u8]) -> Option<Option<i64>> {
    let marker = page.get(16..20)?;
    if marker == NO_COMMIT_MARKER {
        return Some(None);
    }
    if marker != COMMIT_MARKER {
        return None;
    }
    let bytes: [u8; 8] = page.get(8..16)?.try_into().ok()?;
    Some(Some(i64::from_le_bytes(bytes)))
}

/// What archive_command would do for the master now: `Ok(Some(root))` pushes, `Ok(None)` is a no-op
/// success (archiving off or the ENABLE_WALG switch unset), `Err` fails.
pub(super) fn archive_target(
    pg: &PgCluster,
    env: &BTreeMap<String, String>,
    at: i64,
) -> Result<Option<PathBuf>, String> {
    let p = |k: &str| {
        pg.spec
            .pointer(&format!("/pgParameters/{k}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let mode = crate::stolon::running_archive_mode(pg).unwrap_or_else(|| p("archive_mode"));
    if !matches!(mode.as_str(), "on" | "yes" | "always" | "true" | "1") {
        return Ok(None);
    }
    let cmd = p("archive_command");
    if !cmd.contains("wal-push") {
        return Ok(None);
    }
    if cmd.contains("ENABLE_WALG") && env.get("ENABLE_WALG").is_none_or(|v| v.is_empty()) {
        return Ok(None);
    }
    let root = storage_root(env, at)?;
    if pg.wal_push_refused {
        return Err(format!(
            "ERROR: {} failed to upload WAL: AccessDenied: Access Denied",
            walg_stamp(at)
        ));
    }
    Ok(Some(root))
}

pub(crate) fn archive_segment(state: &mut State, app: &str, at: i64) {
    let Some(owner) = state.apps.get(app) else {
        return;
    };
    let Some(pg) = owner.pg.as_ref() else { return };
    if pg.pitr.as_ref().is_some_and(|p| p.step != "recovered") {
        return;
    }
    let Some(master) = pg.master.as_ref().and_then(|id| owner.machines.get(id)) else {
        return;
    };
    if master.state != MachineState::Started || master.ready_ms.is_none() {
        return;
    }
    // An idle server does not switch segments at archive_timeout: nothing to archive.
    let Some(commit) = pg.unarchived_commit_ms else {
        return;
    };
    let env = machine_env(owner, master);
    let mid = master.id.clone();
    let tli = pg.timeline;
    let seg = pg.lsn / SEG_SIZE;
    let switched = |state: &mut State| {
        if let Some(pg) = state.apps.get_mut(app).and_then(|owner| owner.pg.as_mut()) {
            pg.lsn = (seg + 1) * SEG_SIZE + 40;
            pg.unarchived_commit_ms = None;
        }
    };
    match archive_target(pg, &env, at) {
        Ok(None) => {
            switched(state);
            ready_archived(state, app, &mid);
        }
        Ok(Some(root)) => match push_segments(
            &root,
            tli,
            (seg, seg + 1),
            compression(&env),
            at,
            Some(commit),
        ) {
            Ok(()) => {
                switched(state);
                ready_archived(state, app, &mid);
                state.log(
                    app,
                    &mid,
                    at,
                    format!(
                        "keeper   | INFO: {} FILE PATH: {}.lz4",
                        walg_stamp(at),
                        wal_name(tli, seg)
                    ),
                );
            }
            Err(e) => {
                keep_ready(state, app, &mid, commit);
                archive_failed(state, app, &mid, at, &e)
            }
        },
        Err(e) => {
            keep_ready(state, app, &mid, commit);
            archive_failed(state, app, &mid, at, &e)
        }
    }
}

/// A switch whose archive failed: PostgreSQL keeps the finished segment in `pg_wal` with its `.ready` file
/// and the archiver retries it (`src/backend/postmaster/pgarch.c`), so the master's volume grows by one
/// segment. The emulator retries the same segment at each archive_timeout; only a switch with a newer commit
/// than the last failed one keeps another segment (an idle server switches nothing).
fn keep_ready(state: &mut State, app: &str, master: &str, commit: i64) {
    let Some(owner) = state.apps.get_mut(app) else {
        return;
    };
    let Some(pg) = owner.pg.as_mut() else { return };
    if pg.ready_commit_ms == Some(commit) {
        return;
    }
    pg.ready_commit_ms = Some(commit);
    let volume = owner.machines.get(master).and_then(|m| m.volume.clone());
    if let Some(v) = volume.and_then(|id| owner.volumes.get_mut(&id)) {
        v.wal_ready_bytes = v.wal_ready_bytes.saturating_add(SEG_SIZE);
    }
}

/// An archive succeeded: the archiver catches up with the kept segments and the next checkpoint recycles them.
fn ready_archived(state: &mut State, app: &str, master: &str) {
    let Some(owner) = state.apps.get_mut(app) else {
        return;
    };
    if let Some(pg) = owner.pg.as_mut() {
        pg.ready_commit_ms = None;
    }
    let volume = owner.machines.get(master).and_then(|m| m.volume.clone());
    if let Some(v) = volume.and_then(|id| owner.volumes.get_mut(&id)) {
        v.wal_ready_bytes = 0;
    }
}

pub(super) fn archive_failed(state: &mut State, app: &str, machine: &str, at: i64, e: &str) {
    state.log(app, machine, at, format!("keeper   | {e}"));
    state.log(
        app,
        machine,
        at,
        "keeper   | LOG:  archive command failed with exit code 1",
    );
    state.log(
        app,
        machine,
        at,
        "keeper   | DETAIL:  The failed archive command was: wal-g wal-push pg_wal/…",
    );
}

/// At the end of a PITR the new timeline's history file (and the old timeline's partial) get archived.
pub(crate) fn archive_history(
    state: &mut State,
    app: &str,
    machine: &str,
    at: i64,
    new_tli: u32,
    switch_lsn: u64,
) {
    let Some(owner) = state.apps.get(app) else {
        return;
    };
    let Some(member) = owner.machines.get(machine) else {
        return;
    };
    let Some(pg) = owner.pg.as_ref() else { return };
    let env = machine_env(owner, member);
    if let Ok(Some(root)) = archive_target(pg, &env, at) {
        let method = compression(&env);
        let parent = new_tli.saturating_sub(1);
        let mut hist = parent_history(&root, parent).unwrap_or_else(|| {
            (1..parent)
                .map(|t| history_line(t, switch_lsn))
                .collect::<String>()
        });
        hist.push_str(&history_line(parent, switch_lsn));
        let name = format!("{new_tli:08X}.history");
        if let Ok(data) = compress(hist.as_bytes(), method) {
            let _ = write_file(
                &root.join("wal_005").join(with_ext(&name, method)),
                &data,
                at,
            );
        }
    }
}

// ---- reading ----

/// One line of a timeline history file, as PostgreSQL 14's `writeTimeLineHistory` prints it (`%u\t%X/%X\t%s`).
pub(super) fn history_line(parent: u32, switch_lsn: u64) -> String {
    format!(
        "{parent}\t{:X}/{:X}\tno recovery target specified\n",
        switch_lsn >> 32,
        switch_lsn & 0xFFFF_FFFF
    )
}

/// The archived history of `timeline` (a new timeline's history starts with its parent's).
fn parent_history(root: &Path, timeline: u32) -> Option<String> {
    let stem = format!("{timeline:08X}.history");
    ["lz4", "none"].iter().find_map(|method| {
        let name = with_ext(&stem, method);
        let raw = std::fs::read(root.join("wal_005").join(&name)).ok()?;
        let bytes = super::decompress(&raw, &name).ok()?;
        Some(String::from_utf8_lossy(&bytes).to_string())
    })
}
