//! Harness for the real-PostgreSQL tier: PostgreSQL servers started from the installed binaries, a wal-g-layout
//! bucket on local file storage filled from their real archive, and a test-only `backup-fetch` + `wal-fetch`.
//!
//! Invariants:
//! * PostgreSQL refuses to run as root, so when the tests run as root (CI) every PostgreSQL program runs as the
//!   `postgres` user (`runuser -u postgres --`), and every directory it writes to is chowned to it first. As any
//!   other user the programs run as that user.
//! * Every server is a [`Server`] guard: dropping it (also while a test panics) stops the server.
//! * Servers listen only on a Unix socket inside their own temporary directory (`listen_addresses = ''`), so the
//!   port number never collides with another server on the machine: every server can use [`PORT`].
//! * Every wait is bounded ([`WAIT`]) and fails with what it waited for and the end of the server log.
//! * The bucket is written the way wal-g writes it: `archive_command` only copies each finished file into a
//!   staging directory (wal-g compresses inside its `archive_command`, `wal-g wal-push %p`); [`Bucket::push_wal`]
//!   then uploads the staged files in name order, lz4-compressed (wal-g's default), as `wal_005/<file>.lz4`. A
//!   base backup is uploaded as data tar, `pg_control.tar` and `backup_label.tar`, then `metadata.json`, then the
//!   sentinel, after its stop segment is in `wal_005/` (wal-g's `pg_backup_stop` waits for archiving).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use walg::names::{parse_wal_file_name, Compression};

/// PostgreSQL's default `wal_segment_size`, which these servers keep.
pub const SEGMENT_SIZE: u64 = 16 * 1024 * 1024;
/// The port in every server's socket name (sockets live in per-server directories).
pub const PORT: u16 = 5432;
/// Upper bound of every wait (a loaded two-core machine starts and recovers a server in a few seconds).
pub const WAIT: Duration = Duration::from_secs(90);
/// Where Debian's `postgresql-15` package installs the server programs.
const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Opt-out for machines without PostgreSQL: set to `1` to skip the tier instead of failing.
pub const SKIP_VARIABLE: &str = "WALDEN_SKIP_REAL_POSTGRES";
/// Overrides [`DEFAULT_BIN`].
pub const BIN_VARIABLE: &str = "WALDEN_PG_BIN";

pub type Result<T> = std::result::Result<T, String>;

/// The PostgreSQL programs, and whether they must run as `postgres`.
#[derive(Debug, Clone)]
pub struct Postgres {
    bin: PathBuf,
    as_postgres_user: bool,
}

/// Finds the PostgreSQL 15 programs. `Ok(None)` only when [`SKIP_VARIABLE`] opts out; missing programs are an
/// error otherwise, so that CI (which installs them) never passes without running the tier.
pub fn find_postgres() -> Result<Option<Postgres>> {
    if std::env::var(SKIP_VARIABLE).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_VARIABLE}=1: the real-PostgreSQL tests are skipped");
        return Ok(None);
    }
    let bin = std::env::var_os(BIN_VARIABLE)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN));
    let needed = ["initdb", "pg_ctl", "postgres", "pg_basebackup", "psql"];
    let missing: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|p| !bin.join(p).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "PostgreSQL 15 programs are missing in {} ({}). Install Debian's postgresql-15 (./walden.sh test does), \
             point {BIN_VARIABLE} at another bin directory, or set {SKIP_VARIABLE}=1 to skip this tier.",
            bin.display(),
            missing.join(", ")
        ));
    }
    let as_postgres_user = current_uid()? == 0;
    Ok(Some(Postgres {
        bin,
        as_postgres_user,
    }))
}

fn current_uid() -> Result<u32> {
    let out = run(Command::new("id").arg("-u"), "id -u")?;
    out.trim()
        .parse()
        .map_err(|e| format!("id -u printed {out:?}: {e}"))
}

/// Runs a command and returns its standard output, or an error with its output when it fails.
fn run(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    check(out, what)
}

fn check(out: Output, what: &str) -> Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{what} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Postgres {
    /// A command for a PostgreSQL program, run as `postgres` when we are root, from `cwd` (which that user can
    /// enter: initdb and pg_ctl change back to it).
    pub fn command(&self, program: &str, cwd: &Path) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(cwd);
        cmd
    }

    /// Hands `path` (recursively) to the user the servers run as.
    pub fn give(&self, path: &Path) -> Result<()> {
        if self.as_postgres_user {
            run(
                Command::new("chown")
                    .args(["-R", "postgres:postgres"])
                    .arg(path),
                &format!("chown {}", path.display()),
            )?;
        }
        Ok(())
    }

    /// A new directory that the servers' user owns.
    pub fn directory(&self, path: &Path) -> Result<PathBuf> {
        fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        self.give(path)?;
        Ok(path.to_path_buf())
    }

    /// A temporary directory that the servers' user owns, removed on drop.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir> {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        self.give(dir.path())?;
        Ok(dir)
    }
}

/// A PostgreSQL server on a data directory; stopped when dropped.
pub struct Server {
    pg: Postgres,
    pub data: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    cwd: PathBuf,
}

impl Server {
    /// A server on an existing data directory (initdb'd, base-backed-up or fetched), with its socket in
    /// `<work>/<name>.sock` and its log in `<work>/<name>.log`. Not started.
    pub fn on(pg: &Postgres, work: &Path, name: &str, data: PathBuf) -> Result<Server> {
        let socket_dir = pg.directory(&work.join(format!("{name}.sock")))?;
        Ok(Server {
            pg: pg.clone(),
            data,
            socket_dir,
            log: work.join(format!("{name}.log")),
            cwd: work.to_path_buf(),
        })
    }

    /// `initdb` into `<work>/<name>`.
    pub fn init(pg: &Postgres, work: &Path, name: &str) -> Result<Server> {
        let data = work.join(name);
        run(
            pg.command("initdb", work)
                .args([
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        )?;
        Server::on(pg, work, name, data)
    }

    /// Appends settings to `postgresql.conf` (later lines win) and points the socket at this server's directory.
    pub fn configure(&self, settings: &[(&str, String)]) -> Result<()> {
        let mut text = format!(
            "\n# real_postgres test harness\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\n",
            self.socket_dir.display()
        );
        for (key, value) in settings {
            text.push_str(&format!("{key} = '{}'\n", value.replace('\'', "''")));
        }
        let conf = self.data.join("postgresql.conf");
        let mut old = fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        old.push_str(&text);
        fs::write(&conf, old).map_err(|e| format!("{}: {e}", conf.display()))
    }

    /// `pg_ctl start -w`: waits until the server accepts connections (a server in archive recovery does once it
    /// is consistent, since `hot_standby` is on).
    pub fn start(&self) -> Result<()> {
        run(
            self.pg
                .command("pg_ctl", &self.cwd)
                .args(["-w", "-t", &WAIT.as_secs().to_string(), "-l"])
                .arg(&self.log)
                .arg("-D")
                .arg(&self.data)
                .arg("start"),
            "pg_ctl start",
        )
        .map(drop)
        .map_err(|e| format!("{e}\n{}", self.log_tail()))
    }

    /// `pg_ctl stop -m fast`; a server that is not running is not an error.
    pub fn stop(&self) -> Result<()> {
        if !self.running() {
            return Ok(());
        }
        run(
            self.pg
                .command("pg_ctl", &self.cwd)
                .args(["-w", "-t", &WAIT.as_secs().to_string(), "-m", "fast", "-D"])
                .arg(&self.data)
                .arg("stop"),
            "pg_ctl stop",
        )
        .map(drop)
    }

    /// Whether a postmaster runs on this data directory (`pg_ctl status`).
    pub fn running(&self) -> bool {
        self.pg
            .command("pg_ctl", &self.cwd)
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `pg_ctl promote -w`.
    pub fn promote(&self) -> Result<()> {
        run(
            self.pg
                .command("pg_ctl", &self.cwd)
                .args(["-w", "-t", &WAIT.as_secs().to_string(), "-D"])
                .arg(&self.data)
                .arg("promote"),
            "pg_ctl promote",
        )
        .map(drop)
    }

    /// Runs SQL statements, each in its own transaction (psql `-c` per statement), and returns the unaligned,
    /// tuples-only output.
    pub fn sql(&self, statements: &[&str]) -> Result<String> {
        let mut cmd = self.pg.command("psql", &self.cwd);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-h")
        .arg(&self.socket_dir)
        .args(["-p", &PORT.to_string()]);
        for s in statements {
            cmd.args(["-c", s]);
        }
        run(&mut cmd, &format!("psql {statements:?}")).map(|s| s.trim().to_string())
    }

    /// Polls `query` until it prints `expected`.
    pub fn wait_for(&self, query: &str, expected: &str, what: &str) -> Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < WAIT {
            match self.sql(&[query]) {
                Ok(v) if v == expected => return Ok(()),
                Ok(v) => last = v,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "timed out after {WAIT:?} waiting for {what} ({query} printed {last:?}, not {expected:?})\n{}",
            self.log_tail()
        ))
    }

    /// Polls the server log until it contains `text` (a server that stopped on an error writes it there).
    pub fn wait_for_log(&self, text: &str) -> Result<String> {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            let log = fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains(text)) {
                return Ok(line.to_string());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "timed out after {WAIT:?} waiting for the log to say {text:?}\n{}",
            self.log_tail()
        ))
    }

    /// The last lines of the server log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(25);
        format!(
            "--- last lines of {} ---\n{}",
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running() {
            // Immediate: a test that failed half-way must not wait for a checkpoint; the data is thrown away.
            let _ = self
                .pg
                .command("pg_ctl", &self.cwd)
                .args(["-w", "-t", "60", "-m", "immediate", "-D"])
                .arg(&self.data)
                .arg("stop")
                .output();
        }
    }
}

/// `1764379216.123456` (PostgreSQL's `extract(epoch from ...)`) as a time, exact to the microsecond.
pub fn parse_epoch(text: &str) -> Result<OffsetDateTime> {
    let (secs, frac) = text.trim().split_once('.').unwrap_or((text.trim(), "0"));
    let secs: i64 = secs.parse().map_err(|e| format!("epoch {text:?}: {e}"))?;
    let micros: i64 = format!("{frac:0<6}")[..6]
        .parse()
        .map_err(|e| format!("epoch {text:?}: {e}"))?;
    let nanos = (secs as i128 * 1_000_000 + micros as i128) * 1000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|e| format!("epoch {text:?}: {e}"))
}

/// `X/Y` as a number.
pub fn parse_lsn(text: &str) -> Result<u64> {
    walg::Lsn::parse(text.trim())
        .map(|l| l.0)
        .ok_or_else(|| format!("{text:?} is not an LSN"))
}

/// Waits until the staging directory holds every file in `names` (the archiver copied them).
pub fn wait_staged(stage: &Path, names: &[String]) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if names.iter().all(|n| stage.join(n).is_file()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "timed out after {WAIT:?} waiting for the archiver to copy {names:?} into {}",
        stage.display()
    ))
}

/// A wal-g bucket on local file storage (`WALG_FILE_PREFIX`).
pub struct Bucket {
    pub root: PathBuf,
    pushed: BTreeSet<String>,
}

/// What pg_basebackup and the server told about a base backup, for its sentinel.
pub struct BackupFacts {
    pub start_lsn: u64,
    pub finish_lsn: u64,
    /// WAL file holding the start LSN: the backup is `base_<this>`.
    pub start_wal_file: String,
    pub start_time: OffsetDateTime,
    pub system_identifier: u64,
    pub pg_version: i64,
    pub data_dir: String,
}

impl Bucket {
    pub fn new(root: PathBuf) -> Result<Bucket> {
        for sub in ["wal_005", "basebackups_005"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        Ok(Bucket {
            root,
            pushed: BTreeSet::new(),
        })
    }

    /// The `wal-push` of every newly staged file (segments, `.history`, `.partial`, `.backup`), in name order,
    /// lz4-compressed. The object's mtime (its LastModified) is the upload time, as on real storage.
    pub fn push_wal(&mut self, stage: &Path) -> Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(stage)
            .map_err(|e| format!("{}: {e}", stage.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".tmp") && !self.pushed.contains(n))
            .collect();
        names.sort();
        for name in &names {
            let raw = fs::read(stage.join(name)).map_err(|e| format!("{name}: {e}"))?;
            let key = format!("wal_005/{}", Compression::Lz4.key_for(name));
            self.put(&key, &compress(&raw)?)?;
            self.pushed.insert(name.clone());
        }
        Ok(names)
    }

    /// Writes one object atomically (a reader never sees half of it).
    fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let path = self.root.join(key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        let tmp = self.root.join(".upload.tmp");
        fs::write(&tmp, bytes).map_err(|e| format!("{key}: {e}"))?;
        fs::rename(&tmp, &path).map_err(|e| format!("{key}: {e}"))
    }

    /// Uploads a backup the way `wal-g backup-push` does, after its WAL is pushed: the tars (data, pg_control,
    /// backup_label), then `metadata.json`, then the sentinel, with `FinishTime` taken after the stop segment
    /// and the tars are in storage. Returns the backup name.
    pub fn upload_backup(&self, base_tar: &[u8], facts: &BackupFacts) -> Result<String> {
        let name = format!("base_{}", facts.start_wal_file);
        let parts = split_base_tar(base_tar)?;
        let mut uncompressed = 0u64;
        let mut compressed = 0u64;
        for (file, tar) in [
            ("part_001.tar", &parts.data),
            ("pg_control.tar", &parts.control),
            ("backup_label.tar", &parts.label),
        ] {
            let packed = compress(tar)?;
            uncompressed += tar.len() as u64;
            compressed += packed.len() as u64;
            let key = format!(
                "basebackups_005/{name}/tar_partitions/{}",
                Compression::Lz4.key_for(file)
            );
            self.put(&key, &packed)?;
        }
        let finish_time = OffsetDateTime::now_utc();
        let (start, finish) = (go_time(facts.start_time)?, go_time(finish_time)?);
        let metadata = serde_json::json!({
            "start_time": start, "finish_time": finish, "date_fmt": "%Y-%m-%dT%H:%M:%S.%fZ",
            "hostname": "real-postgres-test", "data_dir": facts.data_dir, "pg_version": facts.pg_version,
            "start_lsn": facts.start_lsn, "finish_lsn": facts.finish_lsn, "is_permanent": false,
            "system_identifier": facts.system_identifier, "uncompressed_size": uncompressed,
            "compressed_size": compressed,
        });
        let sentinel = serde_json::json!({
            "LSN": facts.start_lsn, "PgVersion": facts.pg_version, "FinishLSN": facts.finish_lsn,
            "SystemIdentifier": facts.system_identifier, "UncompressedSize": uncompressed,
            "CompressedSize": compressed, "ChkpNum": null, "Version": 2, "StartTime": start,
            "FinishTime": finish, "DateFmt": "%Y-%m-%dT%H:%M:%S.%fZ", "Hostname": "real-postgres-test",
            "DataDir": facts.data_dir, "IsPermanent": false,
        });
        self.put(
            &format!("basebackups_005/{name}/metadata.json"),
            metadata.to_string().as_bytes(),
        )?;
        self.put(
            &format!("basebackups_005/{name}_backup_stop_sentinel.json"),
            sentinel.to_string().as_bytes(),
        )?;
        Ok(name)
    }

    /// The test's `backup-fetch`: extracts the backup's tars into `data` (data tars first, `pg_control` last,
    /// as wal-g does).
    pub fn fetch_backup(&self, name: &str, data: &Path) -> Result<()> {
        let dir = self
            .root
            .join(format!("basebackups_005/{name}/tar_partitions"));
        let mut files: Vec<String> = fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort_by_key(|f| {
            (
                f.starts_with("pg_control"),
                f.starts_with("backup_label"),
                f.clone(),
            )
        });
        fs::create_dir_all(data).map_err(|e| format!("mkdir {}: {e}", data.display()))?;
        for file in files {
            let (_, compression) = Compression::split(&file);
            let packed = fs::read(dir.join(&file)).map_err(|e| format!("{file}: {e}"))?;
            let tar = walg::codec::decompress(&packed, compression)
                .map_err(|e| format!("{file}: {e}"))?;
            tar::Archive::new(&tar[..])
                .unpack(data)
                .map_err(|e| format!("extract {file}: {e}"))?;
        }
        Ok(())
    }

    /// The test's `wal-fetch` source: decompresses every `.history` file and the WAL segments numbered `from`
    /// to `to` (any timeline) into `into`, for `restore_command = 'cp <into>/%f %p'`. Nothing outside that
    /// range is there, so a recovery that needs more WAL than a plan names fails.
    pub fn stage_wal(&self, from: &str, to: &str, into: &Path) -> Result<Vec<String>> {
        let number = |name: &str| {
            parse_wal_file_name(name, SEGMENT_SIZE)
                .map(|(_, n)| n)
                .ok_or_else(|| format!("{name:?} is not a WAL file name"))
        };
        let (first, last) = (number(from)?, number(to)?);
        let dir = self.root.join("wal_005");
        let mut staged = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let file = entry.map_err(|e| e.to_string())?.file_name();
            let file = file.to_string_lossy();
            let (base, compression) = Compression::split(&file);
            let wanted = base.ends_with(".history")
                || parse_wal_file_name(base, SEGMENT_SIZE)
                    .is_some_and(|(_, n)| (first..=last).contains(&n));
            if wanted {
                let packed = fs::read(dir.join(&*file)).map_err(|e| format!("{file}: {e}"))?;
                let raw = walg::codec::decompress(&packed, compression)
                    .map_err(|e| format!("{file}: {e}"))?;
                fs::write(into.join(base), raw).map_err(|e| format!("{base}: {e}"))?;
                staged.push(base.to_string());
            }
        }
        staged.sort();
        Ok(staged)
    }
}

fn compress(raw: &[u8]) -> Result<Vec<u8>> {
    walg::codec::compress(raw, Compression::Lz4).map_err(|e| e.to_string())
}

/// RFC 3339 in UTC with microseconds, as wal-g writes times (Go's RFC3339Nano of a microsecond clock).
fn go_time(t: OffsetDateTime) -> Result<String> {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(t.microsecond() * 1000)
        .map_err(|e| e.to_string())?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())
}

/// pg_basebackup's `base.tar` split the way wal-g uploads a backup.
struct BackupTars {
    data: Vec<u8>,
    control: Vec<u8>,
    label: Vec<u8>,
}

fn split_base_tar(base_tar: &[u8]) -> Result<BackupTars> {
    let mut data = tar::Builder::new(Vec::new());
    let mut control = tar::Builder::new(Vec::new());
    let mut label = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(base_tar);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let mut header = entry.header().clone();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| e.to_string())?;
        let target = match path.to_string_lossy().as_ref() {
            "global/pg_control" => &mut control,
            "backup_label" | "tablespace_map" => &mut label,
            _ => &mut data,
        };
        target
            .append_data(&mut header, &path, &bytes[..])
            .map_err(|e| e.to_string())?;
    }
    let finish = |b: tar::Builder<Vec<u8>>| b.into_inner().map_err(|e| e.to_string());
    Ok(BackupTars {
        data: finish(data)?,
        control: finish(control)?,
        label: finish(label)?,
    })
}

/// One line of a `backup_label` / `.backup` file: `KEY: value`.
pub fn label_field<'a>(label: &'a str, key: &str) -> Result<&'a str> {
    label
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
        .ok_or_else(|| format!("no {key} in:\n{label}"))
}

/// Reads one file out of an uncompressed tar.
pub fn file_in_tar(tar_bytes: &[u8], wanted: &str) -> Result<String> {
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        if entry.path().map_err(|e| e.to_string())?.as_os_str() == wanted {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).map_err(|e| e.to_string())?;
            return Ok(text);
        }
    }
    Err(format!("{wanted} is not in the tar"))
}
