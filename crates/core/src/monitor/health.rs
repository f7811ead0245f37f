//! The health rules (issue #12 item 6, without the webhook): one colour and a one-line reason per cluster, from
//! the last good refresh, the last refresh's error and the machines' states. Pure: every rule is unit-tested
//! below from fixed values.
//!
//! The rules, first match wins for red; the amber ones are joined into one line:
//! - red: the storage could not be read on the last refresh (the last good summary stays beside the error);
//! - red: the last good index has an error finding (a WAL gap, a broken delta chain, no backup, ...);
//! - idle: every machine is stopped on purpose (`stopped` or `suspended`), so WAL and backups are not expected
//!   to move — not "failing";
//! - amber: never refreshed yet;
//! - amber: the newest WAL is older than 3 × `archive_timeout`;
//! - amber: the newest complete base backup is older than 7 days (or there is none);
//! - green otherwise.
//!
//! Beside them, [`volume_filling`]: the WAL rule fires and the leader's volume grows (or is above 90 %): amber
//! with the forecast, red when it is full within a day or above 90 %. [`combine`] puts it into the colour and
//! line the home page shows; it is alerted on under its own kind (`volume_filling`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::clusters::MachineSummary;

/// `archive_timeout` of a Stolon cluster on Fly when it cannot be read from the cluster (see `monitor::archive`): 60 s, the value of the
/// default cluster spec of fly-apps/postgres-ha (`pkg/flypg/config.go`: `archive_timeout: "60"`) and of the
/// wal-g guide's `stolonctl update --patch` (docs/reference/fly-platform.md, docs/reference/seed-guide.txt).
pub const STOLON_ARCHIVE_TIMEOUT_SECS: i64 = 60;

/// A cluster's colour. Ordered worst first (`Red < Amber < Idle < Green`), so sorting puts the worst on top.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Red,
    Amber,
    Idle,
    Green,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Red => "red",
            Health::Amber => "amber",
            Health::Idle => "idle",
            Health::Green => "green",
        }
    }
}

/// The thresholds of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The cluster's `archive_timeout` in seconds (default [`STOLON_ARCHIVE_TIMEOUT_SECS`]).
    pub archive_timeout_secs: i64,
    /// WAL older than this many `archive_timeout`s is late (3).
    pub wal_timeouts: i64,
    /// A newest complete base backup older than this is late (7 days).
    pub base_backup_max_age_secs: i64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            archive_timeout_secs: STOLON_ARCHIVE_TIMEOUT_SECS,
            wal_timeouts: 3,
            base_backup_max_age_secs: 7 * 24 * 3600,
        }
    }
}

impl Rules {
    /// The WAL age beyond which WAL is late.
    pub fn wal_max_age_secs(&self) -> i64 {
        self.archive_timeout_secs.saturating_mul(self.wal_timeouts)
    }
}

/// Findings of the last good index, by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingCounts {
    pub error: i64,
    pub warning: i64,
    pub info: i64,
}

/// What the last good refresh found (kept when a later refresh fails).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// When that refresh finished.
    pub refreshed_at: OffsetDateTime,
    pub earliest_restorable: Option<OffsetDateTime>,
    /// The last commit when it was read and lies inside the last window, else the end of the last window.
    pub latest_restorable: Option<OffsetDateTime>,
    /// Upload time of the newest WAL segment.
    pub newest_wal: Option<OffsetDateTime>,
    /// Finish time of the newest complete base backup.
    pub newest_base_backup: Option<OffsetDateTime>,
    /// The last commit (or abort) read from the newest WAL of the main lineage.
    pub last_commit: Option<OffsetDateTime>,
    pub findings: FindingCounts,
    /// The first error finding's message (the reason of a red colour).
    pub first_error: Option<String>,
}

/// A colour and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub health: Health,
    /// One line, for people.
    pub reason: String,
}

impl Verdict {
    fn new(health: Health, reason: impl Into<String>) -> Self {
        Verdict {
            health,
            reason: reason.into(),
        }
    }
}

/// Whether Fly reports a machine as stopped by someone (not crashed or failing): `stopped` or `suspended`.
pub fn stopped_on_purpose(state: &str) -> bool {
    matches!(state, "stopped" | "suspended")
}

/// Applies the rules at `now` (see the module documentation). `machines` is `None` when Fly could not be asked.
pub fn assess(
    rules: &Rules,
    now: OffsetDateTime,
    summary: Option<&Summary>,
    last_error: Option<&str>,
    machines: Option<&[MachineSummary]>,
) -> Verdict {
    if let Some(error) = last_error {
        let kept = match summary {
            Some(s) => format!(
                "; showing the last good refresh of {}",
                short_time(s.refreshed_at)
            ),
            None => String::new(),
        };
        return Verdict::new(Health::Red, format!("storage unreachable: {error}{kept}"));
    }
    if let Some(first) = summary.and_then(|s| s.first_error.as_deref()) {
        let count = summary.map_or(0, |s| s.findings.error);
        let more = if count > 1 {
            format!(" (and {} more errors)", count - 1)
        } else {
            String::new()
        };
        return Verdict::new(Health::Red, format!("{}{more}", first_line(first)));
    }
    if let Some(machines) = machines.filter(|m| !m.is_empty()) {
        if machines.iter().all(|m| stopped_on_purpose(&m.state)) {
            return Verdict::new(
                Health::Idle,
                format!(
                    "all {} machines stopped on purpose: no WAL or backups expected until they start",
                    machines.len()
                ),
            );
        }
    }
    let Some(summary) = summary else {
        return Verdict::new(Health::Amber, "not refreshed yet");
    };
    let mut late = Vec::new();
    match summary.newest_wal {
        Some(wal) if age(now, wal) > rules.wal_max_age_secs() => late.push(format!(
            "newest WAL is {} old (more than {} × archive_timeout = {} s)",
            walg::timeline::human_age(age(now, wal)),
            rules.wal_timeouts,
            rules.wal_max_age_secs()
        )),
        Some(_) => {}
        None => late.push("no WAL archived".to_owned()),
    }
    match summary.newest_base_backup {
        Some(b) if age(now, b) > rules.base_backup_max_age_secs => late.push(format!(
            "newest base backup is {} old (more than {} days)",
            walg::timeline::human_age(age(now, b)),
            rules.base_backup_max_age_secs / 86_400
        )),
        Some(_) => {}
        None => late.push("no complete base backup".to_owned()),
    }
    if !late.is_empty() {
        return Verdict::new(Health::Amber, late.join("; "));
    }
    let mut ok = String::from("WAL and base backups are fresh");
    if summary.findings.warning > 0 {
        ok.push_str(&format!(" ({} warnings)", summary.findings.warning));
    }
    Verdict::new(Health::Green, ok)
}

/// A volume full within this is red (24 hours: a person has a day to fix archiving or grow the volume).
pub const FILLING_RED_SECS: i64 = 24 * 3600;

/// The `volume_filling` rule: WAL archiving is stale (the newest WAL is older than the WAL rule allows) and the
/// leader's volume grows, or is above 90 % already (then the Stolon image has turned the cluster read-only, see
/// [`super::volume::READ_ONLY_PERCENT`]). Amber with the forecast; red when full within [`FILLING_RED_SECS`] or
/// above 90 %. `None` when it does not fire: WAL is fresh, the volume is not growing, it was never read, or
/// every machine is stopped on purpose (idle).
pub fn volume_filling(
    rules: &Rules,
    now: OffsetDateTime,
    summary: Option<&Summary>,
    machines: Option<&[MachineSummary]>,
    volume: Option<&super::volume::VolumeStatus>,
) -> Option<Verdict> {
    use super::volume::{fills_in, span, READ_ONLY_PERCENT};
    if machines.is_some_and(|m| !m.is_empty() && m.iter().all(|m| stopped_on_purpose(&m.state))) {
        return None;
    }
    let wal = summary?.newest_wal?;
    let stale = age(now, wal);
    if stale <= rules.wal_max_age_secs() {
        return None;
    }
    let volume = volume?;
    let latest = volume.latest?;
    let percent = latest.percent();
    let full_at = volume.forecast.full_at();
    let over = percent > READ_ONLY_PERCENT;
    if full_at.is_none() && !over {
        return None;
    }
    let mut reason = format!(
        "WAL not archived for {}; the leader's volume is {percent:.0} % full",
        span(stale)
    );
    if let Some(full_at) = full_at {
        reason.push_str(&format!(" and {}", fills_in(now, full_at)));
    }
    if over {
        reason.push_str(" (above 90 % the cluster turns read-only)");
    }
    let soon = full_at.is_some_and(|t| (t - now).whole_seconds() < FILLING_RED_SECS);
    let health = if over || soon {
        Health::Red
    } else {
        Health::Amber
    };
    Some(Verdict::new(health, reason))
}

/// The colour and line of the home page: the worse of the backups rules and [`volume_filling`], the volume's
/// line first (it already says how long WAL has not been archived); a red backups reason with another cause (an
/// unreachable storage, a WAL gap) is kept after it.
pub fn combine(backups: &Verdict, filling: Option<&Verdict>) -> Verdict {
    let Some(filling) = filling else {
        return backups.clone();
    };
    let mut reason = filling.reason.clone();
    if backups.health == Health::Red {
        reason.push_str("; ");
        reason.push_str(&backups.reason);
    }
    Verdict::new(backups.health.min(filling.health), reason)
}

fn age(now: OffsetDateTime, t: OffsetDateTime) -> i64 {
    (now - t).whole_seconds().max(0)
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// `YYYY-MM-DD HH:MM UTC`.
pub(crate) fn short_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-11-29 12:00 UTC);

    fn fresh() -> Summary {
        Summary {
            refreshed_at: NOW - Duration::seconds(30),
            earliest_restorable: Some(NOW - Duration::days(2)),
            latest_restorable: Some(NOW - Duration::seconds(70)),
            newest_wal: Some(NOW - Duration::seconds(60)),
            newest_base_backup: Some(NOW - Duration::hours(12)),
            last_commit: Some(NOW - Duration::seconds(70)),
            findings: FindingCounts::default(),
            first_error: None,
        }
    }

    fn machine(state: &str) -> MachineSummary {
        MachineSummary {
            id: format!("m-{state}"),
            name: "pg".into(),
            region: "iad".into(),
            state: state.into(),
            role: "unknown".into(),
            image: "flyio/postgres:14.6".into(),
        }
    }

    fn verdict(summary: Option<&Summary>, error: Option<&str>, machines: &[&str]) -> Verdict {
        let machines: Vec<MachineSummary> = machines.iter().map(|s| machine(s)).collect();
        assess(&Rules::default(), NOW, summary, error, Some(&machines))
    }

    #[test]
    fn fresh_wal_and_backups_are_green() {
        let v = verdict(Some(&fresh()), None, &["started", "started"]);
        assert_eq!(v.health, Health::Green, "{v:?}");
    }

    #[test]
    fn wal_older_than_three_archive_timeouts_is_amber() {
        let mut s = fresh();
        s.newest_wal = Some(NOW - Duration::seconds(180));
        assert_eq!(verdict(Some(&s), None, &["started"]).health, Health::Green);
        s.newest_wal = Some(NOW - Duration::seconds(181));
        let v = verdict(Some(&s), None, &["started"]);
        assert_eq!(v.health, Health::Amber);
        assert!(v.reason.contains("newest WAL is 3 minutes old"), "{v:?}");
        assert!(v.reason.contains("3 × archive_timeout = 180 s"), "{v:?}");
        // A cluster with its own archive_timeout.
        let rules = Rules {
            archive_timeout_secs: 300,
            ..Rules::default()
        };
        assert_eq!(
            assess(&rules, NOW, Some(&s), None, None).health,
            Health::Green
        );
    }

    #[test]
    fn a_base_backup_older_than_seven_days_is_amber() {
        let mut s = fresh();
        s.newest_base_backup = Some(NOW - Duration::days(8));
        let v = verdict(Some(&s), None, &["started"]);
        assert_eq!(v.health, Health::Amber);
        assert!(
            v.reason.contains("newest base backup is 8 days old"),
            "{v:?}"
        );
        s.newest_base_backup = None;
        assert!(verdict(Some(&s), None, &["started"])
            .reason
            .contains("no complete base backup"));
    }

    #[test]
    fn both_late_rules_share_one_line() {
        let mut s = fresh();
        s.newest_base_backup = Some(NOW - Duration::days(8));
        s.newest_wal = Some(NOW - Duration::hours(3));
        let v = verdict(Some(&s), None, &["started"]);
        assert_eq!(v.health, Health::Amber);
        assert!(!v.reason.contains('\n'));
        assert!(
            v.reason.contains("WAL") && v.reason.contains("base backup"),
            "{v:?}"
        );
    }

    #[test]
    fn an_error_finding_is_red_with_its_message() {
        let mut s = fresh();
        s.findings.error = 2;
        s.first_error = Some("WAL gap on timeline 1: 3 segments missing\nmore".into());
        let v = verdict(Some(&s), None, &["started"]);
        assert_eq!(v.health, Health::Red);
        assert_eq!(
            v.reason,
            "WAL gap on timeline 1: 3 segments missing (and 1 more errors)"
        );
    }

    #[test]
    fn unreachable_storage_is_red_and_names_the_last_good_refresh() {
        let v = verdict(
            Some(&fresh()),
            Some("cannot list s3://b/p: 403"),
            &["started"],
        );
        assert_eq!(v.health, Health::Red);
        assert!(v
            .reason
            .starts_with("storage unreachable: cannot list s3://b/p: 403"));
        assert!(
            v.reason
                .contains("last good refresh of 2026-11-29 11:59 UTC"),
            "{v:?}"
        );
        let never = verdict(None, Some("no such bucket"), &["started"]);
        assert_eq!(never.reason, "storage unreachable: no such bucket");
    }

    #[test]
    fn all_machines_stopped_on_purpose_is_idle_not_failing() {
        let mut s = fresh();
        s.newest_wal = Some(NOW - Duration::days(2));
        s.newest_base_backup = Some(NOW - Duration::days(9));
        let v = verdict(Some(&s), None, &["stopped", "suspended"]);
        assert_eq!(v.health, Health::Idle, "{v:?}");
        assert!(v.reason.contains("all 2 machines stopped"));
        // One machine still running: the freshness rules apply.
        assert_eq!(
            verdict(Some(&s), None, &["stopped", "started"]).health,
            Health::Amber
        );
        // A failed machine is not stopped on purpose.
        assert_eq!(
            verdict(Some(&s), None, &["stopped", "failed"]).health,
            Health::Amber
        );
        // Unknown machines (Fly not reachable) change nothing.
        assert_eq!(
            assess(&Rules::default(), NOW, Some(&s), None, None).health,
            Health::Amber
        );
        // Idle does not hide lost WAL or an unreachable bucket.
        s.findings.error = 1;
        s.first_error = Some("WAL gap".into());
        assert_eq!(verdict(Some(&s), None, &["stopped"]).health, Health::Red);
        assert_eq!(
            verdict(Some(&fresh()), Some("down"), &["stopped"]).health,
            Health::Red
        );
    }

    #[test]
    fn never_refreshed_is_amber() {
        let v = verdict(None, None, &["started"]);
        assert_eq!(v, Verdict::new(Health::Amber, "not refreshed yet"));
    }

    fn filling(percent: u64, full_in: Option<Duration>) -> super::super::volume::VolumeStatus {
        use super::super::volume::{Forecast, Sample, VolumeStatus};
        VolumeStatus {
            latest: Some(Sample {
                at: NOW,
                used: percent,
                total: 100,
            }),
            forecast: match full_in {
                Some(d) => Forecast::Growing {
                    bytes_per_sec: 1.0,
                    full_at: NOW + d,
                },
                None => Forecast::NotGrowing { bytes_per_sec: 0.0 },
            },
            error: None,
        }
    }

    fn filling_verdict(
        s: &Summary,
        machines: &[&str],
        v: &super::super::volume::VolumeStatus,
    ) -> Option<Verdict> {
        let machines: Vec<MachineSummary> = machines.iter().map(|s| machine(s)).collect();
        volume_filling(&Rules::default(), NOW, Some(s), Some(&machines), Some(v))
    }

    #[test]
    fn a_growing_volume_while_wal_is_stale_is_filling() {
        let mut s = fresh();
        let growing = filling(71, Some(Duration::hours(19) + Duration::minutes(5)));
        // WAL fresh: archiving works, growth is the database's own.
        assert_eq!(filling_verdict(&s, &["started"], &growing), None);
        s.newest_wal = Some(NOW - Duration::hours(3));
        let v = filling_verdict(&s, &["started"], &growing).unwrap();
        assert_eq!(v.health, Health::Red, "full within a day: {v:?}");
        assert_eq!(
            v.reason,
            "WAL not archived for 3 h; the leader's volume is 71 % full and fills in about 19 h (Mon 07:05 UTC)"
        );
        let later = filling(40, Some(Duration::days(3)));
        let v = filling_verdict(&s, &["started"], &later).unwrap();
        assert_eq!(v.health, Health::Amber, "{v:?}");
        assert!(v.reason.contains("fills in about 3 days"), "{v:?}");
        // Not growing and below 90 %: no alert; above 90 %: red even without a forecast.
        assert_eq!(filling_verdict(&s, &["started"], &filling(50, None)), None);
        let over = filling_verdict(&s, &["started"], &filling(93, None)).unwrap();
        assert_eq!(over.health, Health::Red);
        assert!(over.reason.contains("93 % full (above 90 %"), "{over:?}");
        // Stopped on purpose: idle, not filling.
        assert_eq!(
            filling_verdict(&s, &["stopped", "suspended"], &growing),
            None
        );
        // Never read: nothing to say.
        let machines = [machine("started")];
        assert_eq!(
            volume_filling(&Rules::default(), NOW, Some(&s), Some(&machines), None),
            None
        );
    }

    #[test]
    fn the_filling_line_leads_the_home_row() {
        let late = Verdict::new(Health::Amber, "newest WAL is 3 hours old");
        let amber = Verdict::new(Health::Amber, "WAL not archived for 3 h; …");
        assert_eq!(combine(&late, None), late);
        assert_eq!(combine(&late, Some(&amber)), amber);
        let red = Verdict::new(Health::Red, "WAL not archived for 3 h; … 95 % full");
        assert_eq!(combine(&late, Some(&red)).health, Health::Red);
        let gap = Verdict::new(Health::Red, "WAL gap");
        let both = combine(&gap, Some(&amber));
        assert_eq!(both.health, Health::Red);
        assert_eq!(both.reason, "WAL not archived for 3 h; …; WAL gap");
    }

    #[test]
    fn worst_sorts_first() {
        let mut all = vec![Health::Green, Health::Idle, Health::Red, Health::Amber];
        all.sort();
        assert_eq!(
            all,
            vec![Health::Red, Health::Amber, Health::Idle, Health::Green]
        );
    }
}
