//! Retries, backoff and ambiguous creates against a real local HTTP server that injects
//! 429/5xx/408 and dropped connections. Assertions are on call counts, never on timing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{CaptureServer, Recorded, Reply};
use fly::*;
use serde_json::json;

fn machine(id: &str, name: &str) -> serde_json::Value {
    json!({"id": id, "name": name, "state": "created", "region": "ams", "instance_id": "01HV",
           "config": {"image": "flyio/postgres:14.6"}})
}

fn same(r: &Recorded, earlier: &[Recorded]) -> usize {
    earlier
        .iter()
        .filter(|e| e.method == r.method && e.path == r.path)
        .count()
}

#[tokio::test]
async fn idempotent_get_is_retried_through_429_5xx_and_408() {
    let s = CaptureServer::start(|r, earlier| match same(r, earlier) {
        0 => Reply::Json(503, json!({"error": "unavailable"})),
        1 => Reply::JsonWithHeaders(
            429,
            json!({"error": "rate limited"}),
            vec![("retry-after", "0".into())],
        ),
        2 => Reply::Json(500, json!({"error": "boom"})),
        3 => Reply::Json(408, json!({"error": "timeout"})),
        _ => Reply::Json(200, machine("m1", "a")),
    })
    .await;
    let fly = s.client("tok");
    let m = fly.get_machine("app", "m1").await.unwrap();
    assert_eq!(m.id, "m1");
    assert_eq!(s.count("GET", "/v1/apps/app/machines/m1"), 5);
}

#[tokio::test]
async fn retries_stop_after_the_policy_and_the_error_carries_fly_details() {
    let s = CaptureServer::start(|_, _| {
        Reply::JsonWithHeaders(
            502,
            json!({"error": "bad gateway", "status": "unknown"}),
            vec![("fly-request-id", "01REQ".into())],
        )
    })
    .await;
    let fly = s.client("tok");
    let err = fly.get_app("app").await.unwrap_err();
    // 1 attempt + 4 retries (RetryPolicy.max_retries in the test client).
    assert_eq!(s.count("GET", "/v1/apps/app"), 5);
    match &err {
        Error::Api {
            status,
            message,
            code,
            request_id,
            ..
        } => {
            assert_eq!(*status, 502);
            assert_eq!(message, "bad gateway");
            assert_eq!(code.as_deref(), Some("unknown"));
            assert_eq!(request_id.as_deref(), Some("01REQ"));
        }
        other => panic!("unexpected error {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("502") && text.contains("bad gateway") && text.contains("01REQ"),
        "{text}"
    );
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let s = CaptureServer::start(|_, _| {
        Reply::Json(
            401,
            json!({"error": "Authenticate: token validation error"}),
        )
    })
    .await;
    let fly = s.client("fm2_bad");
    let err = fly.list_apps("personal").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(s.requests().len(), 1);
    assert!(
        !err.to_string().contains("fm2_bad"),
        "token must not leak into errors"
    );
}

#[tokio::test]
async fn exec_is_not_retried_on_5xx_or_408_but_is_on_429() {
    let s = CaptureServer::start(|_, _| Reply::Json(500, json!({"error": "internal"}))).await;
    let fly = s.client("tok");
    let err = fly
        .exec("app", "m1", &ExecRequest::new(["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        s.requests().len(),
        1,
        "a non-idempotent exec must not be repeated"
    );

    let s = CaptureServer::start(|_, _| {
        Reply::Json(
            408,
            json!({"error": "deadline_exceeded: context deadline exceeded"}),
        )
    })
    .await;
    let fly = s.client("tok");
    let err = fly
        .exec("app", "m1", &ExecRequest::new(["sleep", "100"]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(408));
    assert_eq!(s.requests().len(), 1);

    let s = CaptureServer::start(|r, e| match same(r, e) {
        0 => Reply::Json(429, json!({"error": "rate limited"})),
        _ => Reply::Json(200, json!({"exit_code": 0, "stdout": "hi"})),
    })
    .await;
    let fly = s.client("tok");
    let out = fly
        .exec("app", "m1", &ExecRequest::new(["echo", "hi"]))
        .await
        .unwrap();
    assert_eq!(out.stdout, "hi");
    assert_eq!(s.requests().len(), 2);
}

#[tokio::test]
async fn exec_checks_the_exit_code_of_a_200() {
    let s = CaptureServer::start(|_, _| {
        Reply::Json(
            200,
            json!({"exit_code": 3, "stdout": "SECRET=x", "stderr": "nope"}),
        )
    })
    .await;
    let fly = s.client("tok");
    let err = fly
        .exec("app", "m1", &ExecRequest::new(["printenv"]))
        .await
        .unwrap_err();
    match &err {
        Error::ExecFailed {
            exit_code, output, ..
        } => {
            assert_eq!(*exit_code, 3);
            assert_eq!(output.stderr, "nope");
        }
        other => panic!("unexpected {other:?}"),
    }
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("SECRET=x"),
        "command output must not be shown: {shown}"
    );
    // Unchecked exec hands back the code (the CLI exits with it).
    let out = fly
        .exec_unchecked("app", "m1", &ExecRequest::new(["printenv"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
}

/// A fake Machines API for creates: `create_outcome(n)` decides what the n-th POST does.
#[derive(Clone, Copy)]
enum Outcome {
    /// Create it, then answer 408 (the side effect happened).
    CreateThen408,
    /// Answer 408 without creating.
    Plain408,
    /// Create it, then drop the connection.
    CreateThenDrop,
    Ok,
}

async fn machines_server(
    outcomes: Vec<Outcome>,
) -> (CaptureServer, Arc<Mutex<Vec<serde_json::Value>>>) {
    let store = Arc::new(Mutex::new(vec![machine("m0", "existing")]));
    let st = store.clone();
    let s = CaptureServer::start(move |r, earlier| {
        let mut ms = st.lock().unwrap();
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/v1/apps/app/machines") => Reply::Json(200, json!(*ms)),
            ("POST", "/v1/apps/app/machines") => {
                let n = same(r, earlier);
                let name = r
                    .body
                    .as_ref()
                    .and_then(|b| b["name"].as_str())
                    .unwrap_or("")
                    .to_string();
                let new = machine(&format!("m{}", ms.len()), &name);
                match outcomes.get(n).copied().unwrap_or(Outcome::Ok) {
                    Outcome::CreateThen408 => {
                        ms.push(new);
                        Reply::Json(408, json!({"error": "request timeout"}))
                    }
                    Outcome::Plain408 => Reply::Json(408, json!({"error": "request timeout"})),
                    Outcome::CreateThenDrop => {
                        ms.push(new);
                        Reply::Drop
                    }
                    Outcome::Ok => {
                        ms.push(new.clone());
                        Reply::Json(200, new)
                    }
                }
            }
            _ => Reply::Json(404, json!({"error": "not found"})),
        }
    })
    .await;
    (s, store)
}

fn create_req(name: Option<&str>) -> CreateMachineRequest {
    CreateMachineRequest {
        config: MachineConfig {
            image: Some("flyio/postgres:14.6".into()),
            ..MachineConfig::default()
        },
        name: name.map(str::to_string),
        region: Some("ams".into()),
        ..CreateMachineRequest::default()
    }
}

#[tokio::test]
async fn a_408_after_a_successful_create_is_not_repeated() {
    let (s, store) = machines_server(vec![Outcome::CreateThen408]).await;
    let fly = s.client("tok");
    let m = fly
        .create_machine("app", &create_req(Some("pg-2")))
        .await
        .unwrap();
    assert_eq!(m.name, "pg-2");
    assert_eq!(
        s.count("POST", "/v1/apps/app/machines"),
        1,
        "create sent once"
    );
    assert_eq!(
        store.lock().unwrap().len(),
        2,
        "exactly one machine created"
    );
}

#[tokio::test]
async fn a_dropped_connection_after_create_is_settled_by_looking() {
    let (s, store) = machines_server(vec![Outcome::CreateThenDrop]).await;
    let fly = s.client("tok");
    // Unnamed: matched as the new machine with the same region and image.
    let m = fly.create_machine("app", &create_req(None)).await.unwrap();
    assert_eq!(m.id, "m1");
    assert_eq!(s.count("POST", "/v1/apps/app/machines"), 1);
    assert_eq!(store.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_408_without_a_create_is_retried_once_confirmed_absent() {
    let (s, store) = machines_server(vec![Outcome::Plain408, Outcome::Ok]).await;
    let fly = s.client("tok");
    let m = fly
        .create_machine("app", &create_req(Some("pg-2")))
        .await
        .unwrap();
    assert_eq!(m.name, "pg-2");
    assert_eq!(s.count("POST", "/v1/apps/app/machines"), 2);
    assert_eq!(
        store.lock().unwrap().len(),
        2,
        "still exactly one new machine"
    );
    // One list before the create, one after the ambiguous failure.
    assert_eq!(s.count("GET", "/v1/apps/app/machines"), 2);
}

#[tokio::test]
async fn an_app_create_that_timed_out_is_looked_up_by_name() {
    let created = Arc::new(Mutex::new(false));
    let c = created.clone();
    let s = CaptureServer::start(move |r, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/apps") => {
            *c.lock().unwrap() = true;
            Reply::Json(408, json!({"error": "request timeout"}))
        }
        ("GET", "/v1/apps/new-app") if *c.lock().unwrap() => {
            Reply::Json(200, json!({"name": "new-app"}))
        }
        _ => Reply::Json(404, json!({"error": "app not found"})),
    })
    .await;
    let fly = s.client("tok");
    fly.create_app(&CreateAppRequest {
        name: "new-app".into(),
        org_slug: "personal".into(),
        ..CreateAppRequest::default()
    })
    .await
    .unwrap();
    assert_eq!(s.count("POST", "/v1/apps"), 1);
    assert_eq!(s.count("GET", "/v1/apps/new-app"), 1);
}

#[tokio::test]
async fn a_volume_create_that_keeps_failing_ambiguously_is_reported_not_repeated_blindly() {
    // Every POST creates a volume and then answers 500: each retry is preceded by a lookup that
    // finds the volume, so the client stops after the first POST.
    let vols = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let v = vols.clone();
    let s = CaptureServer::start(move |r, _| {
        let mut vs = v.lock().unwrap();
        match r.method.as_str() {
            "GET" => Reply::Json(200, json!(*vs)),
            _ => {
                let id = format!("vol_{}", vs.len());
                vs.push(json!({"id": id, "name": "pg_data", "region": "ams", "state": "created"}));
                Reply::Json(500, json!({"error": "internal"}))
            }
        }
    })
    .await;
    let fly = s.client("tok");
    let vol = fly
        .create_volume(
            "app",
            &CreateVolumeRequest {
                name: "pg_data".into(),
                region: "ams".into(),
                size_gb: 1,
                ..CreateVolumeRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(vol.id, "vol_0");
    assert_eq!(s.count("POST", "/v1/apps/app/volumes"), 1);
    assert_eq!(vols.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unsettled_ambiguous_create_gives_up_with_a_clear_error() {
    // The create times out and the lookup afterwards fails: the outcome is unknown, so the client
    // reports it instead of sending the create again.
    let s = CaptureServer::start(|r, e| match r.method.as_str() {
        "POST" => Reply::Json(408, json!({"error": "request timeout"})),
        _ if same(r, e) == 0 => Reply::Json(200, json!([])),
        _ => Reply::Json(
            401,
            json!({"error": "Authenticate: token validation error"}),
        ),
    })
    .await;
    let fly = s.client("tok");
    let err = fly
        .create_machine("app", &create_req(Some("pg-2")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::AmbiguousCreate {
                kind: "machine",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("pg-2"), "{err}");
    assert_eq!(s.count("POST", "/v1/apps/app/machines"), 1);
}

#[tokio::test]
async fn wait_loops_over_408_with_timeouts_capped_at_60s() {
    let s = CaptureServer::start(|r, e| match same(r, e) {
        0 | 1 => Reply::Json(
            408,
            json!({"error": "deadline_exceeded: machine did not reach state"}),
        ),
        _ => Reply::Json(200, json!({"ok": true, "state": "started"})),
    })
    .await;
    let fly = s.client("tok");
    let w = fly
        .wait(
            "app",
            "m1",
            &WaitFor::state("started"),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_eq!(w.state.as_deref(), Some("started"));
    let waits = s.requests();
    assert_eq!(waits.len(), 3);
    for r in &waits {
        assert!(
            r.query()
                .contains(&("timeout".to_string(), "60".to_string())),
            "{}",
            r.uri
        );
        assert!(
            r.query()
                .contains(&("state".to_string(), "started".to_string())),
            "{}",
            r.uri
        );
    }

    // A short deadline is passed down as the timeout of the single call.
    let s = CaptureServer::start(|_, _| Reply::Json(200, json!({"ok": true, "state": "stopped"})))
        .await;
    let fly = s.client("tok");
    fly.wait(
        "app",
        "m1",
        &WaitFor::state("stopped"),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert!(s.requests()[0]
        .query()
        .contains(&("timeout".to_string(), "20".to_string())));
}

#[tokio::test]
async fn connection_refused_is_a_transport_error() {
    // Bind then drop a listener to get a port with nobody behind it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fly = FlyClient::builder()
        .token(SecretString::from("tok"))
        .machines_base_url(format!("http://127.0.0.1:{port}"))
        .retry_policy(RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        })
        .build()
        .unwrap();
    let err = fly.get_app("app").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
}
