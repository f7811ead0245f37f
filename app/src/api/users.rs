//! Managing users and invitations (admins).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// A user row on the Users page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub disabled: bool,
    pub totp_enabled: bool,
    pub created_at: String,
}

/// A freshly made invitation. The token is shown once and never stored in clear.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteLink {
    pub id: i64,
    pub role: String,
    pub expires_at: String,
    /// The path to hand over: `/invite?token=…`.
    pub path: String,
}

#[cfg(feature = "ssr")]
fn parse_role(role: &str) -> Result<walden_core::users::Role, AppError> {
    role.parse().map_err(crate::auth::user_error_from_field)
}

/// Every user. Admins only.
#[server(endpoint = "list_users")]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    use walden_core::users::Role;
    let admin = crate::auth::require_role(Role::Admin).await?;
    let state = crate::ssr::app_state()?;
    let users = state
        .walden
        .accounts()
        .list(&admin.actor())
        .await
        .map_err(crate::auth::user_error)?;
    Ok(users
        .into_iter()
        .map(|u| UserRow {
            id: u.id,
            name: u.name,
            role: u.role.as_str().to_owned(),
            disabled: u.disabled,
            totp_enabled: u.totp_enabled,
            created_at: u.created_at,
        })
        .collect())
}

/// Change a user's role. Admins only.
#[server(endpoint = "set_user_role")]
pub async fn set_user_role(user_id: i64, role: String) -> Result<(), AppError> {
    use walden_core::users::Role;
    let admin = crate::auth::require_role(Role::Admin).await?;
    let role = parse_role(&role)?;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    state
        .walden
        .accounts()
        .set_role(&admin.actor(), &meta, user_id, role)
        .await
        .map_err(crate::auth::user_error)?;
    Ok(())
}

/// Disable or enable a user. Admins only.
#[server(endpoint = "set_user_disabled")]
pub async fn set_user_disabled(user_id: i64, disabled: bool) -> Result<(), AppError> {
    use walden_core::users::Role;
    let admin = crate::auth::require_role(Role::Admin).await?;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    state
        .walden
        .accounts()
        .set_disabled(&admin.actor(), &meta, user_id, disabled)
        .await
        .map_err(crate::auth::user_error)?;
    Ok(())
}

/// Make a one-time invitation link for `role`, valid for `hours`. Admins only.
#[server(endpoint = "create_invite")]
pub async fn create_invite(role: String, hours: u32) -> Result<InviteLink, AppError> {
    use secrecy::ExposeSecret;
    use walden_core::users::Role;
    let admin = crate::auth::require_role(Role::Admin).await?;
    let role = parse_role(&role)?;
    let state = crate::ssr::app_state()?;
    let meta = crate::auth::request_meta().await;
    let (invite, token) = state
        .walden
        .accounts()
        .create_invite(
            &admin.actor(),
            &meta,
            role,
            time::Duration::hours(i64::from(hours)),
        )
        .await
        .map_err(crate::auth::user_error)?;
    Ok(InviteLink {
        id: invite.id,
        role: invite.role.as_str().to_owned(),
        expires_at: invite.expires_at,
        path: format!("/invite?token={}", token.expose_secret()),
    })
}
