//! `/v1/apps/{app}/secrets[/{name}]`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::metadata::ValueRequest;
use super::{decode, flag, reply, ApiResult, Caller, QueryPairs};
use crate::clock::rfc3339;
use crate::model::Secret;
use crate::sim::Sim;

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route(
            "/apps/{app}/secrets",
            get(list_secrets).post(update_secrets),
        )
        .route(
            "/apps/{app}/secrets/{name}",
            get(get_secret).post(set_secret).delete(delete_secret),
        )
}

fn secret_json(name: &str, secret: &Secret, show_value: bool) -> Value {
    let mut value = json!({"name": name, "digest": secret.digest,
        "created_at": rfc3339(secret.created_ms), "updated_at": rfc3339(secret.updated_ms)});
    if show_value {
        value["value"] = json!(secret.value);
    }
    value
}

fn secrets_json(secrets: &BTreeMap<String, Secret>, show_values: bool) -> Vec<Value> {
    secrets
        .iter()
        .map(|(name, secret)| secret_json(name, secret, show_values))
        .collect()
}

async fn list_secrets(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let show = flag(&pairs, "show_secrets");
    let secrets = sim.list_secrets(&caller, &app)?;
    reply(200, json!({"secrets": secrets_json(&secrets, show)}))
}

async fn update_secrets(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request = decode(&body, "AppSecretsUpdateRequest")?;
    let (secrets, version) = sim.update_secrets(&caller, &app, request)?;
    reply(
        200,
        json!({"secrets": secrets_json(&secrets, false), "version": version, "Version": version}),
    )
}

async fn get_secret(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, name)): Path<(String, String)>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let show = flag(&pairs, "show_secrets");
    let secret = sim.get_secret(&caller, &app, &name)?;
    reply(200, secret_json(&name, &secret, show))
}

async fn set_secret(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let request: ValueRequest = decode(&body, "SetAppSecretRequest")?;
    let (secret, version) = sim.set_secret(&caller, &app, &name, request.value)?;
    let mut value = secret_json(&name, &secret, false);
    value["version"] = json!(version);
    value["Version"] = json!(version);
    reply(201, value)
}

async fn delete_secret(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, name)): Path<(String, String)>,
) -> ApiResult {
    let version = sim.delete_secret(&caller, &app, &name)?;
    reply(200, json!({"version": version, "Version": version}))
}
