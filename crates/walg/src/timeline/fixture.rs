//! Small hand-made [`Index`] values for the passes' unit tests: segments one minute apart, histories, and
//! backups with a sentinel, metadata.json and data tars.

use crate::documents::{HistoryRecord, Metadata, Sentinel};
use crate::index::{BackupEntry, Doc, Folder, HistoryEntry, Index, WalObject, INDEX_FORMAT};
use crate::names::{classify_wal_file, wal_file_name, DEFAULT_SEGMENT_SIZE};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime};

/// The segment size of every fixture (16 MiB).
pub(crate) const SEG: u64 = DEFAULT_SEGMENT_SIZE;

/// The fixtures' clock starts here: 2026-01-01 00:00 UTC.
pub(crate) fn at(minutes: i64) -> OffsetDateTime {
    time::macros::datetime!(2026-01-01 00:00 UTC) + Duration::minutes(minutes)
}

/// [`at`] in Unix milliseconds.
pub(crate) fn ms(minutes: i64) -> i64 {
    (at(minutes).unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn empty_index() -> Index {
    Index {
        format: INDEX_FORMAT,
        url: "file:///fixture".into(),
        segment_size: SEG,
        wal: Vec::new(),
        folders: BTreeMap::new(),
        backups: BTreeMap::new(),
        histories: BTreeMap::new(),
        stray_keys: Vec::new(),
        cursors: BTreeMap::new(),
        built_at_ms: 0,
        refreshed_at_ms: 0,
    }
}

/// The 24-hex name of segment `n` on `tli`.
pub(crate) fn segment_name(tli: u32, n: u64) -> String {
    wal_file_name(tli, n, SEG)
}

/// Adds one `wal_005/` object, keeping the index sorted by name.
pub(crate) fn add_wal(index: &mut Index, name: &str, size: u64, modified_ms: i64) {
    index.wal.push(WalObject {
        name: name.to_string(),
        size,
        modified_ms,
        key: classify_wal_file(name, SEG),
    });
    index.wal.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Adds segments `from..=to` of `tli` (`.lz4`, 100 bytes), segment `n` archived at minute `n`.
pub(crate) fn add_segments(index: &mut Index, tli: u32, from: u64, to: u64) {
    for n in from..=to {
        add_wal(
            index,
            &format!("{}.lz4", segment_name(tli, n)),
            100,
            ms(n as i64),
        );
    }
}

/// Adds a readable `<tli>.history` with `(parent, switch segment)` records (each switch at a segment start).
pub(crate) fn add_history(index: &mut Index, tli: u32, records: &[(u32, u64)]) {
    let name = format!("{tli:08X}.history");
    add_wal(index, &name, 40, 0);
    let records = records
        .iter()
        .map(|&(parent, segment)| HistoryRecord {
            parent,
            switch_lsn: segment * SEG,
            reason: "no recovery target specified".into(),
        })
        .collect();
    index.histories.insert(
        name.clone(),
        HistoryEntry {
            name,
            tli,
            records: Doc::Ok(records),
            bad_lines: 0,
        },
    );
}

/// A backup of segments `start..=end` on `tli`: sentinel, metadata.json (finished at minute `end`), data tars.
pub(crate) struct BackupFixture {
    pub name: String,
    pub sentinel: Sentinel,
    pub metadata: Doc<Metadata>,
    pub folder: Option<Folder>,
}

pub(crate) fn backup(tli: u32, start: u64, end: u64) -> BackupFixture {
    let sentinel = Sentinel {
        lsn: Some(start * SEG + 40),
        finish_lsn: Some(end * SEG + 200),
        system_identifier: Some(7),
        ..Sentinel::default()
    };
    let metadata = Metadata {
        start_time: Some(at(start as i64)),
        finish_time: Some(at(end as i64)),
        is_permanent: Some(false),
        ..Metadata::default()
    };
    BackupFixture {
        name: format!("base_{}", segment_name(tli, start)),
        sentinel,
        metadata: Doc::Ok(metadata),
        folder: Some(Folder {
            tars: vec!["part_1.tar.lz4".into(), "pg_control.tar.lz4".into()],
            has_metadata: true,
            objects: 3,
            bytes: 300,
            newest_modified_ms: ms(end as i64),
            ..Folder::default()
        }),
    }
}

impl BackupFixture {
    /// Makes it a delta of `parent`.
    pub(crate) fn delta_of(mut self, parent: &str) -> BackupFixture {
        self.name = format!("{}_D_{}", self.name, &parent[5..29]);
        self.sentinel.delta_from = Some(parent.to_string());
        self
    }

    /// Adds it to `index` (sentinel uploaded at the finish time) and returns its name.
    pub(crate) fn add_to(self, index: &mut Index) -> String {
        let modified = self
            .metadata
            .ok()
            .and_then(|m| m.finish_time)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or(0);
        if let Some(folder) = self.folder {
            index.folders.insert(self.name.clone(), folder);
        }
        index.backups.insert(
            self.name.clone(),
            BackupEntry {
                name: self.name.clone(),
                sentinel_modified_ms: modified,
                sentinel: Doc::Ok(self.sentinel),
                metadata: self.metadata,
            },
        );
        self.name
    }
}
