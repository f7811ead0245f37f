//! Contract: every endpoint the emulator serves, requests and responses both validated against the
//! OpenAPI document (strict: unknown fields are named). Every other test's responses go through the same
//! check in `common::Env::call`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::*;
use serde_json::{json, Value};

async fn checked(
    env: &Env,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Resp {
    let names: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
    if let Err(v) = contract().check_request_with_headers(method, path, &names, body.as_ref()) {
        panic!("test request {method} {path} breaks the contract: {v}");
    }
    env.call_h(method, path, body, headers).await
}

#[test]
fn the_check_is_live() {
    // A negative control, so a silently disabled validator cannot pass the suite.
    let err = contract()
        .check_response(
            "GET",
            "/v1/apps/x/machines/y",
            200,
            Some(&json!({"id": "y", "state": 5, "bogus": true})),
        )
        .unwrap_err();
    assert!(err.mentions("state"), "{err}");
    assert!(err.mentions("bogus"), "{err}");
    let err = contract()
        .check_response("GET", "/v1/apps/x", 404, Some(&json!({"message": "x"})))
        .unwrap_err();
    assert!(err.mentions("message"), "{err}");
}

#[tokio::test]
async fn every_endpoint_speaks_the_document() {
    let env = start().await;
    let dir = tempfile::tempdir().unwrap();
    let ok = |r: &Resp, want: u16| assert_eq!(r.status, want, "{}", r.body);

    let r = checked(
        &env,
        "POST",
        "/v1/apps",
        Some(json!({"name": "ct-db", "org_slug": ORG, "app_role_id": "postgres_cluster"})),
        &[],
    )
    .await;
    ok(&r, 201);
    // A new app is not visible at once: wait as flyctl does (fly-go `WaitForApp`).
    env.wait_for_app("ct-db").await;
    ok(
        &checked(&env, "GET", &format!("/v1/apps?org_slug={ORG}"), None, &[]).await,
        200,
    );
    ok(
        &checked(&env, "GET", "/v1/apps/ct-db", None, &[]).await,
        200,
    );
    let r = checked(
        &env,
        "POST",
        "/v1/apps/ct-db/secrets",
        Some(json!({"values": pg_secrets("a", "b", "c", dir.path().to_str().unwrap())})),
        &[],
    )
    .await;
    ok(&r, 200);
    let v = r.body["version"].as_u64().unwrap();
    ok(
        &checked(&env, "GET", "/v1/apps/ct-db/secrets", None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "POST",
            "/v1/apps/ct-db/secrets/EXTRA",
            Some(json!({"value": "x"})),
            &[],
        )
        .await,
        201,
    );
    ok(
        &checked(&env, "GET", "/v1/apps/ct-db/secrets/EXTRA", None, &[]).await,
        200,
    );
    ok(
        &checked(&env, "DELETE", "/v1/apps/ct-db/secrets/EXTRA", None, &[]).await,
        200,
    );

    let vol = checked(
        &env,
        "POST",
        "/v1/apps/ct-db/volumes",
        Some(json!({"name": "pg_data", "region": "iad", "size_gb": 1, "encrypted": true})),
        &[],
    )
    .await;
    ok(&vol, 200);
    let vid = vol.body["id"].as_str().unwrap().to_string();
    ok(
        &checked(&env, "GET", "/v1/apps/ct-db/volumes", None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "GET",
            &format!("/v1/apps/ct-db/volumes/{vid}"),
            None,
            &[],
        )
        .await,
        200,
    );

    let cfg = json!({
        "image": "flyio/postgres:14.6", "env": {"PRIMARY_REGION": "iad"},
        "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
        "mounts": [{"volume": vid, "path": "/data"}], "restart": {"policy": "always"},
        "metadata": {"walden_run": "r1"},
        "checks": {"role": {"type": "http", "port": 5500, "path": "/flycheck/role", "interval": "15s", "timeout": "10s"}}
    });
    let m = checked(
        &env,
        "POST",
        "/v1/apps/ct-db/machines",
        Some(json!({"name": "ct-1", "region": "iad", "config": cfg, "min_secrets_version": v})),
        &[],
    )
    .await;
    ok(&m, 200);
    let id = m.body["id"].as_str().unwrap().to_string();
    let base = format!("/v1/apps/ct-db/machines/{id}");
    ok(
        &checked(
            &env,
            "GET",
            &format!("{base}/wait?state=started&timeout=60"),
            None,
            &[],
        )
        .await,
        200,
    );
    env.advance(10);
    ok(&checked(&env, "GET", "/v1/apps/ct-db/machines?include_deleted=false&region=iad&state=started&metadata.walden_run=r1", None, &[]).await, 200);
    ok(&checked(&env, "GET", &base, None, &[]).await, 200);
    ok(
        &checked(&env, "GET", &format!("{base}/events?limit=50"), None, &[]).await,
        200,
    );
    let ex = checked(
        &env,
        "POST",
        &format!("{base}/exec"),
        Some(json!({"command": ["printenv", "SU_PASSWORD"], "timeout": 10})),
        &[],
    )
    .await;
    ok(&ex, 200);
    assert_eq!(ex.body["stdout"], "a\n");

    // Lease: acquire → use → refresh → release.
    let l = checked(
        &env,
        "POST",
        &format!("{base}/lease"),
        Some(json!({"ttl": 60, "description": "contract"})),
        &[],
    )
    .await;
    ok(&l, 201);
    let nonce = l.body["data"]["nonce"].as_str().unwrap().to_string();
    ok(
        &checked(&env, "GET", &format!("{base}/lease"), None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "POST",
            &format!("{base}/lease"),
            Some(json!({"ttl": 30})),
            &[],
        )
        .await,
        409,
    );
    let nh = [("fly-machine-lease-nonce", nonce.as_str())];
    ok(
        &checked(
            &env,
            "POST",
            &format!("{base}/lease"),
            Some(json!({"ttl": 120})),
            &nh,
        )
        .await,
        201,
    );
    ok(
        &checked(
            &env,
            "POST",
            &format!("{base}/stop"),
            Some(json!({"signal": "SIGTERM"})),
            &nh,
        )
        .await,
        200,
    );
    ok(
        &checked(
            &env,
            "GET",
            &format!("{base}/wait?state=stopped&timeout=30"),
            None,
            &[],
        )
        .await,
        200,
    );
    ok(
        &checked(&env, "POST", &format!("{base}/start"), None, &nh).await,
        200,
    );
    ok(
        &checked(&env, "DELETE", &format!("{base}/lease"), None, &nh).await,
        200,
    );
    env.advance(10);
    ok(
        &checked(&env, "POST", &format!("{base}/restart"), None, &[]).await,
        200,
    );
    env.advance(10);
    ok(
        &checked(&env, "POST", &format!("{base}/cordon"), None, &[]).await,
        200,
    );
    ok(
        &checked(&env, "POST", &format!("{base}/uncordon"), None, &[]).await,
        200,
    );

    // Metadata.
    ok(
        &checked(&env, "GET", &format!("{base}/metadata"), None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "POST",
            &format!("{base}/metadata/k"),
            Some(json!({"value": "v"})),
            &[],
        )
        .await,
        204,
    );
    ok(
        &checked(&env, "GET", &format!("{base}/metadata/k"), None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "PATCH",
            &format!("{base}/metadata"),
            Some(json!({"metadata": {"x": "y"}})),
            &[],
        )
        .await,
        204,
    );
    ok(
        &checked(
            &env,
            "PUT",
            &format!("{base}/metadata"),
            Some(json!({"metadata": {"x": "z"}})),
            &[],
        )
        .await,
        204,
    );
    ok(
        &checked(&env, "DELETE", &format!("{base}/metadata/x"), None, &[]).await,
        204,
    );

    // Update with min_secrets_version, suspend, destroy, errors.
    let cur = env.machine("ct-db", &id).await;
    let upd = checked(&env, "POST", &base, Some(json!({"config": cur["config"], "min_secrets_version": v, "current_version": cur["instance_id"]})), &[]).await;
    ok(&upd, 200);
    env.advance(10);
    ok(
        &checked(&env, "POST", &format!("{base}/suspend"), None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "GET",
            &format!("{base}/wait?state=suspended&timeout=10"),
            None,
            &[],
        )
        .await,
        200,
    );
    ok(
        &checked(
            &env,
            "GET",
            &format!("{base}/wait?state=started&timeout=2"),
            None,
            &[],
        )
        .await,
        408,
    );
    ok(
        &checked(&env, "DELETE", &format!("{base}?force=true"), None, &[]).await,
        200,
    );
    ok(
        &checked(
            &env,
            "GET",
            &format!("{base}/wait?state=destroyed&timeout=30"),
            None,
            &[],
        )
        .await,
        200,
    );
    ok(
        &checked(
            &env,
            "DELETE",
            &format!("/v1/apps/ct-db/volumes/{vid}"),
            None,
            &[],
        )
        .await,
        200,
    );
    ok(
        &checked(&env, "GET", "/v1/tokens/current", None, &[]).await,
        200,
    );
    ok(&checked(&env, "GET", "/v1/apps/nope", None, &[]).await, 404);
    ok(
        &checked(
            &env,
            "POST",
            "/v1/apps",
            Some(json!({"name": "Bad_Name", "org_slug": ORG})),
            &[],
        )
        .await,
        422,
    );
    ok(
        &checked(&env, "DELETE", "/v1/apps/ct-db", None, &[]).await,
        202,
    );
}
