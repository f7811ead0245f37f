//! The Machine state machine, wait, leases, metadata, events, volumes — over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::*;
use serde_json::json;

async fn plain_machine(env: &Env, app: &str) -> String {
    env.create_app(app).await;
    let m = env
        .ok(
            "POST",
            &format!("/v1/apps/{app}/machines"),
            Some(json!({"region": "iad", "config": {"image": "nginx:1.27"}})),
        )
        .await;
    assert_eq!(m["state"], "created");
    m["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn lifecycle_goes_through_transient_states() {
    let env = start().await;
    let id = plain_machine(&env, "web-1").await;
    env.advance(3);
    assert_eq!(env.machine("web-1", &id).await["state"], "started");

    env.ok(
        "POST",
        &format!("/v1/apps/web-1/machines/{id}/stop"),
        Some(json!({"signal": "SIGTERM", "timeout": "30s"})),
    )
    .await;
    assert_eq!(env.machine("web-1", &id).await["state"], "stopping");
    env.advance(3);
    assert_eq!(env.machine("web-1", &id).await["state"], "stopped");

    // Starting a started machine is refused; starting a stopped one passes through `starting`.
    let r = env
        .call("POST", &format!("/v1/apps/web-1/machines/{id}/start"), None)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["previous_state"], "stopped");
    assert_eq!(env.machine("web-1", &id).await["state"], "starting");
    env.advance(3);
    let r = env
        .call("POST", &format!("/v1/apps/web-1/machines/{id}/start"), None)
        .await;
    assert_eq!(r.status, 412);
    assert!(r.body["error"].as_str().unwrap().contains("'started'"));

    // Destroying a running machine needs force.
    let r = env
        .call("DELETE", &format!("/v1/apps/web-1/machines/{id}"), None)
        .await;
    assert_eq!(r.status, 412);
    env.ok(
        "DELETE",
        &format!("/v1/apps/web-1/machines/{id}?force=true"),
        None,
    )
    .await;
    assert_eq!(env.machine("web-1", &id).await["state"], "destroying");
    env.advance(3);
    let list = env.ok("GET", "/v1/apps/web-1/machines", None).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "destroyed machines are hidden"
    );
    let list = env
        .ok("GET", "/v1/apps/web-1/machines?include_deleted=true", None)
        .await;
    assert_eq!(list[0]["state"], "destroyed");

    let events = env
        .ok(
            "GET",
            &format!("/v1/apps/web-1/machines/{id}/events?limit=50"),
            None,
        )
        .await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"destroy"), "newest first: {kinds:?}");
    assert!(
        kinds.contains(&"launch") && kinds.contains(&"exit") && kinds.contains(&"stop"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn update_creates_a_new_version_and_restart_keeps_it() {
    let env = start().await;
    let id = plain_machine(&env, "web-2").await;
    env.advance(3);
    let before = env.machine("web-2", &id).await;
    let v0 = before["instance_id"].as_str().unwrap().to_string();
    assert_eq!(v0.len(), 26);
    let m = env
        .ok(
            "POST",
            &format!("/v1/apps/web-2/machines/{id}"),
            Some(json!({"config": {"image": "nginx:1.28", "env": {"A": "1"}}})),
        )
        .await;
    assert_eq!(m["state"], "replacing");
    assert_ne!(m["instance_id"], v0);
    assert_eq!(m["config"]["image"], "nginx:1.28");
    assert_eq!(m["image_ref"]["tag"], "1.28");
    env.advance(3);
    env.ok(
        "POST",
        &format!("/v1/apps/web-2/machines/{id}/restart"),
        None,
    )
    .await;
    assert_eq!(env.machine("web-2", &id).await["state"], "restarting");
    env.advance(5);
    let after = env.machine("web-2", &id).await;
    assert_eq!(after["state"], "started");
    assert_eq!(after["instance_id"], m["instance_id"]);
}

#[tokio::test]
async fn wait_long_polls_and_caps_at_60s() {
    let env = start().await;
    let id = plain_machine(&env, "web-3").await;
    // The manual clock jumps to the next transition while a wait is pending.
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/web-3/machines/{id}/wait?state=started&timeout=60"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["ok"], true);
    assert_eq!(r.body["state"], "started");
    let version = r.body["version"].as_str().unwrap().to_string();

    // The notes: timeout max 60 (flaps answers invalid_argument above it), although the spec sets no maximum.
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/web-3/machines/{id}/wait?state=started&timeout=61"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .starts_with("invalid_argument"));
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/web-3/machines/{id}/wait?state=bogus"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);

    // Nothing will stop the machine: 408 after the timeout (simulated).
    let t0 = env.sim.now();
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/web-3/machines/{id}/wait?state=stopped&timeout=5"),
            None,
        )
        .await;
    assert_eq!(r.status, 408);
    assert!(r.body["error"]
        .as_str()
        .unwrap()
        .starts_with("deadline_exceeded"));
    assert_eq!((env.sim.now() - t0).whole_seconds(), 5);

    // Waiting for `stopped` of a version that was replaced succeeds.
    env.ok(
        "POST",
        &format!("/v1/apps/web-3/machines/{id}"),
        Some(json!({"config": {"image": "nginx:1.28"}})),
    )
    .await;
    let r = env
        .call(
            "GET",
            &format!(
                "/v1/apps/web-3/machines/{id}/wait?state=stopped&version={version}&timeout=10"
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // settled: any persistent state.
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/web-3/machines/{id}/wait?state=settled&timeout=10"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["state"], "started");
}

#[tokio::test]
async fn leases_use_nonces_and_409() {
    let env = start().await;
    let id = plain_machine(&env, "web-4").await;
    env.advance(3);
    let base = format!("/v1/apps/web-4/machines/{id}");
    let r = env.call("GET", &format!("{base}/lease"), None).await;
    assert_eq!(r.status, 404);
    let r = env
        .call(
            "POST",
            &format!("{base}/lease"),
            Some(json!({"ttl": 120, "description": "walden restore"})),
        )
        .await;
    assert_eq!(r.status, 201);
    // The wire shape is {"status":"success","data":{…}} (notes/fly-go), not the spec's bare Lease.
    assert_eq!(r.body["status"], "success");
    let nonce = r.body["data"]["nonce"].as_str().unwrap().to_string();
    assert!(r.body["data"]["expires_at"].as_i64().unwrap() > 0);

    // A second acquire without the nonce conflicts.
    let r = env
        .call("POST", &format!("{base}/lease"), Some(json!({"ttl": 30})))
        .await;
    assert_eq!(r.status, 409);
    assert!(r.body["error"].as_str().unwrap().contains("lease"));
    // Mutations without / with a wrong nonce conflict; with the nonce they pass.
    let r = env.call("POST", &format!("{base}/stop"), None).await;
    assert_eq!(r.status, 409);
    let r = env
        .call_h(
            "POST",
            &format!("{base}/stop"),
            None,
            &[("fly-machine-lease-nonce", "nope")],
        )
        .await;
    assert_eq!(r.status, 409);
    let r = env
        .call_h(
            "POST",
            &format!("{base}/stop"),
            None,
            &[("fly-machine-lease-nonce", &nonce)],
        )
        .await;
    assert_eq!(r.status, 200);
    // Refresh with the nonce; the machine shows the stripped lease.
    let r = env
        .call_h(
            "POST",
            &format!("{base}/lease?ttl=300"),
            None,
            &[("fly-machine-lease-nonce", &nonce)],
        )
        .await;
    assert_eq!(r.status, 201);
    let m = env.machine("web-4", &id).await;
    assert_eq!(m["lease"]["description"], "walden restore");
    // Release needs the nonce.
    let r = env.call("DELETE", &format!("{base}/lease"), None).await;
    assert_eq!(r.status, 400);
    let r = env
        .call_h(
            "DELETE",
            &format!("{base}/lease"),
            None,
            &[("fly-machine-lease-nonce", "wrong")],
        )
        .await;
    assert_eq!(r.status, 409);
    let r = env
        .call_h(
            "DELETE",
            &format!("{base}/lease"),
            None,
            &[("fly-machine-lease-nonce", &nonce)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["data"]["ok"], true);
    // Leases expire in simulated time.
    env.ok("POST", &format!("{base}/lease?ttl=10"), None).await;
    env.advance(11);
    assert_eq!(
        env.call("GET", &format!("{base}/lease"), None).await.status,
        404
    );

    // lease_ttl on create returns the nonce once.
    let m = env
        .ok(
            "POST",
            "/v1/apps/web-4/machines",
            Some(json!({"config": {"image": "nginx"}, "lease_ttl": 60})),
        )
        .await;
    assert!(m["nonce"].as_str().is_some_and(|n| !n.is_empty()));
}

#[tokio::test]
async fn metadata_and_list_filters() {
    let env = start().await;
    let id = plain_machine(&env, "web-5").await;
    let base = format!("/v1/apps/web-5/machines/{id}");
    let r = env
        .call(
            "POST",
            &format!("{base}/metadata/walden_run"),
            Some(json!({"value": "run-42"})),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        env.ok("GET", &format!("{base}/metadata/walden_run"), None)
            .await["value"],
        "run-42"
    );
    let md = env.ok("GET", &format!("{base}/metadata"), None).await;
    assert_eq!(md["walden_run"], "run-42");
    // Filtering by metadata finds it (how a client looks before retrying an ambiguous create).
    let list = env
        .ok(
            "GET",
            "/v1/apps/web-5/machines?metadata.walden_run=run-42",
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let list = env
        .ok(
            "GET",
            "/v1/apps/web-5/machines?metadata.walden_run=other",
            None,
        )
        .await;
    assert_eq!(list.as_array().unwrap().len(), 0);
    let list = env
        .ok("GET", "/v1/apps/web-5/machines?state=started,stopped", None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 0, "still `created`");
    // Stale machine_version → 412; PATCH merges and null removes.
    let r = env
        .call(
            "PATCH",
            &format!("{base}/metadata"),
            Some(json!({"metadata": {"a": "1"}, "machine_version": "01OLD"})),
        )
        .await;
    assert_eq!(r.status, 412);
    let r = env
        .call(
            "PATCH",
            &format!("{base}/metadata"),
            Some(json!({"metadata": {"a": "1", "walden_run": null}})),
        )
        .await;
    assert_eq!(r.status, 204);
    let md = env.ok("GET", &format!("{base}/metadata"), None).await;
    assert_eq!(md, json!({"a": "1"}));
    let r = env
        .call("DELETE", &format!("{base}/metadata/a"), None)
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        env.call("GET", &format!("{base}/metadata/a"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn volumes_attach_to_one_machine() {
    let env = start().await;
    env.create_app("vols").await;
    let vol = env
        .ok(
            "POST",
            "/v1/apps/vols/volumes",
            Some(json!({"name": "pg_data", "region": "iad", "size_gb": 10})),
        )
        .await;
    let vid = vol["id"].as_str().unwrap().to_string();
    assert!(vid.starts_with("vol_"));
    let cfg = json!({"image": "nginx", "mounts": [{"volume": vid, "path": "/data"}]});
    let m = env
        .ok(
            "POST",
            "/v1/apps/vols/machines",
            Some(json!({"config": cfg})),
        )
        .await;
    assert_eq!(
        m["region"], "iad",
        "a mount pins the machine to the volume's region"
    );
    let v = env
        .ok("GET", &format!("/v1/apps/vols/volumes/{vid}"), None)
        .await;
    assert_eq!(v["attached_machine_id"], m["id"]);
    // A second machine cannot take the same volume; the volume cannot be deleted while attached.
    let r = env
        .call(
            "POST",
            "/v1/apps/vols/machines",
            Some(json!({"config": cfg})),
        )
        .await;
    assert_eq!(r.status, 412);
    let r = env
        .call("DELETE", &format!("/v1/apps/vols/volumes/{vid}"), None)
        .await;
    assert_eq!(r.status, 412);
    // Wrong region for the volume.
    let v2 = env
        .ok(
            "POST",
            "/v1/apps/vols/volumes",
            Some(json!({"name": "pg_data", "region": "ord"})),
        )
        .await;
    let r = env
        .call("POST", "/v1/apps/vols/machines", Some(json!({"region": "iad", "config": {"image": "nginx", "mounts": [{"volume": v2["id"], "path": "/data"}]}})))
        .await;
    assert_eq!(r.status, 400);
    // Destroy the machine → the volume detaches and can be deleted.
    let id = m["id"].as_str().unwrap();
    env.ok(
        "DELETE",
        &format!("/v1/apps/vols/machines/{id}?force=true"),
        None,
    )
    .await;
    env.advance(5);
    let r = env
        .call("DELETE", &format!("/v1/apps/vols/volumes/{vid}"), None)
        .await;
    assert_eq!(r.status, 200);
    let list = env.ok("GET", "/v1/apps/vols/volumes", None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn apps_list_get_delete_and_tokens_current() {
    let env = start().await;
    env.create_app("alpha").await;
    env.create_app("beta").await;
    let r = env
        .ok("GET", &format!("/v1/apps?org_slug={ORG}"), None)
        .await;
    assert_eq!(r["total_apps"], 2);
    assert_eq!(r["apps"][0]["organization"]["slug"], ORG);
    let r = env
        .ok(
            "GET",
            &format!("/v1/apps?org_slug={ORG}&app_role=postgres_cluster"),
            None,
        )
        .await;
    assert_eq!(r["total_apps"], 2);
    assert_eq!(env.call("GET", "/v1/apps", None).await.status, 400);
    let a = env.ok("GET", "/v1/apps/alpha", None).await;
    assert_eq!(a["name"], "alpha");
    assert_eq!(env.call("DELETE", "/v1/apps/alpha", None).await.status, 202);
    assert_eq!(env.call("GET", "/v1/apps/alpha", None).await.status, 404);
    let t = env.ok("GET", "/v1/tokens/current", None).await;
    assert_eq!(t["tokens"][0]["org_slug"], ORG);

    // An app-scoped token sees only its app.
    env.sim.add_app_token("deploy_tok", ORG, &["beta"]);
    let mut other = env
        .http
        .get(env.url("/v1/apps/gamma"))
        .bearer_auth("deploy_tok")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    env.create_app("gamma").await;
    other = env
        .http
        .get(env.url("/v1/apps/gamma"))
        .bearer_auth("deploy_tok")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    other = env
        .http
        .get(env.url("/v1/apps/beta"))
        .bearer_auth("deploy_tok")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}
