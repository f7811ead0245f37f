//! wal-g as the Stolon image runs it, against a local directory (`WALG_FILE_PREFIX`): `backup-push` writes a
//! real wal-g layout (sentinel, metadata.json, files_metadata.json, tar partitions), archiving writes WAL
//! segment objects, `backup-list` reads the layout, and PITR's `backup-fetch` reads it back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::stolon::walg_stamp;

mod archive;
mod demo_history;
mod fetch;
mod list;
mod push;
mod seed;

pub(crate) use archive::{archive_history, archive_segment};
pub(crate) use demo_history::{seed_demo_history, Leaders};
pub(crate) use fetch::{fetch_for_recovery, resolve_restore_command};
pub(crate) use list::backup_list;
pub(crate) use push::{backup_push, finish_push};
pub(crate) use seed::seed_history;

pub(crate) const SEG_SIZE: u64 = 16 * 1024 * 1024;
pub(super) const DATE_FMT: &str = "%Y-%m-%dT%H:%M:%S.%fZ";

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

pub(super) fn wal_name(tli: u32, seg: u64) -> String {
    let per = 0x1_0000_0000 / SEG_SIZE;
    format!("{:08X}{:08X}{:08X}", tli, seg / per, seg % per)
}

pub(super) fn compression(env: &BTreeMap<String, String>) -> &'static str {
    match env.get("WALG_COMPRESSION_METHOD").map(|s| s.as_str()) {
        Some("none") => "none",
        _ => "lz4",
    }
}

pub(super) fn with_ext(name: &str, method: &str) -> String {
    match method {
        // wal-g v2.0.0 (the Stolon image's) leaves a trailing dot for `none`.
        "none" => format!("{name}."),
        _ => format!("{name}.lz4"),
    }
}

pub(super) fn compress(data: &[u8], method: &str) -> std::io::Result<Vec<u8>> {
    match method {
        "none" => Ok(data.to_vec()),
        _ => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data)?;
            enc.finish().map_err(std::io::Error::other)
        }
    }
}

pub(super) fn decompress(data: &[u8], name: &str) -> std::io::Result<Vec<u8>> {
    if name.ends_with(".lz4") {
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(data).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(data.to_vec())
    }
}

pub(super) fn write_file(path: &Path, data: &[u8], mtime_ms: i64) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("flysim-tmp");
    // One handle writes and back-dates (the demo history writes thousands of objects at start).
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_millis(mtime_ms.max(0) as u64))?;
    drop(f);
    std::fs::rename(&tmp, path)
}

pub(super) fn mtime_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis() as i64)
}

pub(super) fn tar_of(files: &[(&str, Vec<u8>)], mtime_s: u64) -> std::io::Result<Vec<u8>> {
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
