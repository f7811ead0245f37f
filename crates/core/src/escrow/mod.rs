//! Credential escrow: the passwords and storage settings a restore of a Fly Stolon cluster needs, sealed at
//! rest, versioned, proven and revealed only with a reason (issue #11).
//!
//! One service, [`Escrow`], split by operation: `capture.rs` (recording captured values as versions),
//! `reveal.rs` (reveals, with or without a second person's approval), and this file (types, sealing, reads,
//! proofs). No Fly call happens here: whoever captures (exec, the secrets API, a person typing) hands the values
//! in.
//!
//! # Sealing
//!
//! Each value is sealed with the [`Keyring`] (format 2: key id, random nonce, XChaCha20-Poly1305) for the
//! context `walden/escrow/{org}/{app}/v{version}/{field}`, so a ciphertext copied to another cluster, version or
//! field does not open. Org, app and field names are checked to hold no `/`, so contexts cannot collide. Each
//! value also gets a keyed fingerprint ([`Keyring::fingerprint`], context `walden/escrow/fp/{org}/{app}/{field}`,
//! without the version so equal values compare equal across versions), stored with the id of the key that made
//! it, so "unchanged since …" needs no decryption. `walden keys rotate` re-seals `escrow_values.sealed` like
//! every sealed column ([`crate::rotation::SEALED_COLUMNS`]).
//!
//! # Storage (`migrations/20261201000100_escrow.sql`)
//!
//! `escrow_versions` (one captured set per cluster: number, time, who, how) and `escrow_values` (one row per
//! field) are append-only by trigger; a value row accepts only a re-seal. The wal-g storage settings are one row
//! per setting rather than one sealed env block: each setting gets its own fingerprint, so a listing names the
//! setting that changed (a rotated `AWS_SECRET_ACCESS_KEY`, not "the storage block"), and a reveal discloses one
//! setting, not every storage secret at once. Every version is a complete snapshot, so a restore reads one
//! version. `escrow_proofs` holds login proofs per version and role; `escrow_reveal_requests` the two-person
//! reveals, each step set once (the table refuses a self-approval itself).
//!
//! # Rules
//!
//! - Viewers may list versions and proofs (metadata and fingerprints, never values); operators and admins may
//!   capture, request, approve and reveal. Refusals are audited (`denied`).
//! - Every change writes its audit row in the same transaction ([`AuditedTx`]). A reveal writes its row (with
//!   the reason) before the value leaves this module: no row, no value.
//! - Plaintext lives only in [`SecretString`] and [`Zeroizing`] buffers; errors name rows, never values.

mod capture;
mod restore_values;
mod reveal;
mod run;
mod storage;
mod survival;
pub(crate) use storage::StorageSettings;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use std::sync::Arc;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{self, actions, AuditError, AuditedTx, Event, Outcome, Target};
use crate::keyring::{Keyring, SealError};
use crate::orgs::{OrgError, Orgs};
use crate::ts;

pub use capture::CaptureOutcome;
pub use reveal::RevealRequest;
pub use run::{CaptureReport, ProofReport, RoleResult, RoleStatus};

/// The three Stolon passwords every capture must hold (flypgadmin, repluser, postgres; see the seed guide).
pub const PASSWORD_FIELDS: [&str; 3] = ["SU_PASSWORD", "REPL_PASSWORD", "OPERATOR_PASSWORD"];
/// Prefixes of the wal-g storage settings that may be escrowed beside them.
pub const STORAGE_PREFIXES: [&str; 4] = ["WALG_", "AWS_", "GOOGLE_", "AZURE_"];
/// Longest value accepted (bytes). Passwords and storage settings are far shorter; a larger one is a mistake.
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest reveal reason (characters).
pub const MAX_REASON_CHARS: usize = 1000;

/// How the values of a version were obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureHow {
    /// `printenv NAME` on the leader, through the Machines API exec.
    Exec,
    /// The secrets API, where the token may read values.
    SecretsApi,
    /// Typed in by a person.
    Manual,
    /// Typed in because the cluster's machines were down (nothing could be read from them).
    ManualMachinesDown,
}

impl CaptureHow {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureHow::Exec => "exec",
            CaptureHow::SecretsApi => "secrets_api",
            CaptureHow::Manual => "manual",
            CaptureHow::ManualMachinesDown => "manual_machines_down",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "exec" => Some(CaptureHow::Exec),
            "secrets_api" => Some(CaptureHow::SecretsApi),
            "manual" => Some(CaptureHow::Manual),
            "manual_machines_down" => Some(CaptureHow::ManualMachinesDown),
            _ => None,
        }
    }
}

/// One field of a version, as listed: never the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldInfo {
    pub field: String,
    /// The keyed fingerprint, hex (64 characters).
    pub fingerprint: String,
    /// The id of the key the fingerprint was made with. Fingerprints compare only under the same key; across a
    /// rotation, [`FieldInfo::changed`] (decided at capture by opening the older value) is the answer.
    pub fingerprint_key: String,
    /// Whether the value differs from the previous version's (always `true` in version 1).
    pub changed: bool,
}

/// One credential version, as listed: metadata and fingerprints, never values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub org: String,
    pub app: String,
    pub version: i64,
    pub captured_at: String,
    pub captured_by: String,
    pub how: CaptureHow,
    pub fields: Vec<FieldInfo>,
    /// Fields the previous version had and this one does not.
    pub removed: Vec<String>,
}

impl VersionInfo {
    /// The fields whose value changed from the previous version (added ones included).
    pub fn changed_fields(&self) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|f| f.changed)
            .map(|f| f.field.as_str())
            .collect()
    }
}

/// When `field` last changed, as of the newest version in `versions` (oldest first, as
/// [`Escrow::versions`] returns them): the capture time of the newest version that changed it ("unchanged
/// since …"). `None` when the newest version does not hold the field.
pub fn unchanged_since<'a>(versions: &'a [VersionInfo], field: &str) -> Option<&'a str> {
    versions.last()?.fields.iter().find(|f| f.field == field)?;
    versions
        .iter()
        .rev()
        .find(|v| v.fields.iter().any(|f| f.field == field && f.changed))
        .map(|v| v.captured_at.as_str())
}

/// The Postgres roles whose passwords are proven, and the field each one's password is kept in.
pub const PROOF_ROLES: [(&str, &str); 3] = [
    ("flypgadmin", "SU_PASSWORD"),
    ("repluser", "REPL_PASSWORD"),
    ("postgres", "OPERATOR_PASSWORD"),
];

/// One login proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub version: i64,
    pub role: String,
    pub proven_at: String,
    pub ok: bool,
    pub message: Option<String>,
}

/// Why an escrow operation did not happen. Texts are for people; none carries a value.
#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("{0}")]
    Invalid(FieldError),
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("credential escrow is unavailable: no master key is configured (WALDEN_MASTER_KEY)")]
    NoKey,
    #[error("there is no escrowed {what}")]
    NotFound { what: String },
    #[error(
        "revealing needs a second person's approval: request the reveal, and reveal it once another operator \
         or admin has approved"
    )]
    ApprovalRequired,
    #[error("there is no such reveal request")]
    NoSuchRequest,
    #[error("you cannot approve your own request; another operator or admin must")]
    SelfApproval,
    #[error("only the person who asked for this reveal may use its approval")]
    NotYourRequest,
    #[error("this reveal request has not been approved yet")]
    NotApproved,
    #[error("this reveal request has already been approved")]
    AlreadyApproved,
    #[error("this approval has already been used; request the reveal again")]
    RequestUsed,
    #[error("this reveal request has expired; request the reveal again")]
    RequestExpired,
    #[error(
        "the escrowed {place} was sealed by key {key}, which is not configured; give that key as a retired \
         key (WALDEN_RETIRED_MASTER_KEYS) and try again"
    )]
    UnknownKey { place: String, key: String },
    #[error(
        "the escrowed {place} cannot be opened: it was changed or moved from another row, or sealed by a \
         different key"
    )]
    Unopenable { place: String },
    #[error("a value could not be sealed; nothing was stored")]
    Seal,
    #[error("the cluster {app:?} of {org:?} is not tracked; an admin tracks it first (walden org track)")]
    NotTracked { org: String, app: String },
    #[error(
        "no Fly organisation is configured, so there is nothing to capture from or prove against"
    )]
    NoFly,
    #[error("{0}")]
    Org(Box<OrgError>),
    #[error("{0}")]
    Fly(Box<fly::escrow::EscrowError>),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Raising or resolving the alert of a failed proof (`crate::alerts`).
    #[error(transparent)]
    Alert(#[from] crate::alerts::AlertsError),
}

impl From<FieldError> for EscrowError {
    fn from(e: FieldError) -> Self {
        EscrowError::Invalid(e)
    }
}

type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// The escrow as a service of [`crate::Walden`]. Cheap to clone.
#[derive(Clone)]
pub struct Escrow {
    pool: SqlitePool,
    keyring: Option<Keyring>,
    clock: Clock,
    /// Where a capture or proof finds the organisation's Fly client (`None`: list, reveal and manual entry
    /// only).
    orgs: Option<Orgs>,
}

impl std::fmt::Debug for Escrow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escrow")
            .field("keyring", &self.keyring)
            .finish_non_exhaustive()
    }
}

impl Escrow {
    /// The service on `pool`; without a keyring it lists and proves but neither captures nor reveals.
    pub fn new(pool: SqlitePool, keyring: Option<Keyring>) -> Self {
        Escrow {
            pool,
            keyring,
            clock: Arc::new(ts::now),
            orgs: None,
        }
    }

    /// The same service capturing and proving through `orgs` (their tokens, or the environment's).
    pub fn with_orgs(mut self, orgs: Orgs) -> Self {
        self.orgs = Some(orgs);
        self
    }

    /// The same service reading the time from `clock` (tests of approval windows, without waiting).
    #[cfg(any(test, feature = "testkit"))]
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    fn keyring(&self) -> Result<&Keyring, EscrowError> {
        self.keyring.as_ref().ok_or(EscrowError::NoKey)
    }

    /// Refuse (and audit the refusal of) an actor below `role`.
    async fn require(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        role: Role,
        action: &str,
        org: &str,
        app: &str,
    ) -> Result<(), EscrowError> {
        if actor.has_role(role) {
            return Ok(());
        }
        let event = Event::new(action, Outcome::Denied).target(target(org, app, None));
        audit::record(&self.pool, actor, meta, &event).await?;
        Err(EscrowError::Forbidden)
    }

    /// Every version of a cluster's credentials, oldest first: metadata, fingerprints and which fields
    /// changed, never values. Viewers and up.
    #[tracing::instrument(skip_all, fields(org = org, app = app), err(level = "debug"))]
    pub async fn versions(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<Vec<VersionInfo>, EscrowError> {
        check_cluster(org, app)?;
        self.require(actor, meta, Role::Viewer, actions::ESCROW_LIST, org, app)
            .await?;
        let headers = sqlx::query(
            "SELECT version, captured_at, captured_by, how FROM escrow_versions \
             WHERE org = ? AND app = ? ORDER BY version",
        )
        .bind(org)
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        let values = sqlx::query(
            "SELECT version, field, fingerprint, fingerprint_key, changed FROM escrow_values \
             WHERE org = ? AND app = ? ORDER BY version, field",
        )
        .bind(org)
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<VersionInfo> = Vec::with_capacity(headers.len());
        for row in &headers {
            out.push(version_info(org, app, row)?);
        }
        for row in &values {
            let version: i64 = row.try_get("version")?;
            if let Some(v) = out.iter_mut().find(|v| v.version == version) {
                v.fields.push(field_info(row)?);
            }
        }
        for i in 1..out.len() {
            let removed: Vec<String> = out[i - 1]
                .fields
                .iter()
                .filter(|prev| !out[i].fields.iter().any(|f| f.field == prev.field))
                .map(|prev| prev.field.clone())
                .collect();
            out[i].removed = removed;
        }
        Ok(out)
    }

    /// The version valid at `at`: the last one captured at or before it (what a restore to `at` needs).
    /// `None` when nothing had been captured yet. Viewers and up.
    #[tracing::instrument(skip_all, fields(org = org, app = app), err(level = "debug"))]
    pub async fn version_at(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        at: OffsetDateTime,
    ) -> Result<Option<VersionInfo>, EscrowError> {
        check_cluster(org, app)?;
        self.require(actor, meta, Role::Viewer, actions::ESCROW_LIST, org, app)
            .await?;
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM escrow_versions WHERE org = ? AND app = ? AND captured_at <= ?",
        )
        .bind(org)
        .bind(app)
        .bind(ts::format(at))
        .fetch_one(&self.pool)
        .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        let all = self.versions(actor, meta, org, app).await?;
        Ok(all.into_iter().find(|v| v.version == version))
    }

    /// Record a login proof of `version`'s password for `role` (`flypgadmin`, `repluser` or `postgres`), with
    /// its audit row. `message` says why a proof failed; it must never hold a password. Operators and up (the
    /// proof runner acts as the system).
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(org = org, app = app, version = version, role = role, ok = ok), err(level = "debug"))]
    pub async fn record_proof(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        version: i64,
        role: &str,
        ok: bool,
        message: Option<&str>,
    ) -> Result<Proof, EscrowError> {
        check_cluster(org, app)?;
        if !PROOF_ROLES.iter().any(|(r, _)| *r == role) {
            return Err(FieldError::new(
                "role",
                "the role must be flypgadmin, repluser or postgres",
            )
            .into());
        }
        let message = message.map(|m| clip_chars(m.trim(), 1000));
        self.require(actor, meta, Role::Operator, actions::ESCROW_PROOF, org, app)
            .await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM escrow_versions WHERE org = ? AND app = ? AND version = ?",
        )
        .bind(org)
        .bind(app)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(EscrowError::NotFound {
                what: format!("version {version} of {org}/{app}"),
            });
        }
        let proven_at = ts::format(self.now());
        sqlx::query(
            "INSERT INTO escrow_proofs (org, app, version, role, proven_at, ok, message) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(org)
        .bind(app)
        .bind(version)
        .bind(role)
        .bind(&proven_at)
        .bind(ok)
        .bind(&message)
        .execute(&mut *tx)
        .await?;
        let event = Event::new(
            actions::ESCROW_PROOF,
            if ok { Outcome::Ok } else { Outcome::Failed },
        )
        .target(target(org, app, Some(version)))
        .detail(serde_json::json!({ "version": version, "role": role, "message": message }));
        tx.commit(actor, meta, &event).await?;
        Ok(Proof {
            version,
            role: role.to_owned(),
            proven_at,
            ok,
            message,
        })
    }

    /// The latest proof per role of a cluster (any version). Viewers and up.
    #[tracing::instrument(skip_all, fields(org = org, app = app), err(level = "debug"))]
    pub async fn latest_proofs(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<Vec<Proof>, EscrowError> {
        check_cluster(org, app)?;
        self.require(actor, meta, Role::Viewer, actions::ESCROW_LIST, org, app)
            .await?;
        let rows = sqlx::query(
            "SELECT p.version, p.role, p.proven_at, p.ok, p.message FROM escrow_proofs p \
             WHERE p.org = ? AND p.app = ? AND p.id = (SELECT MAX(id) FROM escrow_proofs q \
             WHERE q.org = p.org AND q.app = p.app AND q.role = p.role) ORDER BY p.role",
        )
        .bind(org)
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Proof {
                    version: r.try_get("version")?,
                    role: r.try_get("role")?,
                    proven_at: r.try_get("proven_at")?,
                    ok: r.try_get("ok")?,
                    message: r.try_get("message")?,
                })
            })
            .collect()
    }

    /// Open one stored value, naming the row in any error.
    fn open_value(
        &self,
        ring: &Keyring,
        row: &StoredValue,
    ) -> Result<Zeroizing<Vec<u8>>, EscrowError> {
        let place = row.place();
        if let Some(id) = Keyring::key_id_of(&row.sealed) {
            let known = id == ring.primary_id() || ring.retired_ids().contains(&id);
            if !known {
                return Err(EscrowError::UnknownKey {
                    place,
                    key: id.to_string(),
                });
            }
        }
        ring.open(
            &row.sealed,
            &context(&row.org, &row.app, row.version, &row.field),
        )
        .map_err(|_: SealError| EscrowError::Unopenable { place })
    }
}

/// A stored value row, sealed.
pub(crate) struct StoredValue {
    pub id: i64,
    pub org: String,
    pub app: String,
    pub version: i64,
    pub field: String,
    pub sealed: Vec<u8>,
    pub fingerprint: Vec<u8>,
    pub fingerprint_key: String,
}

impl StoredValue {
    pub(crate) const COLUMNS: &'static str =
        "id, org, app, version, field, sealed, fingerprint, fingerprint_key";

    pub(crate) fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(StoredValue {
            id: row.try_get("id")?,
            org: row.try_get("org")?,
            app: row.try_get("app")?,
            version: row.try_get("version")?,
            field: row.try_get("field")?,
            sealed: row.try_get("sealed")?,
            fingerprint: row.try_get("fingerprint")?,
            fingerprint_key: row.try_get("fingerprint_key")?,
        })
    }

    /// Every stored value of `version` of `org`/`app`, sealed (inside a transaction or on the pool).
    pub(crate) async fn of_version<'e, E>(
        db: E,
        org: &str,
        app: &str,
        version: i64,
    ) -> Result<Vec<StoredValue>, sqlx::Error>
    where
        E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
    {
        sqlx::query(&format!(
            "SELECT {} FROM escrow_values WHERE org = ? AND app = ? AND version = ?",
            StoredValue::COLUMNS
        ))
        .bind(org)
        .bind(app)
        .bind(version)
        .fetch_all(db)
        .await?
        .iter()
        .map(StoredValue::from_row)
        .collect()
    }

    /// Where the value lives, for errors: `SU_PASSWORD of acme/pg-main version 3 (escrow_values row 7)`.
    fn place(&self) -> String {
        format!(
            "{} of {}/{} version {} (escrow_values row {})",
            self.field, self.org, self.app, self.version, self.id
        )
    }
}

/// The context a value is sealed for: binds org, app, version and field (the AEAD's associated data).
pub fn context(org: &str, app: &str, version: i64, field: &str) -> String {
    format!("walden/escrow/{org}/{app}/v{version}/{field}")
}

/// The context of a value's fingerprint: org, app and field, not the version, so an unchanged value keeps its
/// fingerprint from version to version.
pub fn fingerprint_context(org: &str, app: &str, field: &str) -> String {
    format!("walden/escrow/fp/{org}/{app}/{field}")
}

/// The sealing context of an `escrow_values` row, for [`crate::rotation::SEALED_COLUMNS`].
pub(crate) fn row_context(row: &SqliteRow) -> Result<String, sqlx::Error> {
    let org: String = row.try_get("org")?;
    let app: String = row.try_get("app")?;
    let version: i64 = row.try_get("version")?;
    let field: String = row.try_get("field")?;
    Ok(context(&org, &app, version, &field))
}

/// A Fly org slug or app name: 1–63 lower-case letters, digits and dashes (Fly's own rule for app names).
fn check_name(field: &'static str, what: &str, value: &str) -> Result<(), FieldError> {
    let ok = (1..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("the {what} must be 1 to 63 lower-case letters, digits and dashes"),
        ))
    }
}

pub(crate) fn check_cluster(org: &str, app: &str) -> Result<(), FieldError> {
    check_name("org", "organization slug", org)?;
    check_name("app", "app name", app)
}

/// A field escrow keeps: one of [`PASSWORD_FIELDS`], or a storage setting named by one of
/// [`STORAGE_PREFIXES`] (upper-case letters, digits and `_`).
pub fn check_field(field: &str) -> Result<(), FieldError> {
    let shaped = (1..=64).contains(&field.len())
        && field
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    let known = PASSWORD_FIELDS.contains(&field)
        || STORAGE_PREFIXES
            .iter()
            .any(|p| field.len() > p.len() && field.starts_with(p));
    if shaped && known {
        Ok(())
    } else {
        Err(FieldError::new(
            "field",
            format!(
                "{:?} is not a field escrow keeps: SU_PASSWORD, REPL_PASSWORD, OPERATOR_PASSWORD, or a \
                 WALG_*, AWS_*, GOOGLE_* or AZURE_* storage setting",
                clip_chars(field, 64)
            ),
        ))
    }
}

fn clip_chars(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The audit target of an escrow event.
fn target(org: &str, app: &str, version: Option<i64>) -> Target {
    Target {
        app_name: Some(app.to_owned()),
        subject: Some(match version {
            Some(v) => format!("escrow:{org}/{app}/v{v}"),
            None => format!("escrow:{org}/{app}"),
        }),
        ..Target::default()
    }
}

fn version_info(org: &str, app: &str, row: &SqliteRow) -> Result<VersionInfo, EscrowError> {
    let how: String = row.try_get("how")?;
    Ok(VersionInfo {
        org: org.to_owned(),
        app: app.to_owned(),
        version: row.try_get("version")?,
        captured_at: row.try_get("captured_at")?,
        captured_by: row.try_get("captured_by")?,
        how: CaptureHow::parse(&how).ok_or_else(|| {
            EscrowError::Db(sqlx::Error::Decode(
                format!("escrow_versions.how holds {how:?}").into(),
            ))
        })?,
        fields: Vec::new(),
        removed: Vec::new(),
    })
}

fn field_info(row: &SqliteRow) -> Result<FieldInfo, sqlx::Error> {
    let fingerprint: Vec<u8> = row.try_get("fingerprint")?;
    Ok(FieldInfo {
        field: row.try_get("field")?,
        fingerprint: hex::encode(fingerprint),
        fingerprint_key: row.try_get("fingerprint_key")?,
        changed: row.try_get("changed")?,
    })
}

/// A secret value as a [`SecretString`], refusing bytes that are not UTF-8 (environment values are text).
fn secret_from(
    bytes: Zeroizing<Vec<u8>>,
    place: impl FnOnce() -> String,
) -> Result<SecretString, EscrowError> {
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(SecretString::from(text)),
        Err(_) => Err(EscrowError::Unopenable { place: place() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fields_are_checked() {
        assert!(check_cluster("acme", "pg-main").is_ok());
        assert!(check_cluster("Acme", "pg").is_err());
        assert!(check_cluster("acme", "pg/x").is_err());
        assert!(check_cluster("", "pg").is_err());
        for ok in [
            "SU_PASSWORD",
            "WALG_S3_PREFIX",
            "AWS_SECRET_ACCESS_KEY",
            "AZURE_STORAGE_KEY",
        ] {
            assert!(check_field(ok).is_ok(), "{ok}");
        }
        for bad in ["PATH", "WALG_", "walg_x", "AWS_A/B", "SU_PASSWORD2"] {
            assert!(check_field(bad).is_err(), "{bad}");
        }
        assert_eq!(
            context("acme", "pg", 3, "SU_PASSWORD"),
            "walden/escrow/acme/pg/v3/SU_PASSWORD"
        );
    }
}
