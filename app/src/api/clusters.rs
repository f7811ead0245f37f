use leptos::prelude::*;

use crate::error::AppError;
use crate::model::ClusterList;

/// The Postgres clusters of the watched Fly organisation, with their machines and roles.
#[server(endpoint = "list_clusters")]
pub async fn list_clusters() -> Result<ClusterList, AppError> {
    use crate::model::{ClusterView, MachineView};
    use crate::ssr::{app_state, request_id};

    crate::auth::require_role(walden_core::users::Role::Viewer).await?;
    let state = app_state()?;
    let clusters = state.walden.clusters();
    let org = clusters.org().unwrap_or_default().to_owned();
    let list = clusters.list().await.map_err(|e| {
        tracing::warn!(request_id = %request_id(), error = %e, "cluster discovery failed");
        AppError::Upstream(format!("Cannot list the clusters of {org}: {e}"))
    })?;
    Ok(ClusterList {
        org,
        clusters: list
            .into_iter()
            .map(|c| ClusterView {
                app: c.app,
                status: c.status,
                machines: c
                    .machines
                    .into_iter()
                    .map(|m| MachineView {
                        id: m.id,
                        name: m.name,
                        region: m.region,
                        state: m.state,
                        role: m.role,
                        image: m.image,
                    })
                    .collect(),
            })
            .collect(),
    })
}
