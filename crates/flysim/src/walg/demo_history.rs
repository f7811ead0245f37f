//! The demo's three weeks of history, written object by object as the leader's `archive_command` (wal-g
//! `wal-push`) and `wal-g backup-push` would have written them, back-dated from the emulator's clock, so every
//! element of Walden's timeline shows from the first start: full backups (the oldest permanent), a delta chain,
//! a WAL gap, a promotion to timeline 2, and a quiet night without WAL. It ends where the live cluster goes on
//! archiving: the next segment on timeline 2.

use std::path::Path;

use super::archive::{db_size, history_line, push_segments, push_wal_object};
use super::push::write_backup;
use super::{compress, wal_name, with_ext, write_file, SEG_SIZE};
use crate::model::*;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The demo's compression: wal-g's default (`WALG_COMPRESSION_METHOD` unset).
const METHOD: &str = "lz4";

/// One thing that happened to the cluster, at a time before now.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// From here on a segment is switched every this many milliseconds (the write load changed).
    Cadence(i64),
    /// `wal-g backup-push` (with `--permanent` when true).
    Full { permanent: bool },
    /// `wal-g backup-push` with `WALG_DELTA_MAX_STEPS` set: a delta of the newest backup (a full backup when
    /// there is none since the promotion).
    Delta,
    /// This many segments were switched but never uploaded: the archive_command `fly pg create` sets is
    /// `if [ $ENABLE_WALG ]; then /usr/local/bin/wal-g wal-push "%p"; fi`, which reports success without
    /// uploading while the secret is unset, so PostgreSQL recycled them: a real hole.
    Lose(u64),
    /// The leader failed and Stolon promoted a replica: timeline 2.
    Promote,
    /// Nothing was written until this many milliseconds before now. PostgreSQL switches a segment at
    /// `archive_timeout` only "when there has been any database activity, including a single checkpoint
    /// (checkpoints are skipped if there is no database activity)" (PostgreSQL documentation, runtime-config-wal,
    /// `archive_timeout`; checkpoints on idle systems are skipped since 9.6), so a quiet database archives
    /// nothing and the archive shows a long interval between two consecutive segments, not a hole.
    IdleUntil(i64),
}

/// The story, oldest first: (how long before now, what happened).
const STORY: [(i64, Step); 12] = [
    // A light load: about one write an hour, each archived at the next archive_timeout.
    (22 * DAY_MS, Step::Cadence(HOUR_MS)),
    (21 * DAY_MS, Step::Full { permanent: true }),
    (14 * DAY_MS, Step::Full { permanent: false }),
    (10 * DAY_MS, Step::Lose(6)),
    (7 * DAY_MS, Step::Full { permanent: false }),
    (4 * DAY_MS, Step::Promote),
    (3 * DAY_MS, Step::Cadence(10 * MINUTE_MS)),
    (3 * DAY_MS - HOUR_MS, Step::Full { permanent: false }),
    (2 * DAY_MS, Step::Delta),
    (DAY_MS, Step::Delta),
    // A quiet night.
    (14 * HOUR_MS, Step::IdleUntil(8 * HOUR_MS)),
    // The last hour is busy: a segment every archive_timeout (60 s), so the newest WAL is fresh at start.
    (HOUR_MS, Step::Cadence(MINUTE_MS)),
];

/// The Machines that led the cluster: before the promotion and after it (a backup's `Hostname`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leaders<'a> {
    pub before: &'a str,
    pub after: &'a str,
}

/// Write the demo history into `root`, ending at `now_ms`; `pg` is left on timeline 2 at the segment the live
/// cluster archives next.
pub(crate) fn seed_demo_history(
    root: &Path,
    pg: &mut PgCluster,
    now_ms: i64,
    leaders: Leaders<'_>,
) -> std::io::Result<()> {
    let mut archive = Archive {
        root,
        pg,
        host: leaders.before.to_string(),
        cadence: HOUR_MS,
        chain: None,
    };
    let mut t = now_ms - STORY[0].0;
    for (ago, step) in STORY {
        let at = now_ms - ago;
        t = archive.wal(t, at)?;
        t = match step {
            Step::Cadence(every) => {
                archive.cadence = every;
                t
            }
            Step::Full { permanent } => archive.backup(at, Some(permanent))?,
            Step::Delta => archive.backup(at, None)?,
            Step::Lose(segments) => archive.lose(t, segments),
            Step::Promote => {
                archive.promote(at)?;
                archive.host = leaders.after.to_string();
                t
            }
            Step::IdleUntil(until_ago) => now_ms - until_ago,
        };
    }
    archive.wal(t, now_ms)?;
    Ok(())
}

/// The backup a delta is taken from, and the chain it belongs to.
#[derive(Debug, Clone)]
struct ChainTip {
    name: String,
    start_lsn: u64,
    full_name: String,
    count: u64,
}

/// The leader's archive while the history is written.
struct Archive<'a> {
    root: &'a Path,
    pg: &'a mut PgCluster,
    /// Hostname of the current leader (wal-g records it in each backup).
    host: String,
    cadence: i64,
    /// The newest backup, for the next delta.
    chain: Option<ChainTip>,
}

impl Archive<'_> {
    /// Segment switches every `cadence` from `from` while before `until`; returns when the next would be.
    fn wal(&mut self, from: i64, until: i64) -> std::io::Result<i64> {
        let mut t = from;
        while t < until {
            self.switch(t)?;
            t += self.cadence;
        }
        Ok(t)
    }

    /// `archive_timeout` switched the current segment at `at` (it holds a commit from then): it is uploaded.
    fn switch(&mut self, at: i64) -> std::io::Result<()> {
        let seg = self.pg.lsn / SEG_SIZE;
        push_segments(
            self.root,
            self.pg.timeline,
            (seg, seg + 1),
            METHOD,
            at,
            Some(at),
        )
        .map_err(std::io::Error::other)?;
        self.next_segment(seg + 1);
        *self
            .pg
            .databases
            .entry("app".into())
            .or_default()
            .entry("events".into())
            .or_default() += 250;
        Ok(())
    }

    /// WAL goes on in segment `seg`, just after its page header.
    fn next_segment(&mut self, seg: u64) {
        self.pg.lsn = seg * SEG_SIZE + 40;
    }

    /// `segments` switched from `from` on and never uploaded (see [`Step::Lose`]); returns when the next switch is.
    fn lose(&mut self, from: i64, segments: u64) -> i64 {
        let seg = self.pg.lsn / SEG_SIZE;
        self.next_segment(seg + segments);
        from + segments as i64 * self.cadence
    }

    /// `wal-g backup-push` at `at`: a full backup (`Some(permanent)`) or a delta of the newest backup (`None`).
    /// pg_start_backup's checkpoint opens the next segment and pg_stop_backup switches it, waiting for the
    /// archive; returns when the next `archive_timeout` switch is.
    fn backup(&mut self, at: i64, full: Option<bool>) -> std::io::Result<i64> {
        let pg = &*self.pg;
        let seg = pg.lsn / SEG_SIZE;
        let start_lsn = (seg + 1) * SEG_SIZE + 0x28;
        let finish_lsn = start_lsn + 0x1B8;
        let start_name = wal_name(pg.timeline, start_lsn / SEG_SIZE);
        let delta = match (full, &self.chain) {
            (None, Some(tip)) => Some(DeltaParent {
                name: tip.name.clone(),
                start_lsn: tip.start_lsn,
                full_name: tip.full_name.clone(),
                count: tip.count + 1,
            }),
            _ => None,
        };
        let (name, took_ms, size) = match &delta {
            // wal-g names a delta after its own start segment and its parent's (`_D_` + the parent's first
            // 24 hex digits); only changed pages go in, so it is smaller and quicker.
            Some(parent) => (
                format!(
                    "base_{start_name}_D_{}",
                    parent.name.get(5..29).unwrap_or("")
                ),
                20_000,
                db_size(pg) / 8,
            ),
            None => (format!("base_{start_name}"), 90_000, db_size(pg)),
        };
        let finish_ms = at + took_ms;
        let job = PushJob {
            root: self.root.to_path_buf(),
            name: name.clone(),
            start_ms: at,
            finish_ms,
            start_lsn,
            finish_lsn,
            pg_version: pg.pg_version,
            system_identifier: pg.system_identifier,
            timeline: pg.timeline,
            hostname: self.host.clone(),
            data_dir: "/data/postgres".into(),
            pg_parameters: crate::stolon::pg_parameters(pg),
            roles: pg.roles.clone(),
            databases: pg.databases.clone(),
            compression: METHOD.into(),
            permanent: full.unwrap_or(false),
            uncompressed_size: size,
            log_path: None,
            delta: delta.clone(),
            data_catalog_size: Some(db_size(pg)),
        };
        let tli = pg.timeline;
        push_segments(
            self.root,
            tli,
            (seg, finish_lsn / SEG_SIZE + 1),
            METHOD,
            finish_ms,
            Some(at),
        )
        .map_err(std::io::Error::other)?;
        write_backup(&job)?;
        self.next_segment(finish_lsn / SEG_SIZE + 1);
        self.chain = Some(ChainTip {
            full_name: delta
                .as_ref()
                .map_or_else(|| name.clone(), |parent| parent.full_name.clone()),
            count: delta.as_ref().map_or(0, |parent| parent.count),
            name,
            start_lsn,
        });
        Ok(finish_ms + self.cadence)
    }

    /// A replica is promoted at `at`, having replayed the old leader's WAL into the current segment: the new
    /// leader archives `00000002.history` and the old timeline's last segment as `.partial` (PostgreSQL 9.5+),
    /// and timeline 2 goes on in that same segment (which is why the history's switch point lies inside it).
    fn promote(&mut self, at: i64) -> std::io::Result<()> {
        let old = self.pg.timeline;
        let new = old + 1;
        let switch_lsn = self.pg.lsn + 0x1_2F40;
        let seg = switch_lsn / SEG_SIZE;
        let history = history_line(old, switch_lsn);
        let history_name = with_ext(&format!("{new:08X}.history"), METHOD);
        write_file(
            &self.root.join("wal_005").join(history_name),
            &compress(history.as_bytes(), METHOD)?,
            at,
        )?;
        let partial = format!("{}.partial", wal_name(old, seg));
        push_wal_object(self.root, &partial, old, METHOD, at, Some(at - MINUTE_MS))
            .map_err(std::io::Error::other)?;
        self.pg.timeline = new;
        self.pg.lsn = switch_lsn;
        self.chain = None;
        Ok(())
    }
}
