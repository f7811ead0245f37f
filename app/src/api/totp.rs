//! Two-factor sign-in (TOTP): enrolment for oneself, removal, and the admins-must-use-it setting.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What the user types into (or scans with) their authenticator app. Shown to that user only, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSetup {
    pub secret_base32: String,
    pub otpauth_url: String,
}

/// Start enrolling an authenticator for oneself. Any signed-in user, including an admin who must enrol.
#[server(endpoint = "begin_totp")]
pub async fn begin_totp() -> Result<TotpSetup, AppError> {
    use secrecy::ExposeSecret;
    let user = crate::auth::require_signed_in().await?;
    let state = crate::ssr::app_state()?;
    let e = state
        .walden
        .accounts()
        .begin_totp(&user.actor())
        .await
        .map_err(crate::auth::user_error)?;
    Ok(TotpSetup {
        secret_base32: e.secret_base32.expose_secret().to_owned(),
        otpauth_url: e.otpauth_url.expose_secret().to_owned(),
    })
}

/// Finish enrolment with a first code.
#[server(endpoint = "confirm_totp")]
pub async fn confirm_totp(code: String) -> Result<(), AppError> {
    let user = crate::auth::require_signed_in().await?;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    state
        .walden
        .accounts()
        .confirm_totp(&user.actor(), &meta, &code)
        .await
        .map_err(crate::auth::user_error)?;
    Ok(())
}

/// Remove a user's authenticator: one's own with the current password, anyone's for an admin.
#[server(endpoint = "disable_totp")]
pub async fn disable_totp(user_id: i64, current_password: String) -> Result<(), AppError> {
    use walden_core::users::Role;
    let user = crate::auth::require_role(Role::Viewer).await?;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    let pw = secrecy::SecretString::from(current_password);
    let pw = (user.id == user_id).then_some(&pw);
    state
        .walden
        .accounts()
        .disable_totp(&user.actor(), &meta, user_id, pw)
        .await
        .map_err(crate::auth::user_error)?;
    Ok(())
}

/// Whether admins must use TOTP. Viewers and up.
#[server(endpoint = "get_require_totp_for_admins")]
pub async fn get_require_totp_for_admins() -> Result<bool, AppError> {
    use walden_core::users::Role;
    crate::auth::require_role(Role::Viewer).await?;
    let state = crate::ssr::app_state()?;
    state
        .walden
        .settings()
        .require_totp_for_admins()
        .await
        .map_err(crate::auth::settings_error)
}

/// Require (or stop requiring) TOTP for admins. Admins only; audited.
#[server(endpoint = "set_require_totp_for_admins")]
pub async fn set_require_totp_for_admins(enabled: bool) -> Result<(), AppError> {
    use walden_core::users::Role;
    let admin = crate::auth::require_role(Role::Admin).await?;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    state
        .walden
        .settings()
        .set_bool(
            &admin.actor(),
            &meta,
            walden_core::settings::REQUIRE_TOTP_FOR_ADMINS,
            enabled,
        )
        .await
        .map_err(crate::auth::settings_error)
}
