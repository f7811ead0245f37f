//! `/v1/apps/{app}/machines/{id}/metadata[/{key}]`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{decode, no_content, reply, ApiResult, Caller};
use crate::model::Token;
use crate::sim::{ApiError, MetadataWrite, Sim};

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route(
            "/apps/{app}/machines/{id}/metadata",
            get(get_metadata).put(put_metadata).patch(patch_metadata),
        )
        .route(
            "/apps/{app}/machines/{id}/metadata/{key}",
            get(get_key).post(set_key).delete(delete_key),
        )
}

/// A `{"value": …}` body (one metadata key, one secret).
#[derive(serde::Deserialize)]
pub(super) struct ValueRequest {
    pub value: Option<String>,
}

async fn get_metadata(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult {
    reply(200, Value::Object(sim.get_metadata(&caller, &app, &id)?))
}

/// Replace or merge the map from a body.
fn write(
    sim: &Sim,
    caller: &Token,
    (app, id): (&str, &str),
    body: &Bytes,
    mode: MetadataWrite,
) -> ApiResult {
    let request = decode(body, "updateMetadataRequest")?;
    sim.write_metadata(caller, app, id, request, mode)?;
    no_content()
}

async fn put_metadata(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    write(&sim, &caller, (&app, &id), &body, MetadataWrite::Replace)
}

async fn patch_metadata(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    write(&sim, &caller, (&app, &id), &body, MetadataWrite::Merge)
}

async fn get_key(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id, key)): Path<(String, String, String)>,
) -> ApiResult {
    let value = sim.get_metadata_key(&caller, &app, &id, &key)?;
    reply(200, json!({"value": value}))
}

async fn set_key(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id, key)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult {
    let request: ValueRequest = decode(&body, "upsertMetadataKeyRequest")?;
    let value = request
        .value
        .ok_or_else(|| ApiError::bad("value is required"))?;
    sim.set_metadata_key(&caller, &app, &id, &key, Some(value))?;
    no_content()
}

async fn delete_key(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id, key)): Path<(String, String, String)>,
) -> ApiResult {
    sim.set_metadata_key(&caller, &app, &id, &key, None)?;
    no_content()
}
