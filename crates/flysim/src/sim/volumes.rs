//! Volumes: create (name, region, size and retention rules), get, list, delete (not while attached).
//! Attaching happens when a Machine mounts one (see `machines`).

use std::collections::BTreeMap;

use super::{ApiError, ApiResult, Sim};
use crate::clock::ms;
use crate::model::*;

/// A `POST /volumes` body.
#[derive(serde::Deserialize)]
pub(crate) struct CreateVolumeRequest {
    pub name: Option<String>,
    pub region: Option<String>,
    pub size_gb: Option<u64>,
    pub encrypted: Option<bool>,
    pub snapshot_retention: Option<u64>,
    pub auto_backup_enabled: Option<bool>,
}

impl CreateVolumeRequest {
    /// (name, region, size, retention) once each passes Fly's rules.
    fn validated(&self) -> ApiResult<(String, String, u64, u64)> {
        let name = self.name.clone().unwrap_or_default();
        if name.is_empty()
            || name.len() > 30
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ApiError::bad(
                "invalid name: volume names are 1–30 letters, digits and underscores",
            ));
        }
        let region = self
            .region
            .clone()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ApiError::bad("region is required"))?;
        let size_gb = self.size_gb.unwrap_or(1);
        if !(1..=500).contains(&size_gb) {
            return Err(ApiError::bad("size_gb must be between 1 and 500"));
        }
        let retention = self.snapshot_retention.unwrap_or(5);
        if !(1..=60).contains(&retention) {
            return Err(ApiError::bad("snapshot_retention must be between 1 and 60"));
        }
        Ok((name, region, size_gb, retention))
    }
}

impl Sim {
    /// Create a volume; the 408-after-success fault may follow.
    pub(crate) fn create_volume(
        &self,
        caller: &Token,
        app: &str,
        request: CreateVolumeRequest,
    ) -> ApiResult<Volume> {
        let (name, region, size_gb, retention) = request.validated()?;
        let now = ms(self.now());
        let volume = self.with_visible_app(caller, app, |state| {
            let id = state.next_id("vol_", 16);
            let zone = format!("{:04x}", state.rand() & 0xffff);
            let volume = Volume {
                id: id.clone(),
                name,
                state: "created".into(),
                size_gb,
                region,
                zone,
                encrypted: request.encrypted.unwrap_or(true),
                attached_machine_id: None,
                created_ms: now,
                snapshot_retention: retention,
                auto_backup_enabled: request.auto_backup_enabled.unwrap_or(true),
                files: BTreeMap::new(),
                has_pgdata: false,
                keeper_initializing: false,
                used_percent: None,
                wal_ready_bytes: 0,
            };
            state.app_mut(app)?.volumes.insert(id, volume.clone());
            Ok(volume)
        })?;
        self.after_create()?;
        Ok(volume)
    }

    pub(crate) fn list_volumes(&self, caller: &Token, app: &str) -> ApiResult<Vec<Volume>> {
        let state = self.lock();
        Ok(state
            .visible_app(caller, app)?
            .volumes
            .values()
            .cloned()
            .collect())
    }

    pub(crate) fn get_volume(&self, caller: &Token, app: &str, id: &str) -> ApiResult<Volume> {
        let state = self.lock();
        state
            .visible_app(caller, app)?
            .volumes
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("volume not found: {id}")))
    }

    /// Delete a detached volume; returns it as `destroyed`.
    pub(crate) fn delete_volume(&self, caller: &Token, app: &str, id: &str) -> ApiResult<Volume> {
        self.with_visible_app(caller, app, |state| {
            let owner = state.app_mut(app)?;
            let volume = owner
                .volumes
                .get(id)
                .ok_or_else(|| ApiError::not_found(format!("volume not found: {id}")))?;
            if let Some(machine) = &volume.attached_machine_id {
                return Err(ApiError::new(412, format!("failed_precondition: volume {id} is attached to machine {machine}; destroy the machine first")));
            }
            let mut volume = owner
                .volumes
                .remove(id)
                .ok_or_else(|| ApiError::not_found(format!("volume not found: {id}")))?;
            volume.state = "destroyed".into();
            Ok(volume)
        })
    }
}
