//! Alerts: the conditions that need a person (a kept password that no longer opens its role, WAL that stopped
//! arriving), open ones first. Viewers and up; raising and resolving happen in core, never from the page.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {leptos::server_fn::ServerFn, tracing::field::Empty, walden_core::users::Role};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[(<ListAlerts as ServerFn>::PATH, Some(Role::Viewer))];

/// One alert as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    /// `warning` or `critical`.
    pub severity: String,
    pub org: Option<String>,
    pub app: Option<String>,
    pub message: String,
    pub raised_at: String,
    /// `None` while open.
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
}

/// The open alerts, critical first.
#[server(endpoint = "list_alerts")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_alerts() -> Result<Vec<AlertRow>, AppError> {
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let open = cx.alerts().open().await?;
    Ok(open.into_iter().map(AlertRow::from).collect())
}

#[cfg(feature = "ssr")]
impl From<walden_core::alerts::Alert> for AlertRow {
    fn from(a: walden_core::alerts::Alert) -> Self {
        AlertRow {
            id: a.id,
            kind: a.kind,
            severity: a.severity,
            org: a.org,
            app: a.app,
            message: a.message,
            raised_at: a.raised_at,
            resolved_at: a.resolved_at,
            resolution: a.resolution,
        }
    }
}
