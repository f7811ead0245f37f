//! `/v1/apps/{app}/volumes[/{vol}]`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{decode, reply, ApiResult, Caller};
use crate::clock::rfc3339;
use crate::model::Volume;
use crate::sim::Sim;

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/apps/{app}/volumes", get(list_volumes).post(create_volume))
        .route(
            "/apps/{app}/volumes/{vol}",
            get(get_volume).delete(delete_volume),
        )
}

fn volume_json(volume: &Volume) -> Value {
    let total = volume.bytes_total();
    let free = total - volume.bytes_used();
    json!({
        "id": volume.id, "name": volume.name, "state": volume.state, "size_gb": volume.size_gb,
        "region": volume.region, "zone": volume.zone,
        "encrypted": volume.encrypted, "fstype": "ext4", "type": "local",
        "attached_machine_id": volume.attached_machine_id, "attached_alloc_id": volume.attached_machine_id,
        "auto_backup_enabled": volume.auto_backup_enabled, "snapshot_retention": volume.snapshot_retention,
        "host_status": "ok", "block_size": 4096, "blocks": total / 4096, "blocks_avail": free / 4096,
        "blocks_free": free / 4096, "bytes_total": total, "bytes_used": total - free,
        "created_at": rfc3339(volume.created_ms),
    })
}

async fn list_volumes(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
) -> ApiResult {
    let volumes = sim.list_volumes(&caller, &app)?;
    reply(200, volumes.iter().map(volume_json).collect::<Vec<_>>())
}

async fn create_volume(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request = decode(&body, "CreateVolumeRequest")?;
    reply(
        200,
        volume_json(&sim.create_volume(&caller, &app, request)?),
    )
}

async fn get_volume(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, volume)): Path<(String, String)>,
) -> ApiResult {
    reply(200, volume_json(&sim.get_volume(&caller, &app, &volume)?))
}

async fn delete_volume(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, volume)): Path<(String, String)>,
) -> ApiResult {
    reply(
        200,
        volume_json(&sim.delete_volume(&caller, &app, &volume)?),
    )
}
