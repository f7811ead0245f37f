//! Console-wide settings (the `settings` table), changed by admins and audited.

use sqlx::SqlitePool;

use crate::audit::{self, actions, Actor, Event, Outcome, RequestMeta};
use crate::ts;
use crate::users::{Role, UserError};

/// When `true`, admins must sign in with a TOTP code (and are sent to enrol one first).
pub const REQUIRE_TOTP_FOR_ADMINS: &str = "require_totp_for_admins";

/// Settings this crate knows, with their kind. Unknown keys are refused so a typo never becomes a setting.
const KNOWN_BOOL: &[&str] = &[REQUIRE_TOTP_FOR_ADMINS];

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
) -> Result<(), UserError> {
    if !KNOWN_BOOL.contains(&key) {
        return Err(UserError::Invalid(crate::users::FieldError::new(
            "key",
            format!("there is no setting called {key:?}"),
        )));
    }
    let subject = format!("setting:{key}");
    if !actor.has_role(Role::Admin) {
        audit::record(
            pool,
            actor,
            meta,
            &Event::new(actions::SETTING_CHANGE, Outcome::Denied).subject(&subject),
        )
        .await?;
        return Err(UserError::Forbidden);
    }
    let mut tx = audit::begin(pool).await?;
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
    audit::append(
        &mut tx,
        actor,
        meta,
        &Event::new(actions::SETTING_CHANGE, Outcome::Ok)
            .subject(&subject)
            .detail(serde_json::json!({ "key": key, "from": old, "to": new })),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
