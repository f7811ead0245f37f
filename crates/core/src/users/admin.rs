//! Managing accounts: creating users (and the first admin), passwords, roles, disabling, ending sessions.
//!
//! Admin-only operations are refused, and the refusal audited, before anything is read. The last enabled
//! admin can be neither demoted nor disabled, checked inside the write transaction.

use secrecy::{ExposeSecret, SecretString};
use sqlx::SqliteConnection;

use super::reauth::Reauth;
use super::{check_policy, user_subject, Accounts, User, UserError};
use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{actions, AuditedTx, Event, Outcome};
use crate::ts;

/// The one-time secret that opens web setup: set by the operator (`WALDEN_SETUP_TOKEN`) or generated at
/// start-up and printed as a link, the way Jupyter does. Only its SHA-256 digest is kept, and a presented token
/// is compared in constant time. The CLI (`walden user add --admin`) needs no token: it already holds the data
/// directory.
#[derive(Clone)]
pub struct SetupToken {
    digest: [u8; 32],
}

impl SetupToken {
    /// The shortest token an operator may set (a generated one is 64 hex characters).
    pub const MIN_CHARS: usize = 16;

    /// A random token (32 bytes as 64 hex characters), and the gate that accepts it.
    pub fn generate() -> Result<(SetupToken, SecretString), UserError> {
        let mut raw = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut raw[..]).map_err(|_| UserError::Internal("random"))?;
        let token = SecretString::from(hex::encode(&raw[..]));
        Ok((SetupToken::from_trusted(&token), token))
    }

    /// The gate for a token the operator chose; surrounding whitespace is ignored.
    pub fn from_secret(token: &SecretString) -> Result<SetupToken, FieldError> {
        if token.expose_secret().trim().chars().count() < Self::MIN_CHARS {
            return Err(FieldError::new(
                "setup_token",
                format!(
                    "the setup token must have at least {} characters",
                    Self::MIN_CHARS
                ),
            ));
        }
        Ok(SetupToken::from_trusted(token))
    }

    fn from_trusted(token: &SecretString) -> SetupToken {
        SetupToken {
            digest: Self::digest(token),
        }
    }

    fn digest(token: &SecretString) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        Sha256::digest(token.expose_secret().trim().as_bytes()).into()
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &SecretString) -> bool {
        use subtle::ConstantTimeEq;
        Self::digest(presented).ct_eq(&self.digest).into()
    }
}

// Written by hand: even the digest stays out of logs.
impl std::fmt::Debug for SetupToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupToken([redacted])")
    }
}

impl Accounts {
    /// Create a user. Admins (and the CLI) only.
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), role = %role),
        err(level = "debug")
    )]
    pub async fn create_user(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        name: &str,
        password: &SecretString,
        role: Role,
    ) -> Result<User, UserError> {
        self.require(actor, Role::Admin, meta, actions::USER_CREATE, || {
            format!("user-name:{}", name.trim())
        })
        .await?;
        let (name, phc) = self.prepare(name, password).await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let user = Self::insert_user(&mut tx, &name, &phc, role).await?;
        let event = Event::new(actions::USER_CREATE, Outcome::Ok)
            .subject(user_subject(user.id))
            .detail(serde_json::json!({ "name": user.name, "role": role }));
        tx.commit(actor, meta, &event).await?;
        Ok(user)
    }

    /// Create the first admin from the setup page. Works only while no user exists, and only for someone who
    /// presents the setup token (security review H3: without it, any network client could become the first
    /// admin). A wrong or missing token is refused and recorded (`setup.first_admin`, outcome `denied`) before
    /// anything else is read. The check and the insert are one write transaction, so two racing setups cannot
    /// both win.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn setup_first_admin(
        &self,
        meta: &RequestMeta,
        gate: Option<&SetupToken>,
        presented: &SecretString,
        name: &str,
        password: &SecretString,
    ) -> Result<User, UserError> {
        if !self.needs_setup().await? {
            return Err(UserError::SetupClosed);
        }
        if !gate.is_some_and(|gate| gate.matches(presented)) {
            let denied = Event::new(actions::SETUP_FIRST_ADMIN, Outcome::Denied)
                .reason("setup token missing or wrong");
            crate::audit::record(&self.pool, &Actor::Anonymous, meta, &denied).await?;
            return Err(UserError::SetupTokenInvalid);
        }
        let (name, phc) = self.prepare(name, password).await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(UserError::SetupClosed);
        }
        let user = Self::insert_user(&mut tx, &name, &phc, Role::Admin).await?;
        let event = Event::new(actions::SETUP_FIRST_ADMIN, Outcome::Ok)
            .subject(user_subject(user.id))
            .detail(serde_json::json!({ "name": user.name, "role": Role::Admin }));
        tx.commit(&Actor::Anonymous, meta, &event).await?;
        Ok(user)
    }

    /// Change one's own password (the current one is required, checked through the limiter). Ends every other session of the user by
    /// bumping the session epoch; returns the updated user so the caller can re-issue its own session.
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
    pub async fn change_password(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<User, UserError> {
        let Some(user_id) = actor.user_id() else {
            return Err(UserError::Forbidden);
        };
        let user = self.reload(user_id).await?;
        let ask = Reauth {
            action: actions::USER_PASSWORD_CHANGE,
            password: Some(current),
            code: None,
        };
        self.reauthenticate(actor, meta, user_id, ask).await?;
        check_policy(new, &user.name)?;
        if current.expose_secret() == new.expose_secret() {
            return Err(FieldError::new(
                "password",
                "the new password must differ from the current one",
            )
            .into());
        }
        let event = Event::new(actions::USER_PASSWORD_CHANGE, Outcome::Ok);
        self.replace_password(actor, meta, user_id, new, event)
            .await
    }

    /// Set a user's password without knowing the current one: for an admin helping a user, or the CLI
    /// recovering a locked-out admin. Ends the user's sessions. Records `user.password_reset`.
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), user_id = user_id),
        err(level = "debug")
    )]
    pub async fn reset_password(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        new: &SecretString,
    ) -> Result<User, UserError> {
        self.require(
            actor,
            Role::Admin,
            meta,
            actions::USER_PASSWORD_RESET,
            || user_subject(user_id),
        )
        .await?;
        let user = self.reload(user_id).await?;
        check_policy(new, &user.name)?;
        let event = Event::new(actions::USER_PASSWORD_RESET, Outcome::Ok);
        self.replace_password(actor, meta, user_id, new, event)
            .await
    }

    /// Hash `new`, store it and bump the session epoch, recorded as `event` about the user.
    async fn replace_password(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        new: &SecretString,
        event: Event,
    ) -> Result<User, UserError> {
        let phc = self.hasher.hash(new).await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        sqlx::query(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1, updated_at = ? WHERE id = ?",
        )
        .bind(&phc)
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit(actor, meta, &event.subject(user_subject(user_id)))
            .await?;
        self.reload(user_id).await
    }

    /// Count enabled admins other than `except`, inside a transaction.
    async fn other_enabled_admins(
        conn: &mut SqliteConnection,
        except: i64,
    ) -> Result<i64, UserError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id != ?",
        )
        .bind(except)
        .fetch_one(conn)
        .await?)
    }

    /// Change a user's role. Admins only; the last enabled admin cannot be demoted.
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), user_id = user_id, role = %role),
        err(level = "debug")
    )]
    pub async fn set_role(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        role: Role,
    ) -> Result<User, UserError> {
        self.require(actor, Role::Admin, meta, actions::USER_ROLE_CHANGE, || {
            user_subject(user_id)
        })
        .await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let old: Option<Role> = sqlx::query_scalar("SELECT role FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let old = old.ok_or(UserError::NotFound)?;
        if old == role {
            drop(tx);
            return self.reload(user_id).await;
        }
        if old == Role::Admin && Self::other_enabled_admins(&mut tx, user_id).await? == 0 {
            return Err(UserError::LastAdmin);
        }
        sqlx::query("UPDATE users SET role = ?, updated_at = ? WHERE id = ?")
            .bind(role)
            .bind(ts::format(ts::now()))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let event = Event::new(actions::USER_ROLE_CHANGE, Outcome::Ok)
            .subject(user_subject(user_id))
            .detail(serde_json::json!({ "from": old, "to": role }));
        tx.commit(actor, meta, &event).await?;
        self.reload(user_id).await
    }

    /// Disable or re-enable a user. Admins only; the last enabled admin cannot be disabled. Disabling ends
    /// the user's sessions.
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), user_id = user_id, disabled = disabled),
        err(level = "debug")
    )]
    pub async fn set_disabled(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        disabled: bool,
    ) -> Result<User, UserError> {
        let action = if disabled {
            actions::USER_DISABLE
        } else {
            actions::USER_ENABLE
        };
        self.require(actor, Role::Admin, meta, action, || user_subject(user_id))
            .await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let row: Option<(Role, bool)> =
            sqlx::query_as("SELECT role, disabled FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (role, was) = row.ok_or(UserError::NotFound)?;
        if was == disabled {
            drop(tx);
            return self.reload(user_id).await;
        }
        if disabled
            && role == Role::Admin
            && Self::other_enabled_admins(&mut tx, user_id).await? == 0
        {
            return Err(UserError::LastAdmin);
        }
        sqlx::query(
            "UPDATE users SET disabled = ?, session_epoch = session_epoch + 1, updated_at = ? WHERE id = ?",
        )
        .bind(disabled)
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let event = Event::new(action, Outcome::Ok).subject(user_subject(user_id));
        tx.commit(actor, meta, &event).await?;
        self.reload(user_id).await
    }

    /// End every session of a user (one's own, or anyone's for an admin).
    #[tracing::instrument(
        skip_all,
        fields(actor = %actor.display_name(), user_id = user_id),
        err(level = "debug")
    )]
    pub async fn logout_everywhere(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
    ) -> Result<(), UserError> {
        if actor.user_id() != Some(user_id) {
            self.require(
                actor,
                Role::Admin,
                meta,
                actions::USER_LOGOUT_EVERYWHERE,
                || user_subject(user_id),
            )
            .await?;
        }
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let done = sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound);
        }
        let event =
            Event::new(actions::USER_LOGOUT_EVERYWHERE, Outcome::Ok).subject(user_subject(user_id));
        tx.commit(actor, meta, &event).await?;
        Ok(())
    }
}
