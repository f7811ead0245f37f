//! Machine metadata (`config.metadata`): read, replace or merge (with a `machine_version` guard), and
//! per-key get, set and delete.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{ApiError, ApiResult, Sim};
use crate::model::*;

/// A `PUT`/`PATCH /metadata` body. `updated_at` is accepted and ignored, as Fly treats it as informative.
#[derive(serde::Deserialize)]
pub(crate) struct MetadataRequest {
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    pub machine_version: Option<String>,
}

/// Replace the whole map or merge into it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataWrite {
    Replace,
    Merge,
}

fn metadata_of(machine: &Machine) -> Map<String, Value> {
    machine
        .config
        .get("metadata")
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default()
}

fn store_metadata(machine: &mut Machine, metadata: Map<String, Value>) {
    if let Some(config) = machine.config.as_object_mut() {
        config.insert("metadata".into(), Value::Object(metadata));
    }
}

impl Sim {
    pub(crate) fn get_metadata(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
    ) -> ApiResult<Map<String, Value>> {
        self.with_visible_app(caller, app, |state| {
            Ok(metadata_of(state.machine_mut(app, id)?))
        })
    }

    /// Write the map: an empty or null value removes its key; a stale `machine_version` is 412.
    pub(crate) fn write_metadata(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        request: MetadataRequest,
        mode: MetadataWrite,
    ) -> ApiResult<()> {
        self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            if let Some(version) = &request.machine_version {
                if *version != machine.instance_id {
                    return Err(ApiError::new(
                        412,
                        format!(
                            "failed_precondition: machine_version {version} is stale (current {})",
                            machine.instance_id
                        ),
                    ));
                }
            }
            let mut metadata = match mode {
                MetadataWrite::Replace => Map::new(),
                MetadataWrite::Merge => metadata_of(machine),
            };
            for (key, value) in request.metadata.unwrap_or_default() {
                match value.filter(|s| !s.is_empty()) {
                    Some(value) => {
                        metadata.insert(key, json!(value));
                    }
                    None => {
                        metadata.remove(&key);
                    }
                }
            }
            store_metadata(machine, metadata);
            Ok(())
        })
    }

    pub(crate) fn get_metadata_key(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        key: &str,
    ) -> ApiResult<Value> {
        self.get_metadata(caller, app, id)?
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("metadata key not found: {key}")))
    }

    /// Set one key (`Some`) or remove it (`None`).
    pub(crate) fn set_metadata_key(
        &self,
        caller: &Token,
        app: &str,
        id: &str,
        key: &str,
        value: Option<String>,
    ) -> ApiResult<()> {
        self.with_visible_app(caller, app, |state| {
            let machine = state.machine_mut(app, id)?;
            let mut metadata = metadata_of(machine);
            match value {
                Some(value) => metadata.insert(key.to_string(), json!(value)),
                None => metadata.remove(key),
            };
            store_metadata(machine, metadata);
            Ok(())
        })
    }
}
