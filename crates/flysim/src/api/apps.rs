//! `/v1/apps` and `/v1/tokens/current`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{decode, query, reply, ApiResult, Caller, QueryPairs};
use crate::clock::rfc3339;
use crate::sim::{AppSummary, Sim, TokenScope};

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app}", get(get_app).delete(delete_app))
        .route("/tokens/current", get(current_token))
}

fn app_json(app: &AppSummary) -> Value {
    let status = if app.machine_count > 0 {
        "deployed"
    } else {
        "pending"
    };
    json!({
        "id": app.id, "name": app.name, "status": status,
        "network": app.network, "internal_numeric_id": app.internal_numeric_id,
        "machine_count": app.machine_count, "volume_count": app.volume_count,
        "organization": {"name": app.org_name, "slug": app.org_slug,
            "internal_numeric_id": app.org_numeric_id},
        "app_role": app.app_role,
        "created_at": rfc3339(app.created_ms),
    })
}

fn token_json(scope: &TokenScope) -> Value {
    let mut value = json!({"token_id": scope.token_id, "org_slug": scope.org_slug,
        "organization": scope.org_name, "apps": scope.apps});
    if let Some(user) = &scope.user {
        value["user"] = json!(user);
    }
    value
}

async fn list_apps(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let apps = sim.list_apps(
        &caller,
        query(&pairs, "org_slug"),
        query(&pairs, "app_role"),
    )?;
    let apps: Vec<Value> = apps.iter().map(app_json).collect();
    reply(200, json!({"apps": apps, "total_apps": apps.len()}))
}

async fn create_app(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    body: Bytes,
) -> ApiResult {
    let request = decode(&body, "CreateAppRequest")?;
    reply(201, app_json(&sim.create_app(&caller, request)?))
}

async fn get_app(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
) -> ApiResult {
    reply(200, app_json(&sim.get_app(&caller, &app)?))
}

async fn delete_app(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
) -> ApiResult {
    sim.delete_app(&caller, &app)?;
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn current_token(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
) -> ApiResult {
    let tokens: Vec<Value> = sim.token_scopes(&caller).iter().map(token_json).collect();
    reply(200, json!({"tokens": tokens}))
}
