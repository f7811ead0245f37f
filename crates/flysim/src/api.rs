//! The HTTP surface: the Machines API under `/v1` and the logs endpoint under `/api/v1`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use md5::{Digest, Md5};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::clock::{ms, rfc3339};
use crate::model::*;
use crate::sim::{image_of, image_ref, new_app, ApiError, Sim};
use crate::stolon;

type Q = Query<Vec<(String, String)>>;

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

type R = Result<Response, ApiError>;

fn ok<T: serde::Serialize>(status: u16, v: T) -> R {
    Ok((
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        Json(v),
    )
        .into_response())
}

fn no_content() -> R {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Decode a JSON body as Fly (Go's encoding/json) would: unknown fields are ignored, bad JSON is 400.
fn body<T: DeserializeOwned>(bytes: &Bytes, what: &str) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad(format!("failed to decode {what} request body: {e}")))
}

fn q<'a>(qs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    qs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1" | "yes"))
}

#[derive(Clone)]
struct Caller(Token);

pub(crate) fn router(sim: Sim) -> Router {
    let v1 = Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app}", get(get_app).delete(delete_app))
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
        .route("/apps/{app}/machines/{id}/exec", post(exec_machine))
        .route("/apps/{app}/machines/{id}/events", get(machine_events))
        .route(
            "/apps/{app}/machines/{id}/lease",
            get(get_lease).post(acquire_lease).delete(release_lease),
        )
        .route(
            "/apps/{app}/machines/{id}/metadata",
            get(get_metadata).put(put_metadata).patch(patch_metadata),
        )
        .route(
            "/apps/{app}/machines/{id}/metadata/{key}",
            get(get_meta_key).post(set_meta_key).delete(del_meta_key),
        )
        .route("/apps/{app}/volumes", get(list_volumes).post(create_volume))
        .route(
            "/apps/{app}/volumes/{vol}",
            get(get_volume).delete(delete_volume),
        )
        .route(
            "/apps/{app}/secrets",
            get(list_secrets).post(update_secrets),
        )
        .route(
            "/apps/{app}/secrets/{name}",
            get(get_secret).post(set_secret).delete(delete_secret),
        )
        .route("/tokens/current", get(current_token));
    Router::new()
        .nest("/v1", v1)
        .route("/api/v1/apps/{app}/logs", get(app_logs))
        .fallback(|| async { ApiError::not_found("404 page not found") })
        .layer(middleware::from_fn_with_state(sim.clone(), gate))
        .with_state(sim)
}

fn request_id(sim: &Sim) -> String {
    let mut st = sim.lock();
    let a = st.rand();
    format!(
        "{:020x}-iad",
        a as u128 * 0x1_0000 + (st.counter as u128 & 0xFFFF)
    )
}

/// Auth, faults, time, request ids.
async fn gate(State(sim): State<Sim>, mut req: Request, next: Next) -> Response {
    let rid = request_id(&sim);
    let latency = sim.faults().cfg.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    sim.tick();
    let mut resp = 'resp: {
        let path = req.uri().path().to_string();
        if !(path.starts_with("/v1/") || path.starts_with("/api/v1/")) {
            break 'resp next.run(req).await;
        }
        let token = match authenticate(&sim, req.headers()) {
            Ok(t) => t,
            Err(e) => break 'resp e.into_response(),
        };
        let method = req.method().as_str().to_string();
        let limited = !sim.faults().rate_ok(&method, &path, ms(sim.now()));
        if limited {
            break 'resp ApiError::new(429, "rate limit exceeded").into_response();
        }
        let (t429, t5xx) = {
            let mut f = sim.faults();
            let (r429, r5xx) = (f.cfg.rate_429, f.cfg.rate_5xx);
            (f.hit(r429), f.hit(r5xx))
        };
        if t429 {
            break 'resp ApiError::new(429, "rate limit exceeded").into_response();
        }
        if t5xx {
            break 'resp ApiError::new(503, "service unavailable: upstream connect error")
                .into_response();
        }
        req.extensions_mut().insert(Caller(token));
        let mutating = req.method() != axum::http::Method::GET;
        let r = next.run(req).await;
        if mutating {
            sim.changed();
        }
        r
    };
    if let Ok(v) = HeaderValue::from_str(&rid) {
        resp.headers_mut().insert("fly-request-id", v);
    }
    resp
}

fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<Token, ApiError> {
    let unauth = || ApiError::new(401, "Authenticate: token validation error");
    let raw = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(unauth)?
        .trim();
    let value = raw
        .strip_prefix("Bearer ")
        .or_else(|| raw.strip_prefix("FlyV1 "))
        .ok_or_else(unauth)?
        .trim();
    let st = sim.lock();
    for part in value.split(',') {
        if let Some(t) = st.tokens.get(part.trim()) {
            return Ok(t.clone());
        }
    }
    Err(unauth())
}

fn can_see(tok: &Token, app: &App) -> Result<(), ApiError> {
    let org_ok = tok.orgs.contains(&app.org);
    let app_ok = tok
        .apps
        .as_ref()
        .is_none_or(|apps| apps.contains(&app.name));
    if org_ok && app_ok {
        Ok(())
    } else {
        Err(ApiError::new(
            403,
            format!("unauthorized: token has no access to app {}", app.name),
        ))
    }
}

fn with_app<T>(
    sim: &Sim,
    tok: &Token,
    app: &str,
    f: impl FnOnce(&mut crate::model::State) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut st = sim.lock();
    let a = st.app(app)?;
    can_see(tok, a)?;
    f(&mut st)
}

fn now_ms(sim: &Sim) -> i64 {
    ms(sim.now())
}

// ---------------------------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------------------------

/// Fly's app-name rule: lowercase letters, digits and dashes; starts with a letter or digit; 2–63 chars.
pub fn valid_app_name(name: &str) -> Result<(), String> {
    if name.len() < 2 || name.len() > 63 {
        return Err("Name must be between 2 and 63 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("Name can only contain lowercase letters, numbers, and dashes".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("Name cannot start or end with a dash".into());
    }
    Ok(())
}

fn app_json(st: &crate::model::State, a: &App) -> Value {
    let org = st.orgs.get(&a.org);
    let machines = a.machines.values().filter(|m| !m.destroyed).count();
    json!({
        "id": a.id, "name": a.name, "status": if machines > 0 { "deployed" } else { "pending" },
        "network": a.network, "internal_numeric_id": a.internal_numeric_id,
        "machine_count": machines, "volume_count": a.volumes.len(),
        "organization": {"name": org.map(|o| o.name.clone()).unwrap_or_default(), "slug": a.org,
            "internal_numeric_id": org.map(|o| o.internal_numeric_id).unwrap_or(0)},
        "app_role": a.app_role,
        "created_at": rfc3339(a.created_ms),
    })
}

async fn list_apps(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Query(qs): Q,
) -> R {
    let Some(org) = q(&qs, "org_slug").filter(|s| !s.is_empty()) else {
        return Err(ApiError::bad("org_slug is required"));
    };
    if !tok.orgs.iter().any(|o| o == org) {
        return Err(ApiError::not_found(format!(
            "organization not found: {org}"
        )));
    }
    let role = q(&qs, "app_role");
    let st = sim.lock();
    let apps: Vec<Value> = st
        .apps
        .values()
        .filter(|a| a.org == org && can_see(&tok, a).is_ok())
        .filter(|a| role.is_none_or(|r| r == a.app_role))
        .map(|a| app_json(&st, a))
        .collect();
    ok(200, json!({"apps": apps, "total_apps": apps.len()}))
}

#[derive(Deserialize)]
struct CreateApp {
    name: Option<String>,
    org_slug: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    app_role_id: Option<String>,
}

async fn create_app(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    b: Bytes,
) -> R {
    let req: CreateApp = body(&b, "CreateAppRequest")?;
    let name = req.name.unwrap_or_default();
    valid_app_name(&name).map_err(|e| ApiError::new(422, format!("Validation failed: {e}")))?;
    let org = req.org_slug.unwrap_or_default();
    if org.is_empty() {
        return Err(ApiError::bad("org_slug is required"));
    }
    if !tok.orgs.contains(&org) || tok.apps.is_some() {
        return Err(ApiError::new(
            403,
            format!("unauthorized: token cannot create apps in organization {org}"),
        ));
    }
    let now = now_ms(&sim);
    let out = {
        let mut st = sim.lock();
        if !st.orgs.contains_key(&org) {
            return Err(ApiError::not_found(format!(
                "organization not found: {org}"
            )));
        }
        if st.apps.contains_key(&name) {
            return Err(ApiError::new(
                422,
                "Validation failed: Name has already been taken",
            ));
        }
        let app = new_app(
            &mut st,
            &name,
            &org,
            req.network.as_deref().unwrap_or(""),
            req.app_role_id.as_deref().unwrap_or(""),
            now,
        );
        let v = app_json(&st, &app);
        st.apps.insert(name, app);
        v
    };
    after_create(&sim, 201, out)
}

/// The 408-after-success fault on create calls.
fn after_create(sim: &Sim, status: u16, v: Value) -> R {
    let hit = {
        let mut f = sim.faults();
        let p = f.cfg.create_408_after_success;
        f.hit(p)
    };
    if hit {
        sim.changed();
        return Err(ApiError::new(408, "deadline_exceeded: request timed out"));
    }
    ok(status, v)
}

async fn get_app(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
) -> R {
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    ok(200, app_json(&st, a))
}

async fn delete_app(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
) -> R {
    with_app(&sim, &tok, &app, |st| {
        st.apps.remove(&app);
        st.timers.retain(|t| t.app != app);
        Ok(())
    })?;
    Ok(StatusCode::ACCEPTED.into_response())
}

// ---------------------------------------------------------------------------------------------
// Machines
// ---------------------------------------------------------------------------------------------

const CONFIG_KEYS: &[&str] = &[
    "auto_destroy",
    "cache_drive",
    "checks",
    "containers",
    "disable_machine_autostart",
    "dns",
    "env",
    "files",
    "guest",
    "image",
    "init",
    "metadata",
    "metrics",
    "mounts",
    "processes",
    "restart",
    "rootfs",
    "schedule",
    "services",
    "size",
    "spot",
    "standbys",
    "statics",
    "stop_config",
];

fn machine_json(a: &App, m: &Machine, now: i64, with_lease: bool) -> Value {
    let mut v = json!({
        "id": m.id, "name": m.name, "state": m.state, "region": m.region, "instance_id": m.instance_id,
        "private_ip": m.private_ip, "config": m.config, "image_ref": image_ref(image_of(m)),
        "checks": stolon::checks(a, m, now),
        "events": m.events.iter().take(10).map(event_json).collect::<Vec<_>>(),
        "host_status": "ok", "cordoned": m.cordoned,
        "created_at": rfc3339(m.created_ms), "updated_at": rfc3339(m.updated_ms),
    });
    if with_lease {
        if let Some(l) = m.lease.as_ref().filter(|l| l.expires_s * 1000 > now) {
            v["lease"] =
                json!({"owner": l.owner, "description": l.description, "expires_at": l.expires_s});
        }
    }
    v
}

fn event_json(e: &Event) -> Value {
    json!({"id": e.id, "type": e.kind, "status": e.status, "source": e.source, "timestamp": e.ms, "request": e.request})
}

async fn list_machines(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
    Query(qs): Q,
) -> R {
    let now = now_ms(&sim);
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let include_deleted = truthy(q(&qs, "include_deleted"));
    let region = q(&qs, "region");
    let states: Vec<String> = qs
        .iter()
        .filter(|(k, _)| k == "state")
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    let meta: Vec<(String, String)> = qs
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let with_lease = truthy(q(&qs, "include_leases"));
    let list: Vec<Value> = a
        .machines
        .values()
        .filter(|m| include_deleted || !m.destroyed)
        .filter(|m| region.is_none_or(|r| r == m.region))
        .filter(|m| states.is_empty() || states.iter().any(|s| s == m.state.as_str()))
        .filter(|m| {
            meta.iter().all(|(k, v)| {
                m.config
                    .pointer(&format!("/metadata/{k}"))
                    .and_then(|x| x.as_str())
                    == Some(v.as_str())
            })
        })
        .map(|m| machine_json(a, m, now, with_lease))
        .collect();
    ok(200, list)
}

async fn get_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    Query(_qs): Q,
) -> R {
    let now = now_ms(&sim);
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let m = a
        .machines
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
    ok(200, machine_json(a, m, now, true))
}

#[derive(Deserialize, Default)]
struct MachineReq {
    config: Option<Value>,
    name: Option<String>,
    region: Option<String>,
    lease_ttl: Option<u64>,
    min_secrets_version: Option<u64>,
    skip_launch: Option<bool>,
    skip_secrets: Option<bool>,
    #[allow(dead_code)]
    skip_service_registration: Option<bool>,
    current_version: Option<String>,
}

fn clean_config(v: Value) -> Result<Value, ApiError> {
    let Value::Object(mut map) = v else {
        return Err(ApiError::bad("invalid config: must be an object"));
    };
    map.retain(|k, _| CONFIG_KEYS.contains(&k.as_str()));
    let image = map.get("image").and_then(|v| v.as_str()).unwrap_or("");
    if image.trim().is_empty() {
        return Err(ApiError::bad("invalid config.image: image is required"));
    }
    if let Some(env) = map.get("env") {
        let ok = env
            .as_object()
            .is_some_and(|o| o.values().all(|v| v.is_string()));
        if !ok {
            return Err(ApiError::bad("invalid config.env: values must be strings"));
        }
    }
    if let Some(md) = map.get("metadata") {
        let ok = md
            .as_object()
            .is_some_and(|o| o.values().all(|v| v.is_string()));
        if !ok {
            return Err(ApiError::bad(
                "invalid config.metadata: values must be strings",
            ));
        }
    }
    Ok(Value::Object(map))
}

fn mount_volume(cfg: &Value) -> Result<Option<String>, ApiError> {
    let Some(mounts) = cfg.get("mounts") else {
        return Ok(None);
    };
    let Some(arr) = mounts.as_array() else {
        return Err(ApiError::bad("invalid config.mounts: must be an array"));
    };
    match arr.as_slice() {
        [] => Ok(None),
        [m] => {
            let vol = m.get("volume").and_then(|v| v.as_str()).unwrap_or("");
            let path = m.get("path").and_then(|v| v.as_str()).unwrap_or("");
            if vol.is_empty() || path.is_empty() {
                return Err(ApiError::bad(
                    "invalid config.mounts[0]: volume and path are required",
                ));
            }
            Ok(Some(vol.to_string()))
        }
        _ => Err(ApiError::bad(
            "invalid config.mounts: only one volume can be mounted",
        )),
    }
}

fn snapshot_secrets(
    a: &App,
    min: Option<u64>,
    skip: bool,
) -> Result<(BTreeMap<String, String>, u64), ApiError> {
    if let Some(min) = min {
        if min > a.secrets_version {
            return Err(ApiError::bad(format!(
                "min_secrets_version {min} is newer than app {}'s secrets version {}",
                a.name, a.secrets_version
            )));
        }
    }
    if skip {
        return Ok((BTreeMap::new(), 0));
    }
    Ok((
        a.secrets
            .iter()
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect(),
        a.secrets_version,
    ))
}

fn gen_name(st: &mut crate::model::State) -> String {
    const A: [&str; 8] = [
        "icy", "late", "bold", "dawn", "calm", "wild", "aged", "misty",
    ];
    const B: [&str; 8] = [
        "wave", "sun", "leaf", "moon", "pine", "snow", "fire", "lake",
    ];
    let r = st.rand();
    format!(
        "{}-{}-{}",
        A[(r % 8) as usize],
        B[((r >> 8) % 8) as usize],
        (r >> 16) % 9000 + 1000
    )
}

async fn create_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
    b: Bytes,
) -> R {
    let req: MachineReq = body(&b, "CreateMachineRequest")?;
    if req
        .lease_ttl
        .is_some_and(|t| t == 0 || t > MAX_LEASE_TTL as u64)
    {
        return Err(ApiError::bad(format!(
            "invalid_argument: lease_ttl must be between 1 and {MAX_LEASE_TTL} seconds"
        )));
    }
    let cfg = clean_config(
        req.config
            .clone()
            .ok_or_else(|| ApiError::bad("config is required"))?,
    )?;
    let vol = mount_volume(&cfg)?;
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    let owner = tok.user.clone().unwrap_or_else(|| "flysim".into());
    let v = with_app(&sim, &tok, &app, |st| {
        let a = st.app(&app)?;
        let (secrets, sv) = snapshot_secrets(
            a,
            req.min_secrets_version,
            req.skip_secrets.unwrap_or(false),
        )?;
        let mut region = req.region.clone().filter(|r| !r.is_empty());
        if let Some(v) = &vol {
            let volume = a
                .volumes
                .get(v)
                .ok_or_else(|| ApiError::not_found(format!("volume not found: {v}")))?;
            if let Some(m) = &volume.attached_machine_id {
                return Err(ApiError::new(
                    412,
                    format!("failed_precondition: volume {v} is already attached to machine {m}"),
                ));
            }
            match &region {
                Some(r) if *r != volume.region => {
                    return Err(ApiError::bad(format!(
                        "volume {v} is in region {}, not {r}",
                        volume.region
                    )));
                }
                None => region = Some(volume.region.clone()),
                _ => {}
            }
        }
        let region = region.unwrap_or_else(|| "iad".into());
        let name = match req.name.clone().filter(|n| !n.is_empty()) {
            Some(n) => {
                if a.machines.values().any(|m| !m.destroyed && m.name == n) {
                    return Err(ApiError::new(
                        409,
                        format!("already_exists: a machine named {n} already exists"),
                    ));
                }
                n
            }
            None => gen_name(st),
        };
        let id = st.next_id("", 14);
        let instance = st.ulid(now);
        let ip = {
            let (r1, r2) = (st.rand(), st.rand());
            format!(
                "fdaa:0:1a2b:a7b:{:x}:{:x}:{:x}:2",
                0x100 + r1 % 0xeff,
                r1 >> 48,
                r2 >> 48
            )
        };
        let lease = req.lease_ttl.map(|ttl| Lease {
            nonce: format!("{:012x}", st.rand() >> 16),
            owner: owner.clone(),
            description: String::new(),
            expires_s: now / 1000 + ttl as i64,
            version: instance.clone(),
        });
        let m = Machine {
            id: id.clone(),
            name,
            state: MachineState::Created,
            region,
            instance_id: instance,
            private_ip: ip,
            config: cfg.clone(),
            created_ms: now,
            updated_ms: now,
            events: Default::default(),
            lease: lease.clone(),
            cordoned: false,
            secrets_env: secrets,
            secrets_version: sv,
            gen: 0,
            restart_count: 0,
            ready_ms: None,
            crash_reason: None,
            volume: vol.clone(),
            destroyed: false,
        };
        let a = st.app_mut(&app)?;
        if let Some(v) = &vol {
            if let Some(volume) = a.volumes.get_mut(v) {
                volume.attached_machine_id = Some(id.clone());
            }
        }
        a.machines.insert(id.clone(), m);
        st.push_event(&app, &id, "launch", "created", "user", now, json!({}));
        if !req.skip_launch.unwrap_or(false) {
            st.transition(
                &app,
                &id,
                MachineState::Created,
                MachineState::Started,
                now,
                timing.start,
            )?;
        }
        let a = st.app(&app)?;
        let m = a
            .machines
            .get(&id)
            .ok_or_else(|| ApiError::not_found("machine vanished"))?;
        let mut v = machine_json(a, m, now, true);
        if let Some(l) = lease {
            v["nonce"] = json!(l.nonce);
        }
        Ok(v)
    })?;
    after_create(&sim, 200, v)
}

fn check_lease(m: &Machine, headers: &HeaderMap, now: i64) -> Result<(), ApiError> {
    let Some(l) = m.lease.as_ref().filter(|l| l.expires_s * 1000 > now) else {
        return Ok(());
    };
    let given = headers
        .get("fly-machine-lease-nonce")
        .and_then(|v| v.to_str().ok());
    match given {
        Some(n) if n == l.nonce => Ok(()),
        Some(_) => Err(ApiError::new(
            409,
            format!(
                "lease nonce mismatch: machine {} is leased by {} until {}",
                m.id,
                l.owner,
                rfc3339(l.expires_s * 1000)
            ),
        )),
        None => Err(ApiError::new(
            409,
            format!(
                "machine {} is leased by {} until {}; send fly-machine-lease-nonce",
                m.id,
                l.owner,
                rfc3339(l.expires_s * 1000)
            ),
        )),
    }
}

async fn update_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    b: Bytes,
) -> R {
    let req: MachineReq = body(&b, "UpdateMachineRequest")?;
    let cfg = clean_config(
        req.config
            .clone()
            .ok_or_else(|| ApiError::bad("config is required"))?,
    )?;
    let vol = mount_volume(&cfg)?;
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    let v = with_app(&sim, &tok, &app, |st| {
        let a = st.app(&app)?;
        let m = a
            .machines
            .get(&id)
            .filter(|m| !m.destroyed)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
        check_lease(m, &headers, now)?;
        if let Some(cv) = &req.current_version {
            if *cv != m.instance_id {
                return Err(ApiError::new(412, format!("failed_precondition: current_version {cv} does not match machine version {}", m.instance_id)));
            }
        }
        if vol != m.volume {
            return Err(ApiError::bad(
                "invalid config.mounts: a machine's volume cannot be changed by an update",
            ));
        }
        if let Some(r) = req.region.as_ref().filter(|r| !r.is_empty()) {
            if *r != m.region {
                return Err(ApiError::bad(format!(
                    "region cannot be changed by an update ({} → {r})",
                    m.region
                )));
            }
        }
        let (secrets, sv) = snapshot_secrets(
            a,
            req.min_secrets_version,
            req.skip_secrets.unwrap_or(false),
        )?;
        let was = m.state;
        let instance = st.ulid(now);
        let m = st.machine_mut(&app, &id)?;
        m.config = cfg.clone();
        m.instance_id = instance;
        m.secrets_env = secrets;
        m.secrets_version = sv;
        m.updated_ms = now;
        m.crash_reason = None;
        if let Some(l) = m.lease.as_mut() {
            l.version = m.instance_id.clone();
        }
        st.push_event(&app, &id, "update", "replacing", "user", now, json!({}));
        if was == MachineState::Started || !req.skip_launch.unwrap_or(false) {
            stolon::halted(st, &app, &id, now);
            st.transition(
                &app,
                &id,
                MachineState::Replacing,
                MachineState::Started,
                now,
                timing.start,
            )?;
        }
        let a = st.app(&app)?;
        let m = a
            .machines
            .get(&id)
            .ok_or_else(|| ApiError::not_found("machine vanished"))?;
        Ok(machine_json(a, m, now, true))
    })?;
    ok(200, v)
}

async fn destroy_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(qs): Q,
) -> R {
    let force = truthy(q(&qs, "force")) || truthy(q(&qs, "kill"));
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        check_lease(m, &headers, now)?;
        if m.state.is_running() && !force {
            return Err(ApiError::new(412, "failed_precondition: unable to destroy machine, not currently stopped, suspended or failed (use force=true)"));
        }
        stolon::halted(st, &app, &id, now);
        st.transition(
            &app,
            &id,
            MachineState::Destroying,
            MachineState::Destroyed,
            now,
            timing.stop,
        )
    })?;
    ok(200, json!({"ok": true}))
}

#[derive(Deserialize, Default)]
struct StopReq {
    #[allow(dead_code)]
    signal: Option<String>,
    #[allow(dead_code)]
    timeout: Option<Value>,
}

async fn stop_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    b: Bytes,
) -> R {
    let _req: StopReq = body(&b, "StopRequest")?;
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        check_lease(m, &headers, now)?;
        match m.state {
            MachineState::Stopped
            | MachineState::Stopping
            | MachineState::Created
            | MachineState::Suspended => Ok(()),
            s if s.is_running() => {
                st.push_event(&app, &id, "stop", "stopping", "user", now, json!({}));
                stolon::halted(st, &app, &id, now);
                st.transition(
                    &app,
                    &id,
                    MachineState::Stopping,
                    MachineState::Stopped,
                    now,
                    timing.stop,
                )
            }
            s => Err(ApiError::new(
                412,
                format!("failed_precondition: unable to stop machine from current state: '{s}'"),
            )),
        }
    })?;
    ok(200, json!({"ok": true}))
}

async fn start_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> R {
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    let prev = with_app(&sim, &tok, &app, |st| {
        let a = st.app(&app)?;
        let (secrets, sv) = {
            let (s, v) = snapshot_secrets(a, None, false)?;
            (s, v)
        };
        let m = st.machine_mut(&app, &id)?;
        check_lease(m, &headers, now)?;
        let prev = m.state;
        match prev {
            MachineState::Stopped
            | MachineState::Created
            | MachineState::Suspended
            | MachineState::Failed => {
                // Docs: staged secrets reach Machines that are started or updated after the change.
                m.secrets_env = secrets;
                m.secrets_version = sv;
                st.push_event(&app, &id, "start", "starting", "user", now, json!({}));
                st.transition(
                    &app,
                    &id,
                    MachineState::Starting,
                    MachineState::Started,
                    now,
                    timing.start,
                )?;
                Ok(prev)
            }
            s => Err(ApiError::new(
                412,
                format!("failed_precondition: unable to start machine from current state: '{s}'"),
            )),
        }
    })?;
    ok(
        200,
        json!({"previous_state": prev, "migrated": false, "new_host": ""}),
    )
}

async fn restart_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> R {
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        check_lease(m, &headers, now)?;
        if m.state != MachineState::Started {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: unable to restart machine from current state: '{}'",
                    m.state
                ),
            ));
        }
        st.push_event(&app, &id, "restart", "restarting", "user", now, json!({}));
        stolon::halted(st, &app, &id, now);
        st.transition(
            &app,
            &id,
            MachineState::Restarting,
            MachineState::Started,
            now,
            timing.start + timing.stop,
        )
    })?;
    ok(200, json!({"ok": true}))
}

async fn suspend_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> R {
    let now = now_ms(&sim);
    let timing = sim.timing().clone();
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        check_lease(m, &headers, now)?;
        if m.state != MachineState::Started {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: unable to suspend machine from current state: '{}'",
                    m.state
                ),
            ));
        }
        stolon::halted(st, &app, &id, now);
        st.transition(
            &app,
            &id,
            MachineState::Suspending,
            MachineState::Suspended,
            now,
            timing.stop,
        )
    })?;
    ok(200, json!({"ok": true}))
}

async fn cordon(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> R {
    with_app(&sim, &tok, &app, |st| {
        st.machine_mut(&app, &id)?.cordoned = true;
        Ok(())
    })?;
    ok(200, json!({"ok": true}))
}

async fn uncordon(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> R {
    with_app(&sim, &tok, &app, |st| {
        st.machine_mut(&app, &id)?.cordoned = false;
        Ok(())
    })?;
    ok(200, json!({"ok": true}))
}

/// flysim's bound on lease TTLs (Fly documents none; a year keeps the arithmetic safe).
const MAX_LEASE_TTL: i64 = 365 * 86_400;

const WAIT_STATES: &[&str] = &[
    "started",
    "stopped",
    "suspended",
    "destroyed",
    "failed",
    "settled",
];

async fn wait_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    Query(qs): Q,
) -> R {
    let mut states: Vec<String> = qs
        .iter()
        .filter(|(k, _)| k == "state")
        .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
        .collect();
    if states.is_empty() {
        states.push("started".into());
    }
    for s in &states {
        if !WAIT_STATES.contains(&s.as_str()) {
            return Err(ApiError::bad(format!(
                "invalid_argument: invalid state {s:?}; want one of {}",
                WAIT_STATES.join(", ")
            )));
        }
    }
    let timeout = match q(&qs, "timeout") {
        None | Some("") => 60,
        Some(t) => {
            let t = t.trim_end_matches('s');
            t.parse::<i64>()
                .map_err(|_| ApiError::bad(format!("invalid_argument: invalid timeout {t:?}")))?
        }
    };
    // The notes (and flaps) cap the wait at 60 s; above that Fly answers invalid_argument.
    if !(1..=60).contains(&timeout) {
        return Err(ApiError::bad(
            "invalid_argument: timeout must be between 1 and 60 seconds",
        ));
    }
    let version = q(&qs, "version")
        .or_else(|| q(&qs, "instance_id"))
        .map(|s| s.to_string());
    {
        let st = sim.lock();
        let a = st.app(&app)?;
        can_see(&tok, a)?;
        a.machines
            .get(&id)
            .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
    }
    let deadline = ms(sim.now()) + timeout * 1000;
    loop {
        let notified = sim.inner.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        sim.tick();
        {
            let st = sim.lock();
            let a = st.app(&app)?;
            let m = a
                .machines
                .get(&id)
                .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
            let old_version = version.as_ref().is_some_and(|v| *v != m.instance_id);
            let reached = states.iter().find(|s| {
                if old_version && (s.as_str() == "stopped" || s.as_str() == "destroyed") {
                    return true; // that version was replaced
                }
                if s.as_str() == "settled" {
                    m.state.is_settled()
                } else {
                    MachineState::parse(s) == Some(m.state)
                }
            });
            if let Some(s) = reached {
                let state = if s == "settled" {
                    m.state.to_string()
                } else {
                    s.clone()
                };
                let version = version.clone().unwrap_or_else(|| m.instance_id.clone());
                let event_id = m.events.front().map(|e| e.id.clone()).unwrap_or_default();
                return ok(
                    200,
                    json!({"ok": true, "state": state, "version": version, "event_id": event_id}),
                );
            }
            if ms(sim.now()) >= deadline {
                return Err(ApiError::new(
                    408,
                    format!("deadline_exceeded: machine {id} did not reach state {} in {timeout}s (current state: {})", states.join(","), m.state),
                ));
            }
        }
        if let Some(manual) = &sim.inner.manual {
            // Manual clock: jump to the next thing that can happen (or the deadline).
            let next = sim.next_due().map(ms).unwrap_or(deadline).min(deadline);
            let by = (next - ms(crate::clock::Clock::now(manual.as_ref()))).max(0) as u64;
            sim.advance(Duration::from_millis(by));
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Exec, events, leases, metadata
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct ExecReq {
    command: Option<Vec<String>>,
    cmd: Option<String>,
    #[allow(dead_code)]
    container: Option<String>,
    stdin: Option<String>,
    timeout: Option<u64>,
}

async fn exec_machine(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    b: Bytes,
) -> R {
    let req: ExecReq = body(&b, "MachineExecRequest")?;
    let argv = match (req.command, req.cmd) {
        (Some(c), _) if !c.is_empty() => c,
        // The deprecated string form is split with shell quoting rules (flyctl relies on quotes).
        (_, Some(s)) if !s.trim().is_empty() => {
            shlex::split(&s).ok_or_else(|| ApiError::bad("invalid cmd: unbalanced quotes"))?
        }
        _ => return Err(ApiError::bad("invalid_argument: command is required")),
    };
    let timeout = req.timeout.unwrap_or(60).clamp(1, 3600);
    let now = now_ms(&sim);
    let out = with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        if m.state != MachineState::Started {
            return Err(ApiError::new(
                412,
                format!(
                    "failed_precondition: machine {id} is not started (state {})",
                    m.state
                ),
            ));
        }
        let mut x = stolon::ExecEnv {
            st,
            sim: &sim,
            app: app.clone(),
            machine: id.clone(),
            now,
        };
        Ok(crate::exec::run(
            &mut x,
            &argv,
            req.stdin.as_deref().unwrap_or(""),
            timeout,
        ))
    })?;
    sim.changed();
    let injected = {
        let mut f = sim.faults();
        let p = f.cfg.exec_deadline_exceeded;
        f.hit(p)
    };
    if out.deadline || injected {
        return Err(ApiError::new(408, "deadline_exceeded: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"));
    }
    ok(
        200,
        json!({"exit_code": out.code, "exit_signal": 0, "stdout": out.stdout, "stderr": out.stderr}),
    )
}

async fn machine_events(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    Query(qs): Q,
) -> R {
    let limit: usize = match q(&qs, "limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid limit {l:?}")))?,
        None => 20,
    };
    let limit = limit.clamp(1, 50);
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let m = a
        .machines
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
    ok(
        200,
        m.events
            .iter()
            .take(limit)
            .map(event_json)
            .collect::<Vec<_>>(),
    )
}

fn lease_body(l: &Lease, with_nonce: bool) -> Value {
    let mut d = json!({"expires_at": l.expires_s, "owner": l.owner, "description": l.description, "version": l.version});
    if with_nonce {
        d["nonce"] = json!(l.nonce);
    }
    // The wire shape is wrapped (docs examples, fly-go MachineLease), unlike the spec's bare `Lease`.
    json!({"status": "success", "data": d})
}

async fn get_lease(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> R {
    let now = now_ms(&sim);
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let m = a
        .machines
        .get(&id)
        .filter(|m| !m.destroyed)
        .ok_or_else(|| ApiError::not_found(format!("machine not found: {id}")))?;
    match m.lease.as_ref().filter(|l| l.expires_s * 1000 > now) {
        Some(l) => ok(200, lease_body(l, false)),
        None => Err(ApiError::not_found(format!("no lease on machine {id}"))),
    }
}

#[derive(Deserialize, Default)]
struct LeaseReq {
    description: Option<String>,
    ttl: Option<i64>,
}

async fn acquire_lease(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(qs): Q,
    b: Bytes,
) -> R {
    let req: LeaseReq = body(&b, "CreateLeaseRequest")?;
    let ttl = match q(&qs, "ttl") {
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| ApiError::bad(format!("invalid ttl {t:?}")))?,
        None => req.ttl.unwrap_or(30),
    };
    if !(1..=MAX_LEASE_TTL).contains(&ttl) {
        return Err(ApiError::bad(format!(
            "invalid_argument: ttl must be between 1 and {MAX_LEASE_TTL} seconds"
        )));
    }
    let now = now_ms(&sim);
    let owner = tok.user.clone().unwrap_or_else(|| "flysim".into());
    let given = headers
        .get("fly-machine-lease-nonce")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string());
    let l = with_app(&sim, &tok, &app, |st| {
        let nonce = format!("{:012x}", st.rand() >> 16);
        let m = st.machine_mut(&app, &id)?;
        let active = m.lease.clone().filter(|l| l.expires_s * 1000 > now);
        match (active, given) {
            (Some(mut l), Some(n)) if n == l.nonce => {
                l.expires_s = now / 1000 + ttl;
                if let Some(d) = req.description.clone() {
                    l.description = d;
                }
                m.lease = Some(l.clone());
                Ok(l)
            }
            (Some(l), _) => Err(ApiError::new(
                409,
                format!(
                    "lease currently held by {} until {} (machine {id})",
                    l.owner,
                    rfc3339(l.expires_s * 1000)
                ),
            )),
            (None, _) => {
                let l = Lease {
                    nonce,
                    owner,
                    description: req.description.clone().unwrap_or_default(),
                    expires_s: now / 1000 + ttl,
                    version: m.instance_id.clone(),
                };
                m.lease = Some(l.clone());
                Ok(l)
            }
        }
    })?;
    ok(201, lease_body(&l, true))
}

async fn release_lease(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> R {
    let now = now_ms(&sim);
    let Some(given) = headers
        .get("fly-machine-lease-nonce")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
    else {
        return Err(ApiError::bad(
            "fly-machine-lease-nonce header is required to release a lease",
        ));
    };
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        match m.lease.as_ref().filter(|l| l.expires_s * 1000 > now) {
            Some(l) if l.nonce != given => Err(ApiError::new(
                409,
                format!("lease nonce mismatch on machine {id}"),
            )),
            _ => {
                m.lease = None;
                Ok(())
            }
        }
    })?;
    ok(200, json!({"status": "success", "data": {"ok": true}}))
}

fn metadata_of(m: &Machine) -> serde_json::Map<String, Value> {
    m.config
        .get("metadata")
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default()
}

async fn get_metadata(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
) -> R {
    let md = with_app(&sim, &tok, &app, |st| {
        Ok(metadata_of(st.machine_mut(&app, &id)?))
    })?;
    ok(200, Value::Object(md))
}

#[derive(Deserialize)]
struct MetaReq {
    metadata: Option<BTreeMap<String, Option<String>>>,
    machine_version: Option<String>,
    #[allow(dead_code)]
    updated_at: Option<String>,
}

fn write_metadata(sim: &Sim, tok: &Token, app: &str, id: &str, b: &Bytes, replace: bool) -> R {
    let req: MetaReq = body(b, "updateMetadataRequest")?;
    with_app(sim, tok, app, |st| {
        let m = st.machine_mut(app, id)?;
        if let Some(v) = &req.machine_version {
            if *v != m.instance_id {
                return Err(ApiError::new(
                    412,
                    format!(
                        "failed_precondition: machine_version {v} is stale (current {})",
                        m.instance_id
                    ),
                ));
            }
        }
        let mut md = if replace {
            serde_json::Map::new()
        } else {
            metadata_of(m)
        };
        for (k, v) in req.metadata.clone().unwrap_or_default() {
            match v.filter(|s| !s.is_empty()) {
                Some(v) => {
                    md.insert(k, json!(v));
                }
                None => {
                    md.remove(&k);
                }
            }
        }
        if let Some(obj) = m.config.as_object_mut() {
            obj.insert("metadata".into(), Value::Object(md));
        }
        Ok(())
    })?;
    no_content()
}

async fn put_metadata(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    b: Bytes,
) -> R {
    write_metadata(&sim, &tok, &app, &id, &b, true)
}

async fn patch_metadata(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id)): Path<(String, String)>,
    b: Bytes,
) -> R {
    write_metadata(&sim, &tok, &app, &id, &b, false)
}

async fn get_meta_key(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id, key)): Path<(String, String, String)>,
) -> R {
    let v = with_app(&sim, &tok, &app, |st| {
        Ok(metadata_of(st.machine_mut(&app, &id)?).get(&key).cloned())
    })?;
    match v {
        Some(v) => ok(200, json!({"value": v})),
        None => Err(ApiError::not_found(format!(
            "metadata key not found: {key}"
        ))),
    }
}

#[derive(Deserialize)]
struct MetaValue {
    value: Option<String>,
}

async fn set_meta_key(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id, key)): Path<(String, String, String)>,
    b: Bytes,
) -> R {
    let req: MetaValue = body(&b, "upsertMetadataKeyRequest")?;
    let value = req
        .value
        .ok_or_else(|| ApiError::bad("value is required"))?;
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        let mut md = metadata_of(m);
        md.insert(key.clone(), json!(value));
        if let Some(obj) = m.config.as_object_mut() {
            obj.insert("metadata".into(), Value::Object(md));
        }
        Ok(())
    })?;
    no_content()
}

async fn del_meta_key(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, id, key)): Path<(String, String, String)>,
) -> R {
    with_app(&sim, &tok, &app, |st| {
        let m = st.machine_mut(&app, &id)?;
        let mut md = metadata_of(m);
        md.remove(&key);
        if let Some(obj) = m.config.as_object_mut() {
            obj.insert("metadata".into(), Value::Object(md));
        }
        Ok(())
    })?;
    no_content()
}

// ---------------------------------------------------------------------------------------------
// Volumes
// ---------------------------------------------------------------------------------------------

fn volume_json(v: &Volume) -> Value {
    let total = v.size_gb * 1024 * 1024 * 1024;
    json!({
        "id": v.id, "name": v.name, "state": v.state, "size_gb": v.size_gb, "region": v.region, "zone": v.zone,
        "encrypted": v.encrypted, "fstype": "ext4", "type": "local",
        "attached_machine_id": v.attached_machine_id, "attached_alloc_id": v.attached_machine_id,
        "auto_backup_enabled": v.auto_backup_enabled, "snapshot_retention": v.snapshot_retention,
        "host_status": "ok", "block_size": 4096, "blocks": total / 4096, "blocks_avail": total / 4096 * 9 / 10,
        "blocks_free": total / 4096 * 9 / 10, "bytes_total": total, "bytes_used": total / 10,
        "created_at": rfc3339(v.created_ms),
    })
}

async fn list_volumes(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
) -> R {
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    ok(200, a.volumes.values().map(volume_json).collect::<Vec<_>>())
}

#[derive(Deserialize)]
struct CreateVol {
    name: Option<String>,
    region: Option<String>,
    size_gb: Option<u64>,
    encrypted: Option<bool>,
    snapshot_retention: Option<u64>,
    auto_backup_enabled: Option<bool>,
}

async fn create_volume(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
    b: Bytes,
) -> R {
    let req: CreateVol = body(&b, "CreateVolumeRequest")?;
    let name = req.name.unwrap_or_default();
    if name.is_empty()
        || name.len() > 30
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(ApiError::bad(
            "invalid name: volume names are 1–30 letters, digits and underscores",
        ));
    }
    let region = req
        .region
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad("region is required"))?;
    let size_gb = req.size_gb.unwrap_or(1);
    if !(1..=500).contains(&size_gb) {
        return Err(ApiError::bad("size_gb must be between 1 and 500"));
    }
    let retention = req.snapshot_retention.unwrap_or(5);
    if !(1..=60).contains(&retention) {
        return Err(ApiError::bad("snapshot_retention must be between 1 and 60"));
    }
    let now = now_ms(&sim);
    let v = with_app(&sim, &tok, &app, |st| {
        let id = st.next_id("vol_", 16);
        let zone = format!("{:04x}", st.rand() & 0xffff);
        let v = Volume {
            id: id.clone(),
            name,
            state: "created".into(),
            size_gb,
            region,
            zone,
            encrypted: req.encrypted.unwrap_or(true),
            attached_machine_id: None,
            created_ms: now,
            snapshot_retention: retention,
            auto_backup_enabled: req.auto_backup_enabled.unwrap_or(true),
            files: BTreeMap::new(),
            has_pgdata: false,
            keeper_initializing: false,
        };
        let j = volume_json(&v);
        st.app_mut(&app)?.volumes.insert(id, v);
        Ok(j)
    })?;
    after_create(&sim, 200, v)
}

async fn get_volume(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, vol)): Path<(String, String)>,
) -> R {
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let v = a
        .volumes
        .get(&vol)
        .ok_or_else(|| ApiError::not_found(format!("volume not found: {vol}")))?;
    ok(200, volume_json(v))
}

async fn delete_volume(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, vol)): Path<(String, String)>,
) -> R {
    let v = with_app(&sim, &tok, &app, |st| {
        let a = st.app_mut(&app)?;
        let v = a
            .volumes
            .get(&vol)
            .ok_or_else(|| ApiError::not_found(format!("volume not found: {vol}")))?;
        if let Some(m) = &v.attached_machine_id {
            return Err(ApiError::new(412, format!("failed_precondition: volume {vol} is attached to machine {m}; destroy the machine first")));
        }
        let mut v = a
            .volumes
            .remove(&vol)
            .ok_or_else(|| ApiError::not_found(format!("volume not found: {vol}")))?;
        v.state = "destroyed".into();
        Ok(volume_json(&v))
    })?;
    ok(200, v)
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

fn digest(v: &str) -> String {
    hex::encode(&Md5::digest(v.as_bytes())[..8])
}

fn secret_json(name: &str, s: &Secret, show: bool) -> Value {
    let mut v = json!({"name": name, "digest": s.digest, "created_at": rfc3339(s.created_ms), "updated_at": rfc3339(s.updated_ms)});
    if show {
        v["value"] = json!(s.value);
    }
    v
}

fn valid_secret_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn list_secrets(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
    Query(qs): Q,
) -> R {
    let show = truthy(q(&qs, "show_secrets"));
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let list: Vec<Value> = a
        .secrets
        .iter()
        .map(|(k, s)| secret_json(k, s, show))
        .collect();
    ok(200, json!({"secrets": list}))
}

#[derive(Deserialize)]
struct SecretsReq {
    values: Option<BTreeMap<String, Option<String>>>,
}

async fn update_secrets(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
    b: Bytes,
) -> R {
    let req: SecretsReq = body(&b, "AppSecretsUpdateRequest")?;
    let values = req
        .values
        .ok_or_else(|| ApiError::bad("values is required"))?;
    for k in values.keys() {
        if !valid_secret_name(k) {
            return Err(ApiError::bad(format!(
                "invalid secret name {k:?}: use letters, digits and underscores"
            )));
        }
    }
    let now = now_ms(&sim);
    let v = with_app(&sim, &tok, &app, |st| {
        let a = st.app_mut(&app)?;
        for (k, v) in values {
            match v {
                Some(v) => {
                    let created = a.secrets.get(&k).map(|s| s.created_ms).unwrap_or(now);
                    a.secrets.insert(
                        k,
                        Secret {
                            digest: digest(&v),
                            value: v,
                            created_ms: created,
                            updated_ms: now,
                        },
                    );
                }
                None => {
                    a.secrets.remove(&k);
                }
            }
        }
        a.secrets_version += 1;
        let list: Vec<Value> = a
            .secrets
            .iter()
            .map(|(k, s)| secret_json(k, s, false))
            .collect();
        Ok(json!({"secrets": list, "version": a.secrets_version, "Version": a.secrets_version}))
    })?;
    ok(200, v)
}

async fn get_secret(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, name)): Path<(String, String)>,
    Query(qs): Q,
) -> R {
    let show = truthy(q(&qs, "show_secrets"));
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let s = a
        .secrets
        .get(&name)
        .ok_or_else(|| ApiError::not_found(format!("secret not found: {name}")))?;
    ok(200, secret_json(&name, s, show))
}

async fn set_secret(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, name)): Path<(String, String)>,
    b: Bytes,
) -> R {
    let req: MetaValue = body(&b, "SetAppSecretRequest")?;
    let value = req
        .value
        .ok_or_else(|| ApiError::bad("value is required"))?;
    if !valid_secret_name(&name) {
        return Err(ApiError::bad(format!("invalid secret name {name:?}")));
    }
    let now = now_ms(&sim);
    let v = with_app(&sim, &tok, &app, |st| {
        let a = st.app_mut(&app)?;
        let created = a.secrets.get(&name).map(|s| s.created_ms).unwrap_or(now);
        let s = Secret {
            digest: digest(&value),
            value,
            created_ms: created,
            updated_ms: now,
        };
        a.secrets_version += 1;
        let mut v = secret_json(&name, &s, false);
        a.secrets.insert(name.clone(), s);
        v["version"] = json!(a.secrets_version);
        v["Version"] = json!(a.secrets_version);
        Ok(v)
    })?;
    ok(201, v)
}

async fn delete_secret(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path((app, name)): Path<(String, String)>,
) -> R {
    let v = with_app(&sim, &tok, &app, |st| {
        let a = st.app_mut(&app)?;
        if a.secrets.remove(&name).is_none() {
            return Err(ApiError::not_found(format!("secret not found: {name}")));
        }
        a.secrets_version += 1;
        Ok(json!({"version": a.secrets_version, "Version": a.secrets_version}))
    })?;
    ok(200, v)
}

// ---------------------------------------------------------------------------------------------
// Tokens, logs
// ---------------------------------------------------------------------------------------------

async fn current_token(State(sim): State<Sim>, Extension(Caller(tok)): Extension<Caller>) -> R {
    let st = sim.lock();
    let tokens: Vec<Value> = tok
        .orgs
        .iter()
        .map(|o| {
            let mut v = json!({"token_id": tok.token_id, "org_slug": o,
                "organization": st.orgs.get(o).map(|x| x.name.clone()).unwrap_or_default(),
                "apps": tok.apps.clone().unwrap_or_default()});
            if let Some(u) = &tok.user {
                v["user"] = json!(u);
            }
            v
        })
        .collect();
    ok(200, json!({"tokens": tokens}))
}

async fn app_logs(
    State(sim): State<Sim>,
    Extension(Caller(tok)): Extension<Caller>,
    Path(app): Path<String>,
    Query(qs): Q,
) -> R {
    let st = sim.lock();
    let a = st.app(&app)?;
    can_see(&tok, a)?;
    let instance = q(&qs, "instance").filter(|s| !s.is_empty());
    let region = q(&qs, "region").filter(|s| !s.is_empty());
    let after: Option<i128> = match q(&qs, "next_token").filter(|s| !s.is_empty()) {
        Some(t) => Some(
            t.parse()
                .map_err(|_| ApiError::bad(format!("invalid next_token {t:?}")))?,
        ),
        None => None,
    };
    let matching: Vec<&LogLine> = a
        .logs
        .iter()
        .filter(|l| instance.is_none_or(|i| i == l.instance))
        .filter(|l| region.is_none_or(|r| r == l.region))
        .filter(|l| after.is_none_or(|t| l.ns > t))
        .collect();
    // First call: the most recent 100 lines; with next_token: the next 100 after it.
    let page: Vec<&LogLine> = if after.is_some() {
        matching.into_iter().take(100).collect()
    } else {
        let skip = matching.len().saturating_sub(100);
        matching.into_iter().skip(skip).collect()
    };
    let next = page.last().map(|l| l.ns).or(after).unwrap_or(0);
    let data: Vec<Value> = page
        .iter()
        .map(|l| {
            let ts = time::OffsetDateTime::from_unix_timestamp_nanos(l.ns)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            json!({"id": l.id, "type": "logs", "attributes": {"timestamp": ts, "message": l.message,
                "level": "info", "instance": l.instance, "region": l.region,
                "meta": {"event": {"provider": "app"}, "region": l.region}}})
        })
        .collect();
    ok(
        200,
        json!({"data": data, "meta": {"next_token": next.to_string()}}),
    )
}
