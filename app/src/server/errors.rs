//! Server-only: from domain errors to what the user may see.
//!
//! Invariants:
//! - Every domain error converts with `?` (`From` impls below); no server function maps errors by hand.
//! - A cause the user must not see (database, audit log, session store) is logged here with the request id
//!   and becomes [`AppError::Internal`], whose text names that id.
//! - The HTTP status (401, 403, 422, 502, ...) is set in one place, [`set_status`], when server_fn encodes
//!   the error for the response (`AppError`'s `FromServerFnError::ser`), so no error path can leave a 500.

use walden_core::audit::AuditError;
use walden_core::clusters::DiscoverError;
use walden_core::escrow::EscrowError;
use walden_core::orgs::OrgError;
use walden_core::settings::SettingsError;
use walden_core::users::{FieldError, LoginError, UserError};

use super::request_id;
use crate::error::AppError;

/// Log an internal failure with the request id and turn it into the opaque error the user sees.
pub fn internal(cause: impl std::fmt::Display) -> AppError {
    let request_id = request_id();
    tracing::error!(%request_id, error = %cause, "server function failed");
    AppError::Internal { request_id }
}

/// Log why a request's arguments could not be read and give the caller a generic 400 with the request id.
pub(crate) fn bad_request(cause: &impl std::fmt::Display) -> AppError {
    let request_id = request_id();
    tracing::info!(%request_id, error = %cause, "server function arguments refused");
    AppError::BadRequest { request_id }
}

/// Give the HTTP response the error's status. Only for server-function calls: a page that renders an error
/// panel for one of its resources is still a page (200).
pub(crate) fn set_status(error: &AppError) {
    use leptos::prelude::use_context;
    let is_server_fn = use_context::<axum::http::request::Parts>()
        .is_some_and(|parts| parts.uri.path().starts_with("/api/"));
    if !is_server_fn {
        return;
    }
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        let status = axum::http::StatusCode::from_u16(error.status())
            .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        response.set_status(status);
        // When to come back (RFC 9110 §10.2.3): the shortest credential back-off, or a few seconds for a
        // full hashing queue.
        let retry_after = match error {
            AppError::RateLimited => Some("30"),
            AppError::Busy => Some("5"),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.insert_header(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(seconds),
            );
        }
    }
}

/// The Fly API could not list the clusters of `org`.
#[derive(Debug, thiserror::Error)]
#[error("Cannot list the clusters of {org}: {source}")]
pub struct ClustersUnavailable {
    pub org: String,
    #[source]
    pub source: DiscoverError,
}

impl From<ClustersUnavailable> for AppError {
    fn from(e: ClustersUnavailable) -> Self {
        tracing::warn!(request_id = %request_id(), error = %e.source, "cluster discovery failed");
        AppError::Upstream(e.to_string())
    }
}

impl From<FieldError> for AppError {
    /// A field the user typed is not valid (a bad role name, say).
    fn from(f: FieldError) -> Self {
        AppError::Validation {
            field: f.field.to_owned(),
            message: f.message,
        }
    }
}

impl From<UserError> for AppError {
    fn from(e: UserError) -> Self {
        let field = |field: &str, e: UserError| AppError::Validation {
            field: field.into(),
            message: e.to_string(),
        };
        match e {
            UserError::Invalid(f) => f.into(),
            UserError::NameTaken | UserError::LastAdmin | UserError::SetupClosed => {
                AppError::Conflict(e.to_string())
            }
            UserError::NotFound => AppError::NotFound("user".into()),
            UserError::Forbidden => AppError::Forbidden,
            UserError::InviteInvalid | UserError::InviteExpired | UserError::SetupTokenInvalid => {
                field("token", e)
            }
            UserError::WrongPassword | UserError::WrongPasswordOrCode => {
                field("current_password", e)
            }
            UserError::Throttled => AppError::RateLimited,
            UserError::Busy => AppError::Busy,
            UserError::TotpInvalid | UserError::NoPendingTotp => field("code", e),
            other => internal(other),
        }
    }
}

impl From<SettingsError> for AppError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Invalid(f) => f.into(),
            SettingsError::Forbidden => AppError::Forbidden,
            other => internal(other),
        }
    }
}

impl From<walden_core::alerts::AlertsError> for AppError {
    /// Reading alerts fails only when the database does: opaque.
    fn from(e: walden_core::alerts::AlertsError) -> Self {
        internal(e)
    }
}

impl From<LoginError> for AppError {
    /// One generic text for every credential failure.
    fn from(e: LoginError) -> Self {
        let field = |field: &str, e: LoginError| AppError::Validation {
            field: field.into(),
            message: e.to_string(),
        };
        match e {
            LoginError::InvalidCredentials => field("login", e),
            LoginError::TotpRequired | LoginError::TotpInvalid => field("code", e),
            LoginError::Throttled => AppError::RateLimited,
            LoginError::Internal(UserError::Busy) => AppError::Busy,
            LoginError::Internal(e) => internal(e),
        }
    }
}

impl From<OrgError> for AppError {
    /// A refusal names what to fix (the token, the organisation, the app); a Fly failure is 502; the store's
    /// own failures are opaque (request id).
    fn from(e: OrgError) -> Self {
        let field = |field: &str, e: OrgError| AppError::Validation {
            field: field.into(),
            message: e.to_string(),
        };
        match e {
            OrgError::Forbidden => AppError::Forbidden,
            OrgError::Invalid(f) => f.into(),
            OrgError::TokenRejected | OrgError::WrongScope(_) => field("token", e),
            OrgError::UnknownOrg { .. } => field("slug", e),
            OrgError::AppNotFound { .. } | OrgError::NotPostgres(_) => field("app", e),
            OrgError::NotFound(slug) => AppError::NotFound(format!("organisation {slug}")),
            OrgError::NoKeyring
            | OrgError::AlreadyAdded(_)
            | OrgError::FromEnvironment(_)
            | OrgError::AlreadyTracked(_)
            | OrgError::NotTracked { .. }
            | OrgError::Unopenable(_) => AppError::Conflict(capitalised(&e)),
            OrgError::Fly(_) => {
                tracing::warn!(request_id = %request_id(), error = %e, "Fly organisation call failed");
                AppError::Upstream(capitalised(&e))
            }
            // Seal, audit log, database: opaque.
            other => internal(other),
        }
    }
}

impl From<EscrowError> for AppError {
    /// Refusals say what to do next (give a reason, ask for approval, request again); a key or store failure
    /// is opaque (request id). No variant carries a value.
    fn from(e: EscrowError) -> Self {
        match e {
            EscrowError::Invalid(f) => f.into(),
            EscrowError::Forbidden => AppError::Forbidden,
            EscrowError::NotFound { what } => AppError::NotFound(what),
            EscrowError::NoSuchRequest => AppError::NotFound("reveal request".into()),
            EscrowError::NoKey
            | EscrowError::ApprovalRequired
            | EscrowError::SelfApproval
            | EscrowError::NotYourRequest
            | EscrowError::NotApproved
            | EscrowError::AlreadyApproved
            | EscrowError::RequestUsed
            | EscrowError::RequestExpired
            | EscrowError::UnknownKey { .. }
            | EscrowError::Unopenable { .. }
            | EscrowError::NotTracked { .. }
            | EscrowError::NoFly => AppError::Conflict(capitalised(&e)),
            EscrowError::Org(org) => (*org).into(),
            // The cluster could not be read or proven on Fly (no leader, every machine stopped, exec failed,
            // no access): the texts say what to do and never carry a value.
            EscrowError::Fly(_) => {
                tracing::warn!(request_id = %request_id(), error = %e, "escrow call to Fly failed");
                AppError::Upstream(capitalised(&e))
            }
            // Seal, audit log, database, and whatever a later capture step adds: opaque.
            other => internal(other),
        }
    }
}

impl From<walden_core::monitor::MonitorError> for AppError {
    /// Refusals say what to do (track the cluster); the store's failures are opaque (request id). A storage
    /// failure is not an error here: it is part of the cluster's health.
    fn from(e: walden_core::monitor::MonitorError) -> Self {
        use walden_core::monitor::MonitorError;
        match e {
            MonitorError::Forbidden => AppError::Forbidden,
            MonitorError::NotTracked { .. } => AppError::Conflict(capitalised(&e)),
            MonitorError::Orgs(org) => org.into(),
            other => internal(other),
        }
    }
}

impl From<walden_core::restore::RestoreError> for AppError {
    /// A refusal says every reason (the wizard shows them one by one from the plan answer instead); the
    /// store's failures are opaque (request id).
    fn from(e: walden_core::restore::RestoreError) -> Self {
        use walden_core::restore::RestoreError;
        match e {
            RestoreError::Forbidden => AppError::Forbidden,
            RestoreError::Refused(_) => AppError::Conflict(e.to_string()),
            other => internal(other),
        }
    }
}

impl From<walden_core::restore::engine::EngineError> for AppError {
    /// What the person can act on (a wrong confirmation, an unknown plan or run, a run already live) says so;
    /// the rest is opaque (request id).
    fn from(e: walden_core::restore::engine::EngineError) -> Self {
        use walden_core::restore::engine::EngineError;
        match e {
            EngineError::Forbidden => AppError::Forbidden,
            EngineError::NoPlan(_) | EngineError::NoRun(_) => AppError::NotFound(capitalised(&e)),
            EngineError::ConfirmMismatch { .. } => AppError::Validation {
                field: "confirm".into(),
                message: capitalised(&e),
            },
            // The run's or plan's state forbids the action now (approval, retry, cancel, a taken name): the
            // person reads why and what to do instead.
            EngineError::LiveRun(_)
            | EngineError::LeaseLost(_)
            | EngineError::NotApproved(_)
            | EngineError::SelfApproval
            | EngineError::NotFailed { .. }
            | EngineError::Finished(_)
            | EngineError::NameTaken(_) => AppError::Conflict(capitalised(&e)),
            EngineError::Plan(plan) => plan.into(),
            other => internal(other),
        }
    }
}

impl From<walden_core::restore::cutover::CutoverError> for AppError {
    /// What the person can act on (a wrong confirmation, a refusal with its reasons, a run not done, a cutover
    /// elsewhere) says so; a Fly failure is 502; the store's and the key's failures are opaque (request id).
    fn from(e: walden_core::restore::cutover::CutoverError) -> Self {
        use walden_core::restore::cutover::CutoverError;
        match e {
            CutoverError::Forbidden => AppError::Forbidden,
            CutoverError::NoRun(_) => AppError::NotFound(capitalised(&e)),
            CutoverError::ConfirmMismatch { .. } => AppError::Validation {
                field: "confirm".into(),
                message: capitalised(&e),
            },
            CutoverError::NotDone { .. }
            | CutoverError::Refused(_)
            | CutoverError::NoCutover(_)
            | CutoverError::RolledBack(_)
            | CutoverError::Busy(_)
            | CutoverError::LeaseLost(_)
            | CutoverError::NoKey => AppError::Conflict(capitalised(&e)),
            CutoverError::Fly { .. } => {
                tracing::warn!(request_id = %request_id(), error = %e, "cutover call to Fly failed");
                AppError::Upstream(capitalised(&e))
            }
            CutoverError::Plan(plan) => plan.into(),
            other => internal(other),
        }
    }
}

/// A domain error's text (written to follow a colon, in lower case) as a sentence of its own.
fn capitalised(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// Opaque to the user: the details are in the log under the request id.
macro_rules! internal_from {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for AppError {
            fn from(e: $error) -> Self {
                internal(e)
            }
        }
    )*};
}

internal_from!(
    AuditError,
    sqlx::Error,
    tower_sessions::session::Error,
    time::error::Format,
    std::string::FromUtf8Error,
);

#[cfg(test)]
mod tests {
    use walden_core::restore::engine::{EngineError, RunState};

    use crate::error::AppError;

    /// The engine's refusals of an action in the run's or plan's present state are conflicts (409) whose text
    /// says what to do, never the opaque internal error.
    #[test]
    fn engine_state_refusals_are_conflicts_with_their_reason() {
        for e in [
            EngineError::NotApproved("h".into()),
            EngineError::SelfApproval,
            EngineError::NotFailed {
                run: "r".into(),
                state: RunState::Running,
            },
            EngineError::Finished("r".into()),
            EngineError::NameTaken("r".into()),
        ] {
            let text = e.to_string();
            match AppError::from(e) {
                AppError::Conflict(message) => {
                    assert!(message.to_lowercase() == text.to_lowercase(), "{message}")
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}
