//! The Postgres clusters of the watched Fly organisation. Viewers and up.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {leptos::server_fn::ServerFn, tracing::field::Empty, walden_core::users::Role};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[(<ListClusters as ServerFn>::PATH, Some(Role::Viewer))];

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
