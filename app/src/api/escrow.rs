//! Escrowed cluster credentials: versions and proofs (viewers and up), reveals with a written reason and, when
//! the `require_reveal_approval` setting is on, requests that another operator or admin approves.
//!
//! A revealed value travels only in the body of a server-function response (`/api/…`, `Cache-Control:
//! no-store`); no page renders it on the server and no function takes it in a URL.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::FormSecret;
use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::Caller,
    leptos::server_fn::ServerFn,
    tracing::field::Empty,
    walden_core::{settings, users::Role},
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<GetCredentials as ServerFn>::PATH, Some(Role::Viewer)),
    (<CaptureCredentials as ServerFn>::PATH, Some(Role::Operator)),
    (<ProveCredentials as ServerFn>::PATH, Some(Role::Operator)),
    (<EnterCredentials as ServerFn>::PATH, Some(Role::Operator)),
    (<RevealCredential as ServerFn>::PATH, Some(Role::Operator)),
    (<RequestReveal as ServerFn>::PATH, Some(Role::Operator)),
    (<ListRevealRequests as ServerFn>::PATH, Some(Role::Operator)),
    (<ApproveReveal as ServerFn>::PATH, Some(Role::Operator)),
    (<RevealApproved as ServerFn>::PATH, Some(Role::Operator)),
    (
        <GetRequireRevealApproval as ServerFn>::PATH,
        Some(Role::Viewer),
    ),
    (
        <SetRequireRevealApproval as ServerFn>::PATH,
        Some(Role::Admin),
    ),
];

/// What the credentials view shows of a cluster: metadata, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Newest first.
    pub versions: Vec<VersionRow>,
    /// The latest proof per Postgres role.
    pub proofs: Vec<ProofRow>,
}

/// One captured version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRow {
    pub version: i64,
    pub captured_at: String,
    pub captured_by: String,
    /// `exec`, `secrets_api`, `manual` or `manual_machines_down`.
    pub how: String,
    pub fields: Vec<FieldRow>,
    /// Fields the previous version had and this one does not.
    pub removed: Vec<String>,
}

/// One field of a version: its fingerprint, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldRow {
    pub field: String,
    /// The first 16 hex characters of the keyed fingerprint.
    pub fingerprint: String,
    pub changed: bool,
}

/// The latest login proof of one Postgres role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofRow {
    pub role: String,
    pub version: i64,
    pub proven_at: String,
    pub ok: bool,
    pub message: Option<String>,
}

/// A revealed value. `Debug` never shows it; the page masks it, and forgets it after a minute.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revealed {
    pub field: String,
    pub version: i64,
    pub value: String,
}

impl std::fmt::Debug for Revealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revealed")
            .field("field", &self.field)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A request for a two-person reveal (metadata and reason only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRow {
    pub id: i64,
    pub org: String,
    pub app: String,
    pub version: i64,
    pub field: String,
    pub requester: String,
    /// Whether the caller asked for it (they cannot approve it, only use its approval).
    pub mine: bool,
    pub reason: String,
    pub requested_at: String,
    pub approver: Option<String>,
    /// Until when an approved request may be used.
    pub expires_at: Option<String>,
}

/// The versions and latest proofs of a cluster's credentials. Viewers and up.
#[server(endpoint = "get_credentials")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn get_credentials(org: String, app: String) -> Result<Credentials, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let escrow = cx.escrow();
    let versions = escrow.versions(&cx.actor, &cx.meta, &org, &app).await?;
    let proofs = escrow
        .latest_proofs(&cx.actor, &cx.meta, &org, &app)
        .await?;
    Ok(Credentials {
        versions: versions.into_iter().rev().map(VersionRow::from).collect(),
        proofs: proofs
            .into_iter()
            .map(|p| ProofRow {
                role: p.role,
                version: p.version,
                proven_at: p.proven_at,
                ok: p.ok,
                message: p.message,
            })
            .collect(),
    })
}

#[cfg(feature = "ssr")]
impl From<walden_core::escrow::VersionInfo> for VersionRow {
    fn from(v: walden_core::escrow::VersionInfo) -> Self {
        VersionRow {
            version: v.version,
            captured_at: v.captured_at,
            captured_by: v.captured_by,
            how: v.how.as_str().to_owned(),
            fields: v
                .fields
                .into_iter()
                .map(|f| FieldRow {
                    fingerprint: f.fingerprint.chars().take(16).collect(),
                    field: f.field,
                    changed: f.changed,
                })
                .collect(),
            removed: v.removed,
        }
    }
}

/// What a capture did, for the page: never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSummary {
    /// The cluster's current version (new, or unchanged).
    pub version: i64,
    /// `true` when the capture made a new version.
    pub created: bool,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// `exec` (read on the leader), `secrets_api` (every machine was stopped) or `manual_machines_down`
    /// (typed in).
    pub how: String,
}

/// Read the cluster's passwords and storage settings from its leader and record a new version when anything
/// changed (`walden_core::escrow::Escrow::capture`). Operators and up; audited.
#[server(endpoint = "capture_credentials")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn capture_credentials(org: String, app: String) -> Result<CaptureSummary, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let report = cx.escrow().capture(&cx.actor, &cx.meta, &org, &app).await?;
    Ok(CaptureSummary {
        version: report.outcome.version,
        created: report.outcome.created,
        changed: report.outcome.changed,
        removed: report.outcome.removed,
        how: report.how.as_str().to_owned(),
    })
}

/// Record the three Stolon passwords typed in by a person, for a tracked cluster whose Machines are down so
/// nothing can be read from them (`walden_core::escrow::Escrow::enter_manually`): the version is marked
/// "typed in (machines down)", and a new one is made only when something changed. Operators and up; audited.
/// The values arrive in the request body only and are never logged or sent back.
#[server(endpoint = "enter_credentials")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn enter_credentials(
    org: String,
    app: String,
    su_password: FormSecret,
    repl_password: FormSecret,
    operator_password: FormSecret,
) -> Result<CaptureSummary, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let values = std::collections::BTreeMap::from([
        ("SU_PASSWORD".to_owned(), su_password.into_secret()),
        ("REPL_PASSWORD".to_owned(), repl_password.into_secret()),
        (
            "OPERATOR_PASSWORD".to_owned(),
            operator_password.into_secret(),
        ),
    ]);
    let outcome = cx
        .escrow()
        .enter_manually(&cx.actor, &cx.meta, &org, &app, &values)
        .await?;
    Ok(CaptureSummary {
        version: outcome.version,
        created: outcome.created,
        changed: outcome.changed,
        removed: outcome.removed,
        how: walden_core::escrow::CaptureHow::ManualMachinesDown
            .as_str()
            .to_owned(),
    })
}

/// One role's result of a login proof made just now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofResult {
    pub role: String,
    /// `opens`, `fails` (the escrowed password no longer opens the role) or `unchecked`.
    pub status: String,
    /// Why a role could not be checked.
    pub why: Option<String>,
    /// The proof ran on the leader (else on another started machine, when no leader reports).
    pub on_leader: bool,
}

/// Prove that the current version's passwords still open the cluster's roles: a login on the leader with the
/// password on exec stdin only (`walden_core::escrow::Escrow::prove`). Operators and up; audited.
#[server(endpoint = "prove_credentials")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn prove_credentials(org: String, app: String) -> Result<Vec<ProofResult>, AppError> {
    use walden_core::escrow::RoleStatus;
    let cx = Caller::require(Role::Operator).await?;
    let report = cx.escrow().prove(&cx.actor, &cx.meta, &org, &app).await?;
    Ok(report
        .roles
        .into_iter()
        .map(|r| {
            let (status, why) = match r.status {
                RoleStatus::Opens => ("opens", None),
                RoleStatus::Fails => ("fails", None),
                RoleStatus::CouldNotCheck(why) => ("unchecked", Some(why)),
            };
            ProofResult {
                role: r.role,
                status: status.to_owned(),
                why,
                on_leader: r.on_leader,
            }
        })
        .collect())
}

/// Reveal one field of one version for `reason` (required; written to the audit log before the value
/// leaves the server). Refused while reveals need approval. Operators and up.
#[server(endpoint = "reveal_credential")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app, version, field = %field), err(level = "info"))
)]
pub async fn reveal_credential(
    org: String,
    app: String,
    version: i64,
    field: String,
    reason: String,
) -> Result<Revealed, AppError> {
    use secrecy::ExposeSecret;
    let cx = Caller::require(Role::Operator).await?;
    let value = cx
        .escrow()
        .reveal(&cx.actor, &cx.meta, &org, &app, version, &field, &reason)
        .await?;
    Ok(Revealed {
        field,
        version,
        value: value.expose_secret().to_owned(),
    })
}

/// Ask to reveal one field of one version, for `reason`; another operator or admin must approve. Operators
/// and up; audited.
#[server(endpoint = "request_reveal")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app, version, field = %field), err(level = "info"))
)]
pub async fn request_reveal(
    org: String,
    app: String,
    version: i64,
    field: String,
    reason: String,
) -> Result<RequestRow, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let request = cx
        .escrow()
        .request_reveal(&cx.actor, &cx.meta, &org, &app, version, &field, &reason)
        .await?;
    Ok(RequestRow::of(request, &cx))
}

#[cfg(feature = "ssr")]
impl RequestRow {
    fn of(r: walden_core::escrow::RevealRequest, cx: &Caller) -> Self {
        let mine = r.requester_id == Some(cx.user.id);
        RequestRow {
            id: r.id,
            org: r.org,
            app: r.app,
            version: r.version,
            field: r.field,
            requester: r.requester,
            mine,
            reason: r.reason,
            requested_at: r.requested_at,
            approver: r.approver,
            expires_at: r.expires_at,
        }
    }
}

/// The open reveal requests (not used, not expired), oldest first. Operators and up.
#[server(endpoint = "list_reveal_requests")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_reveal_requests() -> Result<Vec<RequestRow>, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let requests = cx.escrow().open_requests(&cx.actor, &cx.meta).await?;
    Ok(requests
        .into_iter()
        .map(|r| RequestRow::of(r, &cx))
        .collect())
}

/// Approve someone else's reveal request: they may reveal once within 15 minutes. Operators and up; one's own
/// request is refused. Audited.
#[server(endpoint = "approve_reveal")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, reveal_request = id), err(level = "info"))
)]
pub async fn approve_reveal(id: i64) -> Result<RequestRow, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let request = cx.escrow().approve(&cx.actor, &cx.meta, id).await?;
    Ok(RequestRow::of(request, &cx))
}

/// Reveal the field of one's own approved request, once. Operators and up; audited with the request's reason.
#[server(endpoint = "reveal_approved")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, reveal_request = id), err(level = "info"))
)]
pub async fn reveal_approved(id: i64) -> Result<Revealed, AppError> {
    use secrecy::ExposeSecret;
    let cx = Caller::require(Role::Operator).await?;
    let escrow = cx.escrow();
    let value = escrow.reveal_approved(&cx.actor, &cx.meta, id).await?;
    let request = escrow.request(id).await?;
    Ok(Revealed {
        field: request.field,
        version: request.version,
        value: value.expose_secret().to_owned(),
    })
}

/// Whether a reveal needs a second person's approval. Viewers and up.
#[server(endpoint = "get_require_reveal_approval")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn get_require_reveal_approval() -> Result<bool, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    Ok(cx.settings().require_reveal_approval().await?)
}

/// Require (or stop requiring) a second person's approval for reveals. Admins only; audited.
#[server(endpoint = "set_require_reveal_approval")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, enabled), err(level = "info"))
)]
pub async fn set_require_reveal_approval(enabled: bool) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let key = settings::REQUIRE_REVEAL_APPROVAL;
    Ok(cx
        .settings()
        .set_bool(&cx.actor, &cx.meta, key, enabled)
        .await?)
}
