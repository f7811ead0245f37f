//! The values of one escrowed version, opened for a restore run's `SetSecrets` step (`core::restore::engine`):
//! each asked-for field is opened inside this crate and handed back as a [`SecretString`] that goes straight
//! into the new app's secrets. Walden's own read (no reveal row): the run's `restore.step.start` audit row names
//! the fields and the version before any is opened, and nothing here is logged or stored in plaintext.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{check_cluster, secret_from, Escrow, EscrowError, StoredValue};

impl Escrow {
    /// `fields` of `version` of `org`/`app`; a field the version does not hold is [`EscrowError::NotFound`].
    pub(crate) async fn values_for_restore(
        &self,
        org: &str,
        app: &str,
        version: i64,
        fields: &[&str],
    ) -> Result<BTreeMap<String, SecretString>, EscrowError> {
        check_cluster(org, app)?;
        let rows = StoredValue::of_version(&self.pool, org, app, version).await?;
        let ring = self.keyring()?;
        let mut out = BTreeMap::new();
        for field in fields {
            let row =
                rows.iter()
                    .find(|r| r.field == *field)
                    .ok_or_else(|| EscrowError::NotFound {
                        what: format!("{field} in version {version} of {org}/{app}"),
                    })?;
            let secret = secret_from(self.open_value(ring, row)?, || row.place())?;
            out.insert((*field).to_owned(), secret);
        }
        Ok(out)
    }
}
