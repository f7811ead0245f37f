//! Behaviours pinned to flyctl and fly-go (each test names the upstream file and function), run
//! against real loopback HTTP servers that play Fly's part: a new app invisible for a moment, exit
//! events nested under `MonitorEvent`, held leases, secrets versions, flyctl's relaunch rule, the
//! `settled` wait and the `enablePostgresConsul` GraphQL call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{CaptureServer, Recorded, Reply};
use fly::*;
use serde_json::{json, Value};

fn same(r: &Recorded, earlier: &[Recorded]) -> usize {
    earlier
        .iter()
        .filter(|e| e.method == r.method && e.path == r.path)
        .count()
}

fn new_app() -> CreateAppRequest {
    CreateAppRequest {
        name: "pg-restore".into(),
        org_slug: "personal".into(),
        app_role_id: Some("postgres_cluster".into()),
        ..CreateAppRequest::default()
    }
}

fn not_found() -> Reply {
    Reply::Json(404, json!({"error": "app not found"}))
}

// ------------------------------------------------------------------ apps

/// fly-go `flaps/flaps_apps.go::CreateApp` posts `/apps?wait=true`; flyctl
/// `flypg/launcher.go::createApp` then calls `WaitForApp`, which retries `GET /apps/{name}` on
/// 404 (and 401) until the app shows.
#[tokio::test]
async fn create_app_sends_wait_true_and_polls_until_the_app_is_visible() {
    let s = CaptureServer::start(|r, e| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/apps") => Reply::Json(201, json!({"id": "a1", "created_at": 1})),
        ("GET", "/v1/apps/pg-restore") if same(r, e) < 2 => not_found(),
        ("GET", "/v1/apps/pg-restore") if same(r, e) == 2 => {
            Reply::Json(401, json!({"error": "unauthorized"}))
        }
        ("GET", "/v1/apps/pg-restore") => Reply::Json(200, json!({"name": "pg-restore"})),
        _ => not_found(),
    })
    .await;
    let fly = s.client("tok");
    fly.create_app(&new_app()).await.unwrap();
    let post = &s.requests()[0];
    assert!(
        post.query().contains(&("wait".into(), "true".into())),
        "{}",
        post.uri
    );
    assert_eq!(s.count("POST", "/v1/apps"), 1);
    assert_eq!(s.count("GET", "/v1/apps/pg-restore"), 4);
}

/// fly-go `flaps/retry.go::Retry` bounds `WaitForApp` (one minute); the client's bound is
/// configurable and the last 404 is handed back when it passes.
#[tokio::test]
async fn an_app_that_never_shows_ends_the_wait_with_its_404() {
    let s = CaptureServer::start(|r, _| match r.method.as_str() {
        "POST" => Reply::Empty(201),
        _ => not_found(),
    })
    .await;
    let fly = FlyClient::builder()
        .token(SecretString::from("tok"))
        .machines_base_url(s.url())
        .app_visibility_timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let err = fly.create_app(&new_app()).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    assert_eq!(s.count("POST", "/v1/apps"), 1);
    assert!(s.count("GET", "/v1/apps/pg-restore") >= 2);
}

/// The ambiguity look-up after a create that timed out polls through the invisible window like
/// fly-go `WaitForApp`: a transient 404 is not "absent", so the create is not sent again (Fly
/// would answer 422 "Name has already been taken").
#[tokio::test]
async fn an_ambiguous_app_create_is_not_re_posted_on_a_transient_404() {
    let s = CaptureServer::start(|r, e| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/apps") if same(r, e) == 0 => {
            Reply::Json(408, json!({"error": "request timeout"}))
        }
        ("POST", "/v1/apps") => Reply::Json(
            422,
            json!({"error": "Validation failed: Name has already been taken"}),
        ),
        ("GET", "/v1/apps/pg-restore") if same(r, e) < 2 => not_found(),
        ("GET", "/v1/apps/pg-restore") => Reply::Json(200, json!({"name": "pg-restore"})),
        _ => not_found(),
    })
    .await;
    let fly = s.client("tok");
    fly.create_app(&new_app()).await.unwrap();
    assert_eq!(s.count("POST", "/v1/apps"), 1, "the create is sent once");
    assert_eq!(s.count("GET", "/v1/apps/pg-restore"), 3);
}

// ------------------------------------------------------------------ exit events

fn event(request: Value) -> MachineEvent {
    serde_json::from_value(json!({"id": "01E", "type": "exit", "status": "stopped",
        "source": "flyd", "timestamp": 1_700_000_000_000_i64, "request": request}))
    .unwrap()
}

/// fly-go `machine_types.go`: `MachineRequest{ExitEvent "exit_event", MonitorEvent
/// "MonitorEvent"{ExitEvent "exit_event"}}`; `MachineRequest.GetExitCode` prefers the nested one.
#[test]
fn exit_events_are_read_from_monitor_event_and_from_the_top_level() {
    let nested = event(json!({"MonitorEvent": {"exit_event": {
        "exit_code": 137, "oom_killed": true, "restarting": true}}, "restart_count": 3}));
    let exit = nested.exit_event().expect("the nested exit event is read");
    assert_eq!(exit.exit_code, Some(137));
    assert_eq!(exit.oom_killed, Some(true));

    let top = event(json!({"exit_event": {"exit_code": 1}}));
    assert_eq!(top.exit_event().and_then(|e| e.exit_code), Some(1));

    let both = event(json!({"exit_event": {"exit_code": 1},
        "MonitorEvent": {"exit_event": {"exit_code": 2}}}));
    assert_eq!(both.exit_event().and_then(|e| e.exit_code), Some(2));

    let empty_monitor = event(json!({"exit_event": {"exit_code": 1}, "MonitorEvent": {}}));
    assert_eq!(
        empty_monitor.exit_event().and_then(|e| e.exit_code),
        Some(1)
    );
    assert_eq!(event(json!({"restart_count": 1})).exit_event(), None);
}

// ------------------------------------------------------------------ secrets

fn min_version(r: &Recorded) -> Option<String> {
    r.query()
        .into_iter()
        .find(|(k, _)| k == "min_version")
        .map(|(_, v)| v)
}

/// flyctl `internal/appsecrets/secrets.go`: `Update` stores the returned version
/// (`minvers.go::SetMinvers`) and `List` passes it back (fly-go `ListAppSecrets`); the OpenAPI
/// document names the parameter `min_version`.
#[tokio::test]
async fn list_secrets_asks_for_the_version_this_client_last_set() {
    let s = CaptureServer::start(|r, _| match r.method.as_str() {
        "POST" => Reply::Json(200, json!({"version": 7, "secrets": []})),
        _ => Reply::Json(200, json!({"secrets": []})),
    })
    .await;
    let fly = s.client("tok");
    fly.list_secrets("pg-app").await.unwrap();
    let values = std::collections::BTreeMap::from([(
        "SU_PASSWORD".to_string(),
        Some(SecretString::from("x")),
    )]);
    assert_eq!(fly.update_secrets("pg-app", &values).await.unwrap(), 7);
    assert_eq!(fly.secrets_min_version("pg-app"), Some(7));
    fly.list_secrets("pg-app").await.unwrap();
    fly.list_secrets("other-app").await.unwrap();
    fly.list_secrets_min_version("pg-app", Some(3))
        .await
        .unwrap();

    let lists: Vec<Recorded> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    let sent: Vec<Option<String>> = lists.iter().map(min_version).collect();
    assert_eq!(sent, [None, Some("7".into()), None, Some("3".into())]);
}

// ------------------------------------------------------------------ leases

fn lease(nonce: &str) -> Value {
    json!({"status": "success", "data": {"nonce": nonce, "expires_at": 1_700_000_120_i64,
        "owner": "ops@example.com", "version": "01HV"}})
}

fn held_by_fly() -> Reply {
    Reply::Json(
        409,
        json!({"error": "aborted: machine ID m1 lease currently held by Fly.io system, expires at 2026-11-29T03:00:00Z"}),
    )
}

/// fly-go `flaps/flaps_machines.go::AcquireLease` retries through `flaps/retry.go::Retry` for up
/// to a minute; Fly itself holds leases at times (owner "Fly.io system", flyctl #3336/#4938).
#[tokio::test]
async fn a_held_lease_is_waited_out_for_a_bounded_time() {
    let s = CaptureServer::start(|r, e| match same(r, e) {
        0 | 1 => held_by_fly(),
        _ => Reply::Json(201, lease("n1")),
    })
    .await;
    let fly = s.client("tok");
    let got = fly
        .acquire_lease_waiting("app", "m1", 60, Some("restore"), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(got.nonce.as_deref(), Some("n1"));
    assert_eq!(s.count("POST", "/v1/apps/app/machines/m1/lease"), 3);

    // Past the patience the 409 is handed back.
    let s = CaptureServer::start(|_, _| held_by_fly()).await;
    let fly = s.client("tok");
    let err = fly
        .acquire_lease_waiting("app", "m1", 60, None, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    assert!(s.count("POST", "/v1/apps/app/machines/m1/lease") >= 2);
}

fn pg_machine(id: &str, state: &str) -> Value {
    json!({"id": id, "name": format!("pg-{id}"), "state": state, "region": "ams",
        "instance_id": format!("01HV{id}"), "config": {"image": "flyio/postgres:14.6"}})
}

/// A fake app for rollouts: machines in the given states; `wait` answers after `wait_delay`
/// (blocking one server worker, so the test runs on a multi-threaded runtime).
async fn rollout_server(
    machines: Vec<(&'static str, &'static str)>,
    lease_conflicts: usize,
    wait_delay: Duration,
) -> CaptureServer {
    let conflicts = Arc::new(AtomicUsize::new(lease_conflicts));
    CaptureServer::start(move |r, _| {
        let parts: Vec<&str> = r
            .path
            .trim_start_matches("/v1/apps/app/")
            .split('/')
            .collect();
        let state_of = |id: &str| {
            machines
                .iter()
                .find(|(m, _)| *m == id)
                .map_or("stopped", |(_, s)| *s)
        };
        match (r.method.as_str(), parts.as_slice()) {
            ("GET", ["machines"]) => Reply::Json(
                200,
                json!(machines
                    .iter()
                    .map(|(id, st)| pg_machine(id, st))
                    .collect::<Vec<_>>()),
            ),
            ("POST", ["machines", _, "lease"]) if r.header("fly-machine-lease-nonce").is_none() => {
                if conflicts.load(Ordering::SeqCst) > 0 {
                    conflicts.fetch_sub(1, Ordering::SeqCst);
                    held_by_fly()
                } else {
                    Reply::Json(201, lease("n0nce"))
                }
            }
            ("POST", ["machines", _, "lease"]) => Reply::Json(201, lease("n0nce")),
            ("DELETE", ["machines", _, "lease"]) => Reply::Json(200, json!({"ok": true})),
            ("GET", ["machines", id]) => Reply::Json(200, pg_machine(id, state_of(id))),
            ("POST", ["machines", id]) => {
                let mut m = pg_machine(id, state_of(id));
                m["instance_id"] = json!("01HVNEW");
                Reply::Json(200, m)
            }
            // An async delay: a blocking sleep here held a runtime thread, and under load the client's
            // lease-refresh timer could sit behind it, so no refresh was sent during the wait (a flaky test).
            ("GET", ["machines", _, "wait"]) => Reply::After(
                wait_delay,
                Box::new(Reply::Json(200, json!({"ok": true, "state": "started"}))),
            ),
            _ => Reply::Json(404, json!({"error": "not found"})),
        }
    })
    .await
}

/// flyctl `internal/machine/leasable_machine.go::refreshLeaseUntilCanceled` (started by
/// `StartBackgroundLeaseRefresh` around deploy updates and waits) refreshes the lease with its
/// nonce while a machine is updated and waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rollout_refreshes_its_lease_during_a_long_wait_and_waits_out_a_held_one() {
    let s = rollout_server(vec![("m1", "started")], 2, Duration::from_millis(700)).await;
    // No client-side rate limit: Fly's 1 lease call/s would space the refreshes out.
    let fly = FlyClient::builder()
        .token(SecretString::from("tok"))
        .machines_base_url(s.url())
        .rate_limits(None)
        .build()
        .unwrap();
    let opts = RolloutOptions {
        lease_ttl_secs: 30,
        lease_refresh_every: Some(Duration::from_millis(100)),
        ..RolloutOptions::default()
    };
    let steps = fly.rollout_secrets("app", 9, &opts).await.unwrap();
    assert!(steps.iter().all(|s| s.result.is_ok()), "{steps:?}");
    let lease_posts: Vec<Recorded> = s
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/m1/lease"))
        .collect();
    let acquires = lease_posts
        .iter()
        .filter(|r| r.header("fly-machine-lease-nonce").is_none())
        .count();
    assert_eq!(acquires, 3, "two 409s, then the lease");
    let refreshes: Vec<&Recorded> = lease_posts
        .iter()
        .filter(|r| r.header("fly-machine-lease-nonce").as_deref() == Some("n0nce"))
        .collect();
    assert!(
        refreshes.len() >= 2,
        "refreshed during the wait: {}",
        refreshes.len()
    );
    assert_eq!(refreshes[0].body, Some(json!({"ttl": 30})));
}

/// flyctl `internal/command/deploy/machines_launchinput.go::shouldSkipLaunch`: a restart-only
/// deploy (what `fly secrets set` runs) relaunches machines that were `started`, `starting` or
/// `failed` and waits for them (`waitForMachine`); any other machine keeps `skip_launch` and is not
/// waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollout_relaunches_failed_and_starting_machines_and_leaves_stopped_ones() {
    let s = rollout_server(
        vec![
            ("m1", "failed"),
            ("m2", "starting"),
            ("m3", "stopped"),
            ("m4", "suspended"),
        ],
        0,
        Duration::ZERO,
    )
    .await;
    let fly = s.client("tok");
    let steps = fly
        .rollout_secrets("app", 9, &RolloutOptions::default())
        .await
        .unwrap();
    assert_eq!(steps.len(), 4);
    assert!(steps.iter().all(|s| s.result.is_ok()), "{steps:?}");
    let reqs = s.requests();
    for (id, relaunched) in [("m1", true), ("m2", true), ("m3", false), ("m4", false)] {
        let update = reqs
            .iter()
            .find(|r| r.method == "POST" && r.path == format!("/v1/apps/app/machines/{id}"))
            .unwrap();
        let body = update.body.as_ref().unwrap();
        assert_eq!(
            body.get("skip_launch").is_none(),
            relaunched,
            "{id}: {body}"
        );
        if !relaunched {
            assert_eq!(body["skip_launch"], json!(true), "{id}");
        }
        let waited = reqs
            .iter()
            .any(|r| r.path == format!("/v1/apps/app/machines/{id}/wait"));
        assert_eq!(waited, relaunched, "{id}");
    }
    assert!(should_skip_launch("stopped") && should_skip_launch("created"));
    assert!(!should_skip_launch("started") && !should_skip_launch("failed"));
}

// ------------------------------------------------------------------ update and settle

/// flyctl `internal/machine/update.go::Update` waits for `settled` (not `started`: a stopped
/// machine stays stopped after an update), reads the machine back
/// (`internal/machine/wait.go::WaitForState`) and fails when it settled as `failed`.
#[tokio::test]
async fn update_and_settle_waits_for_settled_and_reports_a_failed_machine() {
    for (final_state, ok) in [("stopped", true), ("failed", false)] {
        let s = CaptureServer::start(move |r, _| match (r.method.as_str(), r.path.as_str()) {
            ("POST", "/v1/apps/app/machines/m1") => {
                let mut m = pg_machine("m1", "stopped");
                m["instance_id"] = json!("01HVNEW");
                Reply::Json(200, m)
            }
            ("GET", "/v1/apps/app/machines/m1/wait") => {
                Reply::Json(200, json!({"ok": true, "state": final_state}))
            }
            ("GET", "/v1/apps/app/machines/m1") => Reply::Json(200, pg_machine("m1", final_state)),
            _ => Reply::Json(404, json!({"error": "not found"})),
        })
        .await;
        let fly = s.client("tok");
        let req = UpdateMachineRequest {
            config: MachineConfig::default(),
            ..UpdateMachineRequest::default()
        };
        let result = fly
            .update_machine_and_settle("app", "m1", &req, Some("n0nce"), Duration::from_secs(30))
            .await;
        match (ok, result) {
            (true, Ok(m)) => assert_eq!(m.state, "stopped"),
            (false, Err(Error::MachineFailed { machine })) => assert_eq!(machine, "m1"),
            (_, other) => panic!("{final_state}: unexpected {other:?}"),
        }
        let wait = s
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/wait"))
            .unwrap();
        let query = wait.query();
        assert!(
            query.contains(&("state".into(), "settled".into())),
            "{}",
            wait.uri
        );
        assert!(
            query.contains(&("version".into(), "01HVNEW".into())),
            "{}",
            wait.uri
        );
        let order: Vec<String> = s
            .requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            order,
            [
                "POST /v1/apps/app/machines/m1",
                "GET /v1/apps/app/machines/m1/wait",
                "GET /v1/apps/app/machines/m1"
            ]
        );
    }
}

// ------------------------------------------------------------------ GraphQL

/// fly-go `resource_postgres.go::EnablePostgresConsul` (called by flyctl
/// `flypg/launcher.go::generateConsulURL`): the mutation text, whitespace compacted as fly-go's
/// `NewRequest` does, with `appName` as its only variable, posted to `{FLY_API_HOSTNAME}/graphql`.
#[tokio::test]
async fn enable_postgres_consul_posts_flyctls_mutation_and_returns_the_url() {
    let s = CaptureServer::start(|r, _| {
        let body = r.body.clone().unwrap_or(Value::Null);
        let expected_query = "mutation($appName: ID!) { enablePostgresConsul(input: {appId: $appName}) { consulUrl } }";
        let right = r.method == "POST"
            && r.path == "/graphql"
            && body["query"] == json!(expected_query)
            && body["variables"] == json!({"appName": "pg-restore"})
            && r.header("content-type").as_deref() == Some("application/json");
        if right {
            Reply::Json(
                200,
                json!({"data": {"enablePostgresConsul": {
                    "consulUrl": "https://:tok3n@consul-iad.fly-shared.net/pg-restore-xyz/"}}}),
            )
        } else {
            Reply::Json(
                200,
                json!({"data": null, "errors": [{"message": format!("unexpected request {body}")}]}),
            )
        }
    })
    .await;
    let fly = s.client("fm2_graphql");
    let url = fly.enable_postgres_consul("pg-restore").await.unwrap();
    assert_eq!(
        url.expose_secret(),
        "https://:tok3n@consul-iad.fly-shared.net/pg-restore-xyz/"
    );
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0].header("authorization").as_deref(),
        Some("FlyV1 fm2_graphql")
    );
    assert_eq!(
        graphql::ENABLE_POSTGRES_CONSUL_QUERY,
        reqs[0].body.as_ref().unwrap()["query"]
    );
}

#[tokio::test]
async fn graphql_errors_are_reported_and_the_mutation_is_not_repeated() {
    let s = CaptureServer::start(|_, _| {
        Reply::Json(
            200,
            json!({"data": null, "errors": [{"message": "Could not find App"}]}),
        )
    })
    .await;
    let fly = s.client("tok");
    let err = fly.enable_postgres_consul("nope").await.unwrap_err();
    assert!(
        matches!(&err, Error::GraphQl { message, .. } if message == "Could not find App"),
        "{err:?}"
    );
    assert!(err.to_string().contains("enablePostgresConsul"), "{err}");

    let s = CaptureServer::start(|_, _| Reply::Json(502, json!({"error": "bad gateway"}))).await;
    let fly = s.client("tok");
    let err = fly.enable_postgres_consul("pg").await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(
        s.requests().len(),
        1,
        "a mutation is not retried after a 5xx"
    );
}
