//! The Audit page: filtered, paginated rows; chain status; export of the filtered view. Viewers and up.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {leptos::server_fn::ServerFn, tracing::field::Empty, walden_core::users::Role};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<ListAudit as ServerFn>::PATH, Some(Role::Viewer)),
    (<VerifyAudit as ServerFn>::PATH, Some(Role::Viewer)),
    (<ExportAudit as ServerFn>::PATH, Some(Role::Viewer)),
];
/// Filters as the page sends them (empty strings mean "any"). Times are RFC 3339.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub cluster: String,
    pub since: String,
    pub until: String,
    pub text: String,
}

/// One row as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub reason: Option<String>,
    pub outcome: String,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPageData {
    pub rows: Vec<AuditEntry>,
    pub total: i64,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<i64>,
}

/// The chain's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainStatus {
    pub rows: u64,
    pub verified_through: i64,
    pub intact: bool,
    /// Human text for the first broken row, if any.
    pub problem: Option<String>,
    pub head_hash: Option<String>,
}

#[cfg(feature = "ssr")]
fn to_filter(q: &AuditQuery) -> Result<walden_core::audit::AuditFilter, AppError> {
    use time::format_description::well_known::Rfc3339;
    let opt = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let time = |field: &str, s: &str| -> Result<Option<time::OffsetDateTime>, AppError> {
        match opt(s) {
            None => Ok(None),
            Some(s) => time::OffsetDateTime::parse(&s, &Rfc3339)
                .map(Some)
                .map_err(|_| AppError::Validation {
                    field: field.to_owned(),
                    message: "use a time like 2026-11-25T14:00:00Z".into(),
                }),
        }
    };
    Ok(walden_core::audit::AuditFilter {
        actor: opt(&q.actor),
        action: opt(&q.action),
        cluster: opt(&q.cluster),
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
        text: opt(&q.text),
    })
}

/// One page of the log, newest first. Viewers and up.
#[server(endpoint = "list_audit", input = Json)]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, before, limit), err(level = "info"))
)]
pub async fn list_audit(
    query: AuditQuery,
    before: Option<i64>,
    limit: u32,
) -> Result<AuditPageData, AppError> {
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let filter = to_filter(&query)?;
    let page = cx.audit().query(&filter, before, limit).await?;
    let total = cx.audit().count(&filter).await?;
    Ok(AuditPageData {
        rows: page.rows.into_iter().map(AuditEntry::from).collect(),
        total,
        next_before: page.next_before,
    })
}

#[cfg(feature = "ssr")]
impl From<walden_core::audit::AuditRow> for AuditEntry {
    fn from(r: walden_core::audit::AuditRow) -> Self {
        let target = [
            r.cluster_id.as_deref().map(|c| format!("cluster {c}")),
            r.app_name.as_deref().map(|a| format!("app {a}")),
            r.run_id.as_deref().map(|x| format!("run {x}")),
            r.subject.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor_name,
            action: r.action,
            target,
            reason: r.reason,
            outcome: r.outcome,
            client_ip: r.client_ip,
            request_id: r.request_id,
            detail: r.detail,
        }
    }
}

/// Walk the chain. Viewers and up.
#[server(endpoint = "verify_audit")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn verify_audit() -> Result<ChainStatus, AppError> {
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let r = cx.audit().verify().await?;
    Ok(ChainStatus {
        rows: r.rows,
        verified_through: r.verified_through,
        intact: r.is_intact(),
        problem: r
            .first_broken
            .as_ref()
            .map(|b| format!("row {}: {}", b.id, b.breakage)),
        head_hash: r.head_hash,
    })
}

/// The filtered view as JSONL or CSV text. Viewers and up.
#[server(endpoint = "export_audit", input = Json)]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, format), err(level = "info"))
)]
pub async fn export_audit(query: AuditQuery, format: String) -> Result<String, AppError> {
    use walden_core::audit::ExportFormat;
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let format: ExportFormat = format.parse().map_err(|message| AppError::Validation {
        field: "format".into(),
        message,
    })?;
    let filter = to_filter(&query)?;
    let mut out = Vec::new();
    cx.audit().export(&filter, format, &mut out).await?;
    Ok(String::from_utf8(out)?)
}
