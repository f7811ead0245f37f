//! Whether the kept passwords of one version would survive the image on restore: each is opened inside this
//! crate, judged by a rule the caller gives (`core::restore::checks::password_breaks`), and dropped; only the
//! field name and the rule's verdict leave, never a value. Walden's own check (no actor, no reveal row).

use secrecy::ExposeSecret;
use sqlx::Row;

use super::{check_cluster, secret_from, Escrow, EscrowError, StoredValue, PASSWORD_FIELDS};

impl Escrow {
    /// For each of [`PASSWORD_FIELDS`] in `version` of `org`/`app`: `None` when `breaks` finds nothing wrong,
    /// else its reason; a field the version does not hold is reported as missing.
    pub(crate) async fn password_verdicts(
        &self,
        org: &str,
        app: &str,
        version: i64,
        breaks: fn(&str) -> Option<&'static str>,
    ) -> Result<Vec<(String, Option<&'static str>)>, EscrowError> {
        check_cluster(org, app)?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM escrow_values WHERE org = ? AND app = ? AND version = ?",
            StoredValue::COLUMNS
        ))
        .bind(org)
        .bind(app)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let ring = self.keyring()?;
        let mut out = Vec::with_capacity(PASSWORD_FIELDS.len());
        for field in PASSWORD_FIELDS {
            let Some(row) = rows
                .iter()
                .find(|r| r.try_get::<String, _>("field").is_ok_and(|f| f == field))
            else {
                out.push((field.to_owned(), Some("it is not in the escrowed version")));
                continue;
            };
            let stored = StoredValue::from_row(row)?;
            let secret = secret_from(self.open_value(ring, &stored)?, || stored.place())?;
            out.push((field.to_owned(), breaks(secret.expose_secret())));
        }
        Ok(out)
    }
}
