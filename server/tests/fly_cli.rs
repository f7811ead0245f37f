//! `walden fly …` run as a user runs it, against a local Machines-API peer (a capture server on
//! 127.0.0.1:0 answering spec-valid bodies). Every request the command sends is checked against
//! the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
struct Rec {
    method: String,
    uri: String,
    headers: Vec<String>,
    auth: Option<String>,
    body: Option<Value>,
}

type Log = Arc<Mutex<Vec<Rec>>>;

fn machine(id: &str, role: &str, state: &str) -> Value {
    json!({
        "id": id, "name": format!("pg-{id}"), "state": state, "region": "ams", "instance_id": format!("01HV{id}"),
        "config": {"image": "flyio/postgres:14.6", "env": {"PRIMARY_REGION": "ams"},
                   "metrics": {"port": 9187, "path": "/metrics"}, "restart": {"policy": "always"}},
        "checks": [{"name": "role", "status": "passing", "output": role}]
    })
}

async fn handle(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    log.lock().unwrap().push(Rec {
        method: method.to_string(),
        uri: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: headers.keys().map(|k| k.as_str().to_string()).collect(),
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: serde_json::from_slice(&body).ok(),
    });
    let j = |s: u16, v: Value| (StatusCode::from_u16(s).unwrap(), axum::Json(v)).into_response();
    let lease =
        json!({"status": "success", "data": {"nonce": "n1", "expires_at": 1_700_000_000_i64}});
    match (method.as_str(), path.as_str()) {
        ("GET", "/v1/apps") => j(
            200,
            json!({"apps": [{"name": "pg-app", "status": "deployed", "machine_count": 2,
            "organization": {"slug": "personal"}}], "total_apps": 1}),
        ),
        ("GET", "/v1/apps/pg-app/machines") => j(
            200,
            json!([
                machine("m1", "leader", "started"),
                machine("m2", "replica", "stopped")
            ]),
        ),
        ("GET", p) if p.starts_with("/v1/apps/pg-app/machines/") && p.matches('/').count() == 5 => {
            let id = p.rsplit('/').next().unwrap_or("");
            j(
                200,
                machine(
                    id,
                    if id == "m1" { "leader" } else { "replica" },
                    if id == "m1" { "started" } else { "stopped" },
                ),
            )
        }
        ("POST", "/v1/apps/pg-app/machines/m1/exec") => {
            let cmd = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|b| b["command"].as_array().cloned())
                .unwrap_or_default();
            if cmd.first().and_then(Value::as_str) == Some("false") {
                j(
                    200,
                    json!({"exit_code": 3, "stdout": "", "stderr": "it failed\n"}),
                )
            } else {
                let args: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
                j(
                    200,
                    json!({"exit_code": 0, "stdout": format!("ran {}\n", args.join("|")), "stderr": "warn\n"}),
                )
            }
        }
        ("POST", "/v1/apps/pg-app/secrets") => j(200, json!({"version": 7, "secrets": []})),
        ("POST", p) if p.ends_with("/lease") => j(201, lease),
        ("DELETE", p) if p.ends_with("/lease") => {
            j(200, json!({"status": "success", "data": {"ok": true}}))
        }
        ("POST", p)
            if p.starts_with("/v1/apps/pg-app/machines/") && p.matches('/').count() == 5 =>
        {
            let id = p.rsplit('/').next().unwrap_or("");
            let mut m = machine(id, "replica", "started");
            m["instance_id"] = json!("01HVNEW");
            j(200, m)
        }
        ("GET", p) if p.ends_with("/wait") => j(200, json!({"ok": true, "state": "started"})),
        _ => j(404, json!({"error": "not found"})),
    }
}

struct Peer {
    url: String,
    log: Log,
    _rt: tokio::runtime::Runtime,
}

fn peer() -> Peer {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(handle).with_state(log.clone());
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Peer { url, log, _rt: rt }
}

fn walden(p: &Peer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_walden"))
        .env_remove("WALDEN_LOG_FORMAT")
        .env("FLY_API_TOKEN", "fm2_cli_token")
        .env("FLY_FLAPS_BASE_URL", &p.url)
        .env("FLY_API_HOSTNAME", &p.url)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every request matches the document (deviations as documented in crates/fly/tests/contract.rs).
fn assert_contract(p: &Peer) {
    let c = openapi_contract::Contract::load().unwrap();
    for r in p.log.lock().unwrap().iter() {
        let names: Vec<&str> = r.headers.iter().map(String::as_str).collect();
        if let Err(e) = c.check_request_with_headers(&r.method, &r.uri, &names, r.body.as_ref()) {
            panic!("{e}");
        }
        assert_eq!(r.auth.as_deref(), Some("FlyV1 fm2_cli_token"));
    }
}

#[test]
fn apps_lists_the_org() {
    let p = peer();
    let out = walden(&p, &["fly", "apps", "--org", "personal"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("NAME") && s.contains("pg-app") && s.contains("deployed"),
        "{s}"
    );
    assert!(p.log.lock().unwrap()[0]
        .uri
        .ends_with("/v1/apps?org_slug=personal"));
    assert_contract(&p);
}

#[test]
fn machines_shows_roles_and_json() {
    let p = peer();
    let out = walden(&p, &["fly", "machines", "pg-app", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v[0],
        json!({"id": "m1", "name": "pg-m1", "state": "started", "region": "ams", "role": "leader", "image": "flyio/postgres:14.6"})
    );
    assert_eq!(v[1]["role"], "replica");
    let out = walden(&p, &["fly", "machines", "pg-app"]);
    let s = text(&out.stdout);
    assert!(s.lines().next().unwrap().starts_with("ID"), "{s}");
    assert!(s.contains("leader"), "{s}");
    assert_contract(&p);
}

#[test]
fn exec_passes_argv_through_and_exits_with_the_command_code() {
    let p = peer();
    let out = walden(
        &p,
        &[
            "fly", "exec", "pg-app", "m1", "--", "echo", "a b", "$HOME;rm",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ran echo|a b|$HOME;rm\n");
    assert_eq!(text(&out.stderr), "warn\n");
    let sent = p.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        sent.body.unwrap()["command"],
        json!(["echo", "a b", "$HOME;rm"])
    );

    let out = walden(&p, &["fly", "exec", "pg-app", "m1", "--", "false"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stderr), "it failed\n");
    assert_contract(&p);
}

#[test]
fn secrets_set_updates_then_rolls_out_leader_last() {
    let p = peer();
    let out = walden(
        &p,
        &[
            "fly",
            "secrets",
            "set",
            "pg-app",
            "ENABLE_WALG=true",
            "URL=postgres://x=y",
        ],
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let s = text(&out.stdout);
    assert!(s.contains("secrets version 7"), "{s}");
    assert!(
        !s.contains("postgres://x=y") && !text(&out.stderr).contains("postgres://x=y"),
        "values never printed"
    );
    let log = p.log.lock().unwrap().clone();
    let set = log.iter().find(|r| r.uri.ends_with("/secrets")).unwrap();
    assert_eq!(
        set.body,
        Some(json!({"values": {"ENABLE_WALG": "true", "URL": "postgres://x=y"}}))
    );
    let updates: Vec<&Rec> = log
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.uri.starts_with("/v1/apps/pg-app/machines/")
                && r.uri.matches('/').count() == 5
        })
        .collect();
    assert_eq!(updates.len(), 2);
    assert!(
        updates[0].uri.ends_with("/m2") && updates[1].uri.ends_with("/m1"),
        "replica first, leader last"
    );
    for u in &updates {
        let b = u.body.as_ref().unwrap();
        assert_eq!(b["min_secrets_version"], 7);
        assert_eq!(
            b["config"]["metrics"],
            json!({"port": 9187, "path": "/metrics"}),
            "full config kept"
        );
    }
    // The stopped replica stays stopped; only the started leader is waited for.
    assert_eq!(updates[0].body.as_ref().unwrap()["skip_launch"], true);
    assert_eq!(log.iter().filter(|r| r.uri.contains("/wait")).count(), 1);
    drop(log);
    assert_contract(&p);
}

#[test]
fn missing_token_and_bad_pairs_are_one_line_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_walden"))
        .env_remove("FLY_API_TOKEN")
        .args(["fly", "apps", "--org", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: no Fly API token"),
        "{}",
        text(&out.stderr)
    );

    let p = peer();
    let out = walden(&p, &["fly", "secrets", "set", "pg-app", "justavalue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("secret argument 1: expected NAME=VALUE"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !text(&out.stderr).contains("justavalue"),
        "{}",
        text(&out.stderr)
    );
    assert!(p.log.lock().unwrap().is_empty());
}

/// The same commands against the emulator (crates/flysim) and its demo Stolon cluster.
#[test]
fn against_the_emulator() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (sim, info) = flysim::Sim::demo(dir.path().join("walg")).unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let run = {
        let _g = rt.enter();
        flysim::spawn(listener, sim, tokio_util::sync::CancellationToken::new()).unwrap()
    };
    let cmd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_walden"))
            .env_remove("WALDEN_LOG_FORMAT")
            .env("FLY_API_TOKEN", &info.token)
            .env("FLY_FLAPS_BASE_URL", &run.base_url)
            .env("FLY_API_HOSTNAME", &run.base_url)
            .args(args)
            .output()
            .unwrap()
    };

    let out = cmd(&["fly", "apps", "--org", &info.org]);
    assert!(
        text(&out.stdout).contains(&info.app),
        "{}",
        text(&out.stderr)
    );

    let out = cmd(&["fly", "machines", &info.app, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ms: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ms.len(), info.machines.len());
    let leaders: Vec<&Value> = ms.iter().filter(|m| m["role"] == "leader").collect();
    assert_eq!(leaders.len(), 1, "{ms:?}");
    assert!(ms.iter().all(|m| m["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("flyio/postgres"))));
    let leader = leaders[0]["id"].as_str().unwrap().to_string();

    let out = cmd(&[
        "fly",
        "exec",
        &info.app,
        &leader,
        "--",
        "printenv",
        "FLY_APP_NAME",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}\n", info.app));
    let out = cmd(&["fly", "exec", &info.app, &leader, "--", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127));

    let out = cmd(&["fly", "secrets", "set", &info.app, "WALDEN_CLI_SECRET=v1"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = cmd(&[
        "fly",
        "exec",
        &info.app,
        &leader,
        "--",
        "printenv",
        "WALDEN_CLI_SECRET",
    ]);
    assert_eq!(
        text(&out.stdout),
        "v1\n",
        "the rollout delivered the secret: {}",
        text(&out.stderr)
    );

    // NAME=- takes the value from stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_walden"))
        .env_remove("WALDEN_LOG_FORMAT")
        .env("FLY_API_TOKEN", &info.token)
        .env("FLY_FLAPS_BASE_URL", &run.base_url)
        .args(["fly", "secrets", "set", &info.app, "WALDEN_STDIN_SECRET=-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from stdin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("from stdin"));
    let out = cmd(&[
        "fly",
        "exec",
        &info.app,
        &leader,
        "--",
        "printenv",
        "WALDEN_STDIN_SECRET",
    ]);
    assert_eq!(text(&out.stdout), "from stdin\n");
    drop(rt);
}
