//! Capture and login proof (`fly::escrow`) against the emulator over real loopback HTTP. Walden's
//! own calls go through a recording proxy, so the tests can show that no password is ever in a
//! request's URL or argv, only in the login check's `stdin`; the emulator's Machine events and logs
//! are searched too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use fly::escrow::{
    capture_credentials, capture_from_secrets_api, proof_argv, prove_logins, CaptureSource,
    EscrowError, ProofOutcome, CAPTURE_ARGV,
};
use fly::stolon::ClusterCredentials;
use fly::*;
use flysim::{ClusterSeed, Faults, Sim};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const ORG: &str = "acme";
const TOKEN: &str = "fm2_escrow_test_token";
const APP: &str = "prod-db";
const SU: &str = "EscrowSu7Qw2Lm";
const REPL: &str = "EscrowRepl4Kd9";
const OPERATOR: &str = "EscrowOp3Xv8Tn";
/// How often the emulated `role` check runs (flyctl `flypg/launcher.go`: interval 15 s).
const CHECK_RUN: Duration = Duration::from_secs(15);

/// One request Walden's client sent, as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    body: Option<Value>,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<Seen>>>,
}

/// Record the request, forward it to flysim unchanged, answer with flysim's answer.
async fn forward(
    State(proxy): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    proxy.log.lock().unwrap().push(Seen {
        method: method.to_string(),
        uri: uri.to_string(),
        body: serde_json::from_slice(&body).ok(),
    });
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).unwrap();
    let mut request = proxy
        .http
        .request(method, format!("{}{}", proxy.upstream, uri));
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = request.body(body.to_vec()).send().await.unwrap();
    let mut response =
        Response::builder().status(StatusCode::from_u16(answer.status().as_u16()).unwrap());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    response
        .body(Body::from(answer.bytes().await.unwrap()))
        .unwrap()
}

struct Env {
    sim: Sim,
    run: flysim::Running,
    proxy_url: String,
    log: Arc<Mutex<Vec<Seen>>>,
    _dir: tempfile::TempDir,
}

/// A manual-clock emulator with a seeded 3-Machine Stolon cluster (`prod-db`, leader first) and a
/// recording proxy in front of it.
async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::builder()
        .manual_clock(Sim::new().now())
        .seed(11)
        .build()
        .unwrap();
    sim.add_org(ORG, "Acme");
    sim.add_token(TOKEN, &[ORG]);
    let mut seed = ClusterSeed::new(ORG, APP, &dir.path().join("walg"));
    seed.su_password = SU.into();
    seed.repl_password = REPL.into();
    seed.operator_password = OPERATOR.into();
    seed.history_hours = 2;
    sim.seed_cluster(&seed).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();

    let log = Arc::new(Mutex::new(Vec::new()));
    let proxy = Proxy {
        upstream: run.base_url.clone(),
        http: reqwest::Client::new(),
        log: log.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let router = Router::new().fallback(forward).with_state(proxy);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Env {
        sim,
        run,
        proxy_url,
        log,
        _dir: dir,
    }
}

fn client_at(base_url: &str, token: &str) -> FlyClient {
    FlyClient::builder()
        .token(SecretString::from(token.to_string()))
        .machines_base_url(base_url.to_string())
        .api_base_url(base_url.to_string())
        .retry_policy(RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .build()
        .unwrap()
}

/// Walden's client: through the recording proxy.
fn walden(env: &Env) -> FlyClient {
    client_at(&env.proxy_url, TOKEN)
}

/// The test's own hands on the emulator (not recorded).
fn operator(env: &Env) -> FlyClient {
    client_at(&env.run.base_url, TOKEN)
}

async fn machine_ids(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = operator(env)
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    ids
}

async fn leader_id(env: &Env) -> String {
    fly::stolon::Stolon::new(operator(env), APP)
        .leader()
        .await
        .unwrap()
        .id
}

fn seeded_credentials() -> ClusterCredentials {
    ClusterCredentials {
        su_password: SecretString::from(SU),
        repl_password: SecretString::from(REPL),
        operator_password: SecretString::from(OPERATOR),
    }
}

fn outcomes(proofs: &[fly::escrow::RoleProof]) -> Vec<(&'static str, ProofOutcome)> {
    proofs.iter().map(|p| (p.role, p.outcome.clone())).collect()
}

/// Run `sql` as flypgadmin on `machine`, the password on stdin (as the test's own operator).
async fn psql_as_superuser(env: &Env, machine: &str, sql: &str) -> ExecOutput {
    let script = "IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql -h localhost -p 5433 -U flypgadmin -d postgres -t -A -c \"$1\"";
    let mut request = ExecRequest::new(["sh", "-c", script, "sh", sql]).timeout(30);
    request.stdin = Some(format!("{SU}\n"));
    operator(env).exec(APP, machine, &request).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_then_prove_then_a_changed_password_is_caught_and_nothing_leaks() {
    let env = start().await;
    let fly = walden(&env);
    let leader = leader_id(&env).await;

    // Capture: the leader's env, values as seeded, storage settings kept, Debug without values.
    let captured = capture_credentials(&fly, APP).await.unwrap();
    assert!(
        matches!(&captured.source, CaptureSource::LeaderEnv { machine_id, .. } if *machine_id == leader),
        "{captured:?}"
    );
    assert_eq!(captured.passwords.su_password.expose_secret(), SU);
    assert_eq!(captured.passwords.repl_password.expose_secret(), REPL);
    assert_eq!(
        captured.passwords.operator_password.expose_secret(),
        OPERATOR
    );
    assert!(
        captured.storage.contains_key("WALG_FILE_PREFIX"),
        "{captured:?}"
    );
    assert!(!captured.storage.contains_key("FLY_CONSUL_URL"));
    assert!(captured
        .image
        .as_deref()
        .unwrap()
        .starts_with("flyio/postgres:"));
    let debug = format!("{captured:?}");
    for password in [SU, REPL, OPERATOR] {
        assert!(!debug.contains(password), "{debug}");
    }

    // Proof: all three open their roles, on the leader.
    let proofs = prove_logins(&fly, APP, &captured.passwords).await.unwrap();
    assert_eq!(
        outcomes(&proofs),
        [
            ("flypgadmin", ProofOutcome::Opens),
            ("repluser", ProofOutcome::Opens),
            ("postgres", ProofOutcome::Opens)
        ]
    );
    assert!(proofs.iter().all(|p| p.on_leader && p.machine_id == leader));

    // Someone changes flypgadmin's password behind Walden's back.
    let altered = psql_as_superuser(&env, &leader, "ALTER ROLE flypgadmin PASSWORD 'x'").await;
    assert_eq!(altered.stdout.trim(), "ALTER ROLE");
    let proofs = prove_logins(&fly, APP, &seeded_credentials())
        .await
        .unwrap();
    assert_eq!(
        outcomes(&proofs),
        [
            ("flypgadmin", ProofOutcome::WrongPassword),
            ("repluser", ProofOutcome::Opens),
            ("postgres", ProofOutcome::Opens)
        ]
    );

    // At its next run the role check (which logs in as flypgadmin) fails everywhere: no leader.
    // Capture cannot tell which Machine leads; the proof still runs, on a started Machine.
    env.sim.advance(CHECK_RUN);
    let err = capture_credentials(&fly, APP).await.unwrap_err();
    assert!(matches!(err, EscrowError::NoLeader { .. }), "{err:?}");
    assert!(err.suggests_manual_entry());
    assert!(
        err.to_string().contains("enter the credentials by hand"),
        "{err}"
    );
    let proofs = prove_logins(&fly, APP, &seeded_credentials())
        .await
        .unwrap();
    assert_eq!(proofs[0].outcome, ProofOutcome::WrongPassword);
    assert_eq!(proofs[1].outcome, ProofOutcome::Opens);
    assert!(proofs.iter().all(|p| !p.on_leader), "{proofs:?}");

    // Nothing Walden sent holds a password outside the login check's stdin.
    let seen = env.log.lock().unwrap().clone();
    let execs: Vec<&Seen> = seen.iter().filter(|s| s.uri.ends_with("/exec")).collect();
    assert_eq!(
        execs.len(),
        1 + 3 * 3,
        "one capture and three proofs of three roles"
    );
    for request in &seen {
        for password in [SU, REPL, OPERATOR] {
            assert!(!request.uri.contains(password), "{request:?}");
        }
        let Some(body) = &request.body else { continue };
        let mut without_stdin = body.clone();
        let stdin = without_stdin
            .as_object_mut()
            .and_then(|o| o.remove("stdin"));
        let text = without_stdin.to_string();
        for password in [SU, REPL, OPERATOR] {
            assert!(
                !text.contains(password),
                "{} {}",
                request.method,
                request.uri
            );
        }
        let command: Vec<String> =
            serde_json::from_value(body["command"].clone()).unwrap_or_default();
        match stdin {
            Some(stdin) => {
                // A login check: the role is the only argument, the password only on stdin.
                let role = command.last().cloned().unwrap_or_default();
                assert_eq!(command, proof_argv(&role));
                let expected = match role.as_str() {
                    "flypgadmin" => SU,
                    "repluser" => REPL,
                    _ => OPERATOR,
                };
                assert_eq!(stdin, Value::String(format!("{expected}\n")));
            }
            None if request.uri.ends_with("/exec") => assert_eq!(command, CAPTURE_ARGV),
            None => {}
        }
    }

    // Every request is one the OpenAPI document describes (exec with `command`, `stdin`, `timeout`).
    let contract = openapi_contract::Contract::load().unwrap();
    for request in &seen {
        if let Err(violations) =
            contract.check_request(&request.method, &request.uri, request.body.as_ref())
        {
            panic!("{} {}: {violations}", request.method, request.uri);
        }
    }

    // Nor does the emulator's event stream or its logs.
    let operator = operator(&env);
    for id in machine_ids(&env).await {
        let events = operator.machine_events(APP, &id, Some(50)).await.unwrap();
        let text = serde_json::to_string(&events).unwrap();
        for password in [SU, REPL, OPERATOR] {
            assert!(!text.contains(password), "events of {id}");
        }
    }
    let logs = env.sim.log_messages(APP).join("\n");
    for password in [SU, REPL, OPERATOR] {
        assert!(!logs.contains(password));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_does_not_matter_but_a_stopped_cluster_suggests_manual_entry() {
    let env = start().await;
    let fly = walden(&env);
    let operator = operator(&env);
    let leader = leader_id(&env).await;
    let ids = machine_ids(&env).await;
    let replica = ids.iter().find(|id| **id != leader).unwrap().clone();

    operator
        .stop_machine(APP, &replica, &StopRequest::default(), None)
        .await
        .unwrap();
    env.sim.advance(Duration::from_secs(10));
    assert_eq!(
        env.sim.machine_state(APP, &replica).as_deref(),
        Some("stopped")
    );
    let captured = capture_credentials(&fly, APP).await.unwrap();
    assert!(
        matches!(&captured.source, CaptureSource::LeaderEnv { machine_id, .. } if *machine_id == leader),
        "{captured:?}"
    );

    for id in &ids {
        operator
            .stop_machine(APP, id, &StopRequest::default(), None)
            .await
            .unwrap();
    }
    env.sim.advance(Duration::from_secs(10));
    let err = capture_credentials(&fly, APP).await.unwrap_err();
    assert!(matches!(err, EscrowError::AllStopped { .. }), "{err:?}");
    assert!(err.suggests_manual_entry());
    assert!(
        err.to_string()
            .contains("every machine of app prod-db is stopped"),
        "{err}"
    );
    let err = prove_logins(&fly, APP, &seeded_credentials())
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::AllStopped { .. }), "{err:?}");

    // The explicit fallback: the app's values from Fly's secrets API, marked as such.
    let from_api = capture_from_secrets_api(&fly, APP).await.unwrap();
    assert_eq!(from_api.source, CaptureSource::SecretsApi);
    assert_eq!(from_api.passwords.su_password.expose_secret(), SU);
    assert_eq!(from_api.passwords.repl_password.expose_secret(), REPL);
    assert_eq!(
        from_api.passwords.operator_password.expose_secret(),
        OPERATOR
    );
    assert!(from_api.storage.contains_key("WALG_FILE_PREFIX"));
    let seen = env.log.lock().unwrap().clone();
    let api = seen
        .iter()
        .find(|s| s.uri.contains("/secrets"))
        .expect("a secrets request");
    assert_eq!(api.method, "GET");
    assert!(api.uri.contains("show_secrets=true"), "{api:?}");
    openapi_contract::Contract::load()
        .unwrap()
        .check_request(&api.method, &api.uri, None)
        .unwrap();
    for request in &seen {
        for password in [SU, REPL, OPERATOR] {
            assert!(!request.uri.contains(password), "{request:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_a_leader_is_refused_with_the_roles_it_reports() {
    let env = start().await;
    let leader = leader_id(&env).await;
    // postgres-ha `pkg/flycheck/role.go`: above 90 % disk use the leader reports `readonly`.
    env.sim.set_disk_used(APP, &leader, 95).unwrap();
    env.sim.advance(CHECK_RUN);
    let err = capture_credentials(&walden(&env), APP).await.unwrap_err();
    let EscrowError::NoLeader { roles, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(roles.contains(&format!("{leader}: readonly")), "{roles}");
    assert!(err
        .to_string()
        .contains("no started machine of app prod-db reports role leader"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_that_times_out_is_named_and_proofs_could_not_check() {
    let env = start().await;
    let fly = walden(&env);
    let leader = leader_id(&env).await;
    env.sim.set_faults(Faults {
        seed: 3,
        exec_deadline_exceeded: 1.0,
        ..Faults::default()
    });
    let err = capture_credentials(&fly, APP).await.unwrap_err();
    assert!(
        matches!(&err, EscrowError::ExecTimedOut { machine } if *machine == leader),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out"), "{err}");
    let proofs = prove_logins(&fly, APP, &seeded_credentials())
        .await
        .unwrap();
    for proof in proofs {
        assert!(
            matches!(&proof.outcome, ProofOutcome::CouldNotCheck(why) if why.contains("timed out")),
            "{proof:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_that_is_not_up_could_not_be_checked() {
    let env = start().await;
    let fly = walden(&env);
    let operator = operator(&env);
    let ids = machine_ids(&env).await;
    // Every Machine restarts into a Postgres that never becomes ready: started, but psql fails.
    env.sim.set_faults(Faults {
        seed: 5,
        never_healthy: ids.iter().cloned().collect(),
        ..Faults::default()
    });
    for id in &ids {
        operator
            .restart_machine(APP, id, None, None, None)
            .await
            .unwrap();
    }
    env.sim.advance(Duration::from_secs(30));
    let proofs = prove_logins(&fly, APP, &seeded_credentials())
        .await
        .unwrap();
    for proof in &proofs {
        assert!(!proof.on_leader);
        match &proof.outcome {
            ProofOutcome::CouldNotCheck(why) => assert!(why.starts_with("psql: error"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_access_to_the_app_is_refused() {
    let env = start().await;
    env.sim.add_org("other", "Other");
    env.sim.add_token("fm2_other_org", &["other"]);
    let stranger = client_at(&env.proxy_url, "fm2_other_org");
    let err = capture_credentials(&stranger, APP).await.unwrap_err();
    assert!(
        matches!(err, EscrowError::NoAccess { status: 403, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("use a token of the app's organization"),
        "{err}"
    );
    let err = prove_logins(&stranger, APP, &seeded_credentials())
        .await
        .unwrap_err();
    assert!(
        matches!(err, EscrowError::NoAccess { status: 403, .. }),
        "{err:?}"
    );
    // A deploy token for another app of the same org.
    env.sim.add_app_token("fm2_deploy_web", ORG, &["web"]);
    let deploy = client_at(&env.proxy_url, "fm2_deploy_web");
    let err = capture_credentials(&deploy, APP).await.unwrap_err();
    assert!(
        matches!(err, EscrowError::NoAccess { status: 403, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("fm2_"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_that_are_not_stolon_clusters_are_refused() {
    let env = start().await;
    let operator = operator(&env);
    for (app, image) in [
        ("flex-db", "flyio/postgres-flex:15.3"),
        ("web", "nginx:1.27"),
    ] {
        operator
            .create_app(&CreateAppRequest {
                name: app.into(),
                org_slug: ORG.into(),
                network: None,
                enable_subdomains: None,
                app_role_id: None,
            })
            .await
            .unwrap();
        operator.wait_for_app(app).await.unwrap();
        operator
            .create_machine(
                app,
                &CreateMachineRequest {
                    config: MachineConfig {
                        image: Some(image.into()),
                        ..MachineConfig::default()
                    },
                    region: Some("iad".into()),
                    ..CreateMachineRequest::default()
                },
            )
            .await
            .unwrap();
    }
    env.sim.advance(Duration::from_secs(10));
    let fly = walden(&env);
    let err = capture_credentials(&fly, "flex-db").await.unwrap_err();
    assert!(matches!(err, EscrowError::Flex { .. }), "{err:?}");
    assert!(err.to_string().contains("postgres-flex"), "{err}");
    let err = capture_credentials(&fly, "web").await.unwrap_err();
    assert!(
        matches!(&err, EscrowError::NotStolon { image, .. } if image == "nginx:1.27"),
        "{err:?}"
    );
    let err = capture_credentials(&fly, "no-such-app").await.unwrap_err();
    assert!(matches!(err, EscrowError::AppNotFound { .. }), "{err:?}");
}

/// A Stolon Machine as Fly lists it, in `state`, reporting `role` when passing.
fn peer_machine(id: &str, state: &str, role: &str) -> Value {
    serde_json::json!({
        "id": id, "name": id, "state": state, "region": "iad",
        "config": {"image": "flyio/postgres:14.6"},
        "image_ref": {"registry": "docker-hub-mirror.fly.io", "repository": "flyio/postgres", "tag": "14.6",
            "labels": {"fly.app_role": "postgres_cluster"}},
        "checks": [{"name": "role", "status": "passing", "output": role}]
    })
}

/// A peer (not flysim: it cannot make `printenv` fail) answering the machine list with a leader
/// and every exec with `exec`.
async fn peer(exec: Value) -> common::CaptureServer {
    common::CaptureServer::start(move |request, _| match request.path.as_str() {
        "/v1/apps/peer-db/machines" => common::Reply::Json(
            200,
            Value::Array(vec![peer_machine("m1", "started", "leader")]),
        ),
        path if path.ends_with("/exec") => common::Reply::Json(200, exec.clone()),
        _ => common::Reply::Json(404, serde_json::json!({"error": "not found"})),
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_printenv_is_named_without_its_output() {
    let server = peer(serde_json::json!({
        "exit_code": 1, "stdout": "SU_PASSWORD=leaked-part\0", "stderr": "printenv: write error\n"
    }))
    .await;
    let err = capture_credentials(&server.client("fm2_peer"), "peer-db")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EscrowError::ExecFailed { machine, exit_code: 1 } if machine == "m1"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "reading the environment of machine m1 failed with exit code 1"
    );
    assert!(!format!("{err:?}").contains("leaked-part"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_variables_are_named() {
    let server = peer(serde_json::json!({
        "exit_code": 0, "stdout": "SU_PASSWORD=su\0PATH=/bin\0", "stderr": ""
    }))
    .await;
    let err = capture_credentials(&server.client("fm2_peer"), "peer-db")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EscrowError::Missing { names, .. } if names == &["REPL_PASSWORD", "OPERATOR_PASSWORD"]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the environment of machine m1 has no REPL_PASSWORD, OPERATOR_PASSWORD; is this a Fly Stolon cluster with its secrets set?"
    );
    // The capture asked for exactly `printenv -0`, nothing in argv but that.
    let execs: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/exec"))
        .collect();
    assert_eq!(execs.len(), 1);
    let body = execs[0].body.clone().unwrap();
    assert_eq!(body["command"], serde_json::json!(CAPTURE_ARGV));
    assert!(body.get("stdin").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_api_without_values_suggests_manual_entry() {
    let server = common::CaptureServer::start(|request, _| match request.path.as_str() {
        "/v1/apps/peer-db/machines" => common::Reply::Json(
            200,
            Value::Array(vec![peer_machine("m1", "stopped", "leader")]),
        ),
        "/v1/apps/peer-db/secrets" => common::Reply::Json(
            200,
            serde_json::json!({"secrets": [
                {"name": "SU_PASSWORD", "digest": "d1"},
                {"name": "REPL_PASSWORD", "digest": "d2"}
            ]}),
        ),
        _ => common::Reply::Json(404, serde_json::json!({"error": "not found"})),
    })
    .await;
    let fly = server.client("fm2_peer");
    let err = capture_credentials(&fly, "peer-db").await.unwrap_err();
    assert!(matches!(err, EscrowError::AllStopped { .. }), "{err:?}");
    let err = capture_from_secrets_api(&fly, "peer-db").await.unwrap_err();
    assert!(matches!(err, EscrowError::ValuesHidden { .. }), "{err:?}");
    assert!(err.suggests_manual_entry());
}
