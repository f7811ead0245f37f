//! The HTTP surface: the Machines API under `/v1`, the logs endpoint under `/api/v1`, and GraphQL's
//! `enablePostgresConsul` at `/graphql`.
//!
//! One file per resource, each with its own `router()`. Handlers only decode the request, call one `Sim`
//! method and encode its answer; every rule and state change lives in `Sim`. The `gate` middleware in
//! front of all of them does what Fly's edge does: request ids, auth, injected faults and rate limits.

mod apps;
mod exec;
mod graphql;
mod leases;
mod logs;
mod machines;
mod metadata;
mod secrets;
mod volumes;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::clock::ms;
use crate::model::Token;
use crate::sim::{ApiError, Sim};

/// What every handler answers.
type ApiResult = Result<Response, ApiError>;

/// The query string as pairs (repeated keys such as `state` stay separate).
type QueryPairs = axum::extract::Query<Vec<(String, String)>>;

/// The authenticated token, put on the request by `gate`.
#[derive(Clone)]
struct Caller(Token);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = json!({ "error": self.error });
        if let Some(code) = self.code {
            body["status"] = json!(code);
        }
        (status, Json(body)).into_response()
    }
}

pub(crate) fn router(sim: Sim) -> Router {
    let v1 = Router::new()
        .merge(apps::router())
        .merge(machines::router())
        .merge(exec::router())
        .merge(leases::router())
        .merge(metadata::router())
        .merge(volumes::router())
        .merge(secrets::router());
    Router::new()
        .nest("/v1", v1)
        .merge(logs::router())
        .merge(graphql::router())
        .fallback(|| async { ApiError::not_found("404 page not found") })
        .layer(middleware::from_fn_with_state(sim.clone(), gate))
        .with_state(sim)
}

/// A JSON answer with `status`.
fn reply<T: serde::Serialize>(status: u16, value: T) -> ApiResult {
    Ok((
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(value),
    )
        .into_response())
}

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Decode a JSON body as Fly (Go's encoding/json) would: unknown fields are ignored, bad JSON is 400.
fn decode<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad(format!("failed to decode {what} request body: {e}")))
}

/// The first value of `key` in the query.
fn query<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(name, _)| name == key)
        .map(|(_, value)| value.as_str())
}

/// A boolean query flag (`true`, `1`, `yes`).
fn flag(pairs: &[(String, String)], key: &str) -> bool {
    matches!(query(pairs, key), Some("true" | "1" | "yes"))
}

/// Every value of a repeatable, comma-separated key (`state=a,b&state=c`).
fn list(pairs: &[(String, String)], key: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(name, _)| name == key)
        .flat_map(|(_, value)| value.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `fly-machine-lease-nonce` header.
fn lease_nonce(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("fly-machine-lease-nonce")
        .and_then(|v| v.to_str().ok())
}

fn request_id(sim: &Sim) -> String {
    let mut state = sim.lock();
    let random = state.rand();
    format!(
        "{:020x}-iad",
        random as u128 * 0x1_0000 + (state.counter as u128 & 0xFFFF)
    )
}

/// Auth, faults, time, request ids.
async fn gate(State(sim): State<Sim>, mut request: Request, next: Next) -> Response {
    let request_id = request_id(&sim);
    let latency = sim.faults().cfg.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    sim.tick();
    let mut response = 'response: {
        let path = request.uri().path().to_string();
        if !(path.starts_with("/v1/") || path.starts_with("/api/v1/")) {
            break 'response next.run(request).await;
        }
        let authorization = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let token = match sim.authenticate(authorization) {
            Ok(token) => token,
            Err(e) => break 'response e.into_response(),
        };
        if let Some(refused) = edge_fault(&sim, request.method().as_str(), &path) {
            break 'response refused.into_response();
        }
        if let Some(app) = app_in_path(&path).filter(|app| sim.app_still_hidden(app)) {
            break 'response ApiError::not_found(format!("app not found: {app}")).into_response();
        }
        request.extensions_mut().insert(Caller(token));
        let mutating = request.method() != axum::http::Method::GET;
        let response = next.run(request).await;
        if mutating {
            sim.changed();
        }
        response
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("fly-request-id", value);
    }
    response
}

/// The app a `/v1/apps/{app}…` path names.
fn app_in_path(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v1/apps/")?;
    rest.split('/').next().filter(|app| !app.is_empty())
}

/// A rate limit, an injected 429/503 or a lease conflict (409), drawn in request order.
fn edge_fault(sim: &Sim, method: &str, path: &str) -> Option<ApiError> {
    let limited = !sim.faults().rate_ok(method, path, ms(sim.now()));
    if limited {
        return Some(ApiError::new(429, "rate limit exceeded"));
    }
    let (too_many, unavailable) = {
        let mut faults = sim.faults();
        let (rate_429, rate_5xx) = (faults.cfg.rate_429, faults.cfg.rate_5xx);
        (faults.hit(rate_429), faults.hit(rate_5xx))
    };
    if too_many {
        return Some(ApiError::new(429, "rate limit exceeded"));
    }
    if unavailable {
        return Some(ApiError::new(
            503,
            "service unavailable: upstream connect error",
        ));
    }
    if sim.faults().lease_conflict(method, path) {
        return Some(ApiError::new(
            409,
            "failed_precondition: machine lease currently held by another client",
        ));
    }
    None
}
