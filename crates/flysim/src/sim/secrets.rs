//! App secrets: set and unset in one call (version +1 per call), per-secret get, set, delete. Machines
//! see a snapshot taken when they are created, updated or started (see `machines`).

use std::collections::BTreeMap;

use md5::{Digest, Md5};

use super::{ApiError, ApiResult, Sim};
use crate::clock::ms;
use crate::model::*;

/// A `POST /secrets` body: `{"values": {NAME: value | null}}`.
#[derive(serde::Deserialize)]
pub(crate) struct SecretsRequest {
    pub values: Option<BTreeMap<String, Option<String>>>,
}

fn digest(value: &str) -> String {
    hex::encode(&Md5::digest(value.as_bytes())[..8])
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Store `value` under `name`, keeping its creation time.
fn put_secret(app: &mut App, name: String, value: String, now: i64) -> Secret {
    let created_ms = app.secrets.get(&name).map(|s| s.created_ms).unwrap_or(now);
    let secret = Secret {
        digest: digest(&value),
        value,
        created_ms,
        updated_ms: now,
    };
    app.secrets.insert(name, secret.clone());
    secret
}

impl Sim {
    pub(crate) fn list_secrets(
        &self,
        caller: &Token,
        app: &str,
    ) -> ApiResult<BTreeMap<String, Secret>> {
        let state = self.lock();
        Ok(state.visible_app(caller, app)?.secrets.clone())
    }

    /// Set and unset in one call; returns the secrets and the new version.
    pub(crate) fn update_secrets(
        &self,
        caller: &Token,
        app: &str,
        request: SecretsRequest,
    ) -> ApiResult<(BTreeMap<String, Secret>, u64)> {
        let values = request
            .values
            .ok_or_else(|| ApiError::bad("values is required"))?;
        if let Some(bad) = values.keys().find(|name| !valid_secret_name(name)) {
            return Err(ApiError::bad(format!(
                "invalid secret name {bad:?}: use letters, digits and underscores"
            )));
        }
        let now = ms(self.now());
        self.with_visible_app(caller, app, |state| {
            let owner = state.app_mut(app)?;
            for (name, value) in values {
                match value {
                    Some(value) => {
                        put_secret(owner, name, value, now);
                    }
                    None => {
                        owner.secrets.remove(&name);
                    }
                }
            }
            owner.secrets_version += 1;
            owner.record_secrets_version();
            Ok((owner.secrets.clone(), owner.secrets_version))
        })
    }

    pub(crate) fn get_secret(&self, caller: &Token, app: &str, name: &str) -> ApiResult<Secret> {
        let state = self.lock();
        state
            .visible_app(caller, app)?
            .secrets
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("secret not found: {name}")))
    }

    /// Set one secret; returns it and the new version.
    pub(crate) fn set_secret(
        &self,
        caller: &Token,
        app: &str,
        name: &str,
        value: Option<String>,
    ) -> ApiResult<(Secret, u64)> {
        let value = value.ok_or_else(|| ApiError::bad("value is required"))?;
        if !valid_secret_name(name) {
            return Err(ApiError::bad(format!("invalid secret name {name:?}")));
        }
        let now = ms(self.now());
        self.with_visible_app(caller, app, |state| {
            let owner = state.app_mut(app)?;
            owner.secrets_version += 1;
            let secret = put_secret(owner, name.to_string(), value, now);
            owner.record_secrets_version();
            Ok((secret, owner.secrets_version))
        })
    }

    /// Delete one secret; returns the new version.
    pub(crate) fn delete_secret(&self, caller: &Token, app: &str, name: &str) -> ApiResult<u64> {
        self.with_visible_app(caller, app, |state| {
            let owner = state.app_mut(app)?;
            if owner.secrets.remove(name).is_none() {
                return Err(ApiError::not_found(format!("secret not found: {name}")));
            }
            owner.secrets_version += 1;
            owner.record_secrets_version();
            Ok(owner.secrets_version)
        })
    }
}
