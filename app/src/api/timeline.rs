//! A tracked cluster's backup timeline, for the cluster page: what `walg::BucketTimeline` knows, reduced to what
//! the chart, the backups table and the findings list draw.
//!
//! Invariants: [`TimelineView`] carries times as Unix milliseconds and names, sizes and texts only: never a
//! storage credential, never the storage URL's userinfo. Its size does not grow with the number of WAL
//! segments: coverage is one run per stretch of present segments of a Postgres timeline (a bucket of 100,000
//! contiguous segments is one run), and at most [`MAX_GAPS`] holes per timeline are listed one by one.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::Caller, leptos::server_fn::ServerFn, tracing::field::Empty,
    walden_core::users::Role,
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] =
    &[(<GetClusterTimeline as ServerFn>::PATH, Some(Role::Viewer))];

/// Holes listed one by one per Postgres timeline; beyond it the runs between them are merged and the view says
/// so ([`TimelineView::coverage_truncated`]).
pub const MAX_GAPS: usize = 200;

/// The cluster page's answer: the timeline when the storage could be read, else why not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterTimeline {
    pub org: String,
    pub app: String,
    /// Where the backups are, without credentials (e.g. `s3://bucket/prefix`).
    pub storage: Option<String>,
    /// Why the storage could not be read (or found): shown as a banner.
    pub error: Option<String>,
    pub timeline: Option<TimelineView>,
    /// The leader's volume in one line, written on the server ("71 % full, fills in about 19 h (Tue 14:05
    /// UTC)", or why it was not read); `None` before it was first read.
    #[serde(default)]
    pub volume: Option<String>,
}

/// Everything the chart, the backups table and the findings list show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TimelineView {
    /// When the timeline was computed.
    pub now_ms: i64,
    /// The timeline recovery follows by default (the one with the newest WAL).
    pub main_timeline: Option<u32>,
    pub earliest_restorable_ms: Option<i64>,
    pub latest_restorable_ms: Option<i64>,
    /// Merged restorable windows, per lineage (its leaf timeline).
    pub windows: Vec<WindowView>,
    /// Present WAL per Postgres timeline, aggregated into runs of consecutive segments.
    pub runs: Vec<RunView>,
    /// Missing segments per Postgres timeline.
    pub gaps: Vec<GapView>,
    /// More holes than [`MAX_GAPS`] on some timeline: the runs after the last listed hole are merged.
    pub coverage_truncated: bool,
    /// Where a timeline began from its parent.
    pub switches: Vec<SwitchView>,
    /// Complete base backups, oldest start first.
    pub backups: Vec<BackupView>,
    /// Most serious first.
    pub findings: Vec<FindingView>,
    /// The last commit read from the newest WAL of the main timeline, when WAL was read and one was found.
    pub last_commit: Option<CommitView>,
    /// What the search for the last commit found when it found none (or failed), in plain words.
    pub commit_note: Option<String>,
}

/// A merged restorable window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowView {
    pub timeline: u32,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Consecutive present segments of one Postgres timeline; its time extent is the upload times of its first and
/// last segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
    pub from_ms: i64,
    pub to_ms: i64,
    /// After the timeline's switch to a child: WAL no recovery of the newest history replays.
    pub abandoned: bool,
}

/// A hole in one Postgres timeline's WAL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapView {
    pub timeline: u32,
    /// First and last missing WAL file names.
    pub first_missing: String,
    pub last_missing: String,
    pub missing: u64,
    /// Upload time of the segment just before the hole (the last time one can restore to before it).
    pub after_ms: Option<i64>,
    /// Upload time of the segment just after it.
    pub before_ms: Option<i64>,
    /// Among the newest segments, which wal-g may still be uploading.
    pub uploading: bool,
}

/// A timeline switch (a promotion or a recovery that ended): `timeline` began from `parent` at `switch_lsn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchView {
    pub timeline: u32,
    pub parent: u32,
    pub switch_lsn: String,
    /// Upload time of the new timeline's first segment, when it has one.
    pub at_ms: Option<i64>,
    /// The parent kept archiving after the switch: a branch (the parent's later WAL is abandoned).
    pub branch: bool,
}

/// A complete base backup, as the backups table shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    pub name: String,
    pub timeline: u32,
    pub start_ms: Option<i64>,
    pub finish_ms: i64,
    pub duration_secs: Option<i64>,
    pub compressed_bytes: Option<i64>,
    pub uncompressed_bytes: Option<i64>,
    pub start_lsn: Option<String>,
    pub finish_lsn: Option<String>,
    pub permanent: bool,
    /// The backup this delta is based on (`None` for a full backup).
    pub delta_from: Option<String>,
    pub restorable: bool,
    /// Why it is not restorable (empty when it is).
    pub problems: Vec<String>,
}

/// A finding in plain words, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingView {
    /// `error`, `warning` or `info`.
    pub severity: String,
    pub code: String,
    pub message: String,
    pub advice: String,
}

/// The last transaction end archived on the main timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitView {
    pub timeline: u32,
    pub time_ms: i64,
    /// `commit` or `abort`.
    pub kind: String,
    pub segment: String,
    /// Upload time of the newest segment: how far the archive reaches.
    pub archived_until_ms: Option<i64>,
}

/// The timeline of a tracked cluster's backups. Viewers and up.
#[server(endpoint = "get_cluster_timeline")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn get_cluster_timeline(org: String, app: String) -> Result<ClusterTimeline, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let tracked = cx.orgs().tracked(&cx.actor).await?;
    if !tracked.iter().any(|t| t.org == org && t.app == app) {
        return Err(AppError::NotFound(format!(
            "{org}/{app} is not a tracked cluster: track it under Settings → Fly organizations"
        )));
    }
    let mut answer = ClusterTimeline {
        org: org.clone(),
        app: app.clone(),
        storage: None,
        error: None,
        timeline: None,
        volume: None,
    };
    // The last good timeline the monitor keeps; a cluster never refreshed yet is refreshed now (Walden's own
    // call, as the worker would), so the first visit after tracking shows its backups.
    let mut last = cx.monitor().timeline(&cx.actor, &org, &app).await?;
    if last.is_none() {
        let health = cx.monitor().refresh(&org, &app).await?;
        last = cx.monitor().timeline(&cx.actor, &org, &app).await?;
        if last.is_none() {
            answer.storage = health.status.as_ref().and_then(|s| s.storage.clone());
            answer.error = Some(
                health
                    .status
                    .and_then(|s| s.last_error)
                    .unwrap_or_else(|| "the backups have not been read yet".to_owned()),
            );
        }
    }
    if let Some(last) = last {
        answer.storage = last.status.storage.clone();
        // The last good timeline stays on the page, with the newest refresh's error above it.
        answer.error = last.status.last_error.clone();
        answer.timeline = Some(TimelineView::from(&*last.timeline));
    }
    answer.volume = cx.monitor().volume_line(&cx.actor, &org, &app).await?;
    Ok(answer)
}

#[cfg(feature = "ssr")]
fn ms(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(feature = "ssr")]
impl From<&walg::BucketTimeline> for TimelineView {
    fn from(t: &walg::BucketTimeline) -> Self {
        let mut view = TimelineView {
            now_ms: ms(t.generated_at),
            main_timeline: t.main_lineage,
            earliest_restorable_ms: t.earliest_restorable.map(ms),
            latest_restorable_ms: t.latest_restorable.map(ms),
            windows: t
                .windows
                .iter()
                .map(|w| WindowView {
                    timeline: w.timeline,
                    from_ms: ms(w.from),
                    to_ms: ms(w.to),
                })
                .collect(),
            backups: t.backups.iter().map(BackupView::from).collect(),
            findings: t.findings.iter().map(FindingView::from).collect(),
            ..TimelineView::default()
        };
        for pg in &t.timelines {
            coverage(t, pg, &mut view);
            if let (Some(parent), Some(lsn)) = (pg.parent, pg.switch_lsn) {
                let branch = t
                    .timelines
                    .iter()
                    .any(|p| p.timeline == parent && p.abandoned.is_some());
                view.switches.push(SwitchView {
                    timeline: pg.timeline,
                    parent,
                    switch_lsn: walg::Lsn(lsn).to_string(),
                    at_ms: pg
                        .first_segment
                        .and_then(|n| t.segment(pg.timeline, n))
                        .map(|(_, at)| ms(at)),
                    branch,
                });
            }
        }
        let search = t.main_lineage.and_then(|leaf| t.commit_search(leaf));
        match search {
            Some(walg::CommitSearch::Found(c)) => {
                view.last_commit = Some(CommitView {
                    timeline: c.timeline,
                    time_ms: ms(c.time),
                    kind: match c.kind {
                        walg::xlog::XactKind::Commit | walg::xlog::XactKind::CommitPrepared => "commit",
                        walg::xlog::XactKind::Abort | walg::xlog::XactKind::AbortPrepared => "abort",
                    }
                    .to_owned(),
                    segment: c.segment.clone(),
                    archived_until_ms: c.archived_until.map(ms),
                })
            }
            Some(walg::CommitSearch::NotFound { segments, .. }) => {
                view.commit_note = Some(format!(
                    "No commit in the newest {segments} archived WAL segments: nothing was written to the \
                     database while they were archived."
                ))
            }
            Some(walg::CommitSearch::Failed { reason, .. }) => {
                view.commit_note = Some(format!(
                    "The last commit could not be read from the WAL ({reason}); the window ends at the \
                     newest segment's upload time."
                ))
            }
            None => {}
        }
        view
    }
}

/// Adds the runs and holes of one Postgres timeline: the stretch from its first to its last segment, cut at
/// each listed hole. Runs after the [`MAX_GAPS`]th hole are merged into one.
#[cfg(feature = "ssr")]
fn coverage(t: &walg::BucketTimeline, pg: &walg::PgTimeline, view: &mut TimelineView) {
    let (Some(first), Some(last)) = (pg.first_segment, pg.last_segment) else {
        return;
    };
    let tli = pg.timeline;
    let at = |n: u64| t.segment(tli, n).map(|(_, m)| ms(m));
    let newest = t.lineage(tli).and_then(|l| l.newest_segment());
    let abandoned_from = pg.abandoned.map(|a| a.from);
    let push_run = |from: u64, to: u64, view: &mut TimelineView| {
        if let (Some(from_ms), Some(to_ms)) = (at(from), at(to)) {
            view.runs.push(RunView {
                timeline: tli,
                first: t.wal_name(tli, from),
                last: t.wal_name(tli, to),
                segments: to - from + 1,
                from_ms,
                to_ms,
                abandoned: abandoned_from.is_some_and(|a| from >= a),
            });
        }
    };
    let mut start = first;
    for (i, gap) in pg.gaps.iter().enumerate() {
        if i == MAX_GAPS {
            view.coverage_truncated = true;
            break;
        }
        if gap.from > start {
            push_run(start, gap.from - 1, view);
        }
        view.gaps.push(GapView {
            timeline: tli,
            first_missing: t.wal_name(tli, gap.from),
            last_missing: t.wal_name(tli, gap.to),
            missing: gap.len(),
            after_ms: gap.from.checked_sub(1).and_then(at),
            before_ms: at(gap.to + 1),
            uploading: newest.is_some_and(|n| gap.from >= n.saturating_sub(t.upload_concurrency)),
        });
        start = gap.to + 1;
    }
    if start <= last {
        push_run(start, last, view);
    }
}

#[cfg(feature = "ssr")]
impl From<&walg::Backup> for BackupView {
    fn from(b: &walg::Backup) -> Self {
        let finish = b.finish_time.unwrap_or(b.sentinel_modified);
        BackupView {
            name: b.name.clone(),
            timeline: b.timeline,
            start_ms: b.start_time.map(ms),
            finish_ms: ms(finish),
            duration_secs: b.start_time.map(|s| (finish - s).whole_seconds()),
            compressed_bytes: b.compressed_size,
            uncompressed_bytes: b.uncompressed_size,
            start_lsn: b.start_lsn.map(|l| walg::Lsn(l).to_string()),
            finish_lsn: b.finish_lsn.map(|l| walg::Lsn(l).to_string()),
            permanent: b.permanent,
            delta_from: b.delta_from.clone(),
            restorable: b.restorable,
            problems: b.problems.clone(),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<&walg::Finding> for FindingView {
    fn from(f: &walg::Finding) -> Self {
        FindingView {
            severity: match f.severity {
                walg::Severity::Error => "error",
                walg::Severity::Warning => "warning",
                walg::Severity::Info => "info",
            }
            .to_owned(),
            code: f.code.as_str().to_owned(),
            message: f.message.clone(),
            advice: advice(f.code).to_owned(),
        }
    }
}

/// What to do about a finding, in one sentence.
#[cfg(feature = "ssr")]
pub fn advice(code: walg::FindingCode) -> &'static str {
    use walg::FindingCode as C;
    match code {
        C::WalGap => "Times inside the hole cannot be restored. Take a new base backup now so restores after it do not need the missing WAL, and check why archiving failed (the leader's log, wal-g's errors).",
        C::WalUploading => "Usually nothing: the newest segments are still being uploaded. If it stays, check the leader's archiver.",
        C::MissingConsistencyWal => "This backup cannot be restored without the WAL written during it: take a new base backup.",
        C::BackupIncomplete | C::UnreadableSentinel | C::BackupInProgress => "If no backup is running, take a new base backup and delete the unfinished one with wal-g delete.",
        C::BrokenDeltaChain | C::DeltaFullNameMismatch => "Deltas without their parent cannot be restored: take a new full backup (WALG_DELTA_MAX_STEPS=0 for one run).",
        C::MixedSystemIdentifiers => "Two databases archive into this storage: give each cluster its own WALG_*_PREFIX.",
        C::NoBackups | C::NothingRestorable | C::NoWal | C::EmptyStorage => "Turn backups on: set the storage secrets, enable archiving and take a first base backup (see the steps below).",
        C::ArchiveBranched | C::Branches | C::LatestNotAChild | C::LatestFollowsBranch | C::AbandonedSegments => "After a failover two histories exist: restore along the timeline you mean (the newest by default) and take a new base backup on it.",
        C::MissingHistory | C::UnreadableHistory | C::HistoryInferred | C::HistoryMismatch | C::HistoryOutOfOrder | C::HistoryWithoutWal | C::HistoryUnreadableLines => "Recovery needs the timeline's .history file: copy it from the leader's pg_wal into the storage's wal_005/.",
        C::StaleWal => "WAL is not arriving: check that the leader is up and archive_command succeeds.",
        C::StaleBackup | C::BackupBehindTimeline => "Take a new base backup (and check the schedule that should take them).",
        C::GarbageFolder | C::StrayObjects | C::UnknownWalObjects | C::ZeroSizeObjects | C::DuplicateCompression | C::WalMetadataSidecars => "Not needed for restores; clean up with wal-g delete garbage when convenient.",
        C::WalGapBeforeBackups => "Nothing: WAL older than every backup is not needed.",
        C::StaleSentinelPermanence | C::PermanentEndPointOnly => "Nothing to do now; mark or unmark with wal-g backup-mark if permanence matters.",
        C::BadBackupName | C::NameLsnMismatch | C::SentinelField | C::MetadataField | C::UnreadableMetadata | C::MissingMetadata | C::LegacyTrailingDot => "Informational: Walden reads around it. Newer wal-g versions write these files in full.",
    }
}

/// The latest-restorable sentence under the page's title (times in UTC): how far back and how far forward a
/// restore can go, and, when the last commit is known, why the window ends where it does.
pub fn restorable_sentence(v: &TimelineView) -> String {
    let (Some(from), Some(to)) = (v.earliest_restorable_ms, v.latest_restorable_ms) else {
        return "Nothing is restorable from this storage yet.".to_owned();
    };
    let mut s = format!(
        "Restorable from {} UTC to {} UTC",
        crate::components::timeline::format_time(from, 0),
        crate::components::timeline::format_time(to, 0)
    );
    if let Some(c) = &v.last_commit {
        let commit = crate::components::timeline::format_clock(c.time_ms, 0);
        match c.archived_until_ms {
            Some(until) if until > c.time_ms => s.push_str(&format!(
                " (last {kind} {commit}; archived up to {}; nothing was written after {commit})",
                crate::components::timeline::format_clock(until, 0),
                kind = c.kind,
            )),
            _ => s.push_str(&format!(" (last {} {commit})", c.kind)),
        }
    }
    s.push('.');
    s
}
