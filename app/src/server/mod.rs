//! Server-only toolkit for server functions (compiled with `ssr`, never to wasm): the state every request can
//! reach, and who is asking.
//!
//! A server function starts with one line that says who may call it, then makes one `walden_core` call:
//!
//! ```ignore
//! let cx = Caller::require(Role::Admin).await?;
//! cx.accounts().set_role(&cx.actor, &cx.meta, user_id, role.parse()?).await?;
//! ```
//!
//! Invariants:
//! - Every server function reaches the state through [`Visitor`]'s accessors (`accounts()`, `pool()`,
//!   `clusters()`, ...), never through `AppState` fields, so the state can change shape in one place.
//! - [`Caller::require`] is the one role check. An admin who must enrol TOTP and has not is refused
//!   everything but [`Caller::signed_in`] functions (enrolment, signing out). Every refusal it makes is
//!   recorded as `access.denied` (see [`refusals`]).
//! - Errors convert with `?` (see [`errors`]); their HTTP status is set when the error is encoded for the
//!   response, so no error path answers 500 by accident.

pub mod errors;
pub mod limits;
pub mod refusals;
pub mod session;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::FromRef;
use leptos::prelude::*;
use sqlx::SqlitePool;
use walden_core::audit::AuditLog;
use walden_core::audit::{actions, Actor, Event, Outcome, RequestMeta};
use walden_core::clusters::ClusterSummary;
use walden_core::settings::Settings;
use walden_core::users::{Accounts, Role, SetupToken, User};
use walden_core::Walden;

use crate::error::AppError;
pub use errors::{internal, ClustersUnavailable};
pub use refusals::RefusalBudget;
pub use session::SessionPolicy;

/// Handles shared by every request. `leptos_axum` provides it as context to server functions and renders.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub pool: SqlitePool,
    /// No Fly token configured: the console talks to the built-in emulator.
    pub demo_mode: bool,
    /// The domain: accounts, audit log, settings, clusters (and through it, Fly). Server functions reach it
    /// only through [`Visitor`]'s accessors, so nothing reaches Fly or the database past `walden_core`.
    pub walden: Walden,
    /// Session lifetimes.
    pub sessions: SessionPolicy,
    /// Read the client's address from this header (`Fly-Client-IP` behind Fly's proxy) instead of the TCP
    /// peer. Only set behind a proxy that always overwrites it.
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// The gate of web setup (security review H3): `None` when the console started with users (setup is
    /// closed then anyway).
    pub setup_token: Option<SetupToken>,
    /// How many anonymous refusals a client may have recorded per minute.
    pub refusals: Arc<RefusalBudget>,
}

/// The application state of the current request.
pub fn app_state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| internal("AppState missing from the request context"))
}

/// The id of the current request (set by the request-id layer), for logs and error texts; `-` when none.
pub fn request_id() -> String {
    use_context::<axum::http::request::Parts>()
        .and_then(|parts| {
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// Any request to a server function, signed in or not: the state, and where the request comes from.
pub struct Visitor {
    /// Request id and client address, for audit rows.
    pub meta: RequestMeta,
    state: AppState,
}

impl Visitor {
    /// The current request.
    pub async fn new() -> Result<Self, AppError> {
        let state = app_state()?;
        let client_ip = limits::client_ip(&state).await;
        let meta = RequestMeta {
            request_id: Some(request_id()).filter(|r| r != "-"),
            client_ip: client_ip.map(|ip| ip.to_string()),
        };
        Ok(Visitor { meta, state })
    }

    /// Users, passwords, invites, TOTP.
    pub fn accounts(&self) -> &Accounts {
        self.state.walden.accounts()
    }

    /// The audit log: query, count, export, verify.
    pub fn audit(&self) -> &AuditLog {
        self.state.walden.audit()
    }

    /// Console-wide settings.
    pub fn settings(&self) -> &Settings {
        self.state.walden.settings()
    }

    /// Fly organisations and the clusters tracked in them.
    pub fn orgs(&self) -> &walden_core::orgs::Orgs {
        self.state.walden.orgs()
    }

    /// Escrowed cluster credentials: versions, proofs, reveals.
    pub fn escrow(&self) -> &walden_core::escrow::Escrow {
        self.state.walden.escrow()
    }

    /// Each tracked cluster's backups health: the overview, Refresh now, the last good timeline.
    pub fn monitor(&self) -> &walden_core::monitor::Monitor {
        self.state.walden.monitor()
    }

    /// Restore plans and runs (`walden_core::restore`).
    pub fn restores(&self) -> walden_core::restore::Restores {
        self.state.walden.restores()
    }

    /// Conditions that need a person (`walden_core::alerts`).
    pub fn alerts(&self) -> &walden_core::alerts::Alerts {
        self.state.walden.alerts()
    }

    /// The database, for the status page's health probe only; everything else goes through a service.
    pub fn pool(&self) -> &SqlitePool {
        &self.state.pool
    }

    /// True when the console runs against the built-in Fly emulator.
    pub fn demo_mode(&self) -> bool {
        self.state.demo_mode
    }

    /// The Fly organisation whose clusters Walden watches (empty when no Fly API is configured).
    pub fn fly_org(&self) -> &str {
        self.state.walden.clusters().org().unwrap_or_default()
    }

    /// The Postgres clusters of the watched organisation, from the Fly API.
    pub async fn clusters(&self) -> Result<Vec<ClusterSummary>, ClustersUnavailable> {
        self.state
            .walden
            .clusters()
            .list()
            .await
            .map_err(|source| ClustersUnavailable {
                org: self.fly_org().to_owned(),
                source,
            })
    }

    /// The setup gate, for the first admin's creation.
    pub fn setup_token(&self) -> Option<&SetupToken> {
        self.state.setup_token.as_ref()
    }

    /// Record that this request was refused (`access.denied`) and return `error`. The row names the actor
    /// (anonymous when not signed in), the path of the request (the server function's, for a call) and the role
    /// it needed.
    async fn refuse(
        &self,
        actor: &Actor,
        needed: Option<Role>,
        why: &str,
        error: AppError,
    ) -> AppError {
        let path = use_context::<axum::http::request::Parts>()
            .map(|parts| parts.uri.path().to_owned())
            .unwrap_or_default();
        let event = Event::new(actions::ACCESS_DENIED, Outcome::Denied)
            .subject(format!("endpoint:{path}"))
            .detail(serde_json::json!({ "needs": needed, "why": why }));
        refusals::record(
            &self.state.walden,
            &self.state.refusals,
            self.meta
                .client_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok()),
            actor,
            &self.meta,
            &event,
        )
        .await;
        error
    }

    /// The signed-in user, or a refusal. A server-function call is recorded; a page rendered for an anonymous
    /// visitor is not (its "please sign in" panel is the normal view of a signed-out console, not a refusal).
    async fn user_or_refuse(&self, needed: Option<Role>) -> Result<User, AppError> {
        if let Some(user) = self.user().await? {
            return Ok(user);
        }
        let is_call = use_context::<axum::http::request::Parts>()
            .is_some_and(|parts| parts.uri.path().starts_with("/api/"));
        if !is_call {
            return Err(AppError::Unauthorized);
        }
        let (actor, error) = (Actor::Anonymous, AppError::Unauthorized);
        Err(self.refuse(&actor, needed, "not signed in", error).await)
    }

    /// Whether admins must sign in with TOTP.
    pub async fn require_totp_for_admins(&self) -> Result<bool, AppError> {
        Ok(self.settings().require_totp_for_admins().await?)
    }

    /// The signed-in user, or `None`. A stale session (expired, signed out everywhere, user disabled) is
    /// flushed.
    pub async fn user(&self) -> Result<Option<User>, AppError> {
        session::current_user(&self.state).await
    }

    /// An admin without TOTP while admins must use it (the rule is `walden_core`'s
    /// [`Accounts::must_enrol_totp`]).
    pub async fn must_enrol_totp(&self, user: &User) -> Result<bool, AppError> {
        Ok(self.accounts().must_enrol_totp(user).await?)
    }
}

/// A signed-in caller allowed past the role check: the user, the audit actor, and the request.
pub struct Caller {
    pub user: User,
    /// Who audit rows name.
    pub actor: Actor,
    visitor: Visitor,
}

impl Caller {
    /// The one authorisation check: the caller must be signed in (else `Unauthorized`) and hold at least
    /// `role` (else `Forbidden`).
    ///
    /// An admin who must use TOTP (the `require_totp_for_admins` setting) and has not enrolled yet is
    /// refused everything but enrolment ([`Caller::signed_in`]) until they do.
    ///
    /// Each refusal is recorded as `access.denied` (security review M4).
    pub async fn require(role: Role) -> Result<Caller, AppError> {
        let visitor = Visitor::new().await?;
        let user = visitor.user_or_refuse(Some(role)).await?;
        if visitor.must_enrol_totp(&user).await? {
            let error = AppError::Validation {
                field: "totp".into(),
                message: "Admins must set up two-factor sign-in first (on the Account page)."
                    .into(),
            };
            let why = "two-factor enrolment pending";
            return Err(visitor.refuse(&user.actor(), Some(role), why, error).await);
        }
        if user.role < role {
            let error = AppError::Forbidden;
            return Err(visitor
                .refuse(&user.actor(), Some(role), "role", error)
                .await);
        }
        Ok(Caller::new(user, visitor))
    }

    /// Signed in, whatever the role and TOTP state (for enrolling TOTP and signing out).
    pub async fn signed_in() -> Result<Caller, AppError> {
        let visitor = Visitor::new().await?;
        let user = visitor.user_or_refuse(None).await?;
        Ok(Caller::new(user, visitor))
    }

    fn new(user: User, visitor: Visitor) -> Caller {
        tracing::Span::current().record("user_id", user.id);
        Caller {
            actor: user.actor(),
            user,
            visitor,
        }
    }
}

/// A caller is a visitor too: the same accessors.
impl Deref for Caller {
    type Target = Visitor;

    fn deref(&self) -> &Visitor {
        &self.visitor
    }
}
