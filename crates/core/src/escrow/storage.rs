//! The wal-g storage settings of a cluster's newest escrowed version, opened for Walden's own use (the monitor
//! reading the cluster's bucket), never handed to a person: no reveal, so no reveal row; the values stay in this
//! crate, are zeroized when dropped, and are never logged (the type has no `Debug`).

use std::collections::HashMap;

use walg::config::ConfigError;
use walg::StorageConfig;
use zeroize::Zeroize;

use super::{check_cluster, secret_from, Escrow, EscrowError, StoredValue, STORAGE_PREFIXES};
use secrecy::ExposeSecret;

/// The storage settings (`WALG_*`, `AWS_*`, `GOOGLE_*`, `AZURE_*`) of one escrowed version, in plaintext only
/// for as long as it takes to build a [`StorageConfig`] (whose secrets are `SecretString`s).
pub(crate) struct StorageSettings {
    pub version: i64,
    env: HashMap<String, String>,
}

impl StorageSettings {
    /// wal-g's own reading of the settings (the first `*_PREFIX` in wal-g's order wins).
    pub fn config(&self) -> Result<StorageConfig, ConfigError> {
        StorageConfig::from_env_map(&self.env)
    }

    /// The names of the settings held (for messages; never the values).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.env.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl Drop for StorageSettings {
    fn drop(&mut self) {
        for value in self.env.values_mut() {
            value.zeroize();
        }
    }
}

impl Escrow {
    /// The storage settings of the newest version of `org`/`app`; `None` when nothing was captured yet. Walden's
    /// own read (no actor): callers keep the values inside `walden_core`.
    pub(crate) async fn storage_settings(
        &self,
        org: &str,
        app: &str,
    ) -> Result<Option<StorageSettings>, EscrowError> {
        check_cluster(org, app)?;
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM escrow_versions WHERE org = ? AND app = ?",
        )
        .bind(org)
        .bind(app)
        .fetch_one(&self.pool)
        .await?;
        let Some(version) = version else {
            return Ok(None);
        };
        let rows = StoredValue::of_version(&self.pool, org, app, version).await?;
        let ring = self.keyring()?;
        let mut settings = StorageSettings {
            version,
            env: HashMap::new(),
        };
        for stored in &rows {
            if !STORAGE_PREFIXES.iter().any(|p| stored.field.starts_with(p)) {
                continue;
            }
            let secret = secret_from(self.open_value(ring, stored)?, || stored.place())?;
            settings
                .env
                .insert(stored.field.clone(), secret.expose_secret().to_owned());
        }
        Ok(Some(settings))
    }
}
