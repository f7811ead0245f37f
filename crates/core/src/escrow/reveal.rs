//! Reveals: one field of one version, with a written reason, audited before the value leaves this module (no
//! row, no value). With the `require_reveal_approval` setting on, a reveal needs a request that another
//! operator or admin approved; the requester may then use it once within [`APPROVAL_WINDOW`].

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use super::{
    actions, check_cluster, check_field, secret_from, target, Escrow, EscrowError, StoredValue,
    MAX_REASON_CHARS,
};
use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{self, AuditedTx, Event, Outcome};
use crate::settings::{self, REQUIRE_REVEAL_APPROVAL};
use crate::ts;

/// How long an approved request may be used.
pub const APPROVAL_WINDOW: Duration = Duration::minutes(15);
/// How long a request waits for an approval before it expires.
pub const REQUEST_TTL: Duration = Duration::hours(24);

/// A request for a two-person reveal, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealRequest {
    pub id: i64,
    pub org: String,
    pub app: String,
    pub version: i64,
    pub field: String,
    pub requester_id: Option<i64>,
    pub requester: String,
    pub reason: String,
    pub requested_at: String,
    pub approver: Option<String>,
    pub approved_at: Option<String>,
    /// When the approval stops being usable (approval + [`APPROVAL_WINDOW`]).
    pub expires_at: Option<String>,
    pub used_at: Option<String>,
    pub expired_at: Option<String>,
}

impl RevealRequest {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(RevealRequest {
            id: row.try_get("id")?,
            org: row.try_get("org")?,
            app: row.try_get("app")?,
            version: row.try_get("version")?,
            field: row.try_get("field")?,
            requester_id: row.try_get("requester_id")?,
            requester: row.try_get("requester_name")?,
            reason: row.try_get("reason")?,
            requested_at: row.try_get("requested_at")?,
            approver: row.try_get("approver_name")?,
            approved_at: row.try_get("approved_at")?,
            expires_at: row.try_get("expires_at")?,
            used_at: row.try_get("used_at")?,
            expired_at: row.try_get("expired_at")?,
        })
    }

    /// Whether `actor` is the person who asked (by user id when both have one, and by name).
    fn asked_by(&self, actor: &Actor) -> bool {
        let same_id = matches!((self.requester_id, actor.user_id()), (Some(a), Some(b)) if a == b);
        same_id || self.requester == actor.display_name()
    }

    fn event(&self, action: &str, outcome: Outcome, refused: Option<&str>) -> Event {
        let mut detail = serde_json::json!({
            "request": self.id,
            "version": self.version,
            "field": self.field,
            "requester": self.requester,
        });
        if let (Some(why), Some(map)) = (refused, detail.as_object_mut()) {
            map.insert("refused".into(), why.into());
        }
        Event::new(action, outcome)
            .target(target(&self.org, &self.app, Some(self.version)))
            .reason(self.reason.clone())
            .detail(detail)
    }
}

/// A reason: trimmed, not empty, at most [`MAX_REASON_CHARS`] characters.
fn check_reason(reason: &str) -> Result<String, FieldError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(FieldError::new(
            "reason",
            "give a reason for this reveal; it is written to the audit log",
        ));
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(FieldError::new(
            "reason",
            format!("the reason must be at most {MAX_REASON_CHARS} characters"),
        ));
    }
    Ok(reason.to_owned())
}

fn is_past(at: &Option<String>, now: OffsetDateTime) -> bool {
    match at.as_deref().and_then(ts::parse) {
        Some(t) => now > t,
        // An unreadable time is treated as passed: the request is refused, never honoured.
        None => true,
    }
}

impl Escrow {
    /// Reveal one field of one version, for `reason` (required, written to the audit log). Refused when the
    /// `require_reveal_approval` setting is on (use [`Escrow::request_reveal`]). The audit row is written
    /// before the value is returned; if it cannot be, nothing is revealed. Operators and up.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(org = org, app = app, version = version, field = field), err(level = "debug"))]
    pub async fn reveal(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        version: i64,
        field: &str,
        reason: &str,
    ) -> Result<SecretString, EscrowError> {
        check_cluster(org, app)?;
        check_field(field)?;
        let refusal = |outcome: Outcome, why: &str| {
            Event::new(actions::ESCROW_REVEAL, outcome)
                .target(target(org, app, Some(version)))
                .detail(serde_json::json!({ "version": version, "field": field, "refused": why }))
        };
        if !actor.has_role(Role::Operator) {
            audit::record(&self.pool, actor, meta, &refusal(Outcome::Denied, "role")).await?;
            return Err(EscrowError::Forbidden);
        }
        let reason = match check_reason(reason) {
            Ok(r) => r,
            Err(e) => {
                audit::record(
                    &self.pool,
                    actor,
                    meta,
                    &refusal(Outcome::Denied, "no reason"),
                )
                .await?;
                return Err(e.into());
            }
        };
        if settings::get_bool(&self.pool, REQUIRE_REVEAL_APPROVAL).await? {
            let event = refusal(Outcome::Denied, "approval required").reason(reason);
            audit::record(&self.pool, actor, meta, &event).await?;
            return Err(EscrowError::ApprovalRequired);
        }
        let ring = self.keyring()?;
        let stored = self.stored_value(org, app, version, field).await?;
        let plain = match self.open_value(ring, &stored) {
            Ok(p) => p,
            Err(e) => {
                let event = refusal(Outcome::Failed, "does not open").reason(reason);
                audit::record(&self.pool, actor, meta, &event).await?;
                return Err(e);
            }
        };
        let secret = secret_from(plain, || stored.place())?;
        let event = Event::new(actions::ESCROW_REVEAL, Outcome::Ok)
            .target(target(org, app, Some(version)))
            .reason(reason)
            .detail(serde_json::json!({ "version": version, "field": field }));
        // Fail closed: without its audit row the value is dropped (and zeroized) here.
        audit::record(&self.pool, actor, meta, &event).await?;
        Ok(secret)
    }

    /// Ask to reveal one field of one version, for `reason`; another operator or admin must approve it
    /// ([`Escrow::approve`]). Operators and up.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(org = org, app = app, version = version, field = field), err(level = "debug"))]
    pub async fn request_reveal(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        version: i64,
        field: &str,
        reason: &str,
    ) -> Result<RevealRequest, EscrowError> {
        check_cluster(org, app)?;
        check_field(field)?;
        let reason = check_reason(reason)?;
        self.require(
            actor,
            meta,
            Role::Operator,
            actions::ESCROW_REVEAL_REQUEST,
            org,
            app,
        )
        .await?;
        let _exists = self.stored_value(org, app, version, field).await?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let row = sqlx::query(
            "INSERT INTO escrow_reveal_requests (org, app, version, field, requester_id, requester_name, \
             reason, requested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(org)
        .bind(app)
        .bind(version)
        .bind(field)
        .bind(actor.user_id())
        .bind(actor.display_name())
        .bind(&reason)
        .bind(ts::format(self.now()))
        .fetch_one(&mut *tx)
        .await?;
        let request = RevealRequest::from_row(&row)?;
        tx.commit(
            actor,
            meta,
            &request.event(actions::ESCROW_REVEAL_REQUEST, Outcome::Ok, None),
        )
        .await?;
        Ok(request)
    }

    /// Approve request `id`: the requester may then reveal once within [`APPROVAL_WINDOW`]. Refused (and
    /// audited) for the requester themself, a request already approved, used or expired. Operators and up.
    #[tracing::instrument(skip_all, fields(request = id), err(level = "debug"))]
    pub async fn approve(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: i64,
    ) -> Result<RevealRequest, EscrowError> {
        let request = self.request(id).await?;
        self.require(
            actor,
            meta,
            Role::Operator,
            actions::ESCROW_REVEAL_APPROVE,
            &request.org,
            &request.app,
        )
        .await?;
        let now = self.now();
        let refuse =
            |why: &str| request.event(actions::ESCROW_REVEAL_APPROVE, Outcome::Denied, Some(why));
        if request.asked_by(actor) {
            audit::record(&self.pool, actor, meta, &refuse("self-approval")).await?;
            return Err(EscrowError::SelfApproval);
        }
        if request.expired_at.is_some() {
            audit::record(&self.pool, actor, meta, &refuse("expired")).await?;
            return Err(EscrowError::RequestExpired);
        }
        if request.approved_at.is_some() {
            audit::record(&self.pool, actor, meta, &refuse("already approved")).await?;
            return Err(EscrowError::AlreadyApproved);
        }
        let deadline = ts::parse(&request.requested_at).map(|t| t + REQUEST_TTL);
        if deadline.is_none_or(|d| now > d) {
            self.mark_expired(actor, meta, &request, &refuse("expired"))
                .await?;
            return Err(EscrowError::RequestExpired);
        }
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let row = sqlx::query(
            "UPDATE escrow_reveal_requests SET approver_id = ?, approver_name = ?, approved_at = ?, \
             expires_at = ? WHERE id = ? AND approved_at IS NULL AND expired_at IS NULL RETURNING *",
        )
        .bind(actor.user_id())
        .bind(actor.display_name())
        .bind(ts::format(now))
        .bind(ts::format(now + APPROVAL_WINDOW))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            // Decided by someone else in the meantime.
            drop(tx);
            audit::record(&self.pool, actor, meta, &refuse("already approved")).await?;
            return Err(EscrowError::AlreadyApproved);
        };
        let approved = RevealRequest::from_row(&row)?;
        let mut event = approved.event(actions::ESCROW_REVEAL_APPROVE, Outcome::Ok, None);
        if let Some(map) = event.detail.as_mut().and_then(|d| d.as_object_mut()) {
            map.insert("expires_at".into(), approved.expires_at.clone().into());
        }
        tx.commit(actor, meta, &event).await?;
        Ok(approved)
    }

    /// Reveal the field of approved request `id`, once, by its requester, within [`APPROVAL_WINDOW`] of the
    /// approval. The use and its audit row (with the request's reason) are committed together before the value
    /// is returned. Refusals (not the requester, not approved, used, expired) are audited.
    #[tracing::instrument(skip_all, fields(request = id), err(level = "debug"))]
    pub async fn reveal_approved(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: i64,
    ) -> Result<SecretString, EscrowError> {
        let request = self.request(id).await?;
        self.require(
            actor,
            meta,
            Role::Operator,
            actions::ESCROW_REVEAL,
            &request.org,
            &request.app,
        )
        .await?;
        let refuse = |why: &str| request.event(actions::ESCROW_REVEAL, Outcome::Denied, Some(why));
        if !request.asked_by(actor) {
            audit::record(&self.pool, actor, meta, &refuse("not the requester")).await?;
            return Err(EscrowError::NotYourRequest);
        }
        if request.used_at.is_some() {
            audit::record(&self.pool, actor, meta, &refuse("already used")).await?;
            return Err(EscrowError::RequestUsed);
        }
        if request.expired_at.is_some() {
            audit::record(&self.pool, actor, meta, &refuse("expired")).await?;
            return Err(EscrowError::RequestExpired);
        }
        if request.approved_at.is_none() {
            audit::record(&self.pool, actor, meta, &refuse("not approved")).await?;
            return Err(EscrowError::NotApproved);
        }
        let now = self.now();
        if is_past(&request.expires_at, now) {
            self.mark_expired(actor, meta, &request, &refuse("expired"))
                .await?;
            return Err(EscrowError::RequestExpired);
        }
        let ring = self.keyring()?;
        let stored = self
            .stored_value(&request.org, &request.app, request.version, &request.field)
            .await?;
        let plain = match self.open_value(ring, &stored) {
            Ok(p) => p,
            Err(e) => {
                let event = request.event(
                    actions::ESCROW_REVEAL,
                    Outcome::Failed,
                    Some("does not open"),
                );
                audit::record(&self.pool, actor, meta, &event).await?;
                return Err(e);
            }
        };
        let secret = secret_from(plain, || stored.place())?;
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let used = sqlx::query(
            "UPDATE escrow_reveal_requests SET used_at = ? WHERE id = ? AND used_at IS NULL \
             AND expired_at IS NULL AND approved_at IS NOT NULL AND expires_at >= ?",
        )
        .bind(ts::format(now))
        .bind(id)
        .bind(ts::format(now))
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            // Used by a concurrent call between the read and this write.
            drop(tx);
            audit::record(&self.pool, actor, meta, &refuse("already used")).await?;
            return Err(EscrowError::RequestUsed);
        }
        tx.commit(
            actor,
            meta,
            &request.event(actions::ESCROW_REVEAL, Outcome::Ok, None),
        )
        .await?;
        Ok(secret)
    }

    /// Mark every request that can no longer be used as expired (approved and unused past its window, or
    /// waiting for an approval longer than [`REQUEST_TTL`]), each with an `escrow.reveal_expire` row. Returns
    /// how many. For the maintenance worker; the system actor or an operator.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn expire_requests(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
    ) -> Result<u64, EscrowError> {
        if !actor.has_role(Role::Operator) {
            let event =
                Event::new(actions::ESCROW_REVEAL_EXPIRE, Outcome::Denied).subject("escrow");
            audit::record(&self.pool, actor, meta, &event).await?;
            return Err(EscrowError::Forbidden);
        }
        let now = self.now();
        let open = sqlx::query(
            "SELECT * FROM escrow_reveal_requests WHERE used_at IS NULL AND expired_at IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut count = 0;
        for row in &open {
            let request = RevealRequest::from_row(row)?;
            let stale = match &request.approved_at {
                Some(_) => is_past(&request.expires_at, now),
                None => ts::parse(&request.requested_at).is_none_or(|t| now > t + REQUEST_TTL),
            };
            if stale {
                let event = request.event(actions::ESCROW_REVEAL_EXPIRE, Outcome::Ok, None);
                if self.mark_expired(actor, meta, &request, &event).await? {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    /// Set `expired_at` on `request` (once) with `event` as its audit row; when it was already set, write the
    /// row alone (a refusal is always recorded). Returns whether this call marked it.
    async fn mark_expired(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        request: &RevealRequest,
        event: &Event,
    ) -> Result<bool, EscrowError> {
        let mut tx = AuditedTx::begin(&self.pool).await?;
        let marked = sqlx::query(
            "UPDATE escrow_reveal_requests SET expired_at = ? WHERE id = ? AND expired_at IS NULL \
             AND used_at IS NULL",
        )
        .bind(ts::format(self.now()))
        .bind(request.id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit(actor, meta, event).await?;
        Ok(marked)
    }

    /// The requests still open (not used, not expired), oldest first, for approvers to see: metadata and
    /// reasons, never values. Operators and up.
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn open_requests(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
    ) -> Result<Vec<RevealRequest>, EscrowError> {
        if !actor.has_role(Role::Operator) {
            let event =
                Event::new(actions::ESCROW_LIST, Outcome::Denied).subject("escrow:requests");
            audit::record(&self.pool, actor, meta, &event).await?;
            return Err(EscrowError::Forbidden);
        }
        let rows = sqlx::query(
            "SELECT * FROM escrow_reveal_requests WHERE used_at IS NULL AND expired_at IS NULL ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(RevealRequest::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// One reveal request (its metadata and reason; never a value).
    pub async fn request(&self, id: i64) -> Result<RevealRequest, EscrowError> {
        let row = sqlx::query("SELECT * FROM escrow_reveal_requests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(EscrowError::NoSuchRequest)?;
        Ok(RevealRequest::from_row(&row)?)
    }

    /// The stored (sealed) value of one field of one version.
    async fn stored_value(
        &self,
        org: &str,
        app: &str,
        version: i64,
        field: &str,
    ) -> Result<StoredValue, EscrowError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM escrow_values WHERE org = ? AND app = ? AND version = ? AND field = ?",
            StoredValue::COLUMNS
        ))
        .bind(org)
        .bind(app)
        .bind(version)
        .bind(field)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| EscrowError::NotFound {
            what: format!("{field} in version {version} of {org}/{app}"),
        })?;
        Ok(StoredValue::from_row(&row)?)
    }
}
