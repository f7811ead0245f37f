//! Console accounts: users, roles, passwords, invites, TOTP, and the audit rows for each change.
//!
//! Every method that changes something writes its audit row in the same transaction (see [`crate::audit`]);
//! refused attempts are recorded with outcome `denied`, failed logins with `failed`.

pub mod password;
pub mod totp;

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use time::Duration;
use zeroize::Zeroizing;

use crate::audit::{self, actions, Actor, AuditError, Event, Outcome, RequestMeta};
use crate::seal::SealKey;
use crate::{settings, ts};

pub use password::{
    check_policy, password_from_bytes, HashParams, Hasher, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS,
};
pub use totp::TotpEnrolment;

/// Longest user name.
pub const MAX_NAME_LEN: usize = 64;
/// Shortest and longest invite lifetime.
pub const MIN_INVITE_TTL: Duration = Duration::minutes(5);
pub const MAX_INVITE_TTL: Duration = Duration::days(30);

/// What a user may do. Ordered: `Viewer < Operator < Admin`; each role can do everything the lower ones can.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything except secrets.
    Viewer,
    /// Runs backups and restores.
    Operator,
    /// Manages users and settings.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(FieldError::new(
                "role",
                "the role must be viewer, operator or admin",
            )),
        }
    }
}

/// A form field that failed validation, with a message for the person filling it in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

/// Why an account operation did not happen. Messages are safe to show and never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(FieldError),
    #[error("a user with this name already exists")]
    NameTaken,
    #[error("no such user")]
    NotFound,
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("this would leave no enabled admin; make another user an admin first")]
    LastAdmin,
    #[error("this invitation link is not valid (unknown, revoked or already used)")]
    InviteInvalid,
    #[error("this invitation link has expired; ask an admin for a new one")]
    InviteExpired,
    #[error("setup is closed: Walden already has users")]
    SetupClosed,
    #[error("the current password is not correct")]
    WrongPassword,
    #[error("the code is not correct")]
    TotpInvalid,
    #[error("no two-factor enrolment is in progress")]
    NoPendingTotp,
    #[error("two-factor sign-in is unavailable: no encryption key is configured")]
    NoSealKey,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<FieldError> for UserError {
    fn from(e: FieldError) -> Self {
        UserError::Invalid(e)
    }
}

/// Why a login did not succeed. The text never says whether the user exists.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("the user name or password is not correct")]
    InvalidCredentials,
    #[error("enter the code from your authenticator app")]
    TotpRequired,
    #[error("the code is not correct")]
    TotpInvalid,
    #[error(transparent)]
    Internal(#[from] UserError),
}

impl From<sqlx::Error> for LoginError {
    fn from(e: sqlx::Error) -> Self {
        LoginError::Internal(UserError::Db(e))
    }
}

impl From<AuditError> for LoginError {
    fn from(e: AuditError) -> Self {
        LoginError::Internal(UserError::Audit(e))
    }
}

/// A user, as the rest of Walden sees one (no hash, no secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    pub totp_enabled: bool,
    /// Sessions carry the epoch they were made in; a different epoch means "signed out everywhere".
    pub session_epoch: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl User {
    /// This user as the actor of an audit row.
    pub fn actor(&self) -> Actor {
        Actor::User {
            id: self.id,
            name: self.name.clone(),
            role: self.role,
        }
    }

    fn from_row(row: &SqliteRow) -> Result<Self, UserError> {
        let role: String = row.try_get("role")?;
        Ok(User {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: role
                .parse()
                .map_err(|_| UserError::Internal("a stored role is not valid"))?,
            disabled: row.try_get("disabled")?,
            totp_enabled: row.try_get::<Option<Vec<u8>>, _>("totp_secret")?.is_some(),
            session_epoch: row.try_get("session_epoch")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const USER_COLUMNS: &str =
    "id, name, role, disabled, totp_secret, session_epoch, created_at, updated_at";

/// A successful login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSuccess {
    pub user: User,
    /// The user is an admin, admins must use TOTP, and this one has not enrolled yet: send them to enrol
    /// before anything else.
    pub must_enrol_totp: bool,
}

/// An invitation (never the token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    pub id: i64,
    pub role: Role,
    pub created_by: Option<i64>,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
    pub used_by: Option<i64>,
    pub revoked_at: Option<String>,
}

/// Check and normalise a user name: surrounding spaces are dropped; 1 to 64 characters from `A-Z a-z 0-9 .
/// _ -`, starting with a letter or digit. ASCII only, so names cannot impersonate each other with look-alike
/// letters in the audit log.
pub fn validate_name(name: &str) -> Result<String, FieldError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(FieldError::new("name", "enter a user name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(FieldError::new(
            "name",
            format!("the user name must be at most {MAX_NAME_LEN} characters long"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(FieldError::new(
            "name",
            "the user name may contain only letters a-z, digits, '.', '_' and '-'",
        ));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(FieldError::new(
            "name",
            "the user name must start with a letter or a digit",
        ));
    }
    Ok(name.to_owned())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn totp_context(user_id: i64) -> String {
    format!("walden/totp/user/{user_id}")
}

/// The account service. Cheap to clone; holds the pool, the password hasher and (optionally) the key that
/// seals TOTP secrets.
#[derive(Clone)]
pub struct Accounts {
    pool: SqlitePool,
    hasher: Hasher,
    seal: Option<SealKey>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("hasher", &self.hasher)
            .field("totp", &self.seal.is_some())
            .finish()
    }
}

impl Accounts {
    pub fn new(pool: SqlitePool, hasher: Hasher) -> Self {
        Accounts {
            pool,
            hasher,
            seal: None,
        }
    }

    /// Enable TOTP by giving the key that seals TOTP secrets at rest.
    pub fn with_seal_key(mut self, key: SealKey) -> Self {
        self.seal = Some(key);
        self
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn deny(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        subject: String,
    ) -> UserError {
        match audit::record(
            &self.pool,
            actor,
            meta,
            &Event::new(action, Outcome::Denied).subject(subject),
        )
        .await
        {
            Ok(_) => UserError::Forbidden,
            Err(e) => UserError::Audit(e),
        }
    }

    /// `true` while no user exists (the setup page is open).
    pub async fn needs_setup(&self) -> Result<bool, UserError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(n == 0)
    }

    pub async fn get(&self, id: i64) -> Result<Option<User>, UserError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?");
        sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| User::from_row(&r))
            .transpose()
    }

    pub async fn find_by_name(&self, name: &str) -> Result<Option<User>, UserError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ? COLLATE NOCASE");
        sqlx::query(&sql)
            .bind(name.trim())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| User::from_row(&r))
            .transpose()
    }

    /// All users, by name. Viewers and up.
    pub async fn list(&self, actor: &Actor) -> Result<Vec<User>, UserError> {
        if !actor.has_role(Role::Viewer) {
            return Err(UserError::Forbidden);
        }
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name COLLATE NOCASE");
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(User::from_row)
            .collect()
    }

    /// The user behind a session, if the session is still good: the user exists, is not disabled, and the
    /// session was made in the user's current epoch.
    pub async fn session_user(&self, id: i64, epoch: i64) -> Result<Option<User>, UserError> {
        Ok(self
            .get(id)
            .await?
            .filter(|u| !u.disabled && u.session_epoch == epoch))
    }

    async fn insert_user(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        name: &str,
        phc: &str,
        role: Role,
    ) -> Result<User, UserError> {
        let now = ts::format(ts::now());
        let sql = format!(
            "INSERT INTO users (name, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?) \
             RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .bind(phc)
            .bind(role.as_str())
            .bind(&now)
            .bind(&now)
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    UserError::NameTaken
                } else {
                    UserError::Db(e)
                }
            })?;
        User::from_row(&row)
    }

    /// Validate a name and a new password, then hash the password (on the blocking pool).
    async fn prepare(
        &self,
        name: &str,
        password: &SecretString,
    ) -> Result<(String, String), UserError> {
        let name = validate_name(name)?;
        check_policy(password, &name)?;
        let phc = self.hasher.hash(password).await?;
        Ok((name, phc))
    }

    /// Create a user. Admins (and the CLI) only.
    pub async fn create_user(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        name: &str,
        password: &SecretString,
        role: Role,
    ) -> Result<User, UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(self
                .deny(
                    actor,
                    meta,
                    actions::USER_CREATE,
                    format!("user-name:{}", name.trim()),
                )
                .await);
        }
        let (name, phc) = self.prepare(name, password).await?;
        let mut tx = audit::begin(&self.pool).await?;
        let user = Self::insert_user(&mut tx, &name, &phc, role).await?;
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_CREATE, Outcome::Ok)
                .subject(format!("user:{}", user.id))
                .detail(serde_json::json!({ "name": user.name, "role": role })),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Create the first admin from the setup page. Works only while no user exists; the check and the insert
    /// are one write transaction, so two racing setups cannot both win.
    pub async fn setup_first_admin(
        &self,
        meta: &RequestMeta,
        name: &str,
        password: &SecretString,
    ) -> Result<User, UserError> {
        if !self.needs_setup().await? {
            return Err(UserError::SetupClosed);
        }
        let (name, phc) = self.prepare(name, password).await?;
        let mut tx = audit::begin(&self.pool).await?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&mut *tx)
            .await?;
        if n > 0 {
            return Err(UserError::SetupClosed);
        }
        let user = Self::insert_user(&mut tx, &name, &phc, Role::Admin).await?;
        audit::append(
            &mut tx,
            &Actor::Anonymous,
            meta,
            &Event::new(actions::SETUP_FIRST_ADMIN, Outcome::Ok)
                .subject(format!("user:{}", user.id))
                .detail(serde_json::json!({ "name": user.name, "role": Role::Admin })),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Check a name, password and (when the user has TOTP) code. Records `auth.login` with outcome `ok` or
    /// `failed`. Unknown user, wrong password and disabled user all give [`LoginError::InvalidCredentials`]
    /// after the same amount of hashing work.
    pub async fn authenticate(
        &self,
        meta: &RequestMeta,
        name: &str,
        password: &SecretString,
        totp_code: Option<&str>,
    ) -> Result<LoginSuccess, LoginError> {
        let name = name.trim();
        let fail = |reason: &'static str, user: Option<&User>| {
            let mut e = Event::new(actions::AUTH_LOGIN, Outcome::Failed);
            e = match user {
                Some(u) => e.subject(format!("user:{}", u.id)),
                None => e.subject(format!("user-name:{name}")),
            };
            e.detail(serde_json::json!({ "reason": reason }))
        };
        // Over-long input is refused without hashing it (the work is bounded), with the same generic error.
        if name.len() > MAX_NAME_LEN
            || password.expose_secret().chars().count() > MAX_PASSWORD_CHARS
        {
            audit::record(
                &self.pool,
                &Actor::Anonymous,
                meta,
                &fail("input too long", None),
            )
            .await?;
            return Err(LoginError::InvalidCredentials);
        }
        let row: Option<SqliteRow> = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash, totp_last_step FROM users WHERE name = ? COLLATE NOCASE"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (user, phc, sealed_totp, last_step) = match &row {
            Some(r) => (
                Some(User::from_row(r)?),
                Some(r.try_get::<String, _>("password_hash")?),
                r.try_get::<Option<Vec<u8>>, _>("totp_secret")?,
                r.try_get::<Option<i64>, _>("totp_last_step")?,
            ),
            None => (None, None, None, None),
        };
        let verified = self.hasher.verify(password, phc).await?;
        let user = match user {
            Some(u) if verified.ok && !u.disabled => u,
            Some(u) => {
                let reason = if verified.ok {
                    "disabled"
                } else {
                    "wrong password"
                };
                audit::record(&self.pool, &Actor::Anonymous, meta, &fail(reason, Some(&u))).await?;
                return Err(LoginError::InvalidCredentials);
            }
            None => {
                audit::record(
                    &self.pool,
                    &Actor::Anonymous,
                    meta,
                    &fail("unknown user", None),
                )
                .await?;
                return Err(LoginError::InvalidCredentials);
            }
        };
        // Second factor.
        let mut step: Option<u64> = None;
        if let Some(sealed) = &sealed_totp {
            let Some(code) = totp_code.filter(|c| !c.trim().is_empty()) else {
                audit::record(
                    &self.pool,
                    &Actor::Anonymous,
                    meta,
                    &fail("code required", Some(&user)),
                )
                .await?;
                return Err(LoginError::TotpRequired);
            };
            let key = self.seal.as_ref().ok_or(UserError::NoSealKey)?;
            let secret = key
                .open(sealed, &totp_context(user.id))
                .map_err(|_| UserError::Internal("a stored TOTP secret could not be opened"))?;
            match totp::check(&secret, code, totp::unix_now()) {
                Some(s) if last_step.is_none_or(|l| (s as i64) > l) => step = Some(s),
                _ => {
                    audit::record(
                        &self.pool,
                        &Actor::Anonymous,
                        meta,
                        &fail("wrong code", Some(&user)),
                    )
                    .await?;
                    return Err(LoginError::TotpInvalid);
                }
            }
        }
        let rehash = if verified.needs_rehash {
            Some(self.hasher.hash(password).await?)
        } else {
            None
        };
        let mut tx = audit::begin(&self.pool).await?;
        if let Some(phc) = &rehash {
            sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
                .bind(phc)
                .bind(user.id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(s) = step {
            // Guarded again inside the write transaction: two logins racing with one code, one wins.
            let done = sqlx::query(
                "UPDATE users SET totp_last_step = ? WHERE id = ? \
                 AND (totp_last_step IS NULL OR totp_last_step < ?)",
            )
            .bind(s as i64)
            .bind(user.id)
            .bind(s as i64)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                drop(tx);
                audit::record(
                    &self.pool,
                    &Actor::Anonymous,
                    meta,
                    &fail("code reused", Some(&user)),
                )
                .await?;
                return Err(LoginError::TotpInvalid);
            }
        }
        let mut detail = serde_json::json!({ "second_factor": step.is_some() });
        if rehash.is_some() {
            detail["rehashed"] = true.into();
        }
        audit::append(
            &mut tx,
            &user.actor(),
            meta,
            &Event::new(actions::AUTH_LOGIN, Outcome::Ok)
                .subject(format!("user:{}", user.id))
                .detail(detail),
        )
        .await?;
        tx.commit().await?;
        let must_enrol_totp = user.role == Role::Admin
            && !user.totp_enabled
            && settings::get_bool(&self.pool, settings::REQUIRE_TOTP_FOR_ADMINS).await?;
        Ok(LoginSuccess {
            user,
            must_enrol_totp,
        })
    }

    /// Record a login attempt refused by throttling before any password was checked.
    pub async fn record_login_throttled(
        &self,
        meta: &RequestMeta,
        name: &str,
    ) -> Result<(), UserError> {
        let name: String = name.trim().chars().take(MAX_NAME_LEN).collect();
        audit::record(
            &self.pool,
            &Actor::Anonymous,
            meta,
            &Event::new(actions::AUTH_LOGIN, Outcome::Denied)
                .subject(format!("user-name:{name}"))
                .detail(serde_json::json!({ "reason": "throttled" })),
        )
        .await?;
        Ok(())
    }

    /// Record a logout.
    pub async fn record_logout(&self, actor: &Actor, meta: &RequestMeta) -> Result<(), UserError> {
        let mut e = Event::new(actions::AUTH_LOGOUT, Outcome::Ok);
        if let Some(id) = actor.user_id() {
            e = e.subject(format!("user:{id}"));
        }
        audit::record(&self.pool, actor, meta, &e).await?;
        Ok(())
    }

    /// Change one's own password (the current one is required). Ends every other session of the user by
    /// bumping the session epoch; returns the updated user so the caller can re-issue its own session.
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
        let phc: Option<String> =
            sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(phc) = phc else {
            return Err(UserError::NotFound);
        };
        let user = self.get(user_id).await?.ok_or(UserError::NotFound)?;
        if !self.hasher.verify(current, Some(phc)).await?.ok {
            audit::record(
                &self.pool,
                actor,
                meta,
                &Event::new(actions::USER_PASSWORD_CHANGE, Outcome::Failed)
                    .subject(format!("user:{user_id}"))
                    .detail(serde_json::json!({ "reason": "wrong current password" })),
            )
            .await?;
            return Err(UserError::WrongPassword);
        }
        check_policy(new, &user.name)?;
        if current.expose_secret() == new.expose_secret() {
            return Err(FieldError::new(
                "password",
                "the new password must differ from the current one",
            )
            .into());
        }
        let phc = self.hasher.hash(new).await?;
        let mut tx = audit::begin(&self.pool).await?;
        sqlx::query(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1, updated_at = ? WHERE id = ?",
        )
        .bind(&phc)
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_PASSWORD_CHANGE, Outcome::Ok)
                .subject(format!("user:{user_id}")),
        )
        .await?;
        tx.commit().await?;
        self.get(user_id).await?.ok_or(UserError::NotFound)
    }

    /// Set a user's password without knowing the current one: for an admin helping a user, or the CLI
    /// recovering a locked-out admin. Ends the user's sessions. Records `user.password_reset`.
    pub async fn reset_password(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        new: &SecretString,
    ) -> Result<User, UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(self
                .deny(
                    actor,
                    meta,
                    actions::USER_PASSWORD_RESET,
                    format!("user:{user_id}"),
                )
                .await);
        }
        let user = self.get(user_id).await?.ok_or(UserError::NotFound)?;
        check_policy(new, &user.name)?;
        let phc = self.hasher.hash(new).await?;
        let mut tx = audit::begin(&self.pool).await?;
        sqlx::query(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1, updated_at = ? WHERE id = ?",
        )
        .bind(&phc)
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_PASSWORD_RESET, Outcome::Ok)
                .subject(format!("user:{user_id}")),
        )
        .await?;
        tx.commit().await?;
        self.get(user_id).await?.ok_or(UserError::NotFound)
    }

    /// Count enabled admins other than `except`, inside a transaction.
    async fn other_enabled_admins(
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
        except: i64,
    ) -> Result<i64, UserError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0 AND id != ?",
        )
        .bind(except)
        .fetch_one(&mut **tx)
        .await?)
    }

    /// Change a user's role. Admins only; the last enabled admin cannot be demoted.
    pub async fn set_role(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        role: Role,
    ) -> Result<User, UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(self
                .deny(
                    actor,
                    meta,
                    actions::USER_ROLE_CHANGE,
                    format!("user:{user_id}"),
                )
                .await);
        }
        let mut tx = audit::begin(&self.pool).await?;
        let old: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        let old: Role = old
            .ok_or(UserError::NotFound)?
            .parse()
            .map_err(|_| UserError::Internal("a stored role is not valid"))?;
        if old == role {
            return self.get(user_id).await?.ok_or(UserError::NotFound);
        }
        if old == Role::Admin && Self::other_enabled_admins(&mut tx, user_id).await? == 0 {
            return Err(UserError::LastAdmin);
        }
        sqlx::query("UPDATE users SET role = ?, updated_at = ? WHERE id = ?")
            .bind(role.as_str())
            .bind(ts::format(ts::now()))
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_ROLE_CHANGE, Outcome::Ok)
                .subject(format!("user:{user_id}"))
                .detail(serde_json::json!({ "from": old, "to": role })),
        )
        .await?;
        tx.commit().await?;
        self.get(user_id).await?.ok_or(UserError::NotFound)
    }

    /// Disable or re-enable a user. Admins only; the last enabled admin cannot be disabled. Disabling ends
    /// the user's sessions.
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
        if !actor.has_role(Role::Admin) {
            return Err(self
                .deny(actor, meta, action, format!("user:{user_id}"))
                .await);
        }
        let mut tx = audit::begin(&self.pool).await?;
        let row: Option<(String, bool)> =
            sqlx::query_as("SELECT role, disabled FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (role, was) = row.ok_or(UserError::NotFound)?;
        if was == disabled {
            return self.get(user_id).await?.ok_or(UserError::NotFound);
        }
        if disabled && role == "admin" && Self::other_enabled_admins(&mut tx, user_id).await? == 0 {
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
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(action, Outcome::Ok).subject(format!("user:{user_id}")),
        )
        .await?;
        tx.commit().await?;
        self.get(user_id).await?.ok_or(UserError::NotFound)
    }

    /// End every session of a user (one's own, or anyone's for an admin).
    pub async fn logout_everywhere(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
    ) -> Result<(), UserError> {
        if actor.user_id() != Some(user_id) && !actor.has_role(Role::Admin) {
            return Err(self
                .deny(
                    actor,
                    meta,
                    actions::USER_LOGOUT_EVERYWHERE,
                    format!("user:{user_id}"),
                )
                .await);
        }
        let mut tx = audit::begin(&self.pool).await?;
        let done = sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound);
        }
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_LOGOUT_EVERYWHERE, Outcome::Ok)
                .subject(format!("user:{user_id}")),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // -----------------------------------------------------------------------------------------------------
    // Invites

    /// Create a one-time invitation for `role`, valid for `ttl`. Admins only. Returns the invite and its
    /// token; only the token's SHA-256 is stored, so the token is shown this once.
    pub async fn create_invite(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        role: Role,
        ttl: Duration,
    ) -> Result<(Invite, SecretString), UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(self
                .deny(actor, meta, actions::INVITE_CREATE, "invite:new".into())
                .await);
        }
        if !(MIN_INVITE_TTL..=MAX_INVITE_TTL).contains(&ttl) {
            return Err(FieldError::new(
                "ttl",
                "an invitation must be valid for between 5 minutes and 30 days",
            )
            .into());
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut raw[..]).map_err(|_| UserError::Internal("random"))?;
        let token = SecretString::from(hex::encode(&raw[..]));
        let now = ts::now();
        let mut tx = audit::begin(&self.pool).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO invites (token_hash, role, created_by, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&token_hash(token.expose_secret())[..])
        .bind(role.as_str())
        .bind(actor.user_id())
        .bind(ts::format(now))
        .bind(ts::format(now + ttl))
        .fetch_one(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::INVITE_CREATE, Outcome::Ok)
                .subject(format!("invite:{id}"))
                .detail(serde_json::json!({ "role": role, "expires_at": ts::format(now + ttl) })),
        )
        .await?;
        tx.commit().await?;
        let invite = self.invite(id).await?.ok_or(UserError::NotFound)?;
        Ok((invite, token))
    }

    async fn invite(&self, id: i64) -> Result<Option<Invite>, UserError> {
        let row = sqlx::query(
            "SELECT id, role, created_by, created_at, expires_at, used_at, used_by, revoked_at FROM invites WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| invite_from_row(&r)).transpose()
    }

    /// Every invitation, newest first. Admins only.
    pub async fn list_invites(&self, actor: &Actor) -> Result<Vec<Invite>, UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(UserError::Forbidden);
        }
        sqlx::query(
            "SELECT id, role, created_by, created_at, expires_at, used_at, used_by, revoked_at FROM invites \
             ORDER BY id DESC",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(invite_from_row)
        .collect()
    }

    /// Revoke an unused invitation. Admins only.
    pub async fn revoke_invite(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: i64,
    ) -> Result<(), UserError> {
        if !actor.has_role(Role::Admin) {
            return Err(self
                .deny(actor, meta, actions::INVITE_REVOKE, format!("invite:{id}"))
                .await);
        }
        let mut tx = audit::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE invites SET revoked_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(ts::format(ts::now()))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::InviteInvalid);
        }
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::INVITE_REVOKE, Outcome::Ok).subject(format!("invite:{id}")),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a token is currently usable (for showing the accept form). Never says more than that.
    pub async fn check_invite(&self, token: &SecretString) -> Result<Role, UserError> {
        let row = self.lookup_invite(&self.pool, token).await?;
        let (_, role) = usable(row)?;
        Ok(role)
    }

    async fn lookup_invite<'e, E>(
        &self,
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

    /// Accept an invitation: create the user with the invite's role and spend the invite, in one transaction.
    pub async fn accept_invite(
        &self,
        meta: &RequestMeta,
        token: &SecretString,
        name: &str,
        password: &SecretString,
    ) -> Result<User, UserError> {
        // Cheap checks first, so a bad token is reported before a weak password costs a hash.
        usable(self.lookup_invite(&self.pool, token).await?)?;
        let (name, phc) = self.prepare(name, password).await?;
        let mut tx = audit::begin(&self.pool).await?;
        let (invite_id, role) = usable(self.lookup_invite(&mut *tx, token).await?)?;
        let user = Self::insert_user(&mut tx, &name, &phc, role).await?;
        sqlx::query("UPDATE invites SET used_at = ?, used_by = ? WHERE id = ?")
            .bind(ts::format(ts::now()))
            .bind(user.id)
            .bind(invite_id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            &user.actor(),
            meta,
            &Event::new(actions::INVITE_ACCEPT, Outcome::Ok)
                .subject(format!("user:{}", user.id))
                .detail(
                    serde_json::json!({ "invite": invite_id, "name": user.name, "role": role }),
                ),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    // -----------------------------------------------------------------------------------------------------
    // TOTP

    /// Start enrolling a TOTP authenticator for oneself: a new secret is stored (sealed) as pending and
    /// returned for the authenticator app. Nothing changes for logins until [`Self::confirm_totp`].
    pub async fn begin_totp(&self, actor: &Actor) -> Result<TotpEnrolment, UserError> {
        let Some(user_id) = actor.user_id() else {
            return Err(UserError::Forbidden);
        };
        let key = self.seal.as_ref().ok_or(UserError::NoSealKey)?;
        let user = self.get(user_id).await?.ok_or(UserError::NotFound)?;
        let secret = totp::new_secret()?;
        let sealed = key
            .seal(&secret, &totp_context(user_id))
            .map_err(|_| UserError::Internal("sealing failed"))?;
        sqlx::query("UPDATE users SET totp_pending = ? WHERE id = ?")
            .bind(sealed)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        totp::enrolment(&secret, &user.name)
    }

    /// Finish enrolment with a first code from the app. Records `user.totp_enrol`.
    pub async fn confirm_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        code: &str,
    ) -> Result<User, UserError> {
        let Some(user_id) = actor.user_id() else {
            return Err(UserError::Forbidden);
        };
        let key = self.seal.as_ref().ok_or(UserError::NoSealKey)?;
        let pending: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT totp_pending FROM users WHERE id = ?")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        let pending = pending
            .ok_or(UserError::NotFound)?
            .ok_or(UserError::NoPendingTotp)?;
        let secret = key
            .open(&pending, &totp_context(user_id))
            .map_err(|_| UserError::Internal("a stored TOTP secret could not be opened"))?;
        let Some(step) = totp::check(&secret, code, totp::unix_now()) else {
            audit::record(
                &self.pool,
                actor,
                meta,
                &Event::new(actions::USER_TOTP_ENROL, Outcome::Failed)
                    .subject(format!("user:{user_id}"))
                    .detail(serde_json::json!({ "reason": "wrong code" })),
            )
            .await?;
            return Err(UserError::TotpInvalid);
        };
        let mut tx = audit::begin(&self.pool).await?;
        sqlx::query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(step as i64)
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_TOTP_ENROL, Outcome::Ok).subject(format!("user:{user_id}")),
        )
        .await?;
        tx.commit().await?;
        self.get(user_id).await?.ok_or(UserError::NotFound)
    }

    /// Remove a user's TOTP: one's own (the current password is required), or anyone's for an admin (a lost
    /// phone).
    pub async fn disable_totp(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        user_id: i64,
        current_password: Option<&SecretString>,
    ) -> Result<User, UserError> {
        let own = actor.user_id() == Some(user_id);
        if !own && !actor.has_role(Role::Admin) {
            return Err(self
                .deny(
                    actor,
                    meta,
                    actions::USER_TOTP_DISABLE,
                    format!("user:{user_id}"),
                )
                .await);
        }
        if own {
            let phc: Option<String> =
                sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
                    .bind(user_id)
                    .fetch_optional(&self.pool)
                    .await?;
            let pw = current_password.ok_or(UserError::WrongPassword)?;
            if !self.hasher.verify(pw, phc).await?.ok {
                return Err(UserError::WrongPassword);
            }
        }
        let mut tx = audit::begin(&self.pool).await?;
        let done = sqlx::query(
            "UPDATE users SET totp_secret = NULL, totp_pending = NULL, totp_last_step = NULL, updated_at = ? \
             WHERE id = ?",
        )
        .bind(ts::format(ts::now()))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(UserError::NotFound);
        }
        audit::append(
            &mut tx,
            actor,
            meta,
            &Event::new(actions::USER_TOTP_DISABLE, Outcome::Ok).subject(format!("user:{user_id}")),
        )
        .await?;
        tx.commit().await?;
        self.get(user_id).await?.ok_or(UserError::NotFound)
    }
}

/// `id, role, expires_at, used_at, revoked_at`.
type InviteRow = (i64, String, String, Option<String>, Option<String>);

struct InviteState {
    id: i64,
    role: String,
    expires_at: String,
    spent: bool,
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
    let role = s
        .role
        .parse()
        .map_err(|_| UserError::Internal("a stored role is not valid"))?;
    Ok((s.id, role))
}

fn invite_from_row(r: &SqliteRow) -> Result<Invite, UserError> {
    let role: String = r.try_get("role")?;
    Ok(Invite {
        id: r.try_get("id")?,
        role: role
            .parse()
            .map_err(|_| UserError::Internal("a stored role is not valid"))?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        used_at: r.try_get("used_at")?,
        used_by: r.try_get("used_by")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("Admin".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("  alice.b-c_1 ").unwrap(), "alice.b-c_1");
        for bad in ["", "   ", "-alice", "al ice", "alïce", "a:b", "(anonymous)"] {
            assert_eq!(validate_name(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(validate_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
