//! Master-key rotation: re-seal every sealed value in the database under the keyring's primary key
//! (security review M7).
//!
//! # Procedure
//!
//! 1. Make a new key the primary (`WALDEN_MASTER_KEY`) and give the old one as retired
//!    (`WALDEN_RETIRED_MASTER_KEYS`); the console keeps opening old values through the retired key.
//! 2. `walden keys rotate` ([`rotate`]): every value not sealed with the primary key is opened (primary or
//!    retired key) and sealed again with the primary key, all in one transaction with one audit row (key ids
//!    and counts only). A value that no known key opens stops it: nothing is changed, the refusal is audited.
//! 3. `walden keys status` ([`status`]) shows every value under the primary key; drop the retired key.
//!
//! Running it again changes nothing and writes nothing (idempotent).
//!
//! # Where sealed values live
//!
//! [`SEALED_COLUMNS`] names every column that holds a sealed value and how to rebuild the context its value
//! is bound to. A new sealed column (escrow's sealed passwords, org tokens) joins the walk by adding a row
//! there; the tests check that every sealed value in a database opens after a rotation.

use std::collections::BTreeMap;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};

use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, actions, AuditError, AuditedTx, Event, Outcome};
use crate::keyring::{KeyId, Keyring};

/// A column holding sealed values: `table.column`, keyed by `id`, bound to the context `context` makes from
/// the row (which holds `id` and the `context_columns`).
#[derive(Clone, Copy, Debug)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// Extra columns the context is made from (beyond `id`), comma-separated; empty for none.
    pub context_columns: &'static str,
    pub context: fn(&SqliteRow) -> Result<String, sqlx::Error>,
}

impl SealedColumn {
    /// `table.column`, as reports and audit rows name it.
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }

    fn select(&self) -> String {
        let extra = if self.context_columns.is_empty() {
            String::new()
        } else {
            format!(", {}", self.context_columns)
        };
        format!(
            "SELECT id, {col} AS sealed{extra} FROM {table} WHERE {col} IS NOT NULL ORDER BY id",
            col = self.column,
            table = self.table,
        )
    }

    fn update(&self) -> String {
        format!("UPDATE {} SET {} = ? WHERE id = ?", self.table, self.column)
    }
}

fn totp_context(row: &SqliteRow) -> Result<String, sqlx::Error> {
    Ok(crate::users::totp::totp_context(row.try_get("id")?))
}

/// Every sealed column in the database.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "users",
        column: "totp_secret",
        context_columns: "",
        context: totp_context,
    },
    SealedColumn {
        table: "users",
        column: "totp_pending",
        context_columns: "",
        context: totp_context,
    },
    SealedColumn {
        table: "escrow_values",
        column: "sealed",
        context_columns: "org, app, version, field",
        context: crate::escrow::row_context,
    },
    SealedColumn {
        table: "fly_orgs",
        column: "token_sealed",
        context_columns: "slug",
        context: crate::orgs::sealed_token_context,
    },
    SealedColumn {
        table: "restore_cutover_secrets",
        column: "sealed",
        context_columns: "run_id, app, name",
        context: crate::restore::cutover::secret_row_context,
    },
];

/// Why a rotation or a status report did not happen. Names key ids and rows, never key material.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error(
        "{count} sealed value(s) cannot be opened by the master key or any retired key ({}); give the key \
         that sealed them as a retired key and run the rotation again; nothing was changed",
        .places.join(", ")
    )]
    Unopenable { count: usize, places: Vec<String> },
    #[error("a value could not be sealed; nothing was changed")]
    Seal,
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// What sealed which values: per column, the number of values per sealing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyStatus {
    pub primary: KeyId,
    pub retired: Vec<KeyId>,
    /// `table.column` → (who sealed → how many values).
    pub columns: BTreeMap<String, BTreeMap<Sealer, u64>>,
}

impl KeyStatus {
    /// Values not yet under the primary key (what a rotation would re-seal).
    pub fn pending(&self) -> u64 {
        self.columns
            .values()
            .flat_map(|by| by.iter())
            .filter(|(sealer, _)| **sealer != Sealer::Key(self.primary.to_string()))
            .map(|(_, n)| n)
            .sum()
    }
}

/// Which key sealed a value, as far as the value says.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sealer {
    /// Format version 2: the key id (16 hex characters).
    Key(String),
    /// Format version 1, from before key ids: any key may have sealed it.
    Legacy,
}

impl std::fmt::Display for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sealer::Key(id) => f.write_str(id),
            Sealer::Legacy => f.write_str("legacy (no key id)"),
        }
    }
}

fn sealer_of(sealed: &[u8]) -> Sealer {
    match Keyring::key_id_of(sealed) {
        Some(id) => Sealer::Key(id.to_string()),
        None => Sealer::Legacy,
    }
}

/// What [`rotate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    /// The key everything is sealed with now.
    pub primary: KeyId,
    /// How many values were sealed again, per key that had sealed them.
    pub resealed: BTreeMap<Sealer, u64>,
    /// The audit row, when anything changed.
    pub audit_id: Option<i64>,
}

impl RotationReport {
    pub fn total(&self) -> u64 {
        self.resealed.values().sum()
    }
}

/// Count the sealed values in the database by the key that sealed them. Admins only (the CLI is one).
pub async fn status(
    pool: &SqlitePool,
    keyring: &Keyring,
    actor: &Actor,
) -> Result<KeyStatus, RotationError> {
    if !actor.has_role(Role::Admin) {
        return Err(RotationError::Forbidden);
    }
    let mut columns = BTreeMap::new();
    for col in SEALED_COLUMNS {
        let rows = sqlx::query(&col.select()).fetch_all(pool).await?;
        let by: &mut BTreeMap<Sealer, u64> = columns.entry(col.name()).or_default();
        for row in &rows {
            let sealed: Vec<u8> = row.try_get("sealed")?;
            *by.entry(sealer_of(&sealed)).or_default() += 1;
        }
    }
    Ok(KeyStatus {
        primary: keyring.primary_id(),
        retired: keyring.retired_ids(),
        columns,
    })
}

/// Re-seal every sealed value that is not under the primary key, in one transaction with one audit row
/// (`keys.rotate`, with key ids and counts only). Admins only (the CLI is one). Changes nothing, and writes
/// no row, when everything is already under the primary key. A value no key of the ring opens refuses the
/// whole rotation: nothing changes, and a `failed` row records it.
#[tracing::instrument(skip_all, fields(actor = %actor.display_name(), primary = %keyring.primary_id()), err(level = "debug"))]
pub async fn rotate(
    pool: &SqlitePool,
    keyring: &Keyring,
    actor: &Actor,
    meta: &RequestMeta,
) -> Result<RotationReport, RotationError> {
    if !actor.has_role(Role::Admin) {
        let event = Event::new(actions::KEYS_ROTATE, Outcome::Denied).subject("keys");
        audit::record(pool, actor, meta, &event).await?;
        return Err(RotationError::Forbidden);
    }
    let primary = keyring.primary_id();
    let current = Sealer::Key(primary.to_string());
    let mut tx = AuditedTx::begin(pool).await?;
    let mut resealed: BTreeMap<Sealer, u64> = BTreeMap::new();
    let mut unopenable: Vec<String> = Vec::new();
    for col in SEALED_COLUMNS {
        let rows = sqlx::query(&col.select()).fetch_all(&mut *tx).await?;
        for row in &rows {
            let sealed: Vec<u8> = row.try_get("sealed")?;
            let sealer = sealer_of(&sealed);
            if sealer == current {
                continue;
            }
            let id: i64 = row.try_get("id")?;
            let context = (col.context)(row)?;
            let Ok(plain) = keyring.open(&sealed, &context) else {
                unopenable.push(format!("{} of row {id}, sealed by {sealer}", col.name()));
                continue;
            };
            let again = keyring
                .seal(&plain, &context)
                .map_err(|_| RotationError::Seal)?;
            sqlx::query(&col.update())
                .bind(again)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            *resealed.entry(sealer).or_default() += 1;
        }
    }
    let key_ids = |ring: &Keyring| {
        ring.retired_ids()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    if !unopenable.is_empty() {
        drop(tx); // roll back whatever was re-sealed
        let event = Event::new(actions::KEYS_ROTATE, Outcome::Failed)
            .subject("keys")
            .detail(serde_json::json!({
                "primary": primary.to_string(),
                "retired": key_ids(keyring),
                "unopenable": unopenable.len(),
            }));
        audit::record(pool, actor, meta, &event).await?;
        return Err(RotationError::Unopenable {
            count: unopenable.len(),
            places: unopenable,
        });
    }
    if resealed.is_empty() {
        // Nothing to do: roll back the empty transaction, write nothing.
        return Ok(RotationReport {
            primary,
            resealed,
            audit_id: None,
        });
    }
    let from: serde_json::Map<String, serde_json::Value> = resealed
        .iter()
        .map(|(sealer, n)| (sealer.to_string(), (*n).into()))
        .collect();
    let event = Event::new(actions::KEYS_ROTATE, Outcome::Ok)
        .subject("keys")
        .detail(serde_json::json!({
            "primary": primary.to_string(),
            "retired": key_ids(keyring),
            "resealed_from": from,
        }));
    let audit_id = tx.commit(actor, meta, &event).await?;
    Ok(RotationReport {
        primary,
        resealed,
        audit_id: Some(audit_id),
    })
}
