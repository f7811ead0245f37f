//! Whether the kept passwords of one version would survive the image on restore: each is opened inside this
//! crate, judged by a rule the caller gives (`core::restore::checks::password_breaks`), and dropped; only the
//! field name and the rule's verdict leave, never a value. Walden's own check (no actor, no reveal row).

use secrecy::ExposeSecret;

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
        let rows = StoredValue::of_version(&self.pool, org, app, version).await?;
        let ring = self.keyring()?;
        let mut out = Vec::with_capacity(PASSWORD_FIELDS.len());
        for field in PASSWORD_FIELDS {
            let Some(stored) = rows.iter().find(|r| r.field == field) else {
                out.push((field.to_owned(), Some("it is not in the escrowed version")));
                continue;
            };
            let secret = secret_from(self.open_value(ring, stored)?, || stored.place())?;
            out.push((field.to_owned(), breaks(secret.expose_secret())));
        }
        Ok(out)
    }
}
