//! Machines API behaviours where Fly is less kind than a naive emulator, each checked against the
//! upstream source named in the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::*;
use flysim::Faults;
use serde_json::json;

async fn nginx(env: &Env, app: &str) -> String {
    env.create_app(app).await;
    let path = format!("/v1/apps/{app}/machines");
    let m = env
        .ok("POST", &path, Some(json!({"config": {"image": "nginx"}})))
        .await;
    env.advance(3);
    m["id"].as_str().unwrap().to_string()
}

/// "machine was in a non-started state prior to the update so leaving the new version stopped" (a Fly
/// log line); flyctl `internal/command/deploy/machines_launchinput.go::shouldSkipLaunch` relaunches only
/// started, starting and failed Machines, and fly-go sends `skip_launch` with `omitempty`.
#[tokio::test]
async fn an_update_of_a_stopped_machine_leaves_it_stopped() {
    let env = start().await;
    let id = nginx(&env, "web-stopped").await;
    let base = format!("/v1/apps/web-stopped/machines/{id}");
    env.ok("POST", &format!("{base}/stop"), None).await;
    env.advance(10);
    assert_eq!(env.machine("web-stopped", &id).await["state"], "stopped");
    let update = json!({"config": {"image": "nginx:2"}, "skip_launch": false});
    let m = env.ok("POST", &base, Some(update)).await;
    env.advance(10);
    let now = env.machine("web-stopped", &id).await;
    assert_eq!(now["state"], "stopped");
    assert_eq!(now["config"]["image"], "nginx:2");
    assert_eq!(
        now["instance_id"], m["instance_id"],
        "the new version exists"
    );
    // A started one is relaunched.
    env.ok("POST", &format!("{base}/start"), None).await;
    env.advance(10);
    env.ok("POST", &base, Some(json!({"config": {"image": "nginx:3"}})))
        .await;
    env.advance(10);
    assert_eq!(env.machine("web-stopped", &id).await["state"], "started");
}

/// flyctl `internal/command/postgres/failover.go` and `internal/command/machine/leases.go` treat
/// " lease not found" as the answer for a Machine without a live lease: releasing an expired lease is
/// a 404.
#[tokio::test]
async fn releasing_an_expired_lease_is_404() {
    let env = start().await;
    let id = nginx(&env, "web-lease").await;
    let lease = format!("/v1/apps/web-lease/machines/{id}/lease");
    let held = env.ok("POST", &format!("{lease}?ttl=10"), None).await;
    let nonce = held["data"]["nonce"].as_str().unwrap().to_string();
    env.advance(11);
    let nonce_header = [("fly-machine-lease-nonce", nonce.as_str())];
    let r = env.call_h("DELETE", &lease, None, &nonce_header).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .contains(" lease not found"));
}

/// fly-go `machine_types.go::MachineRequest.GetExitCode` prefers `MonitorEvent.exit_event`: exits can
/// come nested there, with nothing at `request.exit_event`.
#[tokio::test]
async fn exit_events_may_come_nested_under_monitor_event() {
    let env = start().await;
    env.sim.set_faults(Faults {
        monitor_exit_events: true,
        ..Faults::default()
    });
    let id = nginx(&env, "web-oom").await;
    env.sim.inject_oom("web-oom", &id).unwrap();
    env.advance(3);
    let m = env.machine("web-oom", &id).await;
    let exit = m["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "exit")
        .unwrap()
        .clone();
    assert!(exit["request"]["exit_event"].is_null(), "{exit}");
    let nested = &exit["request"]["MonitorEvent"]["exit_event"];
    assert_eq!(nested["oom_killed"], true);
    assert_eq!(nested["exit_code"], 137);
}

/// flyctl `flypg/launcher.go::generateConsulURL` gets the image's `FLY_CONSUL_URL` from GraphQL,
/// with fly-go `resource_postgres.go::EnablePostgresConsul`'s exact mutation.
#[tokio::test]
async fn graphql_enable_postgres_consul_gives_a_consul_url_the_image_boots_with() {
    let env = start().await;
    env.create_app("pg-consul").await;
    let mutation = "\n\t\tmutation($appName: ID!) {\n\t\t\tenablePostgresConsul(input: {appId: $appName}) {\n\t\t\t\tconsulUrl\n\t\t\t}\n\t\t}\n\t";
    let body = json!({"query": mutation, "variables": {"appName": "pg-consul"}});
    let r = env.call("POST", "/graphql", Some(body.clone())).await;
    assert_eq!(r.status, 200);
    let url = r.body["data"]["enablePostgresConsul"]["consulUrl"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("https://:"), "{url}");
    assert!(url.contains("/pg-consul-"), "{url}");
    let again = env.call("POST", "/graphql", Some(body)).await;
    assert_eq!(again.body["data"]["enablePostgresConsul"]["consulUrl"], url);

    // The URL is what the image needs to boot.
    let dir = tempfile::tempdir().unwrap();
    let mut secrets = pg_secrets("su", "repl", "op", dir.path().to_str().unwrap());
    secrets["FLY_CONSUL_URL"] = json!(url);
    let v = env.set_secrets("pg-consul", secrets).await;
    let id = env
        .pg_machine("pg-consul", "iad", "flyio/postgres:14.6", v)
        .await;
    env.advance(20); // ready in seconds, reported by the first 15 s check run
    assert_eq!(
        env.role("pg-consul", &id).await,
        ("passing".into(), "leader".into())
    );

    // Errors come as GraphQL errors.
    let body = json!({"query": mutation, "variables": {"appName": "no-such-app"}});
    let r = env.call("POST", "/graphql", Some(body)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert!(r.body["data"].is_null());
}

/// fly-go `flaps/flaps_apps.go`: flyctl follows `CreateApp` with `WaitForApp`, retrying 404 and 401,
/// because a new app is not visible at once.
#[tokio::test]
async fn a_new_app_is_invisible_for_a_short_while() {
    let env = start().await;
    let body = json!({"name": "fresh-app", "org_slug": ORG});
    let r = env.call("POST", "/v1/apps", Some(body)).await;
    assert_eq!(r.status, 201);
    let r = env.call("GET", "/v1/apps/fresh-app", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    // The 404 moved the manual clock past the delay, as a client that waits would see it.
    let body = json!({"name": "fresh-app-2", "org_slug": ORG});
    env.call("POST", "/v1/apps", Some(body)).await;
    let secrets = json!({"values": {"A": "1"}});
    let r = env
        .call("POST", "/v1/apps/fresh-app-2/secrets", Some(secrets))
        .await;
    assert_eq!(r.status, 404, "the app's resources too");
    env.wait_for_app("fresh-app").await;
    let r = env.call("GET", "/v1/apps/fresh-app", None).await;
    assert_eq!(r.status, 200);
}

/// flyctl `internal/appsecrets/minvers.go` hands every launch and update the version its own secrets
/// write returned: the Machine gets exactly that version, not the newest.
#[tokio::test]
async fn a_machine_gets_exactly_its_min_secrets_version() {
    let env = start().await;
    env.create_app("sec-app").await;
    let first = env.set_secrets("sec-app", json!({"TOKEN": "one"})).await;
    let second = env.set_secrets("sec-app", json!({"TOKEN": "two"})).await;
    assert!(second > first);
    let create = json!({"config": {"image": "nginx"}, "min_secrets_version": first});
    let m = env
        .ok("POST", "/v1/apps/sec-app/machines", Some(create))
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    let out = env.exec("sec-app", &id, &["printenv", "TOKEN"]).await;
    assert_eq!(out["stdout"], "one\n");
    let update = json!({"config": {"image": "nginx"}, "min_secrets_version": second});
    env.ok(
        "POST",
        &format!("/v1/apps/sec-app/machines/{id}"),
        Some(update),
    )
    .await;
    env.advance(5);
    let out = env.exec("sec-app", &id, &["printenv", "TOKEN"]).await;
    assert_eq!(out["stdout"], "two\n");
}
