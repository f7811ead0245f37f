//! Bad input gets Fly's status codes and `{"error": …}` bodies; secrets reach Machines only on update.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn auth_errors_are_401_with_flys_text() {
    let env = start().await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("FlyV1 fm2_wrong"),
        Some("Basic abc"),
        Some(TOKEN),
    ] {
        let mut rb = env.http.get(env.url("/v1/tokens/current"));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().contains_key("fly-request-id"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": "Authenticate: token validation error"})
        );
    }
    // Both schemes work; a comma list (macaroons + others) is accepted if one matches.
    for h in [
        format!("Bearer {TOKEN}"),
        format!("FlyV1 {TOKEN}"),
        format!("FlyV1 fm2_other,{TOKEN}"),
    ] {
        let r = env
            .http
            .get(env.url("/v1/tokens/current"))
            .header("Authorization", h)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn malformed_json_unknown_fields_bad_names() {
    let env = start().await;
    let r = env
        .http
        .post(env.url("/v1/apps"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body("{\"name\": \"x\",")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("CreateAppRequest"),
        "{body}"
    );

    // Fly's app-name rules → 422 Validation failed.
    for bad in ["Upper", "a_b", "-lead", "trail-", "x", &"a".repeat(64)] {
        let r = env
            .call(
                "POST",
                "/v1/apps",
                Some(json!({"name": bad, "org_slug": ORG})),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}");
        assert!(
            r.body["error"]
                .as_str()
                .unwrap()
                .starts_with("Validation failed"),
            "{}",
            r.body
        );
    }
    env.create_app("good-name-1").await;
    let r = env
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "good-name-1", "org_slug": ORG})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.body["error"],
        "Validation failed: Name has already been taken"
    );
    let r = env
        .call(
            "POST",
            "/v1/apps",
            Some(json!({"name": "other", "org_slug": "not-mine"})),
        )
        .await;
    assert_eq!(r.status, 403);

    // Unknown fields are ignored as Go's encoding/json does (the request succeeds; unknown config keys are
    // not echoed back).
    let r = env
        .call(
            "POST",
            "/v1/apps/good-name-1/machines",
            Some(json!({"config": {"image": "nginx", "bogus": 1}, "also_bogus": true})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["config"].get("bogus").is_none());
    // Wrong types and missing image are 400 with a message naming the field.
    let r = env
        .call(
            "POST",
            "/v1/apps/good-name-1/machines",
            Some(json!({"config": {"image": "nginx"}, "region": 5})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .call(
            "POST",
            "/v1/apps/good-name-1/machines",
            Some(json!({"config": {"env": {}}})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("config.image"));
    let r = env
        .call(
            "POST",
            "/v1/apps/good-name-1/machines",
            Some(json!({"config": {"image": "x", "env": {"A": 1}}})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("config.env"));
    // Unknown things are 404 with an error body.
    let r = env.call("GET", "/v1/apps/nope/machines", None).await;
    assert_eq!(r.status, 404);
    assert!(r.body["error"].as_str().is_some());
    let r = env
        .call("GET", "/v1/apps/good-name-1/machines/0000", None)
        .await;
    assert_eq!(r.status, 404);
    let r = env.call("GET", "/v1/nothing/here", None).await;
    assert_eq!(r.status, 404);
    assert!(r.request_id.is_some());
    // Exec needs a command.
    let id = env.ok("GET", "/v1/apps/good-name-1/machines", None).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.advance(3);
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/good-name-1/machines/{id}/exec"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn secrets_reach_a_machine_only_on_update() {
    let env = start().await;
    env.create_app("sec").await;
    let v1 = env
        .set_secrets("sec", json!({"A": "one", "B": "bee"}))
        .await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/sec/machines",
            Some(json!({"config": {"image": "nginx"}, "min_secrets_version": v1})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    let out = env.exec("sec", &id, &["printenv", "A"]).await;
    assert_eq!(out["stdout"], "one\n");
    assert_eq!(out["exit_code"], 0);

    // Set + unset in one call; version goes up; list shows no values.
    let v2 = env.set_secrets("sec", json!({"A": "two", "B": null})).await;
    assert!(v2 > v1);
    let list = env.ok("GET", "/v1/apps/sec/secrets", None).await;
    let names: Vec<&str> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["A"]);
    assert!(list["secrets"][0].get("value").is_none());

    // The running machine still sees the old values (restart does not pick them up either).
    assert_eq!(
        env.exec("sec", &id, &["printenv", "A"]).await["stdout"],
        "one\n"
    );
    env.ok("POST", &format!("/v1/apps/sec/machines/{id}/restart"), None)
        .await;
    env.advance(5);
    assert_eq!(
        env.exec("sec", &id, &["printenv", "A"]).await["stdout"],
        "one\n"
    );
    let b = env.exec("sec", &id, &["printenv", "B"]).await;
    assert_eq!(b["stdout"], "bee\n");

    // A min_secrets_version newer than the app's is refused.
    let cfg = env.machine("sec", &id).await["config"].clone();
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/sec/machines/{id}"),
            Some(json!({"config": cfg, "min_secrets_version": v2 + 5})),
        )
        .await;
    assert_eq!(r.status, 400);
    // Update with the unchanged config + min_secrets_version → the new values.
    env.ok(
        "POST",
        &format!("/v1/apps/sec/machines/{id}"),
        Some(json!({"config": cfg, "min_secrets_version": v2})),
    )
    .await;
    env.advance(3);
    assert_eq!(
        env.exec("sec", &id, &["printenv", "A"]).await["stdout"],
        "two\n"
    );
    let b = env.exec("sec", &id, &["printenv", "B"]).await;
    assert_eq!(
        b["exit_code"], 1,
        "printenv of an unset var exits 1 (and exec still answers 200)"
    );

    // Per-secret endpoints.
    let r = env
        .call(
            "POST",
            "/v1/apps/sec/secrets/C",
            Some(json!({"value": "see"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body["version"].as_u64().unwrap() > v2);
    let s = env
        .ok("GET", "/v1/apps/sec/secrets/C?show_secrets=true", None)
        .await;
    assert_eq!(s["value"], "see");
    let r = env.call("DELETE", "/v1/apps/sec/secrets/C", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        env.call("GET", "/v1/apps/sec/secrets/C", None).await.status,
        404
    );
    let r = env
        .call(
            "POST",
            "/v1/apps/sec/secrets",
            Some(json!({"values": {"bad-name": "x"}})),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn exec_is_argv_never_a_pasted_string() {
    let env = start().await;
    env.create_app("ex").await;
    env.set_secrets("ex", json!({"S": "a b; echo pwned"})).await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/ex/machines",
            Some(json!({"config": {"image": "nginx"}, "min_secrets_version": 1})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(3);
    // An argument with shell metacharacters stays one argument.
    let out = env
        .exec("ex", &id, &["echo", "x; printenv S", "$(hostname)"])
        .await;
    assert_eq!(out["stdout"], "x; printenv S $(hostname)\n");
    // Positional parameters keep arguments intact inside sh -c.
    let out = env
        .exec(
            "ex",
            &id,
            &[
                "sh",
                "-c",
                "printf_not_here=1; echo \"$1\" \"$#\"",
                "sh",
                "a b  c",
            ],
        )
        .await;
    assert_eq!(out["stdout"], "a b  c 1\n");
    // Expanded values are data, not code.
    let out = env.exec("ex", &id, &["sh", "-c", "echo \"$S\""]).await;
    assert_eq!(out["stdout"], "a b; echo pwned\n");
    // Unknown programs: 127 and 200.
    let out = env.exec("ex", &id, &["definitely-not-here"]).await;
    assert_eq!(out["exit_code"], 127);
    // The deprecated string form is split with quotes honoured.
    let out = env
        .ok(
            "POST",
            &format!("/v1/apps/ex/machines/{id}/exec"),
            Some(json!({"cmd": "echo 'one two' three"})),
        )
        .await;
    assert_eq!(out["stdout"], "one two three\n");
    // Exec on a stopped machine is refused.
    env.ok("POST", &format!("/v1/apps/ex/machines/{id}/stop"), None)
        .await;
    env.advance(3);
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/ex/machines/{id}/exec"),
            Some(json!({"command": ["true"]})),
        )
        .await;
    assert_eq!(r.status, 412);
}

#[tokio::test]
async fn logs_endpoint_pages_with_next_token() {
    let env = start().await;
    env.create_app("lg").await;
    let dir = tempfile::tempdir().unwrap();
    let v = env
        .set_secrets(
            "lg",
            pg_secrets("su", "repl", "op", dir.path().to_str().unwrap()),
        )
        .await;
    let id = env.pg_machine("lg", "iad", "flyio/postgres:14.6", v).await;
    env.advance(10);
    let r = env.ok("GET", "/api/v1/apps/lg/logs", None).await;
    let data = r["data"].as_array().unwrap();
    assert!(!data.is_empty());
    assert_eq!(data[0]["attributes"]["instance"], id.as_str());
    assert!(data.iter().any(|d| d["attributes"]["message"]
        .as_str()
        .unwrap()
        .contains("ready to accept connections")));
    let next = r["meta"]["next_token"].as_str().unwrap().to_string();
    let r2 = env
        .ok(
            "GET",
            &format!("/api/v1/apps/lg/logs?next_token={next}"),
            None,
        )
        .await;
    assert_eq!(r2["data"].as_array().unwrap().len(), 0);
    assert_eq!(r2["meta"]["next_token"], next.as_str());
    env.ok("POST", &format!("/v1/apps/lg/machines/{id}/restart"), None)
        .await;
    env.advance(10);
    let r3 = env
        .ok(
            "GET",
            &format!("/api/v1/apps/lg/logs?next_token={next}&instance={id}"),
            None,
        )
        .await;
    assert!(!r3["data"].as_array().unwrap().is_empty());
    assert_eq!(
        env.call("GET", "/api/v1/apps/nope/logs", None).await.status,
        404
    );
}
