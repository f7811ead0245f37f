//! The Postgres clusters of the watched Fly organisation. Viewers and up.

use leptos::prelude::*;

use crate::error::AppError;
use crate::model::ClusterList;
#[cfg(feature = "ssr")]
use {leptos::server_fn::ServerFn, tracing::field::Empty, walden_core::users::Role};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[(<ListClusters as ServerFn>::PATH, Some(Role::Viewer))];

/// The Postgres clusters of the watched Fly organisation, with their machines and roles. A Fly API failure
/// is `AppError::Upstream` (502).
#[server(endpoint = "list_clusters")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_clusters() -> Result<ClusterList, AppError> {
    use crate::model::ClusterView;
    let cx = crate::server::Caller::require(Role::Viewer).await?;
    let clusters = cx.clusters().await?;
    Ok(ClusterList {
        org: cx.fly_org().to_owned(),
        clusters: clusters.into_iter().map(ClusterView::from).collect(),
    })
}
