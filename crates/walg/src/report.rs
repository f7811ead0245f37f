//! The stable JSON shape of a [`BucketTimeline`] and of a plan, and a readable text rendering.
//!
//! JSON conventions: LSNs are `X/Y` strings, segments are 24-hex WAL file names, times are RFC 3339 in UTC,
//! ranges `{from, to}` are inclusive.

use crate::last_commit::CommitSearch;
use crate::names::Lsn;
use crate::plan::{exact_time, PlanOutcome, Refusal};
use crate::timeline::{
    human_age, human_bytes, short_time, BucketTimeline, Finding, SegRange, Severity,
};
use crate::xlog::XactKind;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Most gaps listed per timeline in the JSON (the count is always exact).
pub const MAX_GAPS_LISTED: usize = 1000;

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineReport {
    pub url: String,
    pub generated_at: String,
    pub segment_size: u64,
    /// The timeline whose history restores follow by default.
    pub main_timeline: Option<u32>,
    pub backups: Vec<BackupJson>,
    pub timelines: Vec<TimelineJson>,
    pub windows: Vec<WindowJson>,
    pub earliest_restorable: Option<String>,
    pub latest_restorable: Option<String>,
    pub freshness: FreshnessJson,
    pub findings: Vec<Finding>,
    /// The last commit read from the main timeline's WAL, when it was read (`walden timeline` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commit: Option<LastCommitJson>,
}

/// What the newest archived WAL says about the last commit (or abort) of a timeline's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastCommitJson {
    pub timeline: u32,
    /// RFC 3339 to the microsecond; absent when no commit was found or the WAL could not be read.
    pub time: Option<String>,
    pub lsn: Option<String>,
    pub kind: Option<XactKind>,
    /// The WAL file holding it.
    pub segment: Option<String>,
    /// Upload time of the newest segment.
    pub archived_until: Option<String>,
    /// One line in plain words (also what `walden timeline` prints).
    pub summary: String,
}

/// An archive that goes on this long after the last commit is reported as idle since then.
const IDLE_AFTER: time::Duration = time::Duration::minutes(1);

impl LastCommitJson {
    pub fn from_search(search: &CommitSearch) -> LastCommitJson {
        let (timeline, archived_until) = match search {
            CommitSearch::Found(c) => (c.timeline, c.archived_until),
            CommitSearch::NotFound {
                timeline,
                archived_until,
                ..
            } => (*timeline, *archived_until),
            CommitSearch::Failed { timeline, .. } => (*timeline, None),
        };
        let upto = archived_until
            .map(|u| format!(" (archived up to {})", short_time(u)))
            .unwrap_or_default();
        let summary = match search {
            CommitSearch::Found(c) => {
                let at = exact_time(c.time);
                let mut line = format!("last commit {at} on timeline {timeline}{upto}");
                if archived_until.is_some_and(|u| u - c.time >= IDLE_AFTER) {
                    line.push_str(&format!(
                        "; nothing was written after {at} but housekeeping (an idle database), so a target time \
                         after it cannot be restored: use --latest"
                    ));
                }
                line
            }
            CommitSearch::NotFound { segments, .. } => {
                let newest = match segments {
                    1 => "segment".to_string(),
                    n => format!("{n} segments"),
                };
                format!(
                    "no commit in the newest {newest} of timeline {timeline}{upto}: nothing was written in \
                     them but housekeeping (an idle database)"
                )
            }
            CommitSearch::Failed { reason, .. } => {
                format!("last commit unknown on timeline {timeline}: {reason}")
            }
        };
        let found = search.found();
        LastCommitJson {
            timeline,
            time: found.map(|c| rfc3339(c.time)),
            lsn: found.map(|c| Lsn(c.lsn).to_string()),
            kind: found.map(|c| c.kind),
            segment: found.map(|c| c.segment.clone()),
            archived_until: archived_until.map(rfc3339),
            summary,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupJson {
    pub name: String,
    pub timeline: u32,
    pub start_lsn: Option<String>,
    pub finish_lsn: Option<String>,
    pub start_time: Option<String>,
    pub finish_time: Option<String>,
    pub permanent: bool,
    pub delta_from: Option<String>,
    pub restorable: bool,
    pub problems: Vec<String>,
    pub system_identifier: Option<u64>,
    pub pg_version: Option<i64>,
    pub hostname: Option<String>,
    pub compressed_size: Option<i64>,
    pub uncompressed_size: Option<i64>,
    /// Approximate end of this backup's window on the main timeline's history.
    pub restorable_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeJson {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineJson {
    pub timeline: u32,
    pub parent: Option<u32>,
    pub switch_lsn: Option<String>,
    pub has_history: bool,
    pub first_segment: Option<String>,
    pub last_segment: Option<String>,
    pub segments: u64,
    pub bytes: u64,
    pub gaps: Vec<RangeJson>,
    pub gap_count: usize,
    /// Segments after the switch to a child timeline (abandoned branch).
    pub abandoned: Option<RangeJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowJson {
    pub timeline: u32,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FreshnessJson {
    pub newest_wal: Option<String>,
    pub newest_wal_age_seconds: Option<i64>,
    pub newest_backup: Option<String>,
    pub newest_backup_age_seconds: Option<i64>,
}

/// `walden plan --json`: either the plan fields or `refusal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_chain: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_target_time: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_target_lsn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_target_timeline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_inclusive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_target_action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_segments: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
}

impl PlanJson {
    pub fn from_outcome(o: &PlanOutcome) -> PlanJson {
        match o {
            PlanOutcome::Plan(p) => PlanJson {
                backup: Some(p.backup.clone()),
                delta_chain: Some(p.delta_chain.clone()),
                recovery_target_time: Some(p.recovery_target_time.clone()),
                recovery_target_lsn: p.recovery_target_lsn.clone(),
                recovery_target: p.recovery_target.clone(),
                recovery_target_timeline: Some(p.recovery_target_timeline.clone()),
                recovery_target_inclusive: p.recovery_target_inclusive.clone(),
                recovery_target_action: Some(p.recovery_target_action.clone()),
                wal_from: Some(p.wal_from.clone()),
                wal_to: Some(p.wal_to.clone()),
                wal_segments: Some(p.wal_segments),
                wal_bytes: Some(p.wal_bytes),
                notes: Some(p.notes.clone()),
                refusal: None,
            },
            PlanOutcome::Refusal(r) => PlanJson {
                backup: None,
                delta_chain: None,
                recovery_target_time: None,
                recovery_target_lsn: None,
                recovery_target: None,
                recovery_target_timeline: None,
                recovery_target_inclusive: None,
                recovery_target_action: None,
                wal_from: None,
                wal_to: None,
                wal_segments: None,
                wal_bytes: None,
                notes: None,
                refusal: Some(r.clone()),
            },
        }
    }
}

fn range(t: &BucketTimeline, tli: u32, r: SegRange) -> RangeJson {
    RangeJson {
        from: t.wal_name(tli, r.from),
        to: t.wal_name(tli, r.to),
    }
}

impl BucketTimeline {
    /// The stable JSON report.
    pub fn report(&self) -> TimelineReport {
        TimelineReport {
            url: self.url.clone(),
            generated_at: rfc3339(self.generated_at),
            segment_size: self.segment_size,
            main_timeline: self.main_lineage,
            backups: self
                .backups
                .iter()
                .map(|b| BackupJson {
                    name: b.name.clone(),
                    timeline: b.timeline,
                    start_lsn: b.start_lsn.map(|l| Lsn(l).to_string()),
                    finish_lsn: b.finish_lsn.map(|l| Lsn(l).to_string()),
                    start_time: b.start_time.map(rfc3339),
                    finish_time: b.finish_time.map(rfc3339),
                    permanent: b.permanent,
                    delta_from: b.delta_from.clone(),
                    restorable: b.restorable,
                    problems: b.problems.clone(),
                    system_identifier: b.system_identifier,
                    pg_version: b.pg_version,
                    hostname: b.hostname.clone(),
                    compressed_size: b.compressed_size,
                    uncompressed_size: b.uncompressed_size,
                    restorable_until: b
                        .windows
                        .iter()
                        .find(|w| Some(w.lineage) == self.main_lineage)
                        .or(b.windows.first())
                        .filter(|_| b.restorable)
                        // A backup whose WAL ends at its own stop segment (a permanent backup after retention)
                        // restores to its end point: wal-g uploads that segment before FinishTime, so the
                        // segment's upload time alone would put the end before the backup finished.
                        .map(|w| rfc3339(b.finish_time.map_or(w.end_time, |f| w.end_time.max(f)))),
                })
                .collect(),
            timelines: self
                .timelines
                .iter()
                .map(|t| TimelineJson {
                    timeline: t.timeline,
                    parent: t.parent,
                    switch_lsn: t.switch_lsn.map(|l| Lsn(l).to_string()),
                    has_history: t.has_history,
                    first_segment: t.first_segment.map(|s| self.wal_name(t.timeline, s)),
                    last_segment: t.last_segment.map(|s| self.wal_name(t.timeline, s)),
                    segments: t.segments,
                    bytes: t.bytes,
                    gaps: t
                        .gaps
                        .iter()
                        .take(MAX_GAPS_LISTED)
                        .map(|g| range(self, t.timeline, *g))
                        .collect(),
                    gap_count: t.gaps.len(),
                    abandoned: t.abandoned.map(|a| range(self, t.timeline, a)),
                })
                .collect(),
            windows: self
                .windows
                .iter()
                .map(|w| WindowJson {
                    timeline: w.timeline,
                    from: rfc3339(w.from),
                    to: rfc3339(w.to),
                })
                .collect(),
            earliest_restorable: self.earliest_restorable.map(rfc3339),
            latest_restorable: self.latest_restorable.map(rfc3339),
            freshness: FreshnessJson {
                newest_wal: self.freshness.newest_wal.map(rfc3339),
                newest_wal_age_seconds: self.freshness.newest_wal_age_seconds,
                newest_backup: self.freshness.newest_backup.map(rfc3339),
                newest_backup_age_seconds: self.freshness.newest_backup_age_seconds,
            },
            findings: self.findings.clone(),
            last_commit: self.main_commit_search().map(LastCommitJson::from_search),
        }
    }

    /// The last-commit search of the main lineage, else the first one made.
    fn main_commit_search(&self) -> Option<&CommitSearch> {
        self.main_lineage
            .and_then(|m| self.commit_search(m))
            .or(self.commit_searches.first())
    }

    /// A readable multi-section text rendering (for `walden timeline`).
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "Storage: {}", self.url);
        let _ = writeln!(
            o,
            "Restorable: {} .. {}{}",
            self.earliest_restorable
                .map(rfc3339)
                .unwrap_or_else(|| "-".into()),
            self.latest_restorable
                .map(rfc3339)
                .unwrap_or_else(|| "-".into()),
            self.main_lineage
                .map(|m| format!(" (timeline {m})"))
                .unwrap_or_default()
        );
        if let Some(search) = self.main_commit_search() {
            let _ = writeln!(
                o,
                "Last commit: {}",
                LastCommitJson::from_search(search)
                    .summary
                    .trim_start_matches("last commit ")
            );
        }
        if let Some(a) = self.freshness.newest_wal_age_seconds {
            let _ = write!(o, "Newest WAL: {} ago", human_age(a));
        }
        if let Some(a) = self.freshness.newest_backup_age_seconds {
            let _ = write!(o, "   Newest backup: {} ago", human_age(a));
        }
        let _ = writeln!(o);
        let _ = writeln!(o, "\nBACKUPS");
        let _ = writeln!(
            o,
            "{:<58} {:>4} {:<20} {:<20} {:>9} {:<5} STATUS",
            "NAME", "TLI", "START LSN", "FINISHED", "SIZE", "PERM"
        );
        for b in &self.backups {
            let status = if b.restorable {
                match &b.delta_from {
                    Some(p) => format!("ok (delta of {p})"),
                    None => "ok".into(),
                }
            } else {
                format!("NOT RESTORABLE: {}", b.problems.join("; "))
            };
            let _ = writeln!(
                o,
                "{:<58} {:>4} {:<20} {:<20} {:>9} {:<5} {}",
                b.name,
                b.timeline,
                b.start_lsn
                    .map(|l| Lsn(l).to_string())
                    .unwrap_or_else(|| "-".into()),
                b.finish_time
                    .map(short_time_compact)
                    .unwrap_or_else(|| "-".into()),
                b.compressed_size
                    .map(|s| human_bytes(s.max(0) as u64))
                    .unwrap_or_else(|| "-".into()),
                if b.permanent { "yes" } else { "" },
                status
            );
        }
        let _ = writeln!(o, "\nTIMELINES");
        let _ = writeln!(
            o,
            "{:>4} {:>6} {:<14} {:<24} {:<24} {:>9} GAPS",
            "TLI", "PARENT", "SWITCH LSN", "FIRST SEGMENT", "LAST SEGMENT", "SEGMENTS"
        );
        for t in &self.timelines {
            let gaps = if t.gaps.is_empty() {
                "none".to_string()
            } else {
                let g: Vec<String> = t
                    .gaps
                    .iter()
                    .take(3)
                    .map(|g| {
                        format!(
                            "{}..{}",
                            self.wal_name(t.timeline, g.from),
                            self.wal_name(t.timeline, g.to)
                        )
                    })
                    .collect();
                format!(
                    "{}{}",
                    g.join(", "),
                    if t.gaps.len() > 3 {
                        format!(" (+{} more)", t.gaps.len() - 3)
                    } else {
                        String::new()
                    }
                )
            };
            let _ = writeln!(
                o,
                "{:>4} {:>6} {:<14} {:<24} {:<24} {:>9} {}",
                t.timeline,
                t.parent
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                t.switch_lsn
                    .map(|l| Lsn(l).to_string())
                    .unwrap_or_else(|| "-".into()),
                t.first_segment
                    .map(|s| self.wal_name(t.timeline, s))
                    .unwrap_or_else(|| "-".into()),
                t.last_segment
                    .map(|s| self.wal_name(t.timeline, s))
                    .unwrap_or_else(|| "-".into()),
                t.segments,
                gaps
            );
        }
        let _ = writeln!(o, "\nRESTORABLE WINDOWS");
        if self.windows.is_empty() {
            let _ = writeln!(o, "  none");
        }
        for w in &self.windows {
            let _ = writeln!(
                o,
                "  timeline {:>3}: {} .. {}",
                w.timeline,
                rfc3339(w.from),
                rfc3339(w.to)
            );
        }
        let _ = writeln!(o, "\nFINDINGS");
        o.push_str(&render_findings(&self.findings));
        o
    }
}

fn short_time_compact(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// One line per finding: `ERROR   code: message`.
pub fn render_findings(findings: &[Finding]) -> String {
    let mut o = String::new();
    if findings.is_empty() {
        o.push_str("  none\n");
    }
    for f in findings {
        let sev = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        let _ = writeln!(o, "  {sev:<7} {}: {}", f.code, f.message);
    }
    o
}

/// Readable plan text.
pub fn render_plan(o: &PlanOutcome) -> String {
    let mut s = String::new();
    match o {
        PlanOutcome::Plan(p) => {
            let _ = writeln!(s, "Backup:  {} (timeline {})", p.backup, p.backup_timeline);
            if !p.delta_chain.is_empty() {
                let _ = writeln!(s, "Delta chain: {}", p.delta_chain.join(" <- "));
            }
            let _ = writeln!(
                s,
                "WAL:     {} .. {} ({} segments, {})",
                p.wal_from,
                p.wal_to,
                p.wal_segments,
                human_bytes(p.wal_bytes)
            );
            let _ = writeln!(s, "\nRecovery settings:");
            if let Some(t) = &p.recovery_target_time {
                let _ = writeln!(s, "  recovery_target_time = '{t}'");
            }
            if let Some(l) = &p.recovery_target_lsn {
                let _ = writeln!(s, "  recovery_target_lsn = '{l}'");
            }
            if let Some(r) = &p.recovery_target {
                let _ = writeln!(s, "  recovery_target = '{r}'");
            }
            if let Some(i) = &p.recovery_target_inclusive {
                let _ = writeln!(s, "  recovery_target_inclusive = '{i}'");
            }
            let _ = writeln!(
                s,
                "  recovery_target_timeline = '{}'",
                p.recovery_target_timeline
            );
            let _ = writeln!(
                s,
                "  recovery_target_action = '{}'",
                p.recovery_target_action
            );
            for n in &p.notes {
                let _ = writeln!(s, "\nNote: {n}");
            }
        }
        PlanOutcome::Refusal(r) => {
            let _ = writeln!(s, "Cannot plan this restore: {}", r.reason);
        }
    }
    s
}
