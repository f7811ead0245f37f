//! Fly organisations Walden reaches with their own org-scoped token, their Postgres apps, and the clusters an
//! admin chose to track (issue #11, item 1).
//!
//! # Where a token comes from
//!
//! - **Added** ([`Orgs::add`]): an admin pastes an org-scoped token (`fly tokens create org`). Walden checks it
//!   against the Machines API peer (`GET /v1/tokens/current` must name the organisation and no app or machine
//!   restriction, and `GET /v1/apps?org_slug=` must list its apps), then stores it sealed with the keyring,
//!   bound to the org slug (`walden/org-token/{slug}`), beside a keyed fingerprint. A refusal stores nothing
//!   but its audit row. Without a keyring nothing is added: a token is never stored in the clear.
//! - **Environment**: the organisation of `FLY_API_TOKEN` (or of the demo emulator) that [`crate::clusters`]
//!   watches stays the zero-setup path. [`Orgs::list`] shows it as an `environment` organisation; it has no
//!   row, cannot be removed (unset the variable instead), and its clusters can be tracked like any other.
//!   When an organisation is both added and in the environment, the added token is the one used.
//!
//! # Rules
//!
//! Admins add and remove organisations and choose the tracked clusters; every signed-in role may list them.
//! Every change writes its audit row in the same transaction ([`AuditedTx`]); refusals write a `denied` (role)
//! or `failed` (bad input, Fly's refusal) row. Tokens never reach errors, `Debug` output, logs or audit rows.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use fly::{FlyClient, ListMachines, Machine};

use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{self, actions, AuditError, AuditedTx, Event, Outcome};
use crate::clusters::{FlyConnection, MachineSummary};
use crate::keyring::Keyring;
use crate::ts;

/// The longest token accepted (Fly's macaroon tokens are a few hundred to a few thousand bytes).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// The context a token is sealed in: its organisation, so a sealed token moved to another row does not open.
pub fn token_context(slug: &str) -> String {
    format!("walden/org-token/{slug}")
}

/// The context of a token's keyed fingerprint.
const FINGERPRINT_CONTEXT: &str = "walden/org-token-fingerprint";

/// The rotation's context for `fly_orgs.token_sealed` (see [`crate::rotation::SEALED_COLUMNS`]).
pub(crate) fn sealed_token_context(row: &SqliteRow) -> Result<String, sqlx::Error> {
    Ok(token_context(row.try_get("slug")?))
}

/// Where a client for an organisation's token sends its requests: Fly's public API, or an emulator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlyEndpoints {
    /// Machines API base URL (`FLY_FLAPS_BASE_URL`); Fly's when `None`.
    pub machines_base_url: Option<String>,
    /// api.fly.io base URL (`FLY_API_HOSTNAME`); Fly's when `None`.
    pub api_base_url: Option<String>,
}

impl FlyEndpoints {
    /// The endpoints an existing client calls.
    pub fn of(client: &FlyClient) -> Self {
        FlyEndpoints {
            machines_base_url: Some(client.machines_base_url().to_owned()),
            api_base_url: Some(client.api_base_url().to_owned()),
        }
    }

    /// A client for `token` against these endpoints.
    fn client(&self, token: SecretString) -> Result<FlyClient, Box<fly::Error>> {
        let mut builder = FlyClient::builder().token(token);
        if let Some(url) = &self.machines_base_url {
            builder = builder.machines_base_url(url.clone());
        }
        if let Some(url) = &self.api_base_url {
            builder = builder.api_base_url(url.clone());
        }
        builder.build().map_err(Box::new)
    }
}

/// Why an organisation could not be added, listed or changed. Texts are for people; none holds a token.
#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("{0}")]
    Invalid(FieldError),
    #[error(
        "no master key is configured (WALDEN_MASTER_KEY), and an organisation's token is only ever stored \
         sealed; set the master key and try again"
    )]
    NoKeyring,
    #[error("Fly refused the token: it is wrong, expired or revoked (HTTP 401); create a new one with `fly tokens create org`")]
    TokenRejected,
    #[error("the token is not an organisation token: {0}; create one with `fly tokens create org -o ORG`")]
    WrongScope(String),
    #[error("the organisation {slug:?} does not exist or this token cannot act in it{}", acts_in(.reachable))]
    UnknownOrg {
        slug: String,
        reachable: Vec<String>,
    },
    #[error("the organisation {0:?} is already added; remove it first to replace its token")]
    AlreadyAdded(String),
    #[error("there is no organisation {0:?}: add it with its token first")]
    NotFound(String),
    #[error("the organisation {0:?} comes from FLY_API_TOKEN and cannot be removed here; unset the variable instead")]
    FromEnvironment(String),
    #[error("there is no app {app:?} in the organisation {org:?}")]
    AppNotFound { org: String, app: String },
    #[error("the app {0:?} is not a Postgres cluster (no machine runs flyio/postgres or flyio/postgres-flex)")]
    NotPostgres(String),
    #[error("the cluster {0:?} is already tracked")]
    AlreadyTracked(String),
    #[error("the cluster {app:?} of {org:?} is not tracked")]
    NotTracked { org: String, app: String },
    #[error("the stored token of {0:?} cannot be opened with the master key or a retired key")]
    Unopenable(String),
    #[error("the token could not be sealed")]
    Seal,
    #[error("the Fly API refused or failed the request: {0}")]
    Fly(#[source] Box<fly::Error>),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

fn acts_in(reachable: &[String]) -> String {
    if reachable.is_empty() {
        String::new()
    } else {
        format!(" (it acts in: {})", reachable.join(", "))
    }
}

impl From<FieldError> for OrgError {
    fn from(e: FieldError) -> Self {
        OrgError::Invalid(e)
    }
}

impl OrgError {
    /// A short, stable name for the audit row's detail (never the token).
    fn code(&self) -> &'static str {
        match self {
            OrgError::Forbidden => "forbidden",
            OrgError::Invalid(_) => "invalid",
            OrgError::NoKeyring => "no_keyring",
            OrgError::TokenRejected => "token_rejected",
            OrgError::WrongScope(_) => "wrong_scope",
            OrgError::UnknownOrg { .. } => "unknown_org",
            OrgError::AlreadyAdded(_) => "already_added",
            OrgError::NotFound(_) => "not_found",
            OrgError::FromEnvironment(_) => "from_environment",
            OrgError::AppNotFound { .. } => "app_not_found",
            OrgError::NotPostgres(_) => "not_postgres",
            OrgError::AlreadyTracked(_) => "already_tracked",
            OrgError::NotTracked { .. } => "not_tracked",
            OrgError::Unopenable(_) => "unopenable",
            OrgError::Seal => "seal",
            OrgError::Fly(_) => "fly",
            OrgError::Audit(_) => "audit",
            OrgError::Db(_) => "db",
        }
    }
}

/// Where an organisation's token comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgSource {
    /// Added by an admin; the token is stored sealed.
    Added,
    /// `FLY_API_TOKEN` (or the demo emulator); nothing stored, cannot be removed.
    Environment,
}

/// An organisation as the list shows it (never its token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgSummary {
    pub slug: String,
    pub name: String,
    pub source: OrgSource,
    /// The first 16 hex characters of the token's keyed fingerprint (added organisations).
    pub fingerprint: Option<String>,
    pub added_by: Option<String>,
    pub added_at: Option<String>,
    pub last_validated_at: Option<String>,
}

/// Which Postgres image runs a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PgFlavour {
    /// `flyio/postgres` (fly-apps/postgres-ha): Stolon keeper, sentinel and proxy.
    Stolon,
    /// `flyio/postgres-flex` (fly-apps/postgres-flex): repmgr.
    Flex,
}

/// A Postgres app of an organisation, with what Walden can tell without touching the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresApp {
    pub org: String,
    pub app: String,
    pub status: String,
    pub flavour: PgFlavour,
    /// From the image label `fly.pg-version` (or the image tag when the label is missing).
    pub pg_version: Option<String>,
    /// Sorted, without repeats.
    pub regions: Vec<String>,
    pub machines: Vec<MachineSummary>,
    pub tracked: bool,
}

/// A cluster Walden tracks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedCluster {
    pub org: String,
    pub app: String,
    pub tracked_by: String,
    pub tracked_at: String,
}

/// The organisations as a service of [`crate::Walden`]. Cheap to clone; `Debug` shows no token.
#[derive(Clone, Debug)]
pub struct Orgs {
    pool: SqlitePool,
    keyring: Option<Keyring>,
    /// The organisation of `FLY_API_TOKEN` (or the demo), when configured.
    environment: Option<FlyConnection>,
    endpoints: FlyEndpoints,
}

impl Orgs {
    /// `endpoints` is where added organisations' tokens are sent (the environment connection's peer when
    /// `None` and there is one, else Fly's public API).
    pub fn new(
        pool: SqlitePool,
        keyring: Option<Keyring>,
        environment: Option<FlyConnection>,
        endpoints: Option<FlyEndpoints>,
    ) -> Self {
        let endpoints = endpoints
            .or_else(|| environment.as_ref().map(|c| FlyEndpoints::of(&c.client)))
            .unwrap_or_default();
        Orgs {
            pool,
            keyring,
            environment,
            endpoints,
        }
    }

    /// Add an organisation with an org-scoped token: validate it with Fly, then store it sealed. Admins only.
    #[tracing::instrument(skip_all, fields(org = slug, actor = %actor.display_name()), err(level = "debug"))]
    pub async fn add(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        token: &SecretString,
    ) -> Result<OrgSummary, OrgError> {
        let slug = slug.trim();
        let subject = format!("org:{slug}");
        self.require_admin(actor, meta, actions::ORG_ADD, &subject)
            .await?;
        match self.add_checked(actor, meta, slug, token).await {
            Ok(summary) => Ok(summary),
            Err(e) => {
                self.refused(actor, meta, actions::ORG_ADD, &subject, e)
                    .await
            }
        }
    }

    async fn add_checked(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        token: &SecretString,
    ) -> Result<OrgSummary, OrgError> {
        valid_slug(slug)?;
        let token = token.expose_secret().trim();
        if token.is_empty() {
            return Err(FieldError::new("token", "paste the organisation's token").into());
        }
        if token.len() > MAX_TOKEN_LEN || token.chars().any(char::is_control) {
            return Err(FieldError::new("token", "this does not look like a Fly API token").into());
        }
        let keyring = self.keyring.as_ref().ok_or(OrgError::NoKeyring)?;
        if self.stored_token(slug).await?.is_some() {
            return Err(OrgError::AlreadyAdded(slug.to_owned()));
        }
        let token = SecretString::from(token.to_owned());
        let name = self.validate_token(slug, &token).await?;
        let sealed = keyring
            .seal(token.expose_secret().as_bytes(), &token_context(slug))
            .map_err(|_| OrgError::Seal)?;
        let fingerprint = hex::encode(
            keyring
                .fingerprint(FINGERPRINT_CONTEXT, token.expose_secret().as_bytes())
                .map_err(|_| OrgError::Seal)?,
        );
        let now = ts::format(ts::now());
        let mut tx = AuditedTx::begin(&self.pool).await?;
        sqlx::query(
            "INSERT INTO fly_orgs (slug, name, token_sealed, token_fingerprint, added_by, added_at, \
             last_validated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(slug)
        .bind(&name)
        .bind(&sealed)
        .bind(&fingerprint)
        .bind(actor.display_name())
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let short = fingerprint[..16].to_owned();
        let event = Event::new(actions::ORG_ADD, Outcome::Ok)
            .subject(format!("org:{slug}"))
            .detail(serde_json::json!({ "org": slug, "name": name, "fingerprint": short }));
        tx.commit(actor, meta, &event).await?;
        Ok(OrgSummary {
            slug: slug.to_owned(),
            name,
            source: OrgSource::Added,
            fingerprint: Some(short),
            added_by: Some(actor.display_name()),
            added_at: Some(now.clone()),
            last_validated_at: Some(now),
        })
    }

    /// Check an added organisation's stored token with Fly again (as [`Orgs::add`] does) and record when it
    /// last passed. Admins only; audited either way (`org.validate`). Returns the time of the check.
    #[tracing::instrument(skip_all, fields(org = slug, actor = %actor.display_name()), err(level = "debug"))]
    pub async fn validate(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
    ) -> Result<String, OrgError> {
        let subject = format!("org:{slug}");
        self.require_admin(actor, meta, actions::ORG_VALIDATE, &subject)
            .await?;
        let checked = async {
            if self.stored_token(slug).await?.is_none() {
                return Err(match &self.environment {
                    Some(env) if env.org == slug => OrgError::FromEnvironment(slug.to_owned()),
                    _ => OrgError::NotFound(slug.to_owned()),
                });
            }
            let token = self.open_token(slug).await?;
            self.validate_token(slug, &token).await
        }
        .await;
        let name = match checked {
            Ok(name) => name,
            Err(e) => {
                return self
                    .refused(actor, meta, actions::ORG_VALIDATE, &subject, e)
                    .await
            }
        };
        let now = ts::format(ts::now());
        let mut tx = AuditedTx::begin(&self.pool).await?;
        sqlx::query("UPDATE fly_orgs SET name = ?, last_validated_at = ? WHERE slug = ?")
            .bind(&name)
            .bind(&now)
            .bind(slug)
            .execute(&mut *tx)
            .await?;
        let event = Event::new(actions::ORG_VALIDATE, Outcome::Ok)
            .subject(subject)
            .detail(serde_json::json!({ "org": slug }));
        tx.commit(actor, meta, &event).await?;
        Ok(now)
    }

    /// Ask the peer what the token is: it must act in `slug` as a whole (no app or machine restriction), and
    /// the organisation's apps must list. Returns the organisation's name.
    async fn validate_token(&self, slug: &str, token: &SecretString) -> Result<String, OrgError> {
        let client = self.endpoints.client(token.clone()).map_err(|e| match *e {
            fly::Error::Config(_) => OrgError::Invalid(FieldError::new(
                "token",
                "this does not look like a Fly API token",
            )),
            other => OrgError::Fly(Box::new(other)),
        })?;
        // fly-go `CurrentToken` / the OpenAPI document's `GET /tokens/current` (`CurrentToken_show`).
        let current = client.current_token().await.map_err(fly_refusal)?;
        let reachable: Vec<String> = current
            .tokens
            .iter()
            .filter_map(|t| t.org_slug.clone())
            .collect();
        let Some(info) = current
            .tokens
            .iter()
            .find(|t| t.org_slug.as_deref() == Some(slug))
        else {
            return Err(OrgError::UnknownOrg {
                slug: slug.to_owned(),
                reachable,
            });
        };
        if !info.apps.is_empty() {
            return Err(OrgError::WrongScope(format!(
                "it is limited to the app(s) {}",
                info.apps.join(", ")
            )));
        }
        if info
            .restricted_to_machine
            .as_deref()
            .is_some_and(|m| !m.is_empty())
        {
            return Err(OrgError::WrongScope("it is limited to one machine".into()));
        }
        let name = info
            .organization
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| slug.to_owned());
        client.list_apps(slug).await.map_err(|e| match e {
            fly::Error::Api { status: 404, .. } => OrgError::UnknownOrg {
                slug: slug.to_owned(),
                reachable: reachable.clone(),
            },
            other => fly_refusal(other),
        })?;
        Ok(name)
    }

    /// The organisations: the added ones, then the environment's (unless it is also added). Any signed-in
    /// role.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<OrgSummary>, OrgError> {
        require_viewer(actor)?;
        let rows = sqlx::query(
            "SELECT slug, name, token_fingerprint, added_by, added_at, last_validated_at FROM fly_orgs \
             ORDER BY slug",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut orgs = Vec::with_capacity(rows.len() + 1);
        for row in rows {
            let fingerprint: String = row.try_get("token_fingerprint")?;
            orgs.push(OrgSummary {
                slug: row.try_get("slug")?,
                name: row.try_get("name")?,
                source: OrgSource::Added,
                fingerprint: Some(fingerprint.chars().take(16).collect()),
                added_by: Some(row.try_get("added_by")?),
                added_at: Some(row.try_get("added_at")?),
                last_validated_at: Some(row.try_get("last_validated_at")?),
            });
        }
        if let Some(env) = &self.environment {
            if !orgs.iter().any(|o| o.slug == env.org) {
                orgs.push(OrgSummary {
                    slug: env.org.clone(),
                    name: env.org.clone(),
                    source: OrgSource::Environment,
                    fingerprint: None,
                    added_by: None,
                    added_at: None,
                    last_validated_at: None,
                });
            }
        }
        Ok(orgs)
    }

    /// Remove an added organisation and its sealed token; its tracked clusters are untracked in the same
    /// transaction. Admins only. The environment's organisation cannot be removed.
    #[tracing::instrument(skip_all, fields(org = slug, actor = %actor.display_name()), err(level = "debug"))]
    pub async fn remove(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
    ) -> Result<(), OrgError> {
        let subject = format!("org:{slug}");
        self.require_admin(actor, meta, actions::ORG_REMOVE, &subject)
            .await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let removed = sqlx::query("DELETE FROM fly_orgs WHERE slug = ?")
            .bind(slug)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            drop(tx);
            let refusal = if self.environment.as_ref().is_some_and(|e| e.org == slug) {
                OrgError::FromEnvironment(slug.to_owned())
            } else {
                OrgError::NotFound(slug.to_owned())
            };
            return self
                .refused(actor, meta, actions::ORG_REMOVE, &subject, refusal)
                .await;
        }
        let untracked = sqlx::query(
            "UPDATE tracked_clusters SET untracked_by = ?, untracked_at = ? \
             WHERE org = ? AND untracked_at IS NULL",
        )
        .bind(actor.display_name())
        .bind(ts::format(ts::now()))
        .bind(slug)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let event = Event::new(actions::ORG_REMOVE, Outcome::Ok)
            .subject(subject)
            .detail(serde_json::json!({ "org": slug, "untracked": untracked }));
        tx.commit(actor, meta, &event).await?;
        Ok(())
    }

    /// The Postgres apps of `org` (Stolon or postgres-flex, by image), with machines, regions, roles (the
    /// `role` check) and Postgres version (image label `fly.pg-version`), sorted by app. Any signed-in role.
    #[tracing::instrument(skip_all, fields(org = org), err(level = "debug"))]
    pub async fn postgres_apps(
        &self,
        actor: &Actor,
        org: &str,
    ) -> Result<Vec<PostgresApp>, OrgError> {
        require_viewer(actor)?;
        let client = self.client_for(org).await?;
        let apps = client.list_apps(org).await.map_err(fly_refusal)?.apps;
        let tracked = self.tracked_apps().await?;
        let mut found = Vec::new();
        for app in apps {
            let machines = client
                .list_machines(&app.name, &ListMachines::default())
                .await
                .map_err(fly_refusal)?;
            if let Some(mut pg) = postgres_app(org, &app.name, app.status.as_deref(), &machines) {
                pg.tracked = tracked.iter().any(|t| t == &pg.app);
                found.push(pg);
            }
        }
        found.sort_by(|a, b| a.app.cmp(&b.app));
        Ok(found)
    }

    /// Track a cluster of `org`: refused unless `app` is one of its Postgres apps. Admins only.
    #[tracing::instrument(skip_all, fields(org = org, app = app, actor = %actor.display_name()), err(level = "debug"))]
    pub async fn track(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<TrackedCluster, OrgError> {
        let subject = format!("org:{org}/app:{app}");
        self.require_admin(actor, meta, actions::CLUSTER_TRACK, &subject)
            .await?;
        match self.track_checked(actor, meta, org, app, &subject).await {
            Ok(tracked) => Ok(tracked),
            Err(e) => {
                self.refused(actor, meta, actions::CLUSTER_TRACK, &subject, e)
                    .await
            }
        }
    }

    async fn track_checked(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        subject: &str,
    ) -> Result<TrackedCluster, OrgError> {
        if app.is_empty() || app.len() > 63 {
            return Err(FieldError::new("app", "an app name is 1 to 63 characters").into());
        }
        let client = self.client_for(org).await?;
        let not_found = || OrgError::AppNotFound {
            org: org.to_owned(),
            app: app.to_owned(),
        };
        // An app of another organisation is 403 to this org's token: from here it does not exist either.
        let found = client.get_app(app).await.map_err(|e| match e {
            fly::Error::Api {
                status: 403 | 404, ..
            } => not_found(),
            other => fly_refusal(other),
        })?;
        if found
            .organization
            .as_ref()
            .and_then(|o| o.slug.as_deref())
            .is_some_and(|s| s != org)
        {
            return Err(not_found());
        }
        let machines = client
            .list_machines(app, &ListMachines::default())
            .await
            .map_err(fly_refusal)?;
        if postgres_app(org, app, found.status.as_deref(), &machines).is_none() {
            return Err(OrgError::NotPostgres(app.to_owned()));
        }
        let now = ts::format(ts::now());
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let active: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tracked_clusters WHERE app = ? AND untracked_at IS NULL",
        )
        .bind(app)
        .fetch_optional(&mut *tx)
        .await?;
        if active.is_some() {
            return Err(OrgError::AlreadyTracked(app.to_owned()));
        }
        sqlx::query(
            "INSERT INTO tracked_clusters (org, app, tracked_by, tracked_at) VALUES (?, ?, ?, ?)",
        )
        .bind(org)
        .bind(app)
        .bind(actor.display_name())
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        let event = Event::new(actions::CLUSTER_TRACK, Outcome::Ok)
            .subject(subject)
            .detail(serde_json::json!({ "org": org, "app": app }));
        tx.commit(actor, meta, &event).await?;
        Ok(TrackedCluster {
            org: org.to_owned(),
            app: app.to_owned(),
            tracked_by: actor.display_name(),
            tracked_at: now,
        })
    }

    /// Stop tracking a cluster (the row stays, with who untracked it and when). Admins only.
    #[tracing::instrument(skip_all, fields(org = org, app = app, actor = %actor.display_name()), err(level = "debug"))]
    pub async fn untrack(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<(), OrgError> {
        let subject = format!("org:{org}/app:{app}");
        self.require_admin(actor, meta, actions::CLUSTER_UNTRACK, &subject)
            .await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let changed = sqlx::query(
            "UPDATE tracked_clusters SET untracked_by = ?, untracked_at = ? \
             WHERE org = ? AND app = ? AND untracked_at IS NULL",
        )
        .bind(actor.display_name())
        .bind(ts::format(ts::now()))
        .bind(org)
        .bind(app)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            drop(tx);
            let refusal = OrgError::NotTracked {
                org: org.to_owned(),
                app: app.to_owned(),
            };
            return self
                .refused(actor, meta, actions::CLUSTER_UNTRACK, &subject, refusal)
                .await;
        }
        let event = Event::new(actions::CLUSTER_UNTRACK, Outcome::Ok)
            .subject(subject)
            .detail(serde_json::json!({ "org": org, "app": app }));
        tx.commit(actor, meta, &event).await?;
        Ok(())
    }

    /// The clusters tracked now, by org then app. Any signed-in role.
    pub async fn tracked(&self, actor: &Actor) -> Result<Vec<TrackedCluster>, OrgError> {
        require_viewer(actor)?;
        let rows = sqlx::query(
            "SELECT org, app, tracked_by, tracked_at FROM tracked_clusters WHERE untracked_at IS NULL \
             ORDER BY org, app",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TrackedCluster {
                    org: row.try_get("org")?,
                    app: row.try_get("app")?,
                    tracked_by: row.try_get("tracked_by")?,
                    tracked_at: row.try_get("tracked_at")?,
                })
            })
            .collect()
    }

    async fn tracked_apps(&self) -> Result<Vec<String>, OrgError> {
        Ok(
            sqlx::query_scalar("SELECT app FROM tracked_clusters WHERE untracked_at IS NULL")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A client acting in `org`: its added token (opened from the database), else the environment's.
    pub(crate) async fn client_for(&self, org: &str) -> Result<FlyClient, OrgError> {
        if self.stored_token(org).await?.is_some() {
            let token = self.open_token(org).await?;
            return self.endpoints.client(token).map_err(OrgError::Fly);
        }
        match &self.environment {
            Some(env) if env.org == org => Ok(env.client.clone()),
            _ => Err(OrgError::NotFound(org.to_owned())),
        }
    }

    /// The added token of `org`, opened with the keyring (bound to the org: a token moved from another
    /// row does not open).
    async fn open_token(&self, org: &str) -> Result<SecretString, OrgError> {
        let sealed = self
            .stored_token(org)
            .await?
            .ok_or_else(|| OrgError::NotFound(org.to_owned()))?;
        let keyring = self.keyring.as_ref().ok_or(OrgError::NoKeyring)?;
        let opened = keyring
            .open(&sealed, &token_context(org))
            .map_err(|_| OrgError::Unopenable(org.to_owned()))?;
        let token =
            std::str::from_utf8(&opened).map_err(|_| OrgError::Unopenable(org.to_owned()))?;
        Ok(SecretString::from(token.to_owned()))
    }

    async fn stored_token(&self, slug: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT token_sealed FROM fly_orgs WHERE slug = ?")
            .bind(slug)
            .fetch_optional(&self.pool)
            .await
    }

    /// Refuse (with a `denied` row) an actor below admin.
    async fn require_admin(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        subject: &str,
    ) -> Result<(), OrgError> {
        if actor.has_role(Role::Admin) {
            return Ok(());
        }
        let denied = Event::new(action, Outcome::Denied).subject(subject);
        audit::record(&self.pool, actor, meta, &denied).await?;
        Err(OrgError::Forbidden)
    }

    /// Write the `failed` row of a refused change and return the refusal (the audit error instead, if the
    /// row cannot be written: the log fails closed).
    async fn refused<T>(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        subject: &str,
        error: OrgError,
    ) -> Result<T, OrgError> {
        if matches!(error, OrgError::Audit(_)) {
            return Err(error);
        }
        let failed = Event::new(action, Outcome::Failed)
            .subject(subject)
            .detail(serde_json::json!({ "refused": error.code() }));
        audit::record(&self.pool, actor, meta, &failed).await?;
        Err(error)
    }
}

fn require_viewer(actor: &Actor) -> Result<(), OrgError> {
    if actor.has_role(Role::Viewer) {
        Ok(())
    } else {
        Err(OrgError::Forbidden)
    }
}

/// A Fly org slug: lower-case letters, digits and hyphens, 1 to 63 characters.
fn valid_slug(slug: &str) -> Result<(), FieldError> {
    let ok = !slug.is_empty()
        && slug.len() <= 63
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "org",
            "an organisation slug is 1 to 63 lower-case letters, digits and hyphens",
        ))
    }
}

/// Fly's refusal of a token (401) as [`OrgError::TokenRejected`]; anything else as it is.
fn fly_refusal(e: fly::Error) -> OrgError {
    match e {
        fly::Error::Api { status: 401, .. } => OrgError::TokenRejected,
        other => OrgError::Fly(Box::new(other)),
    }
}

/// The flavour of Postgres image a machine runs, if any. The repository decides; the label `fly.pg-manager`
/// (`repmgr` on postgres-flex, flyctl `internal/flypg`: `ReplicationManager`) confirms flex when an image
/// was pushed under another name.
fn flavour(machine: &Machine) -> Option<PgFlavour> {
    let image = machine.image().unwrap_or_default();
    let repository = image.split(['@', ':']).next().unwrap_or_default();
    let repository = repository
        .strip_prefix("registry-1.docker.io/")
        .or_else(|| repository.strip_prefix("docker.io/"))
        .unwrap_or(repository);
    let label = |name: &str| {
        machine
            .image_ref
            .as_ref()
            .and_then(|r| r.labels.get(name))
            .map(String::as_str)
    };
    match repository {
        "flyio/postgres" => Some(PgFlavour::Stolon),
        "flyio/postgres-flex" => Some(PgFlavour::Flex),
        _ if label("fly.pg-manager") == Some("repmgr") => Some(PgFlavour::Flex),
        _ if label("fly.pg-manager") == Some("stolon") => Some(PgFlavour::Stolon),
        _ => None,
    }
}

/// The Postgres version a machine's image declares: the label `fly.pg-version` (set by both images'
/// Dockerfiles), else the image tag.
fn pg_version(machine: &Machine) -> Option<String> {
    let labelled = machine
        .image_ref
        .as_ref()
        .and_then(|r| r.labels.get("fly.pg-version"))
        .filter(|v| !v.is_empty())
        .cloned();
    labelled.or_else(|| {
        machine
            .image_ref
            .as_ref()
            .and_then(|r| r.tag.clone())
            .filter(|t| !t.is_empty() && t != "latest")
    })
}

/// `app` as a Postgres app, when one of its machines runs a Postgres image.
fn postgres_app(
    org: &str,
    app: &str,
    status: Option<&str>,
    machines: &[Machine],
) -> Option<PostgresApp> {
    let first = machines.iter().find(|m| flavour(m).is_some())?;
    let flavour = flavour(first)?;
    let mut summaries: Vec<MachineSummary> = machines.iter().map(MachineSummary::of).collect();
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut regions: Vec<String> = summaries.iter().map(|m| m.region.clone()).collect();
    regions.sort();
    regions.dedup();
    Some(PostgresApp {
        org: org.to_owned(),
        app: app.to_owned(),
        status: status.unwrap_or("unknown").to_owned(),
        flavour,
        pg_version: pg_version(first),
        regions,
        machines: summaries,
        tracked: false,
    })
}
