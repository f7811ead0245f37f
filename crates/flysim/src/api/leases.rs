//! `/v1/apps/{app}/machines/{id}/lease`: get, acquire or refresh, release.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{decode, lease_nonce, query, reply, ApiResult, Caller, QueryPairs};
use crate::model::Lease;
use crate::sim::{ApiError, Sim};

pub(super) fn router() -> Router<Sim> {
    Router::new().route(
        "/apps/{app}/machines/{id}/lease",
        get(get_lease).post(acquire_lease).delete(release_lease),
    )
}

/// The wire shape is wrapped (docs examples, fly-go MachineLease), unlike the spec's bare `Lease`.
fn lease_json(lease: &Lease, with_nonce: bool) -> Value {
    let mut data = json!({"expires_at": lease.expires_s, "owner": lease.owner,
        "description": lease.description, "version": lease.version});
    if with_nonce {
        data["nonce"] = json!(lease.nonce);
    }
    json!({"status": "success", "data": data})
}

#[derive(serde::Deserialize, Default)]
struct LeaseRequest {
    description: Option<String>,
    ttl: Option<i64>,
}

async fn get_lease(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult {
    reply(200, lease_json(&sim.get_lease(&caller, &app, &id)?, false))
}

async fn acquire_lease(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(pairs): QueryPairs,
    body: Bytes,
) -> ApiResult {
    let request: LeaseRequest = decode(&body, "CreateLeaseRequest")?;
    let ttl_s = match query(&pairs, "ttl") {
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| ApiError::bad(format!("invalid ttl {text:?}")))?,
        None => request.ttl.unwrap_or(30),
    };
    let given = lease_nonce(&headers).map(str::to_string);
    let lease = sim.acquire_lease(&caller, &app, &id, given, ttl_s, request.description)?;
    reply(201, lease_json(&lease, true))
}

async fn release_lease(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let given = lease_nonce(&headers).map(str::to_string);
    sim.release_lease(&caller, &app, &id, given)?;
    reply(200, json!({"status": "success", "data": {"ok": true}}))
}
