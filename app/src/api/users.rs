//! Managing users and invitations (admins).

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::Caller, leptos::server_fn::ServerFn, tracing::field::Empty,
    walden_core::users::Role,
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<ListUsers as ServerFn>::PATH, Some(Role::Admin)),
    (<SetUserRole as ServerFn>::PATH, Some(Role::Admin)),
    (<SetUserDisabled as ServerFn>::PATH, Some(Role::Admin)),
    (<CreateInvite as ServerFn>::PATH, Some(Role::Admin)),
    (<ListInvites as ServerFn>::PATH, Some(Role::Admin)),
    (<RevokeInvite as ServerFn>::PATH, Some(Role::Admin)),
];

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

/// An invitation that can still be accepted, on the Users page (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRow {
    pub id: i64,
    pub role: String,
    /// Who made it: a user's name, or `(cli)`.
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
}

/// Every user. Admins only.
#[server(endpoint = "list_users")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let users = cx.accounts().list(&cx.actor).await?;
    Ok(users.into_iter().map(UserRow::from).collect())
}

#[cfg(feature = "ssr")]
impl From<walden_core::users::User> for UserRow {
    fn from(u: walden_core::users::User) -> Self {
        UserRow {
            id: u.id,
            name: u.name,
            role: u.role.as_str().to_owned(),
            disabled: u.disabled,
            totp_enabled: u.totp_enabled,
            created_at: u.created_at,
        }
    }
}

/// Change a user's role. Admins only.
#[server(endpoint = "set_user_role")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, target_user_id = user_id, role = %role), err(level = "info"))
)]
pub async fn set_user_role(user_id: i64, role: String) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let role: Role = role.parse()?;
    cx.accounts()
        .set_role(&cx.actor, &cx.meta, user_id, role)
        .await?;
    Ok(())
}

/// Disable or enable a user. Admins only.
#[server(endpoint = "set_user_disabled")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, target_user_id = user_id, disabled), err(level = "info"))
)]
pub async fn set_user_disabled(user_id: i64, disabled: bool) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let accounts = cx.accounts();
    accounts
        .set_disabled(&cx.actor, &cx.meta, user_id, disabled)
        .await?;
    Ok(())
}

/// Make a one-time invitation link for `role`, valid for `hours`. Admins only.
#[server(endpoint = "create_invite")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, role = %role, hours), err(level = "info"))
)]
pub async fn create_invite(role: String, hours: u32) -> Result<InviteLink, AppError> {
    use secrecy::ExposeSecret;
    let cx = Caller::require(Role::Admin).await?;
    let role: Role = role.parse()?;
    let lifetime = time::Duration::hours(i64::from(hours));
    let accounts = cx.accounts();
    let (invite, token) = accounts
        .create_invite(&cx.actor, &cx.meta, role, lifetime)
        .await?;
    Ok(InviteLink {
        id: invite.id,
        role: invite.role.as_str().to_owned(),
        expires_at: invite.expires_at,
        path: format!("/invite?token={}", token.expose_secret()),
    })
}

/// The invitations that can still be accepted, soonest to expire first. Admins only.
#[server(endpoint = "list_invites")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_invites() -> Result<Vec<InviteRow>, AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let invites = cx.accounts().pending_invites(&cx.actor).await?;
    Ok(invites
        .into_iter()
        .map(|i| InviteRow {
            id: i.id,
            role: i.role.as_str().to_owned(),
            created_by: i.created_by.unwrap_or_else(|| "(cli)".to_owned()),
            created_at: i.created_at,
            expires_at: i.expires_at,
        })
        .collect())
}

/// Revoke an invitation so its link no longer works. Admins only.
#[server(endpoint = "revoke_invite")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, invite_id = id), err(level = "info"))
)]
pub async fn revoke_invite(id: i64) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    cx.accounts().revoke_invite(&cx.actor, &cx.meta, id).await?;
    Ok(())
}
