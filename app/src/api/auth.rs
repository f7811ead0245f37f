//! Signing in and out, first-run setup, invitations, one's own password.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

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

/// The user as the UI sees them, told whether they must enrol TOTP first.
#[cfg(feature = "ssr")]
async fn session_user(u: &walden_core::users::User) -> Result<SessionUser, AppError> {
    let must_enrol_totp = crate::auth::must_enrol_totp(u).await?;
    Ok(SessionUser::from_user(u, must_enrol_totp))
}

/// Who is signed in (`None` when nobody is).
#[server(endpoint = "get_current_user")]
pub async fn get_current_user() -> Result<Option<SessionUser>, AppError> {
    match crate::auth::current_user().await? {
        Some(u) => Ok(Some(session_user(&u).await?)),
        None => Ok(None),
    }
}

/// `true` while no user exists: the setup page is open.
#[server(endpoint = "get_setup_needed")]
pub async fn get_setup_needed() -> Result<bool, AppError> {
    let state = crate::ssr::app_state()?;
    state
        .walden
        .accounts()
        .needs_setup()
        .await
        .map_err(crate::auth::user_error)
}

/// Sign in. Throttled per account and per IP; every failure gives the same text. `code` is the TOTP code
/// (empty when the user has none).
#[server(endpoint = "login")]
pub async fn login(name: String, password: String, code: String) -> Result<SessionUser, AppError> {
    use crate::auth::{client_ip, login_error, request_meta, start_session};
    use secrecy::SecretString;

    let state = crate::ssr::app_state()?;
    let meta = request_meta().await;
    let password = SecretString::from(password);
    if !state.login_limits.allow(&name, client_ip().await) {
        state
            .walden
            .accounts()
            .record_login_throttled(&meta, &name)
            .await
            .map_err(crate::auth::user_error)?;
        return Err(crate::auth::respond(AppError::RateLimited));
    }
    let code = Some(code.trim()).filter(|c| !c.is_empty());
    let ok = state
        .walden
        .accounts()
        .authenticate(&meta, &name, &password, code)
        .await
        .map_err(login_error)?;
    start_session(&ok.user).await?;
    Ok(SessionUser::from_user(&ok.user, ok.must_enrol_totp))
}

/// Sign out of this session.
#[server(endpoint = "logout")]
pub async fn logout() -> Result<(), AppError> {
    let state = crate::ssr::app_state()?;
    if let Some(user) = crate::auth::current_user().await? {
        let meta = crate::auth::request_meta().await;
        state
            .walden
            .accounts()
            .record_logout(&user.actor(), &meta)
            .await
            .map_err(crate::auth::user_error)?;
    }
    crate::auth::end_session().await
}

/// Sign out of every session of the signed-in user, on every device.
#[server(endpoint = "logout_everywhere")]
pub async fn logout_everywhere() -> Result<(), AppError> {
    let state = crate::ssr::app_state()?;
    let user = crate::auth::require_signed_in().await?;
    let meta = crate::auth::request_meta().await;
    state
        .walden
        .accounts()
        .logout_everywhere(&user.actor(), &meta, user.id)
        .await
        .map_err(crate::auth::user_error)?;
    crate::auth::end_session().await
}

/// Create the first admin. Works only while no user exists; signs the new admin in.
#[server(endpoint = "setup_admin")]
pub async fn setup_admin(name: String, password: String) -> Result<SessionUser, AppError> {
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    let user = state
        .walden
        .accounts()
        .setup_first_admin(&meta, &name, &secrecy::SecretString::from(password))
        .await
        .map_err(crate::auth::user_error)?;
    crate::auth::start_session(&user).await?;
    session_user(&user).await
}

/// Accept an invitation: create the account with the invite's role and sign it in.
#[server(endpoint = "accept_invite")]
pub async fn accept_invite(
    token: String,
    name: String,
    password: String,
) -> Result<SessionUser, AppError> {
    use secrecy::SecretString;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    let user = state
        .walden
        .accounts()
        .accept_invite(
            &meta,
            &SecretString::from(token),
            &name,
            &SecretString::from(password),
        )
        .await
        .map_err(crate::auth::user_error)?;
    crate::auth::start_session(&user).await?;
    session_user(&user).await
}

/// Change one's own password. Other sessions end; this one continues with a new id.
#[server(endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<(), AppError> {
    use secrecy::SecretString;
    let state = crate::ssr::app_state()?;
    let user = crate::auth::require_role(walden_core::users::Role::Viewer).await?;
    let meta = crate::auth::request_meta().await;
    let updated = state
        .walden
        .accounts()
        .change_password(
            &user.actor(),
            &meta,
            &SecretString::from(current_password),
            &SecretString::from(new_password),
        )
        .await
        .map_err(crate::auth::user_error)?;
    crate::auth::start_session(&updated).await
}
