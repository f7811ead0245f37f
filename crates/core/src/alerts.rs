//! Alerts: conditions that need a person, raised once while they last and resolved with a recovery message.
//!
//! A condition is named by a key (`escrow.proof/demo/demo-db`). [`Alerts::raise`] opens an alert for a key that
//! has none open and does nothing when one is (de-duplication: the workers that watch a condition say so on each
//! run); [`Alerts::resolve`] closes the open one, if any, with what ended it. Both write their audit row in the
//! same transaction. The webhook worker (`server/src/alerts.rs`) sends each raise and each recovery once:
//! [`Alerts::undelivered`] lists what is still to send, [`Alerts::mark_delivered`] records a delivery (audited).
//!
//! Who raises what: [`crate::escrow`] raises `escrow_proof_failed` when a kept password no longer opens its role
//! and resolves it when every role opens again; the dashboard's freshness rules (issue #12) raise theirs.

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::access::{Actor, RequestMeta};
use crate::audit::{actions, AuditError, AuditedTx, Event, Outcome};
use crate::ts;

/// The kinds of alert, one place for their names (the `kind` column and the webhook's `alert.kind`).
pub mod kinds {
    /// A kept password no longer opens its Postgres role (`crate::escrow`'s login proof).
    pub const ESCROW_PROOF_FAILED: &str = "escrow_proof_failed";
    /// A tracked cluster's backups are red: storage unreachable, or an error finding such as a WAL gap
    /// (`crate::monitor`).
    pub const BACKUPS_FAILING: &str = "backups_failing";
    /// A tracked cluster's backups are amber: WAL or the newest base backup older than the rules allow.
    pub const BACKUPS_LATE: &str = "backups_late";
    /// A tracked cluster's WAL is not being archived and its leader's volume fills up, with the forecast of when
    /// it is full (`crate::monitor::volume`).
    pub const VOLUME_FILLING: &str = "volume_filling";
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something will fail if nobody acts (a stale base backup).
    Warning,
    /// A restore would fail today (a kept password that no longer opens its role).
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "critical" {
            Severity::Critical
        } else {
            Severity::Warning
        }
    }
}

/// What to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertSpec {
    /// The condition, unique while open: `{kind}/{org}/{app}` for a cluster's condition ([`AlertSpec::cluster`]).
    pub key: String,
    /// A stable machine-readable name: `escrow_proof_failed`, `wal_stale`, …
    pub kind: String,
    pub severity: Severity,
    pub org: Option<String>,
    pub app: Option<String>,
    /// For people: what is wrong and what to do about it. Never a secret.
    pub message: String,
}

impl AlertSpec {
    /// A condition of one cluster, keyed `{kind}/{org}/{app}`.
    pub fn cluster(
        kind: &str,
        severity: Severity,
        org: &str,
        app: &str,
        message: impl Into<String>,
    ) -> Self {
        AlertSpec {
            key: cluster_key(kind, org, app),
            kind: kind.to_owned(),
            severity,
            org: Some(org.to_owned()),
            app: Some(app.to_owned()),
            message: message.into(),
        }
    }
}

/// The key of a cluster's condition (see [`AlertSpec::cluster`]).
pub fn cluster_key(kind: &str, org: &str, app: &str) -> String {
    format!("{kind}/{org}/{app}")
}

/// One alert, open or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Alert {
    pub id: i64,
    pub key: String,
    pub kind: String,
    pub severity: String,
    pub org: Option<String>,
    pub app: Option<String>,
    pub message: String,
    pub raised_at: String,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
    pub notified_at: Option<String>,
    pub resolve_notified_at: Option<String>,
}

impl Alert {
    pub fn severity(&self) -> Severity {
        Severity::parse(&self.severity)
    }

    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }
}

/// Which message of an alert a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The alert was raised ("firing").
    Raised,
    /// The alert was resolved ("resolved").
    Resolved,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Raised => "raised",
            Delivery::Resolved => "resolved",
        }
    }
}

/// Why an alert could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    #[error("an alert needs {0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The most alerts [`Alerts::recent`] returns.
pub const RECENT_LIMIT: i64 = 200;

const COLUMNS: &str =
    "id, key, kind, severity, org, app, message, raised_at, resolved_at, resolution, \
                       notified_at, resolve_notified_at";

/// The alerts as a service of [`crate::Walden`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Alerts {
    pool: SqlitePool,
}

impl Alerts {
    pub fn new(pool: SqlitePool) -> Self {
        Alerts { pool }
    }

    /// Raise the alert `spec` unless one is open for its key. `Some` with the new alert when it was raised
    /// (audited `alert.raise` in the same transaction), `None` when it was already open.
    #[tracing::instrument(skip_all, fields(key = %spec.key), err(level = "debug"))]
    pub async fn raise(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        spec: &AlertSpec,
    ) -> Result<Option<Alert>, AlertsError> {
        check(spec)?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let open: Option<i64> =
            sqlx::query_scalar("SELECT id FROM alerts WHERE key = ? AND resolved_at IS NULL")
                .bind(&spec.key)
                .fetch_optional(&mut *tx)
                .await?;
        if open.is_some() {
            return Ok(None);
        }
        let alert: Alert = sqlx::query_as(&format!(
            "INSERT INTO alerts (key, kind, severity, org, app, message, raised_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {COLUMNS}"
        ))
        .bind(&spec.key)
        .bind(&spec.kind)
        .bind(spec.severity.as_str())
        .bind(&spec.org)
        .bind(&spec.app)
        .bind(&spec.message)
        .bind(ts::format(ts::now()))
        .fetch_one(&mut *tx)
        .await?;
        let event = Event::new(actions::ALERT_RAISE, Outcome::Ok)
            .subject(format!("alert:{}", alert.key))
            .detail(serde_json::json!({
                "id": alert.id,
                "kind": alert.kind,
                "severity": alert.severity,
                "message": alert.message,
            }));
        tx.commit(actor, meta, &event).await?;
        Ok(Some(alert))
    }

    /// Resolve the open alert of `key`, if any, with `resolution` (what ended it). `Some` with the resolved
    /// alert (audited `alert.resolve`), `None` when nothing was open.
    #[tracing::instrument(skip_all, fields(key = %key), err(level = "debug"))]
    pub async fn resolve(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        key: &str,
        resolution: &str,
    ) -> Result<Option<Alert>, AlertsError> {
        if resolution.trim().is_empty() {
            return Err(AlertsError::Invalid("a resolution"));
        }
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let resolved: Option<Alert> = sqlx::query_as(&format!(
            "UPDATE alerts SET resolved_at = ?, resolution = ? WHERE key = ? AND resolved_at IS NULL \
             RETURNING {COLUMNS}"
        ))
        .bind(ts::format(ts::now()))
        .bind(resolution)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(alert) = resolved else {
            return Ok(None);
        };
        let event = Event::new(actions::ALERT_RESOLVE, Outcome::Ok)
            .subject(format!("alert:{}", alert.key))
            .detail(serde_json::json!({ "id": alert.id, "resolution": resolution }));
        tx.commit(actor, meta, &event).await?;
        Ok(Some(alert))
    }

    /// The open alerts, critical first, then oldest first.
    pub async fn open(&self) -> Result<Vec<Alert>, AlertsError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE resolved_at IS NULL \
             ORDER BY severity = 'critical' DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The open alerts and the most recently resolved ones, newest first (at most [`RECENT_LIMIT`]).
    pub async fn recent(&self) -> Result<Vec<Alert>, AlertsError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM alerts ORDER BY resolved_at IS NULL DESC, id DESC LIMIT ?"
        ))
        .bind(RECENT_LIMIT)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The raises and recoveries not delivered to the webhook yet, oldest first. A recovery is listed only
    /// once its raise was delivered, so a receiver never sees "resolved" before "firing".
    pub async fn undelivered(&self) -> Result<Vec<(Alert, Delivery)>, AlertsError> {
        let raised: Vec<Alert> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE notified_at IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        let resolved: Vec<Alert> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM alerts WHERE notified_at IS NOT NULL AND resolved_at IS NOT NULL \
             AND resolve_notified_at IS NULL ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(raised
            .into_iter()
            .map(|a| (a, Delivery::Raised))
            .chain(resolved.into_iter().map(|a| (a, Delivery::Resolved)))
            .collect())
    }

    /// Record that `which` message of alert `id` reached the webhook (audited `alert.notify`).
    pub async fn mark_delivered(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: i64,
        which: Delivery,
    ) -> Result<(), AlertsError> {
        let column = match which {
            Delivery::Raised => "notified_at",
            Delivery::Resolved => "resolve_notified_at",
        };
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let key: Option<String> = sqlx::query_scalar(&format!(
            "UPDATE alerts SET {column} = ? WHERE id = ? AND {column} IS NULL RETURNING key"
        ))
        .bind(ts::format(ts::now()))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = key else {
            return Ok(());
        };
        let event = Event::new(actions::ALERT_NOTIFY, Outcome::Ok)
            .subject(format!("alert:{key}"))
            .detail(serde_json::json!({ "id": id, "message": which.as_str() }));
        tx.commit(actor, meta, &event).await?;
        Ok(())
    }
}

fn check(spec: &AlertSpec) -> Result<(), AlertsError> {
    if spec.key.trim().is_empty() {
        return Err(AlertsError::Invalid("a key"));
    }
    if spec.kind.is_empty()
        || !spec
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(AlertsError::Invalid(
            "a kind of lower-case letters and underscores",
        ));
    }
    if spec.message.trim().is_empty() {
        return Err(AlertsError::Invalid("a message"));
    }
    Ok(())
}
