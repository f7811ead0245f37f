//! Contract tests: every request the client sends is validated against the OpenAPI document
//! (`crates/openapi-contract/spec/fly-machines-openapi.yml`), and every canned response it decodes is itself
//! checked against the document's schemas, so the client is proven against spec-valid bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{CaptureServer, Recorded, Reply};
use fly::stolon::{self, Role};
use fly::*;
use openapi_contract::Contract;
use serde_json::{json, Value};

/// The document plus the deviations the reference notes (fly-platform.md) document. Each one is
/// a place where the real API (docs, fly-go, flyctl) and the OpenAPI copy disagree; we follow the
/// notes because they describe what Fly actually accepts and what flyctl sends.
fn contract() -> Contract {
    Contract::load()
        .expect("OpenAPI document loads")
        // §1.5: `CreateAppRequest` lacks `app_role_id`; fly-go sends it and `fly pg create` sets
        // `postgres_cluster`, which Walden needs for restore clusters.
        .extend_property("CreateAppRequest", "app_role_id", json!({"type": "string"}))
        // §1.6: `{"values": {NAME: null}}` unsets a secret in the same call; the document types
        // the map's values as plain strings.
        .extend_property(
            "AppSecretsUpdateRequest",
            "values",
            json!({"type": "object", "additionalProperties": {"type": ["string", "null"]}}),
        )
        // §1.4: the docs list `metadata.{key}={value}` filters on list machines; not in the document.
        .allow_query_param("GET", "/apps/{app_name}/machines", "metadata.")
        // §1.4: the docs' `DELETE /apps/{app}?force=true` stops machines first; not in the document.
        .allow_query_param("DELETE", "/apps/{app_name}", "force")
        // fly-go `flaps/flaps_apps.go::CreateApp` posts `/apps?wait=true`; not in the document.
        .allow_query_param("POST", "/apps", "wait")
}

fn machine_json(id: &str, role: &str, state: &str) -> Value {
    json!({
        "id": id,
        "name": format!("pg-{id}"),
        "state": state,
        "region": "ams",
        "instance_id": format!("01HV{id}"),
        "private_ip": "fdaa:0:1::2",
        "config": {
            "image": "flyio/postgres:14.6",
            "env": {"PRIMARY_REGION": "ams"},
            "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
            "metadata": {"fly-managed-postgres": "true", "managed-by-fly-deploy": "true"},
            "mounts": [{"volume": "vol_1", "path": "/data", "name": "pg_data", "size_gb": 1}],
            "checks": {
                "role": {"type": "http", "port": 5500, "path": "/flycheck/role", "interval": "15s", "timeout": "10s"}
            },
            "restart": {"policy": "always"},
            "metrics": {"port": 9187, "path": "/metrics"}
        },
        "image_ref": {
            "registry": "registry-1.docker.io",
            "repository": "flyio/postgres",
            "tag": "14.6",
            "digest": "sha256:0123",
            "labels": {"fly.app_role": "postgres_cluster", "fly.pg-version": "14.6"}
        },
        "checks": [
            {"name": "role", "status": "passing", "output": role, "updated_at": "2026-01-01T00:00:00Z"},
            {"name": "pg", "status": "passing", "output": "[✓] connections", "updated_at": "2026-01-01T00:00:00Z"}
        ],
        "events": [
            {"id": "01E1", "type": "exit", "status": "stopped", "source": "flyd", "timestamp": 1_700_000_000_000_i64,
             "request": {"exit_event": {"exit_code": 137, "oom_killed": true, "restarting": true}, "restart_count": 1}}
        ],
        "host_status": "ok",
        "cordoned": false,
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z"
    })
}

fn volume_json(id: &str) -> Value {
    json!({
        "id": id, "name": "pg_data", "state": "created", "size_gb": 1, "region": "ams", "zone": "a1b2",
        "encrypted": true, "fstype": "ext4", "type": "local",
        "auto_backup_enabled": true, "snapshot_retention": 5, "host_status": "ok",
        "created_at": "2026-01-01T00:00:00Z"
    })
}

/// A spec-valid answer for each operation the client uses.
fn canned(c: &Contract, r: &Recorded) -> Reply {
    if r.path.starts_with("/api/v1/apps/") && r.path.ends_with("/logs") {
        return Reply::Json(
            200,
            json!({"data": [{"id": "l1", "type": "logs", "attributes": {
                "timestamp": "2026-01-01T00:00:00Z", "message": "keeper | db initialized", "level": "info",
                "instance": "m1", "region": "ams", "meta": {"event": {"provider": "app"}}}}],
                "meta": {"next_token": "1700000000000000000"}}),
        );
    }
    let Ok(op) = c.operation(&r.method, &r.uri) else {
        return Reply::Json(404, json!({"error": "not found"}));
    };
    let lease = json!({"status": "success", "data": {
        "nonce": "n0nce", "expires_at": 1_700_000_120_i64, "owner": "ops@example.com",
        "description": "secrets rollout", "version": "01HVLEASE"}});
    match (r.method.as_str(), op.template.as_str()) {
        ("GET", "/apps") => Reply::Json(
            200,
            json!({"apps": [
            {"id": "a1", "name": "pg-app", "status": "deployed", "machine_count": 2, "volume_count": 2, "network": "default",
             "organization": {"name": "Personal", "slug": "personal", "internal_numeric_id": 1}}], "total_apps": 1}),
        ),
        ("GET", "/apps/{app_name}") => Reply::Json(
            200,
            json!({"id": "a1", "name": "pg-app", "status": "deployed",
            "organization": {"name": "Personal", "slug": "personal"}}),
        ),
        ("POST", "/apps") => Reply::Empty(201),
        ("DELETE", "/apps/{app_name}") => Reply::Empty(202),
        ("GET", "/apps/{app_name}/machines") => Reply::Json(
            200,
            json!([
                machine_json("m1", "leader", "started"),
                machine_json("m2", "replica", "started")
            ]),
        ),
        ("GET", "/apps/{app_name}/machines/{machine_id}") => {
            let id = op
                .path_params
                .get("machine_id")
                .cloned()
                .unwrap_or_default();
            Reply::Json(
                200,
                machine_json(
                    &id,
                    if id == "m1" { "leader" } else { "replica" },
                    "started",
                ),
            )
        }
        ("POST", "/apps/{app_name}/machines") => {
            Reply::Json(200, machine_json("m3", "replica", "created"))
        }
        ("POST", "/apps/{app_name}/machines/{machine_id}") => {
            let id = op
                .path_params
                .get("machine_id")
                .cloned()
                .unwrap_or_default();
            let mut m = machine_json(&id, "replica", "started");
            m["instance_id"] = json!("01HVNEW");
            Reply::Json(200, m)
        }
        ("DELETE", "/apps/{app_name}/machines/{machine_id}") => Reply::Empty(200),
        // Docs: stop answers {"ok":true}; start {"previous_state","migrated","new_host"}. The
        // document declares no body for either; any body is accepted there.
        ("POST", "/apps/{app_name}/machines/{machine_id}/stop") => {
            Reply::Json(200, json!({"ok": true}))
        }
        ("POST", "/apps/{app_name}/machines/{machine_id}/start") => Reply::Json(
            200,
            json!({"previous_state": "stopped", "migrated": false, "new_host": ""}),
        ),
        ("POST", "/apps/{app_name}/machines/{machine_id}/restart") => Reply::Empty(200),
        ("GET", "/apps/{app_name}/machines/{machine_id}/wait") => Reply::Json(
            200,
            json!({"ok": true, "state": "started", "version": "01HVNEW", "event_id": "01E2"}),
        ),
        ("POST", "/apps/{app_name}/machines/{machine_id}/exec") => {
            Reply::Json(200, json!({"exit_code": 0, "stdout": "ok\n", "stderr": ""}))
        }
        ("GET", "/apps/{app_name}/machines/{machine_id}/events") => Reply::Json(
            200,
            json!([
            {"id": "01E1", "type": "exit", "status": "stopped", "source": "flyd", "timestamp": 1_700_000_000_000_i64,
             "request": {"exit_event": {"exit_code": 137, "oom_killed": true}}}]),
        ),
        ("GET", "/apps/{app_name}/machines/{machine_id}/metadata") => {
            Reply::Json(200, json!({"role": "restore", "run": "42"}))
        }
        ("GET", "/apps/{app_name}/machines/{machine_id}/metadata/{key}") => {
            Reply::Json(200, json!({"value": "42"}))
        }
        ("POST" | "DELETE", "/apps/{app_name}/machines/{machine_id}/metadata/{key}") => {
            Reply::Empty(204)
        }
        // fly-platform.md §1.5: leases come wrapped in {"status","data"} on the wire (docs examples,
        // fly-go MachineLease), not flat as the document's `Lease`. We answer like Fly; the check
        // in `check_canned` validates `data` against `Lease`.
        ("GET", "/apps/{app_name}/machines/{machine_id}/lease") => Reply::Json(200, lease),
        ("POST", "/apps/{app_name}/machines/{machine_id}/lease") => Reply::Json(201, lease),
        ("DELETE", "/apps/{app_name}/machines/{machine_id}/lease") => {
            Reply::Json(200, json!({"status": "success", "data": {"ok": true}}))
        }
        ("GET", "/apps/{app_name}/volumes") => Reply::Json(200, json!([volume_json("vol_1")])),
        ("POST", "/apps/{app_name}/volumes") => Reply::Json(200, volume_json("vol_2")),
        ("DELETE", "/apps/{app_name}/volumes/{volume_id}") => {
            Reply::Json(200, volume_json("vol_2"))
        }
        ("POST", "/apps/{app_name}/secrets") => Reply::Json(
            200,
            json!({"version": 42, "secrets": [
            {"name": "ENABLE_WALG", "digest": "d1", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}]}),
        ),
        ("GET", "/apps/{app_name}/secrets") => Reply::Json(
            200,
            json!({"secrets": [
            {"name": "SU_PASSWORD", "digest": "d2", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}]}),
        ),
        ("GET", "/tokens/current") => Reply::Json(
            200,
            json!({"tokens": [
            {"org_slug": "personal", "organization": "o1", "apps": ["pg-app"], "token_id": "t1"}]}),
        ),
        _ => Reply::Json(
            404,
            json!({"error": format!("no canned reply for {} {}", r.method, op.template)}),
        ),
    }
}

/// Check a canned reply against the document (responses the client decodes must be spec-valid).
fn check_canned(c: &Contract, r: &Recorded, reply: &Reply) -> Result<(), String> {
    if r.path.starts_with("/api/v1/") {
        // The logs endpoint lives on api.fly.io and is not part of the Machines API document
        // (fly-platform.md §5: undocumented JSON:API shape); nothing to check against.
        return Ok(());
    }
    let (status, body) = match reply {
        Reply::Json(s, b) | Reply::JsonWithHeaders(s, b, _) => (*s, Some(b)),
        Reply::Empty(s) => (*s, None),
        Reply::Drop => return Ok(()),
        // A delayed reply is checked as the reply it becomes.
        Reply::After(_, inner) => return check_canned(c, r, inner),
    };
    if r.path.ends_with("/lease") {
        // See `canned`: the wire wraps the lease; validate the inner object.
        if let Some(data) = body.and_then(|b| b.get("data")) {
            if r.method != "DELETE" {
                c.check_schema("Lease", data, false)
                    .map_err(|e| e.to_string())?;
            }
        }
        return Ok(());
    }
    c.check_response(&r.method, &r.uri, status, body)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

struct Harness {
    server: CaptureServer,
    contract: Arc<Contract>,
    canned_violations: Arc<Mutex<Vec<String>>>,
}

async fn harness() -> Harness {
    let contract = Arc::new(contract());
    let canned_violations = Arc::new(Mutex::new(Vec::new()));
    let (c, v) = (contract.clone(), canned_violations.clone());
    let server = CaptureServer::start(move |r, _| {
        let reply = canned(&c, r);
        if let Err(e) = check_canned(&c, r, &reply) {
            if let Ok(mut v) = v.lock() {
                v.push(e);
            }
        }
        reply
    })
    .await;
    Harness {
        server,
        contract,
        canned_violations,
    }
}

/// Validate every recorded request; return the violations.
fn check_requests(h: &Harness) -> Vec<String> {
    let mut out = Vec::new();
    for r in h.server.requests() {
        if r.path.starts_with("/api/v1/") {
            // Logs (api.fly.io) are outside the document; check the shape the notes give (§5).
            let ok = r.method == "GET" && r.path.ends_with("/logs");
            if !ok {
                out.push(format!(
                    "unexpected api.fly.io request {} {}",
                    r.method, r.uri
                ));
            }
            continue;
        }
        let names: Vec<String> = r.headers.keys().map(|k| k.as_str().to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Err(e) =
            h.contract
                .check_request_with_headers(&r.method, &r.uri, &names, r.body.as_ref())
        {
            out.push(e.to_string());
        }
        if r.body.is_some() && r.header("content-type").as_deref() != Some("application/json") {
            out.push(format!(
                "{} {}: JSON body without content-type",
                r.method, r.uri
            ));
        }
        if !r.raw.is_empty() && r.body.is_none() {
            out.push(format!("{} {}: body is not JSON", r.method, r.uri));
        }
        // fly-platform.md §1.4 / Fly docs: one wait call blocks at most 60 s (the document only
        // says "default 60s"); the client loops for longer deadlines.
        if r.path.ends_with("/wait") {
            for (k, v) in r.query() {
                if k == "timeout" && v.parse::<u64>().map_or(true, |t| t == 0 || t > 60) {
                    out.push(format!("wait timeout {v} outside 1..=60"));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_request_the_client_sends_matches_the_document() {
    let h = harness().await;
    let fly = h.server.client("fm2_contract_token");
    let app = "pg-app";

    // Apps.
    let apps = fly.list_apps("personal").await.unwrap();
    assert_eq!(apps.apps[0].name, "pg-app");
    assert_eq!(
        apps.apps[0]
            .organization
            .as_ref()
            .and_then(|o| o.slug.as_deref()),
        Some("personal")
    );
    assert_eq!(
        fly.get_app(app).await.unwrap().status.as_deref(),
        Some("deployed")
    );
    fly.create_app(&CreateAppRequest {
        name: "pg-restore".into(),
        org_slug: "personal".into(),
        app_role_id: Some("postgres_cluster".into()),
        ..CreateAppRequest::default()
    })
    .await
    .unwrap();
    fly.delete_app("pg-restore", false).await.unwrap();
    fly.delete_app("pg-restore", true).await.unwrap();

    // Machines.
    let filter = ListMachines {
        include_deleted: true,
        region: Some("ams".into()),
        states: vec!["started".into(), "stopped".into()],
        summary: false,
        metadata: BTreeMap::from([("walden_run".to_string(), "42".to_string())]),
    };
    let ms = fly.list_machines(app, &filter).await.unwrap();
    assert_eq!(ms.len(), 2);
    assert_eq!(stolon::role(&ms[0]), Role::Leader);
    assert_eq!(stolon::role(&ms[1]), Role::Replica);
    let m1 = fly.get_machine(app, "m1").await.unwrap();
    assert_eq!(m1.image().as_deref(), Some("flyio/postgres:14.6"));
    assert_eq!(
        m1.events[0].exit_event().and_then(|e| e.oom_killed),
        Some(true)
    );
    let config = m1.config.clone().unwrap();
    assert!(
        config.extra.contains_key("metrics"),
        "unknown config fields are kept"
    );

    let created = fly
        .create_machine(
            app,
            &CreateMachineRequest {
                config: config.clone(),
                name: Some("pg-m3".into()),
                region: Some("ams".into()),
                min_secrets_version: Some(41),
                ..CreateMachineRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.id, "m3");
    let updated = fly
        .update_machine(
            app,
            "m1",
            &UpdateMachineRequest {
                config: config.clone(),
                min_secrets_version: Some(42),
                current_version: m1.instance_id.clone(),
                ..UpdateMachineRequest::default()
            },
            Some("n0nce"),
        )
        .await
        .unwrap();
    assert_eq!(updated.instance_id.as_deref(), Some("01HVNEW"));
    fly.stop_machine(
        app,
        "m2",
        &StopRequest {
            signal: Some("SIGTERM".into()),
            timeout: Some("30s".into()),
        },
        Some("n0nce"),
    )
    .await
    .unwrap();
    fly.start_machine(app, "m2", None).await.unwrap();
    fly.restart_machine(app, "m2", Some("30s"), Some("SIGTERM"), None)
        .await
        .unwrap();
    let w = fly
        .wait(
            app,
            "m1",
            &WaitFor::state("started").version(Some("01HVNEW".into())),
            Duration::from_secs(300),
        )
        .await
        .unwrap();
    assert_eq!(w.state.as_deref(), Some("started"));
    fly.wait(
        app,
        "m2",
        &WaitFor::state("stopped").version(Some("01HVm2".into())),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let out = fly
        .exec(
            app,
            "m1",
            &ExecRequest::new(["ls", "-l", "/data"]).timeout(10),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "ok\n");
    let events = fly.machine_events(app, "m1", Some(100)).await.unwrap();
    assert_eq!(events[0].exit_event().and_then(|e| e.exit_code), Some(137));
    assert_eq!(
        fly.get_metadata(app, "m1")
            .await
            .unwrap()
            .get("run")
            .map(String::as_str),
        Some("42")
    );
    assert_eq!(
        fly.get_metadata_key(app, "m1", "run")
            .await
            .unwrap()
            .as_deref(),
        Some("42")
    );
    fly.set_metadata(app, "m1", "walden_run", "42")
        .await
        .unwrap();
    fly.delete_metadata(app, "m1", "walden_run").await.unwrap();
    fly.destroy_machine(app, "m3", true, None).await.unwrap();

    // Leases.
    let lease = fly
        .acquire_lease(app, "m1", 120, Some("restore"))
        .await
        .unwrap();
    assert_eq!(lease.nonce.as_deref(), Some("n0nce"));
    assert_eq!(lease.expires_at, Some(1_700_000_120));
    fly.refresh_lease(app, "m1", "n0nce", 120).await.unwrap();
    assert_eq!(
        fly.get_lease(app, "m1")
            .await
            .unwrap()
            .and_then(|l| l.owner)
            .as_deref(),
        Some("ops@example.com")
    );
    fly.release_lease(app, "m1", "n0nce").await.unwrap();

    // Volumes.
    assert_eq!(fly.list_volumes(app).await.unwrap()[0].id, "vol_1");
    let v = fly
        .create_volume(
            app,
            &CreateVolumeRequest {
                name: "pg_data".into(),
                region: "ams".into(),
                size_gb: 1,
                encrypted: Some(true),
                require_unique_zone: Some(true),
                ..CreateVolumeRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(v.id, "vol_2");
    fly.delete_volume(app, "vol_2").await.unwrap();

    // Secrets, tokens, logs.
    let values = BTreeMap::from([
        ("ENABLE_WALG".to_string(), Some(SecretString::from("true"))),
        ("OLD_KEY".to_string(), None),
    ]);
    assert_eq!(fly.update_secrets(app, &values).await.unwrap(), 42);
    let secrets = fly.list_secrets(app).await.unwrap();
    assert_eq!(secrets[0].name, "SU_PASSWORD");
    assert!(secrets[0].value.is_none());
    let tok = fly.current_token().await.unwrap();
    assert_eq!(tok.tokens[0].apps, vec!["pg-app".to_string()]);
    let logs = fly
        .logs(app, Some("1699999999000000000"), Some("m1"), Some("ams"))
        .await
        .unwrap();
    assert_eq!(logs.entries[0].message, "keeper | db initialized");
    assert_eq!(logs.next_token.as_deref(), Some("1700000000000000000"));

    let req_violations = check_requests(&h);
    assert!(
        req_violations.is_empty(),
        "requests violate the document:\n{}",
        req_violations.join("\n")
    );
    let canned = h
        .canned_violations
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    assert!(
        canned.is_empty(),
        "canned responses violate the document:\n{}",
        canned.join("\n")
    );

    // Every request carried the macaroon with the FlyV1 scheme.
    for r in h.server.requests() {
        assert_eq!(
            r.header("authorization").as_deref(),
            Some("FlyV1 fm2_contract_token"),
            "{}",
            r.uri
        );
    }
    // The secret unset went out as null in the same call.
    let set = h
        .server
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/v1/apps/pg-app/secrets")
        .unwrap();
    assert_eq!(
        set.body,
        Some(json!({"values": {"ENABLE_WALG": "true", "OLD_KEY": null}}))
    );
    // Lease release sent the nonce header.
    let rel = h
        .server
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE" && r.path.ends_with("/lease"))
        .unwrap();
    assert_eq!(
        rel.header("fly-machine-lease-nonce").as_deref(),
        Some("n0nce")
    );
}

#[tokio::test]
async fn secrets_rollout_updates_each_machine_with_its_full_config_leader_last() {
    let h = harness().await;
    let fly = h.server.client("fm2_contract_token");
    let steps = fly
        .rollout_secrets("pg-app", 42, &RolloutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| s.machine_id.as_str())
            .collect::<Vec<_>>(),
        ["m2", "m1"]
    );
    assert!(steps.iter().all(|s| s.result.is_ok()), "{steps:?}");

    let reqs = h.server.requests();
    let updates: Vec<&Recorded> = reqs
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path.starts_with("/v1/apps/pg-app/machines/m")
                && r.path.matches('/').count() == 5
        })
        .collect();
    assert_eq!(updates.len(), 2);
    let expected_config = machine_json("m1", "leader", "started")["config"].clone();
    for u in &updates {
        let body = u.body.as_ref().unwrap();
        assert_eq!(body["min_secrets_version"], json!(42));
        assert_eq!(
            body["config"], expected_config,
            "full config sent back unchanged"
        );
        assert_eq!(
            u.header("fly-machine-lease-nonce").as_deref(),
            Some("n0nce")
        );
    }
    // Order per machine: lease, get, update, wait, release.
    let m2: Vec<String> = reqs
        .iter()
        .filter(|r| r.path.contains("/machines/m2"))
        .map(|r| {
            format!(
                "{} {}",
                r.method,
                r.path.trim_start_matches("/v1/apps/pg-app/machines/m2")
            )
        })
        .collect();
    assert_eq!(
        m2,
        ["POST /lease", "GET ", "POST ", "GET /wait", "DELETE /lease"]
    );
    let wait = reqs.iter().find(|r| r.path.ends_with("m2/wait")).unwrap();
    assert!(
        wait.query()
            .contains(&("version".to_string(), "01HVNEW".to_string())),
        "{}",
        wait.uri
    );

    let violations = check_requests(&h);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}
