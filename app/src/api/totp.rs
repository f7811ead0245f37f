//! Two-factor sign-in (TOTP): enrolment for oneself, removal, and the admins-must-use-it setting.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::{session, Caller},
    leptos::server_fn::ServerFn,
    tracing::field::Empty,
    walden_core::{settings, users::Role},
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    // Enrolment: any signed-in user, even an admin held at enrolment.
    (<BeginTotp as ServerFn>::PATH, Some(Role::Viewer)),
    (<ConfirmTotp as ServerFn>::PATH, Some(Role::Viewer)),
    // One's own with the current password; someone else's: the domain asks for an admin.
    (<DisableTotp as ServerFn>::PATH, Some(Role::Viewer)),
    (
        <GetRequireTotpForAdmins as ServerFn>::PATH,
        Some(Role::Viewer),
    ),
    (
        <SetRequireTotpForAdmins as ServerFn>::PATH,
        Some(Role::Admin),
    ),
];

/// What the user types into (or scans with) their authenticator app. Shown to that user only, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpSetup {
    pub secret_base32: String,
    pub otpauth_url: String,
}

/// Start enrolling (or replacing) an authenticator for oneself. Any signed-in user, including an admin who
/// must enrol; the current password is required, and the current code when one is enrolled (empty
/// otherwise).
#[server(endpoint = "begin_totp")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn begin_totp(
    current_password: String,
    current_code: String,
) -> Result<TotpSetup, AppError> {
    use secrecy::ExposeSecret;
    let cx = Caller::signed_in().await?;
    let password = secrecy::SecretString::from(current_password);
    let code = Some(current_code.trim()).filter(|c| !c.is_empty());
    let accounts = cx.accounts();
    let enrolment = accounts
        .begin_totp(&cx.actor, &cx.meta, &password, code)
        .await?;
    Ok(TotpSetup {
        secret_base32: enrolment.secret_base32.expose_secret().to_owned(),
        otpauth_url: enrolment.otpauth_url.expose_secret().to_owned(),
    })
}

/// Finish enrolment with a first code. A replacement ends the user's other sessions; this one continues
/// with a new id.
#[server(endpoint = "confirm_totp")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn confirm_totp(code: String) -> Result<(), AppError> {
    let cx = Caller::signed_in().await?;
    let accounts = cx.accounts();
    let updated = accounts.confirm_totp(&cx.actor, &cx.meta, &code).await?;
    session::start(&updated).await
}

/// Remove a user's authenticator: one's own with the current password, anyone's for an admin.
#[server(endpoint = "disable_totp")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, target_user_id = user_id), err(level = "info"))
)]
pub async fn disable_totp(user_id: i64, current_password: String) -> Result<(), AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let password = secrecy::SecretString::from(current_password);
    let own_password = (cx.user.id == user_id).then_some(&password);
    let accounts = cx.accounts();
    accounts
        .disable_totp(&cx.actor, &cx.meta, user_id, own_password)
        .await?;
    Ok(())
}

/// Whether admins must use TOTP. Viewers and up.
#[server(endpoint = "get_require_totp_for_admins")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn get_require_totp_for_admins() -> Result<bool, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    cx.require_totp_for_admins().await
}

/// Require (or stop requiring) TOTP for admins. Admins only; audited.
#[server(endpoint = "set_require_totp_for_admins")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, enabled), err(level = "info"))
)]
pub async fn set_require_totp_for_admins(enabled: bool) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let key = settings::REQUIRE_TOTP_FOR_ADMINS;
    Ok(cx
        .settings()
        .set_bool(&cx.actor, &cx.meta, key, enabled)
        .await?)
}
