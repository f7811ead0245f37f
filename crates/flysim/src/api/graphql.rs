//! `POST /graphql` on the api.fly.io side: only the `enablePostgresConsul` mutation, as flyctl sends it
//! (fly-go `resource_postgres.go::EnablePostgresConsul`:
//! `mutation($appName: ID!) { enablePostgresConsul(input: {appId: $appName}) { consulUrl } }`).
//!
//! GraphQL answers 200 with `errors` rather than an HTTP error; anything else is named as not
//! emulated. The error texts for a missing app and a bad token are best guesses.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use crate::sim::Sim;

pub(super) fn router() -> Router<Sim> {
    Router::new().route("/graphql", post(graphql))
}

/// A GraphQL error answer (HTTP 200, `data: null`).
fn errors(message: &str, code: &str) -> Response {
    Json(json!({"data": null, "errors": [{"message": message, "extensions": {"code": code}}]}))
        .into_response()
}

async fn graphql(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return errors("Unexpected end of document", "BAD_REQUEST");
    };
    let query = request["query"].as_str().unwrap_or_default();
    let variables = request["variables"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if !query.contains("enablePostgresConsul") {
        return errors(
            "flysim: only the enablePostgresConsul mutation is emulated on /graphql",
            "NOT_EMULATED",
        );
    }
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let caller = match sim.authenticate(authorization) {
        Ok(caller) => caller,
        Err(_) => return errors("You must be authenticated to view this.", "UNAUTHORIZED"),
    };
    let Some(app) = app_id(query, &variables) else {
        return errors(
            "Variable $appName of type ID! was provided invalid value",
            "BAD_REQUEST",
        );
    };
    match sim.enable_postgres_consul(&caller, &app) {
        Ok(url) => {
            sim.changed();
            Json(json!({"data": {"enablePostgresConsul": {"consulUrl": url}}})).into_response()
        }
        Err(_) => errors(&format!("Could not find App \"{app}\""), "NOT_FOUND"),
    }
}

/// `input: {appId: $var}` (from `variables`) or `input: {appId: "name"}`.
fn app_id(query: &str, variables: &Map<String, Value>) -> Option<String> {
    let (_, after) = query.split_once("appId")?;
    let value = after.trim_start().strip_prefix(':')?.trim_start();
    if let Some(name) = value.strip_prefix('$') {
        let name: String = name
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        return variables
            .get(&name)?
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
    }
    let literal = value.strip_prefix('"')?;
    literal.split_once('"').map(|(name, _)| name.to_string())
}
