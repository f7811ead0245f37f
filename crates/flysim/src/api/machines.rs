//! `/v1/apps/{app}/machines`: create, list, get, update, destroy, the lifecycle actions, wait, events.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{json, Value};

use super::{decode, flag, lease_nonce, list, query, reply, ApiResult, Caller, QueryPairs};
use crate::clock::rfc3339;
use crate::image::image_ref;
use crate::model::Event;
use crate::sim::{Action, ApiError, MachineFilter, MachineView, Sim, WaitRequest};

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route(
            "/apps/{app}/machines",
            get(list_machines).post(create_machine),
        )
        .route(
            "/apps/{app}/machines/{id}",
            get(get_machine)
                .post(update_machine)
                .delete(destroy_machine),
        )
        .route("/apps/{app}/machines/{id}/stop", post(stop_machine))
        .route("/apps/{app}/machines/{id}/start", post(start_machine))
        .route("/apps/{app}/machines/{id}/restart", post(restart_machine))
        .route("/apps/{app}/machines/{id}/suspend", post(suspend_machine))
        .route("/apps/{app}/machines/{id}/cordon", post(cordon))
        .route("/apps/{app}/machines/{id}/uncordon", post(uncordon))
        .route("/apps/{app}/machines/{id}/wait", get(wait_machine))
        .route("/apps/{app}/machines/{id}/events", get(machine_events))
}

fn machine_json(view: &MachineView) -> Value {
    let machine = &view.machine;
    let image = machine
        .config
        .get("image")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let mut value = json!({
        "id": machine.id, "name": machine.name, "state": machine.state, "region": machine.region,
        "instance_id": machine.instance_id, "private_ip": machine.private_ip, "config": machine.config,
        "image_ref": image_ref(image), "checks": view.checks,
        "events": machine.events.iter().take(10).map(event_json).collect::<Vec<_>>(),
        "host_status": "ok", "cordoned": machine.cordoned,
        "created_at": rfc3339(machine.created_ms), "updated_at": rfc3339(machine.updated_ms),
    });
    if let Some(lease) = &view.lease {
        value["lease"] = json!({"owner": lease.owner, "description": lease.description,
            "expires_at": lease.expires_s});
    }
    if let Some(nonce) = &view.nonce {
        value["nonce"] = json!(nonce);
    }
    value
}

fn event_json(event: &Event) -> Value {
    json!({"id": event.id, "type": event.kind, "status": event.status, "source": event.source,
        "timestamp": event.ms, "request": event.request})
}

/// The `{"ok": true}` body of a done action.
fn done() -> Value {
    json!({"ok": true})
}

async fn list_machines(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let filter = MachineFilter {
        include_deleted: flag(&pairs, "include_deleted"),
        region: query(&pairs, "region").map(str::to_string),
        states: list(&pairs, "state"),
        metadata: pairs
            .iter()
            .filter_map(|(key, value)| {
                let key = key.strip_prefix("metadata.")?;
                Some((key.to_string(), value.clone()))
            })
            .collect(),
        with_lease: flag(&pairs, "include_leases"),
    };
    let machines = sim.list_machines(&caller, &app, &filter)?;
    reply(200, machines.iter().map(machine_json).collect::<Vec<_>>())
}

async fn get_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult {
    reply(200, machine_json(&sim.get_machine(&caller, &app, &id)?))
}

async fn create_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request = decode(&body, "CreateMachineRequest")?;
    reply(
        200,
        machine_json(&sim.create_machine(&caller, &app, request)?),
    )
}

async fn update_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let request = decode(&body, "UpdateMachineRequest")?;
    let updated = sim.update_machine(&caller, &app, &id, lease_nonce(&headers), request)?;
    reply(200, machine_json(&updated))
}

async fn destroy_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let force = flag(&pairs, "force") || flag(&pairs, "kill");
    sim.destroy_machine(&caller, &app, &id, lease_nonce(&headers), force)?;
    reply(200, done())
}

/// A `stop` body. Its `signal` and `timeout` are checked for shape only: an emulated stop is always clean.
#[derive(serde::Deserialize, Default)]
struct StopRequest {
    #[serde(rename = "signal")]
    _signal: Option<String>,
    #[serde(rename = "timeout")]
    _timeout: Option<Value>,
}

async fn stop_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let _shape_checked: StopRequest = decode(&body, "StopRequest")?;
    sim.stop_machine(&caller, &app, &id, lease_nonce(&headers))?;
    reply(200, done())
}

async fn start_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let previous = sim.start_machine(&caller, &app, &id, lease_nonce(&headers))?;
    reply(
        200,
        json!({"previous_state": previous, "migrated": false, "new_host": ""}),
    )
}

async fn restart_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    sim.cycle_machine(&caller, &app, &id, lease_nonce(&headers), Action::Restart)?;
    reply(200, done())
}

async fn suspend_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    sim.cycle_machine(&caller, &app, &id, lease_nonce(&headers), Action::Suspend)?;
    reply(200, done())
}

async fn cordon(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult {
    sim.set_cordoned(&caller, &app, &id, true)?;
    reply(200, done())
}

async fn uncordon(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> ApiResult {
    sim.set_cordoned(&caller, &app, &id, false)?;
    reply(200, done())
}

async fn wait_machine(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let version = query(&pairs, "version")
        .or_else(|| query(&pairs, "instance_id"))
        .map(str::to_string);
    let request = WaitRequest::new(list(&pairs, "state"), query(&pairs, "timeout"), version)?;
    let outcome = sim.wait_machine(&caller, &app, &id, request).await?;
    reply(
        200,
        json!({"ok": true, "state": outcome.state, "version": outcome.version,
            "event_id": outcome.event_id}),
    )
}

async fn machine_events(
    State(sim): State<Sim>,
    Extension(Caller(caller)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    Query(pairs): QueryPairs,
) -> ApiResult {
    let limit: usize = match query(&pairs, "limit") {
        Some(text) => text
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid limit {text:?}")))?,
        None => 20,
    };
    let events = sim.machine_events(&caller, &app, &id, limit.clamp(1, 50))?;
    reply(200, events.iter().map(event_json).collect::<Vec<_>>())
}
