//! Fly organisations and the clusters Walden tracks in them: admins add organisations (with an org token) and
//! track clusters; every signed-in user sees the lists.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::FormSecret;
use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::Caller, leptos::server_fn::ServerFn, tracing::field::Empty,
    walden_core::users::Role,
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<ListOrgs as ServerFn>::PATH, Some(Role::Viewer)),
    (<AddOrg as ServerFn>::PATH, Some(Role::Admin)),
    (<RemoveOrg as ServerFn>::PATH, Some(Role::Admin)),
    (<ListPostgresApps as ServerFn>::PATH, Some(Role::Viewer)),
    (<ListTracked as ServerFn>::PATH, Some(Role::Viewer)),
    (<TrackCluster as ServerFn>::PATH, Some(Role::Admin)),
    (<UntrackCluster as ServerFn>::PATH, Some(Role::Admin)),
];

/// An organisation on the Settings page (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRow {
    pub slug: String,
    pub name: String,
    /// From `FLY_API_TOKEN` (or the demo emulator): cannot be removed here.
    pub from_environment: bool,
    /// The first characters of the token's keyed fingerprint, to tell two tokens apart.
    pub fingerprint: Option<String>,
    pub added_by: Option<String>,
    pub added_at: Option<String>,
    pub last_validated_at: Option<String>,
}

/// A Postgres app of an organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgAppRow {
    pub org: String,
    pub app: String,
    pub status: String,
    /// `stolon` (flyio/postgres) or `flex` (flyio/postgres-flex).
    pub flavour: String,
    pub pg_version: Option<String>,
    pub regions: Vec<String>,
    pub machines: Vec<crate::api::clusters::MachineView>,
    pub tracked: bool,
}

/// A tracked cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedRow {
    pub org: String,
    pub app: String,
    pub tracked_by: String,
    pub tracked_at: String,
}

/// Every organisation: those added here and the environment's. Viewers and up.
#[server(endpoint = "list_orgs")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_orgs() -> Result<Vec<OrgRow>, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let orgs = cx.orgs().list(&cx.actor).await?;
    Ok(orgs.into_iter().map(OrgRow::from).collect())
}

#[cfg(feature = "ssr")]
impl From<walden_core::orgs::OrgSummary> for OrgRow {
    fn from(o: walden_core::orgs::OrgSummary) -> Self {
        OrgRow {
            from_environment: o.source == walden_core::orgs::OrgSource::Environment,
            slug: o.slug,
            name: o.name,
            fingerprint: o.fingerprint,
            added_by: o.added_by,
            added_at: o.added_at,
            last_validated_at: o.last_validated_at,
        }
    }
}

/// Add an organisation with an org-scoped token (`fly tokens create org -o SLUG`): Fly checks it, then it is
/// stored sealed. The token is never returned. Admins only; audited.
#[server(endpoint = "add_org")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %slug), err(level = "info"))
)]
pub async fn add_org(slug: String, token: FormSecret) -> Result<OrgRow, AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let token = token.into_secret();
    let added = cx.orgs().add(&cx.actor, &cx.meta, &slug, &token).await?;
    Ok(OrgRow::from(added))
}

/// Remove an added organisation and its sealed token (not the environment's). Admins only; audited.
#[server(endpoint = "remove_org")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %slug), err(level = "info"))
)]
pub async fn remove_org(slug: String) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    cx.orgs().remove(&cx.actor, &cx.meta, &slug).await?;
    Ok(())
}

/// The Postgres apps of `org`, from the Fly API, with whether each is tracked. Viewers and up.
#[server(endpoint = "list_postgres_apps")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org), err(level = "info"))
)]
pub async fn list_postgres_apps(org: String) -> Result<Vec<PgAppRow>, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let apps = cx.orgs().postgres_apps(&cx.actor, &org).await?;
    Ok(apps.into_iter().map(PgAppRow::from).collect())
}

#[cfg(feature = "ssr")]
impl From<walden_core::orgs::PostgresApp> for PgAppRow {
    fn from(a: walden_core::orgs::PostgresApp) -> Self {
        use walden_core::orgs::PgFlavour;
        PgAppRow {
            org: a.org,
            app: a.app,
            status: a.status,
            flavour: match a.flavour {
                PgFlavour::Stolon => "stolon",
                PgFlavour::Flex => "flex",
            }
            .to_owned(),
            pg_version: a.pg_version,
            regions: a.regions,
            machines: a.machines.into_iter().map(Into::into).collect(),
            tracked: a.tracked,
        }
    }
}

/// The clusters tracked now. Viewers and up.
#[server(endpoint = "list_tracked")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_tracked() -> Result<Vec<TrackedRow>, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let tracked = cx.orgs().tracked(&cx.actor).await?;
    Ok(tracked
        .into_iter()
        .map(|t| TrackedRow {
            org: t.org,
            app: t.app,
            tracked_by: t.tracked_by,
            tracked_at: t.tracked_at,
        })
        .collect())
}

/// Track a Postgres app of `org`. Admins only; audited.
#[server(endpoint = "track_cluster")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn track_cluster(org: String, app: String) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    cx.orgs().track(&cx.actor, &cx.meta, &org, &app).await?;
    Ok(())
}

/// Stop tracking a cluster (its escrowed credentials stay). Admins only; audited.
#[server(endpoint = "untrack_cluster")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn untrack_cluster(org: String, app: String) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    cx.orgs().untrack(&cx.actor, &cx.meta, &org, &app).await?;
    Ok(())
}
