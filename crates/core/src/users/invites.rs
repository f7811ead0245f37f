//! Invitations: one-time links that let someone create their own account with a chosen role.
//!
//! The token is 32 random bytes shown once as 64 hex characters; only its SHA-256 is stored. An invite is
//! usable once, for 5 minutes to 24 hours when it makes an admin and to 7 days otherwise
//! ([`super::max_invite_ttl`]), and can be revoked. Accepting creates the user and spends the invite in one
//! transaction. Refusals (a lifetime out of range, revoking what is not pending) are audited.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::Duration;
use zeroize::Zeroizing;

use super::{
    max_invite_ttl, user_subject, Accounts, Invite, PendingInvite, User, UserError, MIN_INVITE_TTL,
};
use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{self, actions, AuditedTx, Event, Outcome};
use crate::ts;

const INVITE_COLUMNS: &str =
    "id, role, created_by, created_at, expires_at, used_at, used_by, revoked_at";

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn invite_subject(id: i64) -> String {
    format!("invite:{id}")
}

impl Accounts {
    /// Create a one-time invitation for `role`, valid for `ttl`. Admins only. Returns the invite and its
    /// token; only the token's SHA-256 is stored, so the token is shown this once.
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), role = %role),
        err(level = "debug")
    )]
    pub async fn create_invite(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        role: Role,
        ttl: Duration,
    ) -> Result<(Invite, SecretString), UserError> {
        self.require(actor, Role::Admin, meta, actions::INVITE_CREATE, || {
            "invite:new".into()
        })
        .await?;
        if !(MIN_INVITE_TTL..=max_invite_ttl(role)).contains(&ttl) {
            let event = Event::new(actions::INVITE_CREATE, Outcome::Failed)
                .subject("invite:new")
                .detail(serde_json::json!({ "role": role, "minutes": ttl.whole_minutes() }));
            audit::record(&self.pool, actor, meta, &event).await?;
            let message = match role {
                Role::Admin => {
                    "an admin invitation must be valid for between 5 minutes and 24 hours"
                }
                Role::Viewer | Role::Operator => {
                    "an invitation must be valid for between 5 minutes and 7 days (168 hours)"
                }
            };
            return Err(FieldError::new("ttl", message).into());
        }
        let token = new_token()?;
        let now = ts::now();
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO invites (token_hash, role, created_by, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&token_hash(token.expose_secret())[..])
        .bind(role)
        .bind(actor.user_id())
        .bind(ts::format(now))
        .bind(ts::format(now + ttl))
        .fetch_one(&mut *tx)
        .await?;
        let event = Event::new(actions::INVITE_CREATE, Outcome::Ok)
            .subject(invite_subject(id))
            .detail(serde_json::json!({ "role": role, "expires_at": ts::format(now + ttl) }));
        tx.commit(actor, meta, &event).await?;
        let invite = self.invite(id).await?.ok_or(UserError::NotFound)?;
        Ok((invite, token))
    }

    async fn invite(&self, id: i64) -> Result<Option<Invite>, UserError> {
        let row = sqlx::query(&format!(
            "SELECT {INVITE_COLUMNS} FROM invites WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| invite_from_row(&r)).transpose()
    }

    /// Every invitation, newest first. Admins only.
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
    pub async fn list_invites(&self, actor: &Actor) -> Result<Vec<Invite>, UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(UserError::Forbidden);
        }
        sqlx::query(&format!(
            "SELECT {INVITE_COLUMNS} FROM invites ORDER BY id DESC"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(invite_from_row)
        .collect()
    }

    /// The invitations that can still be accepted (unused, unrevoked, unexpired), soonest to expire first,
    /// with the inviting user's name. Admins only.
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
    pub async fn pending_invites(&self, actor: &Actor) -> Result<Vec<PendingInvite>, UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(UserError::Forbidden);
        }
        // Timestamps are fixed-width UTC text (`ts::format`), so text order is time order.
        let rows: Vec<(i64, Role, Option<String>, String, String)> = sqlx::query_as(
            "SELECT i.id, i.role, u.name, i.created_at, i.expires_at FROM invites i \
             LEFT JOIN users u ON u.id = i.created_by \
             WHERE i.used_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > ? \
             ORDER BY i.expires_at, i.id",
        )
        .bind(ts::format(ts::now()))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, role, created_by, created_at, expires_at)| PendingInvite {
                    id,
                    role,
                    created_by,
                    created_at,
                    expires_at,
                },
            )
            .collect())
    }

    /// Revoke an invitation that can still be accepted (an expired one may be revoked too: it stays
    /// unusable). Admins only. Revoking an unknown, used or already revoked invitation is refused and
    /// audited (`failed`).
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), invite_id = id),
        err(level = "debug")
    )]
    pub async fn revoke_invite(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: i64,
    ) -> Result<(), UserError> {
        self.require(actor, Role::Admin, meta, actions::INVITE_REVOKE, || {
            invite_subject(id)
        })
        .await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE invites SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(ts::format(ts::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            let event =
                Event::new(actions::INVITE_REVOKE, Outcome::Failed).subject(invite_subject(id));
            audit::record(&self.pool, actor, meta, &event).await?;
            return Err(UserError::InviteInvalid);
        }
        let event = Event::new(actions::INVITE_REVOKE, Outcome::Ok).subject(invite_subject(id));
        tx.commit(actor, meta, &event).await?;
        Ok(())
    }

    /// Whether a token is currently usable (for showing the accept form). Never says more than that.
    pub async fn check_invite(&self, token: &SecretString) -> Result<Role, UserError> {
        let row = lookup_invite(&self.pool, token).await?;
        let (_, role) = usable(row)?;
        Ok(role)
    }

    /// Accept an invitation: create the user with the invite's role and spend the invite, in one transaction.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn accept_invite(
        &self,
        meta: &RequestMeta,
        token: &SecretString,
        name: &str,
        password: &SecretString,
    ) -> Result<User, UserError> {
        // Cheap checks first, so a bad token is reported before a weak password costs a hash.
        usable(lookup_invite(&self.pool, token).await?)?;
        let (name, phc) = self.prepare(name, password).await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let (invite_id, role) = usable(lookup_invite(&mut *tx, token).await?)?;
        let user = Self::insert_user(&mut tx, &name, &phc, role).await?;
        sqlx::query("UPDATE invites SET used_at = ?, used_by = ? WHERE id = ?")
            .bind(ts::format(ts::now()))
            .bind(user.id)
            .bind(invite_id)
            .execute(&mut *tx)
            .await?;
        let event = Event::new(actions::INVITE_ACCEPT, Outcome::Ok)
            .subject(user_subject(user.id))
            .detail(serde_json::json!({ "invite": invite_id, "name": user.name, "role": role }));
        tx.commit(&user.actor(), meta, &event).await?;
        Ok(user)
    }
}

/// 32 random bytes as 64 hex characters.
fn new_token() -> Result<SecretString, UserError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut raw[..]).map_err(|_| UserError::Internal("random"))?;
    Ok(SecretString::from(hex::encode(&raw[..])))
}

/// `id, role, expires_at, used_at, revoked_at`.
type InviteRow = (i64, Role, String, Option<String>, Option<String>);

struct InviteState {
    id: i64,
    role: Role,
    expires_at: String,
    spent: bool,
}

async fn lookup_invite<'e, E>(
    exec: E,
    token: &SecretString,
) -> Result<Option<InviteState>, UserError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let t = token.expose_secret().trim();
    if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let row: Option<InviteRow> = sqlx::query_as(
        "SELECT id, role, expires_at, used_at, revoked_at FROM invites WHERE token_hash = ?",
    )
    .bind(&token_hash(&t.to_ascii_lowercase())[..])
    .fetch_optional(exec)
    .await?;
    Ok(
        row.map(|(id, role, expires_at, used_at, revoked_at)| InviteState {
            id,
            role,
            expires_at,
            spent: used_at.is_some() || revoked_at.is_some(),
        }),
    )
}

fn usable(state: Option<InviteState>) -> Result<(i64, Role), UserError> {
    let s = state.ok_or(UserError::InviteInvalid)?;
    if s.spent {
        return Err(UserError::InviteInvalid);
    }
    let expires =
        ts::parse(&s.expires_at).ok_or(UserError::Internal("a stored expiry is not valid"))?;
    if expires <= ts::now() {
        return Err(UserError::InviteExpired);
    }
    Ok((s.id, s.role))
}

fn invite_from_row(r: &SqliteRow) -> Result<Invite, UserError> {
    Ok(Invite {
        id: r.try_get("id")?,
        role: r.try_get("role")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        used_by: r.try_get("used_by")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}
