//! Signing in and out, first-run setup, invitations, one's own password.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::{session, Caller, Visitor},
    leptos::server_fn::ServerFn,
    secrecy::SecretString,
    tracing::field::Empty,
    walden_core::users::Role,
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<GetCurrentUser as ServerFn>::PATH, None),
    (<GetSetupNeeded as ServerFn>::PATH, None),
    (<Login as ServerFn>::PATH, None),
    (<Logout as ServerFn>::PATH, None),
    // Any signed-in user, even an admin held at TOTP enrolment.
    (<LogoutEverywhere as ServerFn>::PATH, Some(Role::Viewer)),
    (<SetupAdmin as ServerFn>::PATH, None),
    (<AcceptInvite as ServerFn>::PATH, None),
    (<ChangePassword as ServerFn>::PATH, Some(Role::Viewer)),
];

/// The signed-in user as the UI sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: i64,
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// The user is an admin who must enrol a TOTP authenticator before anything else.
    pub must_enrol_totp: bool,
}

#[cfg(feature = "ssr")]
impl SessionUser {
    pub fn from_user(u: &walden_core::users::User, must_enrol_totp: bool) -> Self {
        SessionUser {
            id: u.id,
            name: u.name.clone(),
            role: u.role.as_str().to_owned(),
            must_enrol_totp,
        }
    }
}

/// Who is signed in (`None` when nobody is).
#[server(endpoint = "get_current_user")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn get_current_user() -> Result<Option<SessionUser>, AppError> {
    let visitor = Visitor::new().await?;
    match visitor.user().await? {
        Some(user) => Ok(Some(session_user(&visitor, &user).await?)),
        None => Ok(None),
    }
}

/// The user as the UI sees them, told whether they must enrol TOTP first (the rule lives in `walden_core`).
#[cfg(feature = "ssr")]
async fn session_user(
    visitor: &Visitor,
    user: &walden_core::users::User,
) -> Result<SessionUser, AppError> {
    let must_enrol_totp = visitor.must_enrol_totp(user).await?;
    Ok(SessionUser::from_user(user, must_enrol_totp))
}

/// `true` while no user exists: the setup page is open.
#[server(endpoint = "get_setup_needed")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn get_setup_needed() -> Result<bool, AppError> {
    let visitor = Visitor::new().await?;
    Ok(visitor.accounts().needs_setup().await?)
}

/// Sign in. Throttled by `walden_core` (per account and client, per client, account-wide with back-off);
/// every failure gives the same text. `code` is the TOTP code (empty when the user has none).
#[server(endpoint = "login")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn login(name: String, password: String, code: String) -> Result<SessionUser, AppError> {
    let visitor = Visitor::new().await?;
    let password = SecretString::from(password);
    let code = Some(code.trim()).filter(|c| !c.is_empty());
    let accounts = visitor.accounts();
    let ok = accounts
        .authenticate(&visitor.meta, &name, &password, code)
        .await?;
    session::start(&ok.user).await?;
    Ok(SessionUser::from_user(&ok.user, ok.must_enrol_totp))
}

/// Sign out of this session. The session ends first, then the sign-out is recorded: revocation never waits on
/// the audit log (a failed row is logged, and the session is gone all the same).
#[server(endpoint = "logout")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn logout() -> Result<(), AppError> {
    let visitor = Visitor::new().await?;
    let user = visitor.user().await?;
    session::end().await?;
    if let Some(user) = user {
        let accounts = visitor.accounts();
        if let Err(e) = accounts.record_logout(&user.actor(), &visitor.meta).await {
            let request_id = crate::server::request_id();
            tracing::error!(%request_id, error = %e, "the sign-out could not be recorded");
        }
    }
    Ok(())
}

/// Sign out of every session of the signed-in user, on every device.
#[server(endpoint = "logout_everywhere")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn logout_everywhere() -> Result<(), AppError> {
    let cx = Caller::signed_in().await?;
    let accounts = cx.accounts();
    accounts
        .logout_everywhere(&cx.actor, &cx.meta, cx.user.id)
        .await?;
    session::end().await
}

/// Create the first admin. Works only while no user exists, and only with the setup token the server printed
/// at start-up (or was given in `WALDEN_SETUP_TOKEN`); signs the new admin in.
#[server(endpoint = "setup_admin")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn setup_admin(
    token: String,
    name: String,
    password: String,
) -> Result<SessionUser, AppError> {
    let visitor = Visitor::new().await?;
    let (token, password) = (SecretString::from(token), SecretString::from(password));
    let accounts = visitor.accounts();
    let gate = visitor.setup_token();
    let user = accounts
        .setup_first_admin(&visitor.meta, gate, &token, &name, &password)
        .await?;
    session::start(&user).await?;
    session_user(&visitor, &user).await
}

/// Accept an invitation: create the account with the invite's role and sign it in.
#[server(endpoint = "accept_invite")]
#[cfg_attr(feature = "ssr", tracing::instrument(skip_all, err(level = "info")))]
pub async fn accept_invite(
    token: String,
    name: String,
    password: String,
) -> Result<SessionUser, AppError> {
    let visitor = Visitor::new().await?;
    let (token, password) = (SecretString::from(token), SecretString::from(password));
    let accounts = visitor.accounts();
    let user = accounts
        .accept_invite(&visitor.meta, &token, &name, &password)
        .await?;
    session::start(&user).await?;
    session_user(&visitor, &user).await
}

/// Change one's own password. Other sessions end; this one continues with a new id.
#[server(endpoint = "change_password")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let current = SecretString::from(current_password);
    let new = SecretString::from(new_password);
    let accounts = cx.accounts();
    let updated = accounts
        .change_password(&cx.actor, &cx.meta, &current, &new)
        .await?;
    session::start(&updated).await
}
