//! Choosing a base backup for a recovery target.
//!
//! Invariants: a plan states every recovery setting PostgreSQL should get, never relying on a default that differs
//! between versions or setups: `recovery_target_timeline` (a number), the target, `recovery_target_inclusive`
//! where a target time or LSN makes it matter, and `recovery_target_action`. The action is always `promote`: the
//! Stolon image's PITR (`pitrConfig.recoveryTargetSettings`) writes `recovery_target_action = 'promote'` whenever a
//! target is set, and PostgreSQL's own default `pause` would leave a restored server read-only in recovery until
//! someone runs `pg_wal_replay_resume()` (or, with `hot_standby = off`, shut it down).

use crate::last_commit::{CommitSearch, LastCommit};
use crate::names::{segment_of, Lsn};
use crate::timeline::{short_time, Backup, BackupWindow, BucketTimeline, Lineage, LineageGap};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A point in time (`recovery_target_time`).
    Time(OffsetDateTime),
    /// As far as the archived WAL goes.
    Latest,
    /// An LSN (`recovery_target_lsn`).
    Lsn(u64),
    /// A named backup, restored to its consistency point (`recovery_target = 'immediate'`).
    Backup(String),
}

/// A restore plan: the backup and the recovery settings for PostgreSQL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub backup: String,
    pub backup_timeline: u32,
    /// Delta ancestors that `backup-fetch` will restore first, nearest first.
    pub delta_chain: Vec<String>,
    pub backup_finish_time: Option<OffsetDateTime>,
    /// Exact string for `recovery_target_time` (UTC with a numeric offset), when the target is a time.
    pub recovery_target_time: Option<String>,
    /// `X/Y` for `recovery_target_lsn`, when the target is an LSN.
    pub recovery_target_lsn: Option<String>,
    /// `immediate` when restoring a named backup to its consistency point.
    pub recovery_target: Option<String>,
    /// The timeline to follow, as a decimal number.
    pub recovery_target_timeline: String,
    /// `on` (stop just after the target: a commit at exactly the target time or LSN is restored) when the target
    /// is a time or an LSN; `None` where PostgreSQL ignores it (latest, `immediate`).
    #[serde(default)]
    pub recovery_target_inclusive: Option<String>,
    /// What PostgreSQL does at the target: always `promote` (end recovery and accept writes), as Stolon's PITR does.
    #[serde(default = "promote")]
    pub recovery_target_action: String,
    /// First and last WAL segment to replay (24-hex names).
    pub wal_from: String,
    pub wal_to: String,
    pub wal_segments: u64,
    /// Stored (compressed) bytes of those segments.
    pub wal_bytes: u64,
    /// Caveats in plain words.
    pub notes: Vec<String>,
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: String,
    pub reason: String,
}

/// A plan or a refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    Plan(Box<Plan>),
    Refusal(Refusal),
}

/// The exact `recovery_target_time` string PostgreSQL accepts: `YYYY-MM-DD HH:MM:SS[.ffffff]+00` in UTC
/// (microsecond precision, like PostgreSQL's timestamps; a finer fraction is truncated).
pub fn pg_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let base = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    match t.microsecond() {
        0 => format!("{base}+00"),
        us => format!("{base}.{us:06}+00"),
    }
}

/// Parses a target time: RFC 3339 (`2026-03-01T12:00:00Z`), or PostgreSQL style (`2026-03-01 12:00:00.5+00`,
/// `+05:30`, `-08`), with seconds optional. A time without an offset is taken as UTC.
pub fn parse_target_time(s: &str) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(Some(t)) = crate::documents::parse_time(s) {
        return Ok(t);
    }
    let bad =
        || format!("'{s}' is not a time like 2026-03-01T12:00:00Z or '2026-03-01 12:00:00+00'");
    let norm = s.replacen('T', " ", 1);
    let (date, rest) = norm.split_once(' ').ok_or_else(bad)?;
    // Split the clock from an optional offset (Z, +HH[:MM], -HH[:MM]).
    let (clock, offset) = match rest.find(['Z', 'z', '+', '-']) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let offset = match offset {
        "" | "Z" | "z" => "+00:00".to_string(),
        o => {
            let (sign, hm) = o.split_at(1);
            let (h, m) = match hm.split_once(':') {
                Some((h, m)) => (h, m),
                // `+0530`; ASCII only, so the split falls on a character boundary.
                None if hm.len() == 4 && hm.is_ascii() => hm.split_at(2),
                None => (hm, "00"),
            };
            let h: u8 = h.parse().map_err(|_| bad())?;
            let m: u8 = m.parse().map_err(|_| bad())?;
            format!("{sign}{h:02}:{m:02}")
        }
    };
    let clock = clock.trim();
    let clock = match clock.matches(':').count() {
        1 => format!("{clock}:00"),
        2 => clock.to_string(),
        _ => return Err(bad()),
    };
    let rfc = format!("{date}T{clock}{offset}");
    match crate::documents::parse_time(&rfc) {
        Ok(Some(t)) => Ok(t),
        _ => Err(bad()),
    }
}

/// The recovery target action every plan states.
pub const RECOVERY_TARGET_ACTION: &str = "promote";

fn promote() -> String {
    RECOVERY_TARGET_ACTION.to_string()
}

fn refuse(code: &str, reason: String) -> PlanOutcome {
    PlanOutcome::Refusal(Refusal {
        code: code.to_string(),
        reason,
    })
}

/// The window of `backup` on the lineage ending at `leaf`.
fn window_on(backup: &Backup, leaf: u32) -> Option<&BackupWindow> {
    backup.windows.iter().find(|w| w.lineage == leaf)
}

/// The newest of `candidates` by finish LSN, then finish time.
fn newest<'a>(candidates: impl Iterator<Item = &'a &'a Backup>) -> Option<&'a Backup> {
    candidates
        .max_by_key(|b| (b.finish_lsn, b.finish_time))
        .copied()
}

impl BucketTimeline {
    /// Picks the base backup for `target` on the lineage of `timeline` (default: the lineage with the newest WAL).
    pub fn choose_backup(&self, target: &Target, timeline: Option<u32>) -> PlanOutcome {
        let lin = match self.target_lineage(timeline) {
            Ok(lin) => lin,
            Err(refusal) => return refusal,
        };
        if let Target::Backup(name) = target {
            return self.plan_named(name, lin);
        }
        let on_lin = self.restorable_on(lin.leaf);
        if on_lin.is_empty() {
            let why = if self.backups.is_empty() {
                "there is no complete base backup".to_string()
            } else {
                format!(
                    "no backup on the history of timeline {} is restorable",
                    lin.leaf
                )
            };
            return refuse("no_backup", format!("Nothing can be restored: {why}."));
        }
        match target {
            Target::Time(t) => self.plan_time(*t, lin, &on_lin),
            Target::Latest => self.plan_latest(lin, &on_lin),
            Target::Lsn(l) => self.plan_lsn(*l, lin, &on_lin),
            Target::Backup(_) => unreachable_backup(),
        }
    }

    /// The lineage of `timeline` (default: the main one), or why there is none.
    fn target_lineage(&self, timeline: Option<u32>) -> Result<&Lineage, PlanOutcome> {
        let Some(leaf) = timeline.or(self.main_lineage) else {
            return Err(refuse(
                "no_backup",
                "No WAL and no timeline in storage: nothing can be restored.".into(),
            ));
        };
        self.lineage(leaf).ok_or_else(|| {
            let leaves: Vec<String> = self.lineages.iter().map(|l| l.leaf.to_string()).collect();
            refuse(
                "unknown_timeline",
                format!(
                    "Timeline {leaf} is not in this storage; choose one of: {}.",
                    leaves.join(", ")
                ),
            )
        })
    }

    /// The restorable backups with a window on the lineage ending at `leaf`.
    fn restorable_on(&self, leaf: u32) -> Vec<&Backup> {
        self.backups
            .iter()
            .filter(|b| b.restorable && window_on(b, leaf).is_some())
            .collect()
    }

    /// Recovery to time `t`: the newest backup finished by `t` whose window reaches `t`.
    fn plan_time(&self, t: OffsetDateTime, lin: &Lineage, on_lin: &[&Backup]) -> PlanOutcome {
        let best = newest(
            on_lin
                .iter()
                .filter(|b| b.finish_time.is_some_and(|f| f <= t))
                .filter(|b| window_on(b, lin.leaf).is_some_and(|w| t <= w.end_time)),
        );
        let Some(b) = best else {
            return self.refuse_time(t, lin, on_lin);
        };
        let search = self.commit_search(lin.leaf);
        if let Some(c) = search.and_then(CommitSearch::found) {
            if t >= c.time {
                return refuse_after_last_commit(t, c);
            }
        }
        let window = window_on(b, lin.leaf);
        let end = window.map(|w| w.end_segment).unwrap_or(0);
        let start = b.start_segment(self.segment_size).unwrap_or(0);
        // First segment archived at or after T: its records reach past T.
        let to = (start..=end)
            .find(|&n| {
                lin.owner(n)
                    .is_some_and(|owner| self.segment(owner, n).is_some_and(|(_, m)| m >= t))
            })
            .unwrap_or(end);
        let mut notes = Vec::new();
        // With the last commit known (and after the target), a commit follows the target: no caveat.
        let commit_known = search.is_some_and(|s| s.found().is_some());
        if to == end && !commit_known {
            let mut note = format!(
                "The target is close to the end of the archived WAL (about {}); PostgreSQL needs a commit after the \
                 target and stops with an error if the WAL ends first.",
                window.map(|w| short_time(w.end_time)).unwrap_or_default()
            );
            if let Some(why) = search.and_then(unknown_commit_note) {
                note.push(' ');
                note.push_str(&why);
            }
            notes.push(note);
        }
        self.make_plan(
            b,
            lin,
            Some(pg_time(t)),
            None,
            None,
            start,
            to.max(start),
            notes,
        )
    }

    /// Recovery to the end of the WAL: the newest backup whose window reaches the lineage's last segment; else,
    /// when the newest segments have a hole that is probably still uploading, the newest backup whose window
    /// reaches the last contiguous segment before it (where PostgreSQL's recovery to the end stops anyway).
    fn plan_latest(&self, lin: &Lineage, on_lin: &[&Backup]) -> PlanOutcome {
        let reaching = |end: u64| {
            newest(
                on_lin
                    .iter()
                    .filter(|b| window_on(b, lin.leaf).is_some_and(|w| w.end_segment == end)),
            )
        };
        let end = lin.newest_segment().unwrap_or(0);
        if let Some(b) = reaching(end) {
            let start = b.start_segment(self.segment_size).unwrap_or(0);
            let notes = match self.commit_search(lin.leaf) {
                Some(CommitSearch::Found(c)) => vec![format!(
                    "The last commit archived on timeline {} is at {} ({}, in {}); the restored database holds \
                     every transaction committed up to then.",
                    lin.leaf,
                    exact_time(c.time),
                    Lsn(c.lsn),
                    c.segment
                )],
                Some(other) => unknown_commit_note(other).into_iter().collect(),
                None => Vec::new(),
            };
            return self.make_plan(b, lin, None, None, None, start, end, notes);
        }
        let Some(contiguous) = lin
            .contiguous_end(self.upload_concurrency)
            .filter(|&c| c != end)
        else {
            return self.refuse_latest(lin);
        };
        match reaching(contiguous) {
            Some(b) => {
                let start = b.start_segment(self.segment_size).unwrap_or(0);
                let note = format!(
                    "The newest WAL has a hole that is probably still uploading (segments after {} are missing, \
                     up to {} is archived); recovery stops at the hole, about {}. Wait for the uploads and plan \
                     again to restore further.",
                    self.wal_name(lin.owner(contiguous).unwrap_or(lin.leaf), contiguous),
                    self.wal_name(lin.owner(end).unwrap_or(lin.leaf), end),
                    window_on(b, lin.leaf)
                        .map(|w| short_time(w.end_time))
                        .unwrap_or_default()
                );
                self.make_plan(b, lin, None, None, None, start, contiguous, vec![note])
            }
            None => self.refuse_latest(lin),
        }
    }

    fn refuse_latest(&self, lin: &Lineage) -> PlanOutcome {
        let tgt = lin.leaf;
        let latest = self
            .windows
            .iter()
            .filter(|w| w.timeline == tgt)
            .map(|w| w.to)
            .max();
        let mut reason = format!(
            "No backup on timeline {tgt}'s history is followed by unbroken WAL up to the newest segment"
        );
        if let Some(g) = lin.gaps.last() {
            let (first, last) = self.gap_names(lin, g);
            reason.push_str(&format!(
                ": WAL gap from {first} to {last} on timeline {}",
                g.timeline
            ));
            if let (Some(a), Some(z)) = (g.after, g.before) {
                reason.push_str(&format!(" ({} to {})", short_time(a), short_time(z)));
            }
        }
        if let Some(l) = latest {
            reason.push_str(&format!(
                ". The latest restorable time is about {}; plan a --target-time before it, or take a new base \
                 backup",
                short_time(l)
            ));
        }
        reason.push('.');
        refuse("wal_gap", reason)
    }

    /// Recovery to LSN `l`: the newest backup finished by `l` whose window reaches past `l`.
    fn plan_lsn(&self, l: u64, lin: &Lineage, on_lin: &[&Backup]) -> PlanOutcome {
        let best = newest(
            on_lin
                .iter()
                .filter(|b| b.finish_lsn.is_some_and(|f| f <= l))
                .filter(|b| window_on(b, lin.leaf).is_some_and(|w| l < w.end_lsn))
                .filter(|b| lin.contains(b.timeline, b.start_lsn.unwrap_or(0))),
        );
        let Some(b) = best else {
            return self.refuse_lsn(l, lin, on_lin);
        };
        let start = b.start_segment(self.segment_size).unwrap_or(0);
        let to = segment_of(l, self.segment_size).max(start);
        let lsn = Some(Lsn(l).to_string());
        self.make_plan(b, lin, None, lsn, None, start, to, Vec::new())
    }

    fn refuse_lsn(&self, l: u64, lin: &Lineage, on_lin: &[&Backup]) -> PlanOutcome {
        let earliest = on_lin
            .iter()
            .filter_map(|b| b.finish_lsn)
            .min()
            .unwrap_or(0);
        let in_gap = lin.gaps.iter().find(|g| {
            let a = g.missing.from.saturating_mul(self.segment_size);
            let z = (g.missing.to + 1).saturating_mul(self.segment_size);
            a <= l && l < z
        });
        let reason = if l < earliest {
            format!(
                "{} is before the end of the oldest restorable backup ({}); no backup is consistent by then.",
                Lsn(l),
                Lsn(earliest)
            )
        } else if let Some(g) = in_gap {
            let (first, last) = self.gap_names(lin, g);
            format!(
                "{} falls in a WAL gap ({first} to {last} are missing on timeline {}).",
                Lsn(l),
                g.timeline
            )
        } else {
            format!(
                "{} is not reachable from any backup on timeline {}'s history with unbroken WAL.",
                Lsn(l),
                lin.leaf
            )
        };
        refuse("lsn_unreachable", reason)
    }

    /// The names of the first and last missing segment of a gap on `lin`.
    fn gap_names(&self, lin: &Lineage, g: &LineageGap) -> (String, String) {
        (
            self.wal_name(g.timeline, g.missing.from),
            self.wal_name(lin.owner(g.missing.to).unwrap_or(g.timeline), g.missing.to),
        )
    }

    fn refuse_time(&self, t: OffsetDateTime, lin: &Lineage, on_lin: &[&Backup]) -> PlanOutcome {
        let tgt = lin.leaf;
        let ws: Vec<_> = self.windows.iter().filter(|w| w.timeline == tgt).collect();
        let earliest = ws.iter().map(|w| w.from).min();
        let latest = ws.iter().map(|w| w.to).max();
        let ts = short_time(t);
        if let Some(e) = earliest {
            if t < e {
                let b = on_lin
                    .iter()
                    .filter(|b| b.finish_time == Some(e))
                    .map(|b| b.name.as_str())
                    .next();
                return refuse(
                    "before_earliest",
                    format!(
                        "{ts} is before the earliest restorable time, {} (when backup {} finished).",
                        short_time(e),
                        b.unwrap_or("?")
                    ),
                );
            }
        }
        if let Some(l) = latest {
            if t > l {
                return refuse(
                    "after_latest",
                    format!(
                        "{ts} is after the newest archived WAL on timeline {tgt} (about {}): the latest restorable time.",
                        short_time(l)
                    ),
                );
            }
        }
        if let Some(g) = lin.gaps.iter().find(|g| match (g.after, g.before) {
            (Some(a), Some(z)) => a < t && t < z,
            _ => false,
        }) {
            let (a, z) = (
                g.after.map(short_time).unwrap_or_default(),
                g.before.map(short_time).unwrap_or_default(),
            );
            let (first, last) = self.gap_names(lin, g);
            return refuse(
                "wal_gap",
                format!(
                    "{ts} falls in a WAL gap from {a} to {z} on timeline {} (segments {} to {} are missing).",
                    g.timeline,
                    first,
                    last
                ),
            );
        }
        let before = ws.iter().filter(|w| w.to < t).map(|w| w.to).max();
        let after = ws.iter().filter(|w| w.from > t).map(|w| w.from).min();
        refuse(
            "not_covered",
            format!(
                "{ts} is not covered by any backup's restorable window on timeline {tgt}{}{}.",
                before
                    .map(|b| format!("; the window before it ends at {}", short_time(b)))
                    .unwrap_or_default(),
                after
                    .map(|a| format!("; the next starts at {}", short_time(a)))
                    .unwrap_or_default()
            ),
        )
    }

    fn plan_named(&self, name: &str, lin: &Lineage) -> PlanOutcome {
        let Some(b) = self.backups.iter().find(|b| b.name == name) else {
            return refuse(
                "unknown_backup",
                format!("Backup '{name}' does not exist (no sentinel)."),
            );
        };
        if !b.restorable {
            return refuse(
                "backup_not_restorable",
                format!(
                    "Backup {name} cannot be restored: {}.",
                    b.problems.join("; ")
                ),
            );
        }
        // Prefer the requested lineage, else the first the backup belongs to.
        let lin = if b.windows.iter().any(|w| w.lineage == lin.leaf) {
            lin
        } else {
            match b.windows.first().and_then(|w| self.lineage(w.lineage)) {
                Some(l) => l,
                None => {
                    return refuse(
                        "backup_not_restorable",
                        format!("Backup {name} has no usable WAL."),
                    )
                }
            }
        };
        let s = b.start_segment(self.segment_size).unwrap_or(0);
        let c = b.consistency_segment(self.segment_size).unwrap_or(s);
        self.make_plan(
            b,
            lin,
            None,
            None,
            Some("immediate".into()),
            s,
            c,
            Vec::new(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn make_plan(
        &self,
        b: &Backup,
        lin: &Lineage,
        time: Option<String>,
        lsn: Option<String>,
        immediate: Option<String>,
        from: u64,
        to: u64,
        mut notes: Vec<String>,
    ) -> PlanOutcome {
        let mut bytes = 0;
        let mut count = 0;
        for n in from..=to {
            if let Some((size, _)) = lin.owner(n).and_then(|o| self.segment(o, n)) {
                bytes += size;
                count += 1;
            }
        }
        if b.finish_time_approximate {
            notes.push(format!(
                "Backup {} has no recorded finish time; its sentinel's upload time was used.",
                b.name
            ));
        }
        let owner_from = lin.owner(from).unwrap_or(b.timeline);
        let owner_to = lin.owner(to).unwrap_or(lin.leaf);
        let inclusive = (time.is_some() || lsn.is_some()).then(|| "on".to_string());
        PlanOutcome::Plan(Box::new(Plan {
            backup: b.name.clone(),
            backup_timeline: b.timeline,
            delta_chain: b.delta_chain.clone(),
            backup_finish_time: b.finish_time,
            recovery_target_time: time,
            recovery_target_lsn: lsn,
            recovery_target: immediate,
            recovery_target_timeline: lin.leaf.to_string(),
            recovery_target_inclusive: inclusive,
            recovery_target_action: promote(),
            wal_from: self.wal_name(owner_from, from),
            wal_to: self.wal_name(owner_to, to),
            wal_segments: count,
            wal_bytes: bytes,
            notes,
        }))
    }
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff] UTC`: a commit time to the microsecond, as PostgreSQL compares it.
pub fn exact_time(t: OffsetDateTime) -> String {
    let pg = pg_time(t);
    format!("{} UTC", pg.strip_suffix("+00").unwrap_or(&pg))
}

/// PostgreSQL stops a time target before the first commit or abort after it (`recoveryStopsBefore` with
/// `recovery_target_inclusive = on`: a record at exactly the target time does not stop it either); at or after the
/// last one, recovery runs out of WAL and fails.
fn refuse_after_last_commit(t: OffsetDateTime, c: &LastCommit) -> PlanOutcome {
    let last = exact_time(c.time);
    refuse(
        "after_last_commit",
        format!(
            "The last commit archived on timeline {} is at {last}; PostgreSQL cannot stop at {} because no \
             commit follows it. Choose a time before {last}, or --latest.",
            c.timeline,
            exact_time(t)
        ),
    )
}

/// Why the last commit is not known, for a plan's notes (`None` when it was not looked for).
fn unknown_commit_note(search: &CommitSearch) -> Option<String> {
    match search {
        CommitSearch::Found(_) => None,
        CommitSearch::NotFound { segments: 1, .. } => {
            Some("No commit was found in the newest segment of the archived WAL.".into())
        }
        CommitSearch::NotFound { segments, .. } => Some(format!(
            "No commit was found in the newest {segments} segments of the archived WAL."
        )),
        CommitSearch::Failed { reason, .. } => Some(format!(
            "The last commit could not be read from the WAL: {reason}."
        )),
    }
}

fn unreachable_backup() -> PlanOutcome {
    refuse(
        "internal",
        "named-backup targets are handled before this point".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_time_forms() {
        let want = time::macros::datetime!(2026-03-01 12:00 UTC);
        for s in [
            "2026-03-01T12:00:00Z",
            "2026-03-01 12:00:00+00",
            "2026-03-01 12:00+00",
            "2026-03-01 12:00",
            "2026-03-01T14:00:00+02:00",
            "2026-03-01 07:00:00-05",
            "2026-03-01 17:30:00+0530",
        ] {
            assert_eq!(parse_target_time(s), Ok(want), "{s}");
        }
        assert_eq!(
            parse_target_time("2026-03-01 12:00:00.25+00").map(|t| t.millisecond()),
            Ok(250)
        );
        for bad in [
            "yesterday",
            "2026-03-01",
            "2026-13-01 12:00",
            "2026-03-01 12",
            "",
            // Found by the property test: a 4-byte offset that is one character, not HHMM.
            "! Z🌀",
            "2026-03-01 12:00+🌀",
            "2026-03-01 12:00-0é3",
        ] {
            assert!(parse_target_time(bad).is_err(), "{bad}");
        }
        // Round trip with what the plan prints.
        let t = time::macros::datetime!(2026-03-01 10:34:56.789 UTC);
        assert_eq!(parse_target_time(&pg_time(t)), Ok(t));
    }

    #[test]
    fn pg_time_format() {
        let t = time::macros::datetime!(2026-03-01 12:34:56.789 +02:00);
        assert_eq!(pg_time(t), "2026-03-01 10:34:56.789000+00");
        let t = time::macros::datetime!(2026-03-01 12:34:56 UTC);
        assert_eq!(pg_time(t), "2026-03-01 12:34:56+00");
        let t = time::macros::datetime!(2026-03-01 12:34:56.000000999 UTC);
        assert_eq!(pg_time(t), "2026-03-01 12:34:56+00");
    }
}
