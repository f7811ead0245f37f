//! Console accounts: users, roles, passwords, invites, TOTP, and the audit rows for each change.
//!
//! One service, [`Accounts`], whose methods are split by operation (as kanidm splits its server):
//! `login.rs` (signing in and out), `admin.rs` (creating users, roles, disabling, passwords, sessions),
//! `invites.rs` (invitations) and `totp.rs` (the second factor). This file holds the types and the reads.
//! Every password or code check goes through the one limiter in `throttle.rs` ([`Accounts::guarded`]).
//!
//! Every method that changes something writes its audit row in the same transaction, through
//! [`AuditedTx`](crate::audit::AuditedTx); refused attempts are recorded with outcome `denied`, failed logins
//! with `failed`.

mod admin;
mod invites;
mod login;
pub mod password;
mod reauth;
pub mod throttle;
pub mod totp;

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};
use time::Duration;

use crate::audit::{self, AuditError, Event, Outcome};
use crate::keyring::Keyring;
use crate::settings::{Settings, SettingsError};
use crate::ts;

// The vocabulary lives in the leaf module `access`; re-exported where callers have always found it.
pub use crate::access::{Actor, FieldError, RequestMeta, Role};
pub use admin::SetupToken;
pub use password::{
    check_policy, password_from_bytes, HashLimits, HashParams, Hasher, MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
};
pub use throttle::{Throttle, ThrottlePolicy};
pub use totp::TotpEnrolment;

/// Longest user name.
pub const MAX_NAME_LEN: usize = 64;
/// Shortest and longest invite lifetime (longest for viewers and operators; see [`max_invite_ttl`]).
pub const MIN_INVITE_TTL: Duration = Duration::minutes(5);
pub const MAX_INVITE_TTL: Duration = Duration::days(7);
/// Longest lifetime of an invitation to become an admin: a link is a bearer credential, and an admin one is
/// worth the most, so it lives for hours, not weeks (security review M6).
pub const MAX_ADMIN_INVITE_TTL: Duration = Duration::hours(24);

/// The longest an invitation for `role` may be valid.
pub fn max_invite_ttl(role: Role) -> Duration {
    match role {
        Role::Admin => MAX_ADMIN_INVITE_TTL,
        Role::Viewer | Role::Operator => MAX_INVITE_TTL,
    }
}

/// How long an invitation for `role` is valid when the inviter does not say: 4 hours for an admin, 3 days
/// otherwise.
pub fn default_invite_ttl(role: Role) -> Duration {
    match role {
        Role::Admin => Duration::hours(4),
        Role::Viewer | Role::Operator => Duration::days(3),
    }
}

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
    #[error(
        "the setup link is missing or not valid: open the link the server printed when it started"
    )]
    SetupTokenInvalid,
    #[error("the current password is not correct")]
    WrongPassword,
    /// Re-authentication with password and code failed; which of the two was wrong is not said.
    #[error("the current password or code is not correct")]
    WrongPasswordOrCode,
    /// Too many failed password or code checks; the limiter refused this one without checking it.
    #[error("too many attempts; wait a while and try again")]
    Throttled,
    /// Every password-hashing slot stayed busy for the whole queue timeout.
    #[error("the server is busy; try again in a few seconds")]
    Busy,
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

/// Accounts read one setting (whether admins must use TOTP); reading it fails only on the database.
impl From<SettingsError> for UserError {
    fn from(e: SettingsError) -> Self {
        match e {
            SettingsError::Invalid(f) => UserError::Invalid(f),
            SettingsError::Forbidden => UserError::Forbidden,
            SettingsError::Audit(e) => UserError::Audit(e),
            SettingsError::Db(e) => UserError::Db(e),
        }
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
    /// Too many failures for this account or from this client; nothing was checked.
    #[error("too many attempts; wait a while and try again")]
    Throttled,
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
        Ok(User {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            role: row.try_get("role")?,
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
    /// See [`Accounts::must_enrol_totp`]: send them to enrol before anything else.
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

/// An invitation that can still be accepted (not used, revoked or expired), as the Users page and
/// `walden user invites` list it. Never the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInvite {
    pub id: i64,
    pub role: Role,
    /// The inviting user's name (`None`: the CLI, or a user since gone).
    pub created_by: Option<String>,
    pub created_at: String,
    pub expires_at: String,
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
    if !name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
    {
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

/// The audit subject naming a user.
fn user_subject(user_id: i64) -> String {
    format!("user:{user_id}")
}

/// The account service. Cheap to clone; holds the pool, the password hasher, the settings it obeys and
/// (optionally) the keyring that seals TOTP secrets.
#[derive(Clone)]
pub struct Accounts {
    pool: SqlitePool,
    hasher: Hasher,
    throttle: Throttle,
    settings: Settings,
    keyring: Option<Keyring>,
}

impl fmt::Debug for Accounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("hasher", &self.hasher)
            .field("totp", &self.keyring.is_some())
            .finish()
    }
}

impl Accounts {
    pub fn new(pool: SqlitePool, hasher: Hasher) -> Self {
        Accounts {
            settings: Settings::new(pool.clone()),
            throttle: Throttle::new(pool.clone(), ThrottlePolicy::default()),
            pool,
            hasher,
            keyring: None,
        }
    }

    /// Enable TOTP by giving the keyring that seals TOTP secrets at rest (the [`crate::Walden`] one).
    pub fn with_keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Use other throttling limits than [`ThrottlePolicy::default`] (tests).
    pub fn with_throttle_policy(mut self, policy: ThrottlePolicy) -> Self {
        self.throttle = Throttle::new(self.pool.clone(), policy);
        self
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Forget throttling state no limit looks at any more (the maintenance worker calls this).
    pub async fn prune_throttle(&self) -> Result<u64, UserError> {
        Ok(self.throttle.prune(throttle::unix_now()).await?)
    }

    /// The audit subject for a sign-in name that is no user (security review L2): a typed name may be a
    /// password typed into the wrong field, and the log is append-only, so it is never stored as typed. With a
    /// keyring it is a keyed fingerprint (repeated attempts at one name still line up); without one, nothing of
    /// it is kept.
    fn unknown_name_subject(&self, name: &str) -> String {
        let fingerprint = self.keyring.as_ref().and_then(|keyring| {
            keyring
                .fingerprint(
                    "walden/audit/login-name",
                    name.trim().to_lowercase().as_bytes(),
                )
                .ok()
        });
        match fingerprint {
            Some(f) => format!("login-name:{}", hex::encode(&f[..8])),
            None => "login-name:(not recorded)".to_owned(),
        }
    }

    /// The keyring, or the error that says TOTP is unavailable without one.
    fn keyring(&self) -> Result<&Keyring, UserError> {
        self.keyring.as_ref().ok_or(UserError::NoSealKey)
    }

    /// Record a refused attempt (`denied`) and return the error for it.
    async fn deny(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        subject: String,
    ) -> UserError {
        let event = Event::new(action, Outcome::Denied).subject(subject);
        match audit::record(&self.pool, actor, meta, &event).await {
            Ok(_) => UserError::Forbidden,
            Err(e) => UserError::Audit(e),
        }
    }

    /// Refuse (and record) unless `actor` holds `role`.
    async fn require(
        &self,
        actor: &Actor,
        role: Role,
        meta: &RequestMeta,
        action: &str,
        subject: impl FnOnce() -> String,
    ) -> Result<(), UserError> {
        if actor.has_role(role) {
            return Ok(());
        }
        Err(self.deny(actor, meta, action, subject()).await)
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

    /// The user after a change that must have kept them.
    async fn reload(&self, id: i64) -> Result<User, UserError> {
        self.get(id).await?.ok_or(UserError::NotFound)
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
    #[tracing::instrument(skip_all, fields(actor = %actor.display_name()), err(level = "debug"))]
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

    /// The rule "admins must use two-factor sign-in": `true` when `user` is an admin without TOTP while the
    /// `require_totp_for_admins` setting is on. Such a user is sent to enrol and refused everything else
    /// (by the console) until they do. The one place this rule is decided.
    pub async fn must_enrol_totp(&self, user: &User) -> Result<bool, UserError> {
        if user.role != Role::Admin || user.totp_enabled {
            return Ok(false);
        }
        Ok(self.settings.require_totp_for_admins().await?)
    }

    async fn insert_user(
        conn: &mut SqliteConnection,
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
            .bind(role)
            .bind(&now)
            .bind(&now)
            .fetch_one(conn)
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
