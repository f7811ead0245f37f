//! Recording a capture: a new version only when some value changed, with its audit row in the same
//! transaction; an unchanged capture writes only its audit row.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::{
    actions, check_cluster, check_field, context, fingerprint_context, target, CaptureHow, Escrow,
    EscrowError, StoredValue, MAX_VALUE_LEN, PASSWORD_FIELDS,
};
use crate::access::{Actor, FieldError, RequestMeta, Role};
use crate::audit::{AuditedTx, Event, Outcome};
use crate::keyring::Keyring;
use crate::ts;

/// What a capture did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOutcome {
    /// The cluster's current version (the new one, or the unchanged one).
    pub version: i64,
    /// `true` when this capture made a new version.
    pub created: bool,
    /// The fields that differ from the previous version (added ones included), in name order.
    pub changed: Vec<String>,
    /// The fields the previous version had and this capture did not.
    pub removed: Vec<String>,
}

/// One value about to be stored: its keyed fingerprint and whether it differs from the previous version's.
struct Prepared<'a> {
    field: &'a str,
    value: &'a SecretString,
    fingerprint: [u8; 32],
    changed: bool,
}

impl Escrow {
    /// Record captured `values` (field name → value) of the cluster `org`/`app`. They must hold the three
    /// Stolon passwords, non-empty, and may hold wal-g storage settings (see [`super::check_field`]).
    ///
    /// A new version is written only when some value differs from the current version's (compared by keyed
    /// fingerprint, or by opening the old value when its fingerprint was made under a key since rotated
    /// out), or a field was added or removed; otherwise the current version is returned and the audit row says
    /// `"unchanged": true`. Operators and up; refusals audited, and nothing else stored.
    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(skip_all, fields(org = org, app = app, how = how.as_str()), err(level = "debug"))]
    pub async fn record_capture(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        how: CaptureHow,
        values: &BTreeMap<String, SecretString>,
    ) -> Result<CaptureOutcome, EscrowError> {
        check_cluster(org, app)?;
        self.require(
            actor,
            meta,
            Role::Operator,
            actions::ESCROW_CAPTURE,
            org,
            app,
        )
        .await?;
        check_values(values)?;
        let ring = self.keyring()?.clone();
        let primary = ring.primary_id().to_string();

        let mut tx = AuditedTx::begin(&self.pool).await?;
        let current: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM escrow_versions WHERE org = ? AND app = ?",
        )
        .bind(org)
        .bind(app)
        .fetch_one(&mut *tx)
        .await?;
        let previous: Vec<StoredValue> = match current {
            Some(v) => StoredValue::of_version(&mut *tx, org, app, v).await?,
            None => Vec::new(),
        };

        let mut prepared = Vec::with_capacity(values.len());
        for (field, value) in values {
            let fp_context = fingerprint_context(org, app, field);
            let fingerprint = ring
                .fingerprint(&fp_context, value.expose_secret().as_bytes())
                .map_err(|_| EscrowError::Seal)?;
            let changed = match previous.iter().find(|p| &p.field == field) {
                None => true,
                Some(prev) => !self.same_value(&ring, prev, &primary, &fingerprint, &fp_context),
            };
            prepared.push(Prepared {
                field,
                value,
                fingerprint,
                changed,
            });
        }
        let removed: Vec<String> = previous
            .iter()
            .filter(|p| !values.contains_key(&p.field))
            .map(|p| p.field.clone())
            .collect();
        let changed: Vec<String> = prepared
            .iter()
            .filter(|p| p.changed)
            .map(|p| p.field.to_owned())
            .collect();

        if let Some(version) = current.filter(|_| changed.is_empty() && removed.is_empty()) {
            let event = Event::new(actions::ESCROW_CAPTURE, Outcome::Ok)
                .target(target(org, app, Some(version)))
                .detail(serde_json::json!({
                    "version": version,
                    "how": how.as_str(),
                    "unchanged": true,
                }));
            tx.commit(actor, meta, &event).await?;
            return Ok(CaptureOutcome {
                version,
                created: false,
                changed,
                removed,
            });
        }

        let version = current.unwrap_or(0) + 1;
        // A version never goes back in time, even if the clock did (the table's trigger refuses it).
        let last_at: Option<String> = sqlx::query_scalar(
            "SELECT MAX(captured_at) FROM escrow_versions WHERE org = ? AND app = ?",
        )
        .bind(org)
        .bind(app)
        .fetch_one(&mut *tx)
        .await?;
        let now = ts::format(self.now());
        let captured_at = match last_at {
            Some(last) if last > now => last,
            _ => now,
        };
        sqlx::query(
            "INSERT INTO escrow_versions (org, app, version, captured_at, captured_by, captured_by_id, how) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(org)
        .bind(app)
        .bind(version)
        .bind(&captured_at)
        .bind(actor.display_name())
        .bind(actor.user_id())
        .bind(how.as_str())
        .execute(&mut *tx)
        .await?;
        for p in &prepared {
            let sealed = ring
                .seal(
                    p.value.expose_secret().as_bytes(),
                    &context(org, app, version, p.field),
                )
                .map_err(|_| EscrowError::Seal)?;
            sqlx::query(
                "INSERT INTO escrow_values (org, app, version, field, sealed, fingerprint, fingerprint_key, \
                 changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(org)
            .bind(app)
            .bind(version)
            .bind(p.field)
            .bind(sealed)
            .bind(&p.fingerprint[..])
            .bind(&primary)
            .bind(p.changed)
            .execute(&mut *tx)
            .await?;
        }
        let event = Event::new(actions::ESCROW_CAPTURE, Outcome::Ok)
            .target(target(org, app, Some(version)))
            .detail(serde_json::json!({
                "version": version,
                "how": how.as_str(),
                "fields": values.keys().collect::<Vec<_>>(),
                "changed": changed,
                "removed": removed,
                "key": primary,
            }));
        tx.commit(actor, meta, &event).await?;
        Ok(CaptureOutcome {
            version,
            created: true,
            changed,
            removed,
        })
    }

    /// Whether `prev` holds the value whose fingerprint under the primary key is `fingerprint`. Compares
    /// fingerprints when `prev`'s was made by the primary key; otherwise opens `prev` and fingerprints it
    /// again. A value that no longer opens counts as changed, so the new capture is kept.
    fn same_value(
        &self,
        ring: &Keyring,
        prev: &StoredValue,
        primary: &str,
        fingerprint: &[u8; 32],
        fp_context: &str,
    ) -> bool {
        if prev.fingerprint_key == primary {
            return bool::from(prev.fingerprint.as_slice().ct_eq(&fingerprint[..]));
        }
        let Ok(plain) = self.open_value(ring, prev) else {
            tracing::warn!(
                row = prev.id,
                "an escrowed value of the previous version does not open; the capture is kept as a change"
            );
            return false;
        };
        ring.fingerprint(fp_context, &plain)
            .map(|again| bool::from(again.ct_eq(fingerprint)))
            .unwrap_or(false)
    }
}

/// The captured values are acceptable: known field names, the three passwords present and not blank, no value
/// over [`MAX_VALUE_LEN`] bytes or holding a NUL.
fn check_values(values: &BTreeMap<String, SecretString>) -> Result<(), FieldError> {
    for (field, value) in values {
        check_field(field)?;
        let v = value.expose_secret();
        if v.len() > MAX_VALUE_LEN || v.contains('\0') {
            return Err(FieldError::new(
                "values",
                format!("the value of {field} is too long or holds a NUL character"),
            ));
        }
    }
    for field in PASSWORD_FIELDS {
        match values.get(field) {
            Some(v) if !v.expose_secret().trim().is_empty() => {}
            _ => {
                return Err(FieldError::new(
                    "values",
                    format!(
                        "{field} is missing or empty; a capture holds all three Stolon passwords"
                    ),
                ))
            }
        }
    }
    Ok(())
}
