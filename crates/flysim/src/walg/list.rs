//! Reading a storage prefix: the backups in it and `wal-g backup-list`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::{mtime_ms, storage_root};
use crate::clock::rfc3339;
use crate::exec::Out;
use crate::stolon::walg_stamp;

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
    out.sort_by(|left, right| {
        (left.modified_ms, &left.name).cmp(&(right.modified_ms, &right.name))
    });
    out
}

pub(super) fn first_wal(name: &str) -> String {
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
    let as_json = args.iter().any(|arg| arg == "--json");
    let detail = args.iter().any(|arg| arg == "--detail");
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
        let start_time = |backup: &BackupEntry| {
            backup
                .metadata
                .as_ref()
                .and_then(|metadata| metadata["start_time"].as_str())
                .unwrap_or("")
                .to_string()
        };
        backups.sort_by_key(start_time);
    }
    if as_json {
        let items: Vec<Value> = backups
            .iter()
            .map(|b| {
                let mut entry = json!({"backup_name": b.name, "time": rfc3339(b.modified_ms),
                    "wal_file_name": first_wal(&b.name), "storage_name": "default"});
                if detail {
                    if let (Some(Value::Object(md)), Value::Object(o)) = (&b.metadata, &mut entry) {
                        for (k, val) in md {
                            o.insert(k.clone(), val.clone());
                        }
                    }
                }
                entry
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
