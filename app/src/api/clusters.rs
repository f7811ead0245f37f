//! The Postgres clusters: the tracked clusters' backups health for the home page (`cluster_overview`, viewers and
//! up; `refresh_cluster`, operators and up), and the clusters of the watched Fly organisation (`list_clusters`).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {leptos::server_fn::ServerFn, tracing::field::Empty, walden_core::users::Role};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<ListClusters as ServerFn>::PATH, Some(Role::Viewer)),
    (<ClusterOverview as ServerFn>::PATH, Some(Role::Viewer)),
    (<RefreshCluster as ServerFn>::PATH, Some(Role::Operator)),
];

/// The tracked clusters, worst first, as the home page shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub rows: Vec<HealthRow>,
    /// Whether the caller may press "Refresh now" (operators and admins).
    pub can_refresh: bool,
}

/// One tracked cluster's health. Times are formatted on the server (`2026-11-29 10:04 UTC`), ages as of the
/// request (`3 minutes`), so the browser needs no date library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRow {
    pub org: String,
    pub app: String,
    /// `red`, `amber`, `idle` or `green`.
    pub health: String,
    /// Why, in one line.
    pub reason: String,
    /// Machines started, and all of them; `None` when Fly could not say (then `machines_error`).
    pub machines_up: Option<usize>,
    pub machines_total: Option<usize>,
    /// The leader's name and region.
    pub leader: Option<String>,
    pub machines_error: Option<String>,
    pub wal_age: Option<String>,
    pub base_backup_age: Option<String>,
    pub earliest_restorable: Option<String>,
    pub latest_restorable: Option<String>,
    pub last_commit: Option<String>,
    /// Findings of the last good refresh by severity; `None` before one.
    pub findings: Option<(i64, i64, i64)>,
    /// When the last refresh finished (or started, while the first runs), and how long it took.
    pub refreshed: Option<String>,
    /// When the last good refresh finished, shown under the storage error.
    pub last_good: Option<String>,
    /// Why the last refresh could not read the storage (the banner).
    pub storage_error: Option<String>,
}

/// The tracked clusters' health, worst first. Viewers and up.
#[server(endpoint = "cluster_overview")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn cluster_overview() -> Result<Overview, AppError> {
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let rows = cx.monitor().overview(&cx.actor).await?;
    let now = time::OffsetDateTime::now_utc();
    Ok(Overview {
        rows: rows.iter().map(|h| HealthRow::of(h, now)).collect(),
        can_refresh: cx.user.role >= Role::Operator,
    })
}

/// Read a tracked cluster's storage now (the "Refresh now" button). Operators and up; audited.
#[server(endpoint = "refresh_cluster")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn refresh_cluster(org: String, app: String) -> Result<HealthRow, AppError> {
    let cx = crate::server::Caller::require(Role::Operator).await?;
    let health = cx
        .monitor()
        .refresh_now(&cx.actor, &cx.meta, &org, &app)
        .await?;
    Ok(HealthRow::of(&health, time::OffsetDateTime::now_utc()))
}

#[cfg(feature = "ssr")]
impl HealthRow {
    fn of(h: &walden_core::monitor::ClusterHealth, now: time::OffsetDateTime) -> Self {
        let when = |t: time::OffsetDateTime| {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        };
        let age = |t: time::OffsetDateTime| age_text((now - t).whole_seconds());
        let summary = h.summary.as_ref();
        let status = h.status.as_ref();
        let refreshed = status.map(|s| match (s.finished_at, s.duration_ms) {
            (Some(at), Some(ms)) if at >= s.started_at => {
                format!("{} ({:.1} s)", when(at), ms as f64 / 1000.0)
            }
            _ => format!("{} (running)", when(s.started_at)),
        });
        HealthRow {
            org: h.org.clone(),
            app: h.app.clone(),
            health: h.verdict.health.as_str().to_owned(),
            reason: h.verdict.reason.clone(),
            machines_up: h.machines_up().map(|(up, _)| up),
            machines_total: h.machines_up().map(|(_, all)| all),
            leader: h.leader().map(|m| format!("{} ({})", m.name, m.region)),
            machines_error: h.machines_error.clone(),
            wal_age: summary.and_then(|s| s.newest_wal).map(age),
            base_backup_age: summary.and_then(|s| s.newest_base_backup).map(age),
            earliest_restorable: summary.and_then(|s| s.earliest_restorable).map(when),
            latest_restorable: summary.and_then(|s| s.latest_restorable).map(when),
            last_commit: summary.and_then(|s| s.last_commit).map(when),
            findings: summary.map(|s| (s.findings.error, s.findings.warning, s.findings.info)),
            refreshed,
            last_good: summary.map(|s| when(s.refreshed_at)),
            storage_error: status.and_then(|s| s.last_error.clone()),
        }
    }
}

/// The clusters of the watched Fly organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterList {
    pub org: String,
    pub clusters: Vec<ClusterView>,
}

/// A Postgres cluster (a Fly app running Fly's Postgres image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub app: String,
    pub status: String,
    pub machines: Vec<MachineView>,
}

/// One machine of a Postgres cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub state: String,
    pub role: String,
    pub image: String,
}

/// The Postgres clusters of the watched Fly organisation, with their machines and roles. A Fly API failure
/// is `AppError::Upstream` (502).
#[server(endpoint = "list_clusters")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_clusters() -> Result<ClusterList, AppError> {
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let clusters = cx.clusters().await?;
    Ok(ClusterList {
        org: cx.fly_org().to_owned(),
        clusters: clusters.into_iter().map(ClusterView::from).collect(),
    })
}

#[cfg(feature = "ssr")]
impl From<walden_core::clusters::ClusterSummary> for ClusterView {
    fn from(c: walden_core::clusters::ClusterSummary) -> Self {
        ClusterView {
            app: c.app,
            status: c.status,
            machines: c.machines.into_iter().map(MachineView::from).collect(),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<walden_core::clusters::MachineSummary> for MachineView {
    fn from(m: walden_core::clusters::MachineSummary) -> Self {
        MachineView {
            id: m.id,
            name: m.name,
            region: m.region,
            state: m.state,
            role: m.role,
            image: m.image,
        }
    }
}

/// `3 days`, `5 hours`, `12 minutes`, `40 seconds` (the reader's wording).
#[cfg(feature = "ssr")]
fn age_text(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 2 * 86_400 {
        format!("{} days", s / 86_400)
    } else if s >= 2 * 3600 {
        format!("{} hours", s / 3600)
    } else if s >= 120 {
        format!("{} minutes", s / 60)
    } else {
        format!("{s} seconds")
    }
}
