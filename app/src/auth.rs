//! Server-only: who is calling, and the one role check every server function uses.
//!
//! A signed-in session holds `{user_id, epoch, login_at}` under [`SESSION_KEY`]. It is good while the user
//! exists, is enabled, still has that session epoch (password change, disable and "log out everywhere" bump
//! it), and the absolute lifetime has not run out. The idle lifetime is the session cookie's and the store's
//! (tower-sessions `Expiry::OnInactivity`, set in the server's security layer).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use walden_core::audit::RequestMeta;
use walden_core::settings::SettingsError;
use walden_core::users::{LoginError, Role, User, UserError};

use crate::error::AppError;
use crate::ssr::{app_state, internal, request_id};

/// The session entry of a signed-in user.
pub const SESSION_KEY: &str = "walden.auth";
/// When the session was last used (Unix seconds); written on every authenticated call.
const SEEN_KEY: &str = "walden.seen";

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct SessionAuth {
    pub user_id: i64,
    pub epoch: i64,
    /// Unix seconds.
    pub login_at: i64,
}

/// How long sessions live.
#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    /// Signed out after this long without a request (enforced by the session layer).
    pub idle: time::Duration,
    /// Signed out this long after signing in, however active.
    pub absolute: time::Duration,
}

/// Login throttling: per account name and per client IP (governor's GCRA, in memory).
pub struct LoginLimits {
    per_account: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl LoginLimits {
    /// `per_account` and `per_ip` attempts per minute (bursts of the same size).
    pub fn new(per_account: u32, per_ip: u32) -> Arc<Self> {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Arc::new(LoginLimits {
            per_account: RateLimiter::keyed(q(per_account)),
            per_ip: RateLimiter::keyed(q(per_ip)),
        })
    }

    /// Spend one attempt for this account and this IP; `false` when either is over its quota.
    pub fn allow(&self, name: &str, ip: Option<IpAddr>) -> bool {
        let key: String = name.trim().to_ascii_lowercase().chars().take(64).collect();
        let ip_ok = ip.is_none_or(|ip| self.per_ip.check_key(&ip).is_ok());
        let account_ok = self.per_account.check_key(&key).is_ok();
        ip_ok && account_ok
    }
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimits")
    }
}

/// The caller's address: the configured proxy header when there is one (and it parses), else the TCP peer.
pub async fn client_ip() -> Option<IpAddr> {
    let header = app_state().ok().and_then(|s| s.client_ip_header);
    if let Some(header) = header {
        let from_header =
            leptos::prelude::use_context::<axum::http::request::Parts>().and_then(|p| {
                p.headers
                    .get(&header)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<IpAddr>().ok())
            });
        if from_header.is_some() {
            return from_header;
        }
    }
    leptos_axum::extract::<axum::extract::ConnectInfo<SocketAddr>>()
        .await
        .ok()
        .map(|c| c.0.ip())
}

/// Request id and client IP for audit rows.
pub async fn request_meta() -> RequestMeta {
    RequestMeta {
        request_id: Some(request_id()).filter(|r| r != "-"),
        client_ip: client_ip().await.map(|ip| ip.to_string()),
    }
}

async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(internal)
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The signed-in user, or `None`. A stale session (expired, signed out everywhere, user disabled) is
/// flushed.
pub async fn current_user() -> Result<Option<User>, AppError> {
    let state = app_state()?;
    let session = session().await?;
    let Some(auth) = session
        .get::<SessionAuth>(SESSION_KEY)
        .await
        .map_err(internal)?
    else {
        return Ok(None);
    };
    let fresh = now_unix() - auth.login_at < state.sessions.absolute.whole_seconds();
    let user = if fresh {
        state
            .walden
            .accounts()
            .session_user(auth.user_id, auth.epoch)
            .await
            .map_err(user_error)?
    } else {
        None
    };
    match &user {
        // Touch the session so its idle expiry restarts from this request.
        Some(_) => session
            .insert(SEEN_KEY, now_unix())
            .await
            .map_err(internal)?,
        None => session.flush().await.map_err(internal)?,
    }
    Ok(user)
}

/// The one authorisation check: the caller must be signed in (else `Unauthorized`) and hold at least
/// `role` (else `Forbidden`).
///
/// An admin who must use TOTP (the `require_totp_for_admins` setting) and has not enrolled yet is refused
/// everything but enrolment ([`require_signed_in`]) until they do.
pub async fn require_role(role: Role) -> Result<User, AppError> {
    match current_user().await? {
        None => Err(respond(AppError::Unauthorized)),
        Some(u) if must_enrol_totp(&u).await? => Err(respond(AppError::Validation {
            field: "totp".into(),
            message: "Admins must set up two-factor sign-in first (on the Account page).".into(),
        })),
        Some(u) if u.role >= role => Ok(u),
        Some(_) => Err(respond(AppError::Forbidden)),
    }
}

/// Signed in, whatever the role and TOTP state (for enrolling TOTP and signing out).
pub async fn require_signed_in() -> Result<User, AppError> {
    current_user()
        .await?
        .ok_or_else(|| respond(AppError::Unauthorized))
}

/// An admin without TOTP while admins must use it (the rule is `walden_core`'s
/// [`Accounts::must_enrol_totp`](walden_core::users::Accounts::must_enrol_totp)).
pub async fn must_enrol_totp(user: &User) -> Result<bool, AppError> {
    app_state()?
        .walden
        .accounts()
        .must_enrol_totp(user)
        .await
        .map_err(user_error)
}

/// Give the HTTP response the error's status (401, 403, 422, 429, ...), then return the error.
/// Only for server-function calls: a page that renders an error panel for one of its resources is still
/// a page (200).
pub fn respond(e: AppError) -> AppError {
    let is_server_fn = leptos::prelude::use_context::<axum::http::request::Parts>()
        .is_some_and(|p| p.uri.path().starts_with("/api/"));
    if !is_server_fn {
        return e;
    }
    if let Some(r) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
        r.set_status(
            axum::http::StatusCode::from_u16(e.status())
                .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
        );
    }
    e
}

/// Start a signed-in session for `user`: a new session id (no fixation), then the auth entry.
pub async fn start_session(user: &User) -> Result<(), AppError> {
    let session = session().await?;
    session.cycle_id().await.map_err(internal)?;
    session
        .insert(
            SESSION_KEY,
            SessionAuth {
                user_id: user.id,
                epoch: user.session_epoch,
                login_at: now_unix(),
            },
        )
        .await
        .map_err(internal)
}

/// End this session (the record is deleted from the store and the cookie cleared).
pub async fn end_session() -> Result<(), AppError> {
    session().await?.flush().await.map_err(internal)
}

/// Map an account error to what the user may see.
pub fn user_error(e: UserError) -> AppError {
    respond(match e {
        UserError::Invalid(f) => AppError::Validation {
            field: f.field.to_owned(),
            message: f.message,
        },
        UserError::NameTaken => AppError::Conflict(e.to_string()),
        UserError::LastAdmin | UserError::SetupClosed => AppError::Conflict(e.to_string()),
        UserError::NotFound => AppError::NotFound("user".into()),
        UserError::Forbidden => AppError::Forbidden,
        UserError::InviteInvalid | UserError::InviteExpired => AppError::Validation {
            field: "token".into(),
            message: e.to_string(),
        },
        UserError::WrongPassword => AppError::Validation {
            field: "current_password".into(),
            message: e.to_string(),
        },
        UserError::TotpInvalid | UserError::NoPendingTotp => AppError::Validation {
            field: "code".into(),
            message: e.to_string(),
        },
        other => internal(other),
    })
}

/// Map a settings error to what the user may see.
pub fn settings_error(e: SettingsError) -> AppError {
    respond(match e {
        SettingsError::Invalid(f) => AppError::Validation {
            field: f.field.to_owned(),
            message: f.message,
        },
        SettingsError::Forbidden => AppError::Forbidden,
        other => internal(other),
    })
}

/// Map a field error (a bad role name, say).
pub fn user_error_from_field(f: walden_core::users::FieldError) -> AppError {
    respond(AppError::Validation {
        field: f.field.to_owned(),
        message: f.message,
    })
}

/// Map a login error: one generic text for every credential failure.
pub fn login_error(e: LoginError) -> AppError {
    respond(match e {
        LoginError::InvalidCredentials => AppError::Validation {
            field: "login".into(),
            message: e.to_string(),
        },
        LoginError::TotpRequired | LoginError::TotpInvalid => AppError::Validation {
            field: "code".into(),
            message: e.to_string(),
        },
        LoginError::Internal(e) => internal(e),
    })
}

/// An audit/internal failure on the way: opaque to the user.
pub fn audit_error(e: walden_core::audit::AuditError) -> AppError {
    internal(e)
}
