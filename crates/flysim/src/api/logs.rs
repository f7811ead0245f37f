//! `GET /api/v1/apps/{app}/logs` (JSON:API, as Fly's logs endpoint answers).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{query, reply, ApiResult, Caller, QueryPairs};
use crate::model::LogLine;
use crate::sim::{LogQuery, Sim};

pub(super) fn router() -> Router<Sim> {
    Router::new().route("/api/v1/apps/{app}/logs", get(app_logs))
}

fn line_json(line: &LogLine) -> Value {
    let timestamp = time::OffsetDateTime::from_unix_timestamp_nanos(line.ns)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    json!({"id": line.id, "type": "logs", "attributes": {"timestamp": timestamp,
        "message": line.message, "level": "info", "instance": line.instance, "region": line.region,
        "meta": {"event": {"provider": "app"}, "region": line.region}}})
}

async fn app_logs(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let non_empty = |key| {
        query(&pairs, key)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let log_query = LogQuery {
        instance: non_empty("instance"),
        region: non_empty("region"),
        next_token: non_empty("next_token"),
    };
    let page = sim.app_logs(&caller, &app, &log_query)?;
    let data: Vec<Value> = page.lines.iter().map(line_json).collect();
    reply(
        200,
        json!({"data": data, "meta": {"next_token": page.next_token.to_string()}}),
    )
}
