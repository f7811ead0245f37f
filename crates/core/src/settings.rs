//! Console-wide settings (the `settings` table), changed by admins and audited.
//!
//! Only settings this module knows can be set, so a typo never becomes a setting. Every change writes a
//! `setting.change` row in the same transaction; a refused change writes a `denied` row.

use sqlx::SqlitePool;

use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{self, actions, AuditError, AuditedTx, Event, Outcome};
use crate::ts;

/// When `true`, admins must sign in with a TOTP code (and are sent to enrol one first).
pub const REQUIRE_TOTP_FOR_ADMINS: &str = "require_totp_for_admins";

/// When `true`, revealing an escrowed credential needs a second person's approval (`crate::escrow`).
pub const REQUIRE_REVEAL_APPROVAL: &str = "require_reveal_approval";

/// When `true`, a restore run starts only from a plan another operator or admin approved (`crate::restore`).
pub const REQUIRE_RESTORE_APPROVAL: &str = "require_restore_approval";

/// Settings this crate knows, with their kind. Unknown keys are refused so a typo never becomes a setting.
const KNOWN_BOOL: &[&str] = &[
    REQUIRE_TOTP_FOR_ADMINS,
    REQUIRE_REVEAL_APPROVAL,
    REQUIRE_RESTORE_APPROVAL,
];

/// Why a setting could not be read or changed. The texts are the ones people have always seen.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Invalid(FieldError),
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<FieldError> for SettingsError {
    fn from(e: FieldError) -> Self {
        SettingsError::Invalid(e)
    }
}

/// Read a setting's raw value.
pub async fn get(pool: &SqlitePool, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
        .bind(key)
        .fetch_optional(pool)
        .await
}

/// Read a boolean setting (`false` when unset).
pub async fn get_bool(pool: &SqlitePool, key: &str) -> Result<bool, sqlx::Error> {
    Ok(get(pool, key).await?.as_deref() == Some("true"))
}

/// Set a boolean setting. Admins only; writes a `setting.change` audit row in the same transaction.
pub async fn set_bool(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    key: &str,
    value: bool,
) -> Result<(), SettingsError> {
    if !KNOWN_BOOL.contains(&key) {
        return Err(FieldError::new("key", format!("there is no setting called {key:?}")).into());
    }
    let subject = format!("setting:{key}");
    if !actor.has_role(Role::Admin) {
        let denied = Event::new(actions::SETTING_CHANGE, Outcome::Denied).subject(&subject);
        audit::record(pool, actor, meta, &denied).await?;
        return Err(SettingsError::Forbidden);
    }
    let mut tx = AuditedTx::begin(pool).await?;
    let old: Option<String> = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
    let new = if value { "true" } else { "false" };
    sqlx::query(
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(key)
    .bind(new)
    .bind(ts::format(ts::now()))
    .execute(&mut *tx)
    .await?;
    let event = Event::new(actions::SETTING_CHANGE, Outcome::Ok)
        .subject(&subject)
        .detail(serde_json::json!({ "key": key, "from": old, "to": new }));
    tx.commit(actor, meta, &event).await?;
    Ok(())
}

/// The settings as a service of [`crate::Walden`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Settings {
    pool: SqlitePool,
}

impl Settings {
    pub fn new(pool: SqlitePool) -> Self {
        Settings { pool }
    }

    /// Read a boolean setting (`false` when unset).
    #[tracing::instrument(skip_all, fields(key = key), err(level = "debug"))]
    pub async fn get_bool(&self, key: &str) -> Result<bool, SettingsError> {
        Ok(get_bool(&self.pool, key).await?)
    }

    /// Set a boolean setting. Admins only; audited (see [`set_bool`]).
    #[tracing::instrument(skip_all, fields(key = key, value = value), err(level = "debug"))]
    pub async fn set_bool(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        key: &str,
        value: bool,
    ) -> Result<(), SettingsError> {
        set_bool(&self.pool, actor, meta, key, value).await
    }

    /// Whether admins must sign in with TOTP ([`REQUIRE_TOTP_FOR_ADMINS`]).
    pub async fn require_totp_for_admins(&self) -> Result<bool, SettingsError> {
        self.get_bool(REQUIRE_TOTP_FOR_ADMINS).await
    }

    /// Whether an escrow reveal needs a second person's approval ([`REQUIRE_REVEAL_APPROVAL`]).
    pub async fn require_reveal_approval(&self) -> Result<bool, SettingsError> {
        self.get_bool(REQUIRE_REVEAL_APPROVAL).await
    }

    /// Whether a restore run needs a second person's approval of its plan ([`REQUIRE_RESTORE_APPROVAL`]).
    pub async fn require_restore_approval(&self) -> Result<bool, SettingsError> {
        self.get_bool(REQUIRE_RESTORE_APPROVAL).await
    }
}
