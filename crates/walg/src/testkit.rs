//! Builders that write realistic wal-g trees: compressed (any wal-g extension), optionally libsodium-encrypted,
//! with timeline switches, gaps, delta backups, garbage folders and permanent backups. Used by this crate's
//! tests, by other crates' tests and demo mode (enable the `testkit` feature), and by the benchmark.

use crate::codec::{encode, LibsodiumKey};
use crate::names::{
    wal_file_name, Compression, Lsn, BASEBACKUPS, DEFAULT_SEGMENT_SIZE, SENTINEL_SUFFIX, WAL,
};
use crate::report::rfc3339;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// One object to write.
#[derive(Debug, Clone)]
pub struct TestObject {
    /// Key relative to the wal-g root.
    pub key: String,
    pub data: Vec<u8>,
    /// LastModified to give it (honoured on file storage; object stores set their own).
    pub modified: OffsetDateTime,
}

/// A base backup to write.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    pub timeline: u32,
    pub start_lsn: u64,
    pub finish_lsn: u64,
    pub start_time: OffsetDateTime,
    pub finish_time: OffsetDateTime,
    /// Permanence in metadata.json (authoritative).
    pub permanent: bool,
    /// Permanence in the sentinel (defaults to `permanent`; set differently to simulate `backup-mark`).
    pub sentinel_permanent: Option<bool>,
    /// Parent backup name for a delta backup.
    pub delta_from: Option<String>,
    pub system_identifier: Option<u64>,
    pub with_metadata: bool,
    pub with_pg_control: bool,
    pub with_data: bool,
}

impl BackupSpec {
    /// A full backup starting in segment `start_segment` at `start`, finishing one segment and 5 minutes later.
    pub fn at(timeline: u32, start_segment: u64, start: OffsetDateTime) -> BackupSpec {
        let seg = DEFAULT_SEGMENT_SIZE;
        BackupSpec {
            timeline,
            start_lsn: start_segment * seg + 0x28,
            finish_lsn: (start_segment + 1) * seg + 0x1F8,
            start_time: start,
            finish_time: start + Duration::minutes(5),
            permanent: false,
            sentinel_permanent: None,
            delta_from: None,
            system_identifier: None,
            with_metadata: true,
            with_pg_control: true,
            with_data: true,
        }
    }
    pub fn delta_of(mut self, parent: &str) -> Self {
        self.delta_from = Some(parent.to_string());
        self
    }
    pub fn permanent(mut self) -> Self {
        self.permanent = true;
        self
    }
}

/// Accumulates the objects of a wal-g root, then writes them to a directory or an object store.
#[derive(Debug, Clone)]
pub struct BucketBuilder {
    pub segment_size: u64,
    pub compression: Compression,
    pub key: Option<LibsodiumKey>,
    pub system_identifier: u64,
    pub objects: Vec<TestObject>,
}

impl Default for BucketBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BucketBuilder {
    pub fn new() -> BucketBuilder {
        BucketBuilder {
            segment_size: DEFAULT_SEGMENT_SIZE,
            compression: Compression::Lz4,
            key: None,
            system_identifier: 7_409_872_345_123_456_789,
            objects: Vec::new(),
        }
    }

    pub fn compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Encrypt WAL and history objects with libsodium (sentinels and metadata stay plain, like wal-g).
    pub fn encrypt(mut self, key: LibsodiumKey) -> Self {
        self.key = Some(key);
        self
    }

    fn encoded(&self, plain: &[u8]) -> Vec<u8> {
        // Compression never fails for the writable formats; fall back to plain bytes otherwise.
        encode(plain, self.compression, self.key.as_ref()).unwrap_or_else(|_| plain.to_vec())
    }

    /// Adds a raw object.
    pub fn raw(&mut self, key: &str, data: &[u8], modified: OffsetDateTime) -> &mut Self {
        self.objects.push(TestObject {
            key: key.to_string(),
            data: data.to_vec(),
            modified,
        });
        self
    }

    /// WAL segments `from..=to` on `tli`; segment `from` archived at `first`, then one every `step`.
    pub fn wal(
        &mut self,
        tli: u32,
        from: u64,
        to: u64,
        first: OffsetDateTime,
        step: Duration,
    ) -> &mut Self {
        for (i, n) in (from..=to).enumerate() {
            let name = wal_file_name(tli, n, self.segment_size);
            let body = format!("WAL segment {name}\n").repeat(4);
            let data = self.encoded(body.as_bytes());
            let key = format!("{WAL}/{}", self.compression.key_for(&name));
            self.objects.push(TestObject {
                key,
                data,
                modified: first + step * (i as i32),
            });
        }
        self
    }

    /// A `.history` file for `tli` with the full list of (parent, switch LSN) records, oldest first.
    pub fn history(
        &mut self,
        tli: u32,
        records: &[(u32, u64)],
        modified: OffsetDateTime,
    ) -> &mut Self {
        let mut text = String::new();
        for (i, (p, lsn)) in records.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            let l = Lsn(*lsn);
            text.push_str(&format!(
                "{p}\t{:X}/{:08X}\tno recovery target specified\n",
                l.0 >> 32,
                l.0 & 0xFFFF_FFFF
            ));
        }
        let data = self.encoded(text.as_bytes());
        let key = format!(
            "{WAL}/{}",
            self.compression.key_for(&format!("{tli:08X}.history"))
        );
        self.objects.push(TestObject {
            key,
            data,
            modified,
        });
        self
    }

    /// The `.partial` segment an old timeline leaves at promotion.
    pub fn partial(&mut self, tli: u32, segno: u64, modified: OffsetDateTime) -> &mut Self {
        let name = format!("{}.partial", wal_file_name(tli, segno, self.segment_size));
        let data = self.encoded(b"partial segment");
        let key = format!("{WAL}/{}", self.compression.key_for(&name));
        self.objects.push(TestObject {
            key,
            data,
            modified,
        });
        self
    }

    /// The name wal-g gives a backup with this spec.
    pub fn backup_name(&self, spec: &BackupSpec) -> String {
        let start = wal_file_name(
            spec.timeline,
            spec.start_lsn / self.segment_size,
            self.segment_size,
        );
        match &spec.delta_from {
            Some(parent) => {
                let p = parent.strip_prefix("base_").unwrap_or(parent);
                format!("base_{start}_D_{}", p.get(..24).unwrap_or(p))
            }
            None => format!("base_{start}"),
        }
    }

    /// [`BucketBuilder::backup`] in wal-g's real order: `pg_backup_stop` waits until the stop segment
    /// (`seg(finish_lsn - 1)`) is archived, then wal-g uploads `backup_label` and takes `FinishTime`
    /// (`backup_push_handler.go#uploadBackup` → `uploadMetadata`), so the finish time is set 30 s after the stop
    /// segment's upload when that segment was already added and uploaded later than `spec.finish_time`.
    pub fn backup_in_wal_order(&mut self, spec: &BackupSpec) -> String {
        let stop = spec.finish_lsn.saturating_sub(1) / self.segment_size;
        let stop_name = wal_file_name(spec.timeline, stop, self.segment_size);
        let archived = self
            .objects
            .iter()
            .filter(|o| o.key.starts_with(&format!("{WAL}/{stop_name}")))
            .map(|o| o.modified)
            .max();
        let mut spec = spec.clone();
        if let Some(archived) = archived.filter(|&a| a >= spec.finish_time) {
            spec.finish_time = archived + Duration::seconds(30);
        }
        self.backup(&spec)
    }

    /// A complete backup: tars, pg_control, backup_label, metadata.json, then the sentinel. Returns its name.
    /// Its times are taken as given (see [`BucketBuilder::backup_in_wal_order`] for wal-g's real order).
    pub fn backup(&mut self, spec: &BackupSpec) -> String {
        let name = self.backup_name(spec);
        let ext = self.compression.key_for("");
        let folder = format!("{BASEBACKUPS}/{name}");
        let t = spec.finish_time;
        if spec.with_data {
            for part in 1..=2 {
                let data = self.encoded(format!("tar data {part} of {name}").as_bytes());
                self.raw(
                    &format!("{folder}/tar_partitions/part_{part:03}.tar{ext}"),
                    &data,
                    t,
                );
            }
            let data = self.encoded(b"backup_label");
            self.raw(
                &format!("{folder}/tar_partitions/backup_label.tar{ext}"),
                &data,
                t,
            );
        }
        if spec.with_pg_control {
            let data = self.encoded(b"pg_control");
            self.raw(
                &format!("{folder}/tar_partitions/pg_control.tar{ext}"),
                &data,
                t,
            );
        }
        let sysid = spec.system_identifier.unwrap_or(self.system_identifier);
        if spec.with_metadata {
            let meta = serde_json::json!({
                "start_time": rfc3339(spec.start_time),
                "finish_time": rfc3339(spec.finish_time),
                "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ",
                "hostname": "db1",
                "data_dir": "/data/postgres",
                "pg_version": 160004,
                "start_lsn": spec.start_lsn,
                "finish_lsn": spec.finish_lsn,
                "is_permanent": spec.permanent,
                "system_identifier": sysid,
                "uncompressed_size": 2_604_967_632u64,
                "compressed_size": 858_502_390u64,
            });
            self.raw(
                &format!("{folder}/metadata.json"),
                meta.to_string().as_bytes(),
                t,
            );
        }
        let mut s = serde_json::json!({
            "LSN": spec.start_lsn,
            "PgVersion": 160004,
            "FinishLSN": spec.finish_lsn,
            "SystemIdentifier": sysid,
            "UncompressedSize": 2_604_967_632u64,
            "CompressedSize": 858_502_390u64,
            "DataCatalogSize": 2_598_123_520u64,
            "Spec": {"base_prefix": "/data/postgres"},
            "ChkpNum": null,
            "Version": 2,
            "StartTime": rfc3339(spec.start_time),
            "FinishTime": rfc3339(spec.finish_time),
            "DateFmt": "%Y-%m-%dT%H:%M:%S.%fZ",
            "Hostname": "db1",
            "DataDir": "/data/postgres",
            "IsPermanent": spec.sentinel_permanent.unwrap_or(spec.permanent),
        });
        if let (Some(parent), Some(obj)) = (&spec.delta_from, s.as_object_mut()) {
            let parent_lsn = self.sentinel_lsn(parent);
            let root = self.delta_root(parent);
            let count = self.delta_count(parent) + 1;
            obj.insert("DeltaFrom".into(), parent.clone().into());
            obj.insert("DeltaFullName".into(), root.into());
            obj.insert("DeltaCount".into(), count.into());
            if let Some(l) = parent_lsn {
                obj.insert("DeltaLSN".into(), l.into());
            }
        }
        self.raw(
            &format!("{BASEBACKUPS}/{name}{SENTINEL_SUFFIX}"),
            s.to_string().as_bytes(),
            t + Duration::seconds(1),
        );
        name
    }

    fn sentinel(&self, name: &str) -> Option<serde_json::Value> {
        let key = format!("{BASEBACKUPS}/{name}{SENTINEL_SUFFIX}");
        let o = self.objects.iter().find(|o| o.key == key)?;
        serde_json::from_slice(&o.data).ok()
    }
    fn sentinel_lsn(&self, name: &str) -> Option<u64> {
        self.sentinel(name)?.get("LSN")?.as_u64()
    }
    fn delta_root(&self, name: &str) -> String {
        self.sentinel(name)
            .and_then(|s| {
                s.get("DeltaFullName")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
            .unwrap_or_else(|| name.to_string())
    }
    fn delta_count(&self, name: &str) -> u64 {
        self.sentinel(name)
            .and_then(|s| s.get("DeltaCount").and_then(|v| v.as_u64()))
            .unwrap_or(0)
    }

    /// A backup folder without a sentinel (failed or half-deleted backup).
    pub fn garbage(&mut self, name: &str, modified: OffsetDateTime) -> &mut Self {
        let ext = self.compression.key_for("");
        let data = self.encoded(b"orphan tar");
        self.raw(
            &format!("{BASEBACKUPS}/{name}/tar_partitions/part_001.tar{ext}"),
            &data,
            modified,
        );
        self
    }

    /// Removes every object whose key contains `needle` (to make gaps or break chains after the fact).
    pub fn remove(&mut self, needle: &str) -> &mut Self {
        self.objects.retain(|o| !o.key.contains(needle));
        self
    }

    /// Writes the tree under `dir` (the wal-g root), setting each file's modification time.
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        for o in &self.objects {
            let p = dir.join(&o.key);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, &o.data)?;
            let st = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(
                    o.modified.unix_timestamp().max(0) as u64 * 1000
                        + o.modified.millisecond() as u64,
                );
            std::fs::File::options()
                .write(true)
                .open(&p)?
                .set_modified(st)?;
        }
        Ok(())
    }

    /// Writes the tree to an object store under `root` (LastModified is the store's upload time).
    pub async fn write_store(
        &self,
        store: &dyn ObjectStore,
        root: &str,
    ) -> Result<(), object_store::Error> {
        let root = root.trim_matches('/');
        for o in &self.objects {
            let key = if root.is_empty() {
                o.key.clone()
            } else {
                format!("{root}/{}", o.key)
            };
            store
                .put(&StorePath::from(key), PutPayload::from(o.data.clone()))
                .await?;
        }
        Ok(())
    }
}

/// Fixed anchor times for the sample bucket.
fn floor_hour(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_minute(0)
        .and_then(|t| t.replace_second(0))
        .and_then(|t| t.replace_nanosecond(0))
        .unwrap_or(t)
}

/// The sample bucket's builder, anchored at `now`: four days of WAL every 10 minutes, timeline 1 promoted to
/// timeline 2 after two and a half days, a one-hour WAL gap on timeline 2, daily full backups (the oldest
/// permanent), one delta backup.
pub fn sample_builder(now: OffsetDateTime) -> BucketBuilder {
    let step = Duration::minutes(10);
    let start = floor_hour(now) - Duration::days(4);
    let base: u64 = 0x2A00; // segment numbers that look like a cluster's middle age
    let seg = DEFAULT_SEGMENT_SIZE;
    let at = |k: u64| start + step * (k as i32);
    let mut b = BucketBuilder::new();
    let switch_k = 360; // 2.5 days
    let last_k = 4 * 24 * 6 - 1; // up to now
    let switch_lsn = (base + switch_k) * seg + 0x4000;
    // Timeline 1 until the switch; its copy of the switch segment is archived as .partial.
    b.wal(1, base, base + switch_k - 1, at(0), step);
    b.partial(1, base + switch_k, at(switch_k));
    b.history(2, &[(1, switch_lsn)], at(switch_k));
    // Timeline 2 with a one-hour gap.
    let gap = (450, 455);
    b.wal(2, base + switch_k, base + gap.0 - 1, at(switch_k), step);
    b.wal(2, base + gap.1 + 1, base + last_k, at(gap.1 + 1), step);
    // Backups: one a day (the oldest permanent), plus a delta twelve hours after the second.
    let b0 = b.backup(&BackupSpec::at(1, base + 12, at(12)).permanent());
    let _ = b0;
    let b1 = b.backup(&BackupSpec::at(1, base + 156, at(156)));
    b.backup(&BackupSpec::at(1, base + 228, at(228)).delta_of(&b1));
    b.backup(&BackupSpec::at(2, base + 372, at(372)));
    b.backup(&BackupSpec::at(2, base + 516, at(516)));
    b
}

/// A bucket whose newest segment holds real WAL records, so its last commit can be read: 1 MiB segments
/// (`WALG_PG_WAL_SIZE=1`) 1–4 of timeline 1, one every two minutes from `base` + 1 min; a full backup started in
/// segment 2 at `base` + 2 min; segment 5 written by [`crate::xlog_writer::WalWriter`] with one commit at
/// `base` + 31 min, uploaded at `base` + 45 min. Returns the builder and the commit time.
pub fn real_wal_builder(base: OffsetDateTime) -> (BucketBuilder, OffsetDateTime) {
    const SEG: u64 = 1024 * 1024;
    let mut b = BucketBuilder::new();
    b.segment_size = SEG;
    b.wal(1, 1, 4, base + Duration::minutes(1), Duration::minutes(2));
    let mut spec = BackupSpec::at(1, 2, base + Duration::minutes(2));
    spec.start_lsn = 2 * SEG + 0x28;
    spec.finish_lsn = 3 * SEG + 0x1F8;
    b.backup(&spec);
    let mut w = crate::xlog_writer::WalWriter::new(SEG, 5 * SEG);
    let commit = base + Duration::minutes(31);
    let pg_us =
        (commit - time::macros::datetime!(2000-01-01 00:00 UTC)).whole_microseconds() as i64;
    w.heap(1, b"row");
    w.commit(1, pg_us, &[]);
    w.heap(0, b"checkpoint-ish");
    w.finish_segment();
    let data = crate::codec::compress(&w.buf, Compression::Lz4).unwrap_or_default();
    b.raw(
        "wal_005/000000010000000000000005.lz4",
        &data,
        base + Duration::minutes(45),
    );
    (b, commit)
}

/// Writes a small, pleasant demo bucket into `dir` (anchored at the current time): two timelines, a few days of
/// backups, one WAL gap. Returns the storage URL to read it (`file:///...`).
pub fn sample_bucket(dir: &Path) -> std::io::Result<String> {
    sample_builder(OffsetDateTime::now_utc()).write_dir(dir)?;
    let abs = std::path::absolute(dir)?;
    Ok(format!("file://{}", abs.display()))
}

/// Writes a large tree for benchmarks: `wal` segments on timeline 1 (tiny bodies) and `backups` full backups
/// spread evenly over them, each with metadata, two data tars and pg_control. Returns the number of objects.
pub fn generate_large(dir: &Path, wal: u64, backups: u64) -> std::io::Result<u64> {
    let seg = DEFAULT_SEGMENT_SIZE;
    let wal_dir = dir.join(WAL);
    std::fs::create_dir_all(&wal_dir)?;
    let mut n = 0;
    for s in 0..wal {
        let name = format!("{}.lz4", wal_file_name(1, s + 1, seg));
        std::fs::write(wal_dir.join(name), b"w")?;
        n += 1;
    }
    let now = OffsetDateTime::now_utc();
    let mut b = BucketBuilder::new().compression(Compression::Lz4);
    let every = (wal / backups.max(1)).max(1);
    for i in 0..backups {
        let s = 1 + i * every;
        if s + 2 > wal {
            break;
        }
        b.backup(&BackupSpec::at(
            1,
            s,
            now - Duration::minutes((backups - i) as i64),
        ));
    }
    n += b.objects.len() as u64;
    b.write_dir(dir)?;
    Ok(n)
}

/// Adds `count` more segments after the ones [`generate_large`] wrote (for refresh benchmarks).
pub fn extend_large(dir: &Path, from_segment: u64, count: u64) -> std::io::Result<()> {
    let seg = DEFAULT_SEGMENT_SIZE;
    for s in from_segment..from_segment + count {
        let name = format!("{}.lz4", wal_file_name(1, s, seg));
        std::fs::write(dir.join(WAL).join(name), b"w")?;
    }
    Ok(())
}

/// A real S3-protocol server for tests: moto (`moto_server`, Python) on 127.0.0.1 with a free port and one
/// bucket created. Killed when dropped. moto does not check signatures, so any credentials do.
pub struct MotoServer {
    child: std::process::Child,
    port: u16,
    bucket: String,
}

/// Why moto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error(
        "this test needs `moto_server` (Python moto) on PATH to run a real S3-protocol server: \
         `pip install 'moto[server]'` ({0})"
    )]
    NotInstalled(std::io::Error),
    #[error("moto_server did not listen on 127.0.0.1:{0} within 30 s")]
    NotListening(u16),
    #[error("cannot talk to moto_server: {0}")]
    Io(#[from] std::io::Error),
    #[error("bucket creation failed: {0}")]
    Bucket(String),
}

impl MotoServer {
    /// Start moto and create `bucket`; fails with the install hint when `moto_server` is not on PATH.
    pub fn try_start(bucket: &str) -> Result<MotoServer, MotoError> {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::time::{Duration as StdDuration, Instant};

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())?
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(MotoError::NotInstalled)?;
        // From here on, dropping `moto` stops the child.
        let moto = MotoServer {
            child,
            port,
            bucket: bucket.to_owned(),
        };
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline {
                return Err(MotoError::NotListening(port));
            }
            std::thread::sleep(StdDuration::from_millis(100));
        }
        // Create the bucket with a plain path-style PUT.
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        write!(
            stream,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 200") {
            return Err(MotoError::Bucket(response));
        }
        Ok(moto)
    }

    /// [`MotoServer::try_start`] for tests, which want a failed start to fail the test with its reason.
    #[allow(clippy::panic)]
    pub fn start(bucket: &str) -> MotoServer {
        match MotoServer::try_start(bucket) {
            Ok(moto) => moto,
            Err(e) => panic!("{e}"),
        }
    }

    /// The endpoint URL (`AWS_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The wal-g variables a cluster would have for `prefix` inside the bucket.
    pub fn walg_env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("WALG_S3_PREFIX", format!("s3://{}/{prefix}", self.bucket)),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_S3_FORCE_PATH_STYLE", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test-secret".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
