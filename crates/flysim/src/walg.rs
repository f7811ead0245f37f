//! wal-g as the Stolon image runs it, against a local directory (`WALG_FILE_PREFIX`): `backup-push` writes a
//! real wal-g layout (sentinel, metadata.json, files_metadata.json, tar partitions), archiving writes WAL
//! segment objects, `backup-list` reads the layout, and PITR's `backup-fetch` reads it back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::clock::{from_ms, rfc3339};
use crate::exec::Out;
use crate::image::ExecContext;
use crate::model::*;
use crate::sim::machine_env;
use crate::stolon::{md5_password, walg_stamp};

pub(crate) const SEG_SIZE: u64 = 16 * 1024 * 1024;
const DATE_FMT: &str = "%Y-%m-%dT%H:%M:%S.%fZ";

/// Where wal-g's storage is, from the env (only the FILE adapter is emulated).
pub(crate) fn storage_root(env: &BTreeMap<String, String>, at: i64) -> Result<PathBuf, String> {
    for k in ["WALG_OSS_PREFIX", "WALG_S3_PREFIX", "WALE_S3_PREFIX"] {
        if env.get(k).is_some_and(|v| !v.is_empty()) && env.get("WALG_FILE_PREFIX").is_none() {
            return Err(format!(
                "ERROR: {} flysim: {k} is set but only WALG_FILE_PREFIX (local directory) storage is emulated",
                walg_stamp(at)
            ));
        }
    }
    let Some(prefix) = env.get("WALG_FILE_PREFIX").filter(|v| !v.is_empty()) else {
        return Err(format!(
            "ERROR: {} Failed to configure multi-storage: failed to get primary storage config: storage is not configured (no WALG_*_PREFIX set)",
            walg_stamp(at)
        ));
    };
    let path = prefix.strip_prefix("file://localhost").unwrap_or(prefix);
    let mut root = PathBuf::from(path.trim_end_matches('/'));
    if let Some(sub) = env.get("WALG_STORAGE_PREFIX").filter(|v| !v.is_empty()) {
        root = root.join(sub.trim_matches('/'));
    }
    Ok(root)
}

fn wal_name(tli: u32, seg: u64) -> String {
    let per = 0x1_0000_0000 / SEG_SIZE;
    format!("{:08X}{:08X}{:08X}", tli, seg / per, seg % per)
}

fn compression(env: &BTreeMap<String, String>) -> &'static str {
    match env.get("WALG_COMPRESSION_METHOD").map(|s| s.as_str()) {
        Some("none") => "none",
        _ => "lz4",
    }
}

fn with_ext(name: &str, method: &str) -> String {
    match method {
        // wal-g v2.0.0 (the Stolon image's) leaves a trailing dot for `none`.
        "none" => format!("{name}."),
        _ => format!("{name}.lz4"),
    }
}

fn compress(data: &[u8], method: &str) -> std::io::Result<Vec<u8>> {
    match method {
        "none" => Ok(data.to_vec()),
        _ => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data)?;
            enc.finish().map_err(std::io::Error::other)
        }
    }
}

fn decompress(data: &[u8], name: &str) -> std::io::Result<Vec<u8>> {
    if name.ends_with(".lz4") {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(data).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(data.to_vec())
    }
}

fn write_file(path: &Path, data: &[u8], mtime_ms: i64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("flysim-tmp");
    std::fs::write(&tmp, data)?;
    let f = std::fs::File::options().write(true).open(&tmp)?;
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_millis(mtime_ms.max(0) as u64))?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn mtime_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as i64)
}

fn tar_of(files: &[(&str, Vec<u8>)], mtime_s: u64) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(mtime_s);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice())?;
    }
    b.into_inner()
}

fn push_log(job: &PushJob) -> String {
    let s = walg_stamp(job.start_ms);
    let f = walg_stamp(job.finish_ms);
    format!(
        "INFO: {s} Doing full backup.\nINFO: {s} Calling pg_start_backup()\nINFO: {s} Starting a new tar bundle\nINFO: {s} Walking ...\nINFO: {s} Starting part 1 ...\nINFO: {f} Packing ...\nINFO: {f} Finished writing part 1.\nINFO: {f} Starting part 2 ...\nINFO: {f} /global/pg_control\nINFO: {f} Finished writing part 2.\nINFO: {f} Calling pg_stop_backup()\nINFO: {f} Starting part 3 ...\nINFO: {f} backup_label\nINFO: {f} tablespace_map\nINFO: {f} Finished writing part 3.\nINFO: {f} Wrote backup with name {}\n",
        job.name
    )
}

/// Write the backup in wal-g's order: tars, pg_control, backup_label, metadata.json, files_metadata.json,
/// then the sentinel last.
pub(crate) fn write_backup(job: &PushJob) -> std::io::Result<()> {
    let base = job.root.join("basebackups_005");
    let dir = base.join(&job.name);
    let parts = dir.join("tar_partitions");
    let method = job.compression.as_str();
    let mt = (job.finish_ms / 1000).max(0) as u64;
    let major = job.pg_version / 10000;
    let roles = serde_json::to_vec(&job.roles).map_err(std::io::Error::other)?;
    let dbs = serde_json::to_vec(&job.databases).map_err(std::io::Error::other)?;
    let part1 = tar_of(
        &[
            ("PG_VERSION", format!("{major}\n").into_bytes()),
            ("global/flysim_authid.json", roles),
            ("base/flysim_databases.json", dbs),
            ("postgresql.auto.conf", b"# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\n".to_vec()),
        ],
        mt,
    )?;
    let mut control = vec![0u8; 8192];
    control[..8].copy_from_slice(&job.system_identifier.to_le_bytes());
    let pgc = tar_of(&[("global/pg_control", control)], mt)?;
    let start = from_ms(job.start_ms);
    let label = format!(
        "START WAL LOCATION: {:X}/{:X} (file {})\nCHECKPOINT LOCATION: {:X}/{:X}\nBACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC\nLABEL: {}\nSTART TIMELINE: {}\n",
        job.start_lsn >> 32,
        job.start_lsn & 0xFFFF_FFFF,
        wal_name(job.timeline, job.start_lsn / SEG_SIZE),
        job.start_lsn >> 32,
        (job.start_lsn & 0xFFFF_FFFF) + 0x60,
        start.year(),
        start.month() as u8,
        start.day(),
        start.hour(),
        start.minute(),
        start.second(),
        rfc3339(job.start_ms),
        job.timeline
    );
    let lbl = tar_of(
        &[
            ("backup_label", label.into_bytes()),
            ("tablespace_map", Vec::new()),
        ],
        mt,
    )?;
    let mut compressed = 0u64;
    for (name, data) in [
        ("part_001.tar", &part1),
        ("pg_control.tar", &pgc),
        ("backup_label.tar", &lbl),
    ] {
        let c = compress(data, method)?;
        compressed += c.len() as u64;
        write_file(&parts.join(with_ext(name, method)), &c, job.finish_ms)?;
    }
    // Sizes are the emulated database's, not the placeholder tars'.
    let compressed_size = (job.uncompressed_size / 3).max(compressed);
    let md = json!({
        "start_time": rfc3339(job.start_ms), "finish_time": rfc3339(job.finish_ms), "date_fmt": DATE_FMT,
        "hostname": job.hostname, "data_dir": job.data_dir, "pg_version": job.pg_version,
        "start_lsn": job.start_lsn, "finish_lsn": job.finish_lsn, "is_permanent": job.permanent,
        "system_identifier": job.system_identifier, "uncompressed_size": job.uncompressed_size,
        "compressed_size": compressed_size,
    });
    write_file(
        &dir.join("metadata.json"),
        md.to_string().as_bytes(),
        job.finish_ms,
    )?;
    let files = json!({
        "Files": {
            "/PG_VERSION": {"IsIncremented": false, "IsSkipped": false, "MTime": rfc3339(job.start_ms), "UpdatesCount": 0},
            "/global/flysim_authid.json": {"IsIncremented": false, "IsSkipped": false, "MTime": rfc3339(job.start_ms), "UpdatesCount": 0},
            "/base/flysim_databases.json": {"IsIncremented": false, "IsSkipped": false, "MTime": rfc3339(job.start_ms), "UpdatesCount": 0},
            "/postgresql.auto.conf": {"IsIncremented": false, "IsSkipped": false, "MTime": rfc3339(job.start_ms), "UpdatesCount": 0}
        },
        "TarFileSets": {
            with_ext("part_001.tar", method): ["/PG_VERSION", "/global/flysim_authid.json", "/base/flysim_databases.json", "/postgresql.auto.conf"],
            with_ext("backup_label.tar", method): ["/backup_label", "/tablespace_map"]
        },
        "DatabasesByNames": {}
    });
    write_file(
        &dir.join("files_metadata.json"),
        files.to_string().as_bytes(),
        job.finish_ms,
    )?;
    let sentinel = json!({
        "LSN": job.start_lsn, "PgVersion": job.pg_version, "FinishLSN": job.finish_lsn,
        "SystemIdentifier": job.system_identifier, "UncompressedSize": job.uncompressed_size,
        "CompressedSize": compressed_size, "DataCatalogSize": job.uncompressed_size,
        "ChkpNum": null, "Version": 2, "StartTime": rfc3339(job.start_ms), "FinishTime": rfc3339(job.finish_ms),
        "DateFmt": DATE_FMT, "Hostname": job.hostname, "DataDir": job.data_dir, "IsPermanent": job.permanent,
    });
    write_file(
        &base.join(format!("{}_backup_stop_sentinel.json", job.name)),
        sentinel.to_string().as_bytes(),
        job.finish_ms,
    )
}

pub(crate) fn finish_push(st: &mut State, app: &str, machine: &str, job: &PushJob, at: i64) {
    let result = write_backup(job);
    let log = match &result {
        Ok(()) => push_log(job),
        Err(e) => format!("ERROR: {} failed to upload backup: {e}\n", walg_stamp(at)),
    };
    if let Some(path) = &job.log_path {
        let vol = st
            .apps
            .get(app)
            .and_then(|a| a.machines.get(machine))
            .and_then(|m| m.volume.clone());
        if let Some(v) = vol.and_then(|v| st.apps.get_mut(app).and_then(|a| a.volumes.get_mut(&v)))
        {
            v.files.entry(path.clone()).or_default().push_str(&log);
        }
    }
    for line in log.lines() {
        st.log(app, machine, at, line.to_string());
    }
}

/// Estimated size of the emulated database.
fn db_size(pg: &PgCluster) -> u64 {
    let rows = pg
        .databases
        .values()
        .flat_map(|t| t.values())
        .fold(0u64, |a, b| a.saturating_add(*b));
    (24 * 1024 * 1024u64).saturating_add(rows.saturating_mul(120))
}

/// Write WAL segment objects up to (excluding) `upto_seg` if archiving works; returns the log problem.
fn push_segments(
    root: &Path,
    tli: u32,
    from_seg: u64,
    upto_seg: u64,
    method: &str,
    at: i64,
) -> Result<(), String> {
    for seg in from_seg..upto_seg {
        let name = wal_name(tli, seg);
        let path = root.join("wal_005").join(with_ext(&name, method));
        if path.exists() {
            continue;
        }
        let mut page = vec![0u8; 8192];
        // XLogLongPageHeader magic of PG 14 (0xD10D) and the timeline, so the object is recognisable.
        page[0..2].copy_from_slice(&0xD10Du16.to_le_bytes());
        page[4..8].copy_from_slice(&tli.to_le_bytes());
        let data = compress(&page, method).map_err(|e| e.to_string())?;
        write_file(&path, &data, at).map_err(|e| format!("failed to upload {name}: {e}"))?;
    }
    Ok(())
}

/// What archive_command would do for the master now: `Ok(Some(root))` pushes, `Ok(None)` is a no-op
/// success (archiving off or the ENABLE_WALG switch unset), `Err` fails.
fn archive_target(
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
    let mode = p("archive_mode");
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
    storage_root(env, at).map(Some)
}

pub(crate) fn archive_segment(st: &mut State, app: &str, at: i64) {
    let Some(a) = st.apps.get(app) else { return };
    let Some(pg) = a.pg.as_ref() else { return };
    if pg.pitr.as_ref().is_some_and(|p| p.step != "recovered") {
        return;
    }
    let Some(master) = pg.master.as_ref().and_then(|id| a.machines.get(id)) else {
        return;
    };
    if master.state != MachineState::Started || master.ready_ms.is_none() {
        return;
    }
    let env = machine_env(a, master);
    let mid = master.id.clone();
    let tli = pg.timeline;
    let seg = pg.lsn / SEG_SIZE;
    match archive_target(pg, &env, at) {
        Ok(None) => {
            if let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) {
                pg.lsn = (seg + 1) * SEG_SIZE + 40;
            }
        }
        Ok(Some(root)) => match push_segments(&root, tli, seg, seg + 1, compression(&env), at) {
            Ok(()) => {
                if let Some(pg) = st.apps.get_mut(app).and_then(|a| a.pg.as_mut()) {
                    pg.lsn = (seg + 1) * SEG_SIZE + 40;
                }
                st.log(
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
            Err(e) => archive_failed(st, app, &mid, at, &e),
        },
        Err(e) => archive_failed(st, app, &mid, at, &e),
    }
}

fn archive_failed(st: &mut State, app: &str, machine: &str, at: i64, e: &str) {
    st.log(app, machine, at, format!("keeper   | {e}"));
    st.log(
        app,
        machine,
        at,
        "keeper   | LOG:  archive command failed with exit code 1",
    );
    st.log(
        app,
        machine,
        at,
        "keeper   | DETAIL:  The failed archive command was: wal-g wal-push pg_wal/…",
    );
}

/// At the end of a PITR the new timeline's history file (and the old timeline's partial) get archived.
pub(crate) fn archive_history(
    st: &mut State,
    app: &str,
    machine: &str,
    at: i64,
    new_tli: u32,
    switch_lsn: u64,
) {
    let Some(a) = st.apps.get(app) else { return };
    let Some(m) = a.machines.get(machine) else {
        return;
    };
    let Some(pg) = a.pg.as_ref() else { return };
    let env = machine_env(a, m);
    if let Ok(Some(root)) = archive_target(pg, &env, at) {
        let method = compression(&env);
        let mut hist = String::new();
        for t in 1..new_tli {
            hist.push_str(&format!(
                "{t}\t{:X}/{:X}\tno recovery target specified\n",
                switch_lsn >> 32,
                switch_lsn & 0xFFFF_FFFF
            ));
        }
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

#[derive(Debug, Clone)]
pub(crate) struct BackupEntry {
    pub name: String,
    pub modified_ms: i64,
    pub sentinel: Value,
    pub metadata: Option<Value>,
}

pub(crate) fn list_backups(root: &Path) -> Vec<BackupEntry> {
    let dir = root.join("basebackups_005");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let fname = e.file_name().to_string_lossy().to_string();
        let Some(name) = fname.strip_suffix("_backup_stop_sentinel.json") else {
            continue;
        };
        let path = e.path();
        let Some(sentinel) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        else {
            continue;
        };
        let metadata = std::fs::read(dir.join(name).join("metadata.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        out.push(BackupEntry {
            name: name.to_string(),
            modified_ms: mtime_ms(&path).unwrap_or(0),
            sentinel,
            metadata,
        });
    }
    out.sort_by(|a, b| (a.modified_ms, &a.name).cmp(&(b.modified_ms, &b.name)));
    out
}

fn first_wal(name: &str) -> String {
    name.strip_prefix("base_")
        .and_then(|r| r.get(..24))
        .filter(|s| s.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or("ZZZZZZZZZZZZZZZZZZZZZZZZ")
        .to_string()
}

pub(crate) fn backup_list(args: &[String], env: &BTreeMap<String, String>, at: i64) -> Out {
    let root = match storage_root(env, at) {
        Ok(r) => r,
        Err(e) => return Out::err(1, format!("{e}\n")),
    };
    let as_json = args.iter().any(|a| a == "--json");
    let detail = args.iter().any(|a| a == "--detail");
    let mut backups = list_backups(&root);
    if backups.is_empty() {
        return Out {
            code: 0,
            stdout: String::new(),
            stderr: format!("INFO: {} No backups found\n", walg_stamp(at)),
            ..Out::default()
        };
    }
    if detail && backups.iter().all(|b| b.metadata.is_some()) {
        backups.sort_by(|a, b| {
            let sa = a
                .metadata
                .as_ref()
                .and_then(|m| m["start_time"].as_str())
                .unwrap_or("")
                .to_string();
            let sb = b
                .metadata
                .as_ref()
                .and_then(|m| m["start_time"].as_str())
                .unwrap_or("")
                .to_string();
            sa.cmp(&sb)
        });
    }
    if as_json {
        let items: Vec<Value> = backups
            .iter()
            .map(|b| {
                let mut v = json!({"backup_name": b.name, "time": rfc3339(b.modified_ms),
                    "wal_file_name": first_wal(&b.name), "storage_name": "default"});
                if detail {
                    if let (Some(Value::Object(md)), Value::Object(o)) = (&b.metadata, &mut v) {
                        for (k, val) in md {
                            o.insert(k.clone(), val.clone());
                        }
                    }
                }
                v
            })
            .collect();
        return Out::ok(format!("{}\n", Value::Array(items)));
    }
    let mut s = String::from(
        "name                          modified             wal_segment_backup_start\n",
    );
    for b in &backups {
        s.push_str(&format!(
            "{} {} {}\n",
            b.name,
            rfc3339(b.modified_ms),
            first_wal(&b.name)
        ));
    }
    Out::ok(s)
}

/// Everything `wal-g backup-push` needs; run by exec.
pub(crate) fn backup_push(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
    detached: bool,
    log_path: Option<String>,
    timeout_s: u64,
) -> (Out, bool) {
    let at = context.now;
    let root = match storage_root(env, at) {
        Ok(r) => r,
        Err(e) => return (Out::err(1, format!("{e}\n")), false),
    };
    let data_dir = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .or_else(|| env.get("PGDATA").cloned());
    let Some(data_dir) = data_dir else {
        return (Out::err(1, "Error: accepts 1 arg(s), received 0\n"), false);
    };
    let permanent = args.iter().any(|a| a == "--permanent" || a == "-p");
    let app = context.app.clone();
    let Some(a) = context.state.apps.get(&app) else {
        return (Out::err(1, "no app\n"), false);
    };
    let Some(m) = a.machines.get(&context.machine) else {
        return (Out::err(1, "no machine\n"), false);
    };
    let Some(pg) = a.pg.as_ref() else {
        return (Out::err(1, format!("ERROR: {} Connect: postgres connection failed: dial tcp [::1]:5432: connect: connection refused\n", walg_stamp(at))), false);
    };
    let user = env.get("PGUSER").cloned().unwrap_or_else(|| "root".into());
    let role = crate::stolon::role_of(a, m);
    if role.role.is_none() {
        return (Out::err(1, format!("ERROR: {} Connect: postgres connection failed: dial tcp [::1]:5433: connect: connection refused\n", walg_stamp(at))), false);
    }
    let auth_ok = env.get("PGPASSWORD").is_some_and(|pw| {
        pg.roles
            .get(&user)
            .is_some_and(|h| *h == md5_password(&user, pw))
    });
    if !auth_ok {
        return (
            Out::err(1, format!("ERROR: {} Connect: postgres connection failed: FATAL: password authentication failed for user \"{user}\" (SQLSTATE 28P01)\n", walg_stamp(at))),
            false,
        );
    }
    if data_dir.trim_end_matches('/') != "/data/postgres" {
        return (Out::err(1, format!("ERROR: {} flysim: data directory {data_dir} is not /data/postgres (the Stolon image's PGDATA)\n", walg_stamp(at))), false);
    }
    let size = db_size(pg);
    let secs_ms =
        (size.saturating_mul(1000) / context.sim.timing().push_bytes_per_sec.max(1)) as i64 + 2000;
    let seg = pg.lsn / SEG_SIZE;
    let start_lsn = (seg + 1) * SEG_SIZE + 0x28;
    let finish_lsn = start_lsn + 0x1B8 + (pg.lsn % 0x1000);
    let tli = pg.timeline;
    let archive = archive_target(pg, env, at);
    let job = PushJob {
        root,
        name: format!("base_{}", wal_name(tli, start_lsn / SEG_SIZE)),
        start_ms: at,
        finish_ms: at + secs_ms,
        start_lsn,
        finish_lsn,
        pg_version: pg.pg_version,
        system_identifier: pg.system_identifier,
        timeline: tli,
        hostname: m.id.clone(),
        data_dir: "/data/postgres".into(),
        roles: pg.roles.clone(),
        databases: pg.databases.clone(),
        compression: compression(env).to_string(),
        permanent,
        uncompressed_size: size,
        log_path,
    };
    // pg_start_backup/pg_stop_backup switch WAL; stop waits for the segments to be archived.
    let master_env = pg
        .master
        .as_ref()
        .and_then(|id| a.machines.get(id))
        .map(|mm| machine_env(a, mm))
        .unwrap_or_default();
    let master_archive = archive_target(pg, &master_env, at);
    let _ = archive;
    if let Ok(Some(r)) = &master_archive {
        let _ = push_segments(
            r,
            tli,
            seg,
            finish_lsn / SEG_SIZE + 1,
            compression(&master_env),
            at,
        );
    }
    if let Some(pg) = context.state.apps.get_mut(&app).and_then(|a| a.pg.as_mut()) {
        pg.lsn = (finish_lsn / SEG_SIZE + 1) * SEG_SIZE + 40;
    }
    let machine = context.machine.clone();
    if detached || secs_ms > timeout_s as i64 * 1000 {
        context.state.schedule(
            &app,
            at + secs_ms,
            TimerKind::BackupDone {
                machine,
                job: Box::new(job),
            },
        );
        return (Out::ok(""), !detached);
    }
    match write_backup(&job) {
        Ok(()) => {
            let log = push_log(&job);
            for l in log.lines() {
                context.state.log(&app, &machine, at, l.to_string());
            }
            (
                Out {
                    code: 0,
                    stdout: String::new(),
                    stderr: log,
                    ..Out::default()
                },
                false,
            )
        }
        Err(e) => (
            Out::err(
                1,
                format!("ERROR: {} failed to upload backup: {e}\n", walg_stamp(at)),
            ),
            false,
        ),
    }
}

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

fn parse_pg_time(s: &str) -> Option<i64> {
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

fn find_segment(root: &Path, name: &str) -> Option<PathBuf> {
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
pub(crate) fn fetch_for_recovery(
    name: &str,
    spec: &Value,
    env: &BTreeMap<String, String>,
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
            _ => {}
        }
    }
    let (Some(roles), Some(databases)) = (roles, dbs) else {
        return Err(format!(
            "flysim: backup {name} was not written by flysim: its data cannot be emulated"
        ));
    };
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
    let mut seg = start_seg;
    let mut replayed = 0u64;
    loop {
        let wal = wal_name(tli, seg);
        let Some(path) = find_segment(&root, &wal) else {
            if seg <= finish_seg {
                return Err(format!("ERROR: Archive '{wal}' does not exist.\nFATAL:  WAL ends before end of online backup"));
            }
            break;
        };
        replayed += 1;
        seg += 1;
        if let (Some(t), Some(m)) = (target_ms, mtime_ms(&path)) {
            if m >= t && seg > finish_seg {
                break;
            }
        }
        if replayed > 1_000_000 {
            break;
        }
    }
    Ok(RestoredData {
        roles,
        databases,
        system_identifier: sysid,
        timeline: tli,
        end_lsn: seg * SEG_SIZE,
        replayed_segments: replayed,
    })
}

/// A demo history: `days` of WAL and a base backup every `backup_every_h` hours, written as the archiver and
/// backup-push would have, ending at `now_ms`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn seed_history(
    root: &Path,
    pg: &mut PgCluster,
    now_ms: i64,
    hours: i64,
    backup_every_h: i64,
    segment_every_min: i64,
    hostname: &str,
) -> std::io::Result<()> {
    let start = now_ms - hours * 3600 * 1000;
    let step = segment_every_min * 60 * 1000;
    let mut t = start;
    let mut next_backup = start + 3600 * 1000;
    while t < now_ms {
        let seg = pg.lsn / SEG_SIZE;
        push_segments(root, pg.timeline, seg, seg + 1, "lz4", t).map_err(std::io::Error::other)?;
        pg.lsn = (seg + 1) * SEG_SIZE + 40;
        *pg.databases
            .entry("app".into())
            .or_default()
            .entry("events".into())
            .or_default() += 250;
        if t >= next_backup {
            let seg = pg.lsn / SEG_SIZE;
            let start_lsn = (seg + 1) * SEG_SIZE + 0x28;
            let finish_lsn = start_lsn + 0x1B8;
            let job = PushJob {
                root: root.to_path_buf(),
                name: format!("base_{}", wal_name(pg.timeline, start_lsn / SEG_SIZE)),
                start_ms: t,
                finish_ms: t + 90_000,
                start_lsn,
                finish_lsn,
                pg_version: pg.pg_version,
                system_identifier: pg.system_identifier,
                timeline: pg.timeline,
                hostname: hostname.to_string(),
                data_dir: "/data/postgres".into(),
                roles: pg.roles.clone(),
                databases: pg.databases.clone(),
                compression: "lz4".into(),
                permanent: false,
                uncompressed_size: db_size(pg),
                log_path: None,
            };
            push_segments(
                root,
                pg.timeline,
                seg,
                finish_lsn / SEG_SIZE + 1,
                "lz4",
                t + 90_000,
            )
            .map_err(std::io::Error::other)?;
            write_backup(&job)?;
            pg.lsn = (finish_lsn / SEG_SIZE + 1) * SEG_SIZE + 40;
            next_backup += backup_every_h * 3600 * 1000;
        }
        t += step;
    }
    Ok(())
}
