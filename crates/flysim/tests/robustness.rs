//! No panics on bad input: random JSON bodies, query strings and exec scripts never produce a 5xx or a
//! dropped connection (seeded, so a failure reproduces).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random_range(-1_000_000i64..1_000_000)),
        3 => json!(rng.random::<f64>() * 1e6),
        4 => {
            let pool = [
                "",
                "iad",
                "x",
                "flyio/postgres:14",
                "../../etc",
                "é\u{0}\"",
                "started",
                "-1",
                "fm2_",
                "$(reboot)",
            ];
            json!(pool[rng.random_range(0..pool.len())])
        }
        5 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "config",
                "image",
                "name",
                "region",
                "env",
                "mounts",
                "metadata",
                "values",
                "value",
                "command",
                "cmd",
                "ttl",
                "timeout",
                "stdin",
                "min_secrets_version",
                "lease_ttl",
                "org_slug",
                "size_gb",
                "volume",
                "path",
                "guest",
            ];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..5) {
                m.insert(
                    keys[rng.random_range(0..keys.len())].to_string(),
                    random_value(rng, depth + 1),
                );
            }
            Value::Object(m)
        }
    }
}

#[tokio::test]
async fn random_bodies_never_5xx() {
    let env = start().await;
    env.create_app("fuzz").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/fuzz/machines",
            Some(json!({"config": {"image": "flyio/postgres:14.6"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(10);
    let mut rng = StdRng::seed_from_u64(99);
    let targets = [
        ("POST", "/v1/apps".to_string()),
        ("POST", "/v1/apps/fuzz/machines".to_string()),
        ("POST", format!("/v1/apps/fuzz/machines/{id}")),
        ("POST", format!("/v1/apps/fuzz/machines/{id}/exec")),
        ("POST", format!("/v1/apps/fuzz/machines/{id}/lease")),
        ("PATCH", format!("/v1/apps/fuzz/machines/{id}/metadata")),
        ("POST", format!("/v1/apps/fuzz/machines/{id}/metadata/k")),
        ("POST", format!("/v1/apps/fuzz/machines/{id}/stop")),
        ("POST", "/v1/apps/fuzz/volumes".to_string()),
        ("POST", "/v1/apps/fuzz/secrets".to_string()),
        ("POST", "/v1/apps/fuzz/secrets/S".to_string()),
    ];
    for i in 0..400 {
        let (method, path) = &targets[i % targets.len()];
        let body = random_value(&mut rng, 0);
        // Bypass the contract check: these requests are deliberately wrong; only the status matters here.
        let r = env
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                env.url(path),
            )
            .header("Authorization", format!("FlyV1 {TOKEN}"))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} with {body}: connection failed: {e}"));
        let status = r.status().as_u16();
        assert!(status < 500, "{method} {path} with {body} → {status}");
        let text = r.text().await.unwrap();
        if status >= 400 {
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: non-JSON error body {text:?}"));
            assert!(v["error"].is_string(), "{method} {path}: {v}");
        }
        env.advance(1);
    }
    // Raw bytes that are not JSON at all.
    for raw in [
        "",
        "{",
        "[1,2",
        "\u{feff}{}",
        "null",
        "\"str\"",
        "{\"config\": {\"image\": 5}}",
    ] {
        let r = env
            .http
            .post(env.url("/v1/apps/fuzz/machines"))
            .header("Authorization", format!("FlyV1 {TOKEN}"))
            .body(raw)
            .send()
            .await
            .unwrap();
        assert!(r.status().as_u16() < 500, "{raw:?} → {}", r.status());
    }
}

#[tokio::test]
async fn random_shell_scripts_never_break_exec() {
    let env = start().await;
    env.create_app("sh").await;
    // The Stolon image needs its secrets to boot (a consul URL, SU/REPL passwords).
    let dir = tempfile::tempdir().unwrap();
    let secrets = pg_secrets("a", "b", "c", dir.path().to_str().unwrap());
    let version = env.set_secrets("sh", secrets).await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/sh/machines",
            Some(
                json!({"config": {"image": "flyio/postgres:14.6"}, "min_secrets_version": version}),
            ),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    env.advance(10);
    let atoms = [
        "echo",
        "a",
        "'b c'",
        "\"$X\"",
        "$(",
        ")",
        "|",
        "&&",
        "||",
        ";",
        "&",
        ">",
        "2>&1",
        "/data/f",
        "${",
        "}",
        "\\",
        "\"",
        "'",
        "$@",
        "$1",
        "stolonctl",
        "status",
        "psql",
        "-c",
        "wal-g",
        "backup-list",
        "cat",
        "exit",
        "export",
        "X=1",
        "xargs",
        "tail",
        "-n",
    ];
    // A script that runs itself forever is cut off, not a stack overflow.
    let selfish = "sh -c \"$1\" sh \"$1\"";
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/sh/machines/{id}/exec"),
            Some(json!({"command": ["sh", "-c", selfish, "sh", selfish]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["stderr"]
            .as_str()
            .unwrap()
            .contains("nesting too deep"),
        "{}",
        r.body
    );
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..300 {
        let script: Vec<&str> = (0..rng.random_range(1..10))
            .map(|_| atoms[rng.random_range(0..atoms.len())])
            .collect();
        let script = script.join(" ");
        let r = env
            .call(
                "POST",
                &format!("/v1/apps/sh/machines/{id}/exec"),
                Some(json!({"command": ["sh", "-c", script, "sh", "x"]})),
            )
            .await;
        assert_eq!(r.status, 200, "{script:?} → {} {}", r.status, r.body);
        assert!(r.body["exit_code"].is_i64(), "{script:?}");
    }
}

#[tokio::test]
async fn huge_numbers_are_refused_not_overflowed() {
    let env = start().await;
    env.create_app("big").await;
    let m = env
        .ok(
            "POST",
            "/v1/apps/big/machines",
            Some(json!({"config": {"image": "nginx"}})),
        )
        .await;
    let id = m["id"].as_str().unwrap().to_string();
    let r = env
        .call(
            "POST",
            &format!("/v1/apps/big/machines/{id}/lease?ttl=9223372036854775807"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .call(
            "POST",
            "/v1/apps/big/machines",
            Some(json!({"config": {"image": "nginx"}, "lease_ttl": u64::MAX})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .call(
            "POST",
            "/v1/apps/big/volumes",
            Some(json!({"name": "v", "region": "iad", "size_gb": u64::MAX})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .call(
            "GET",
            &format!("/v1/apps/big/machines/{id}/events?limit=99999999999999999999999"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    // Huge inserts saturate instead of overflowing.
    let dir = tempfile::tempdir().unwrap();
    let v = env
        .set_secrets(
            "big",
            pg_secrets("a", "b", "c", dir.path().to_str().unwrap()),
        )
        .await;
    let pg = env.pg_machine("big", "iad", "flyio/postgres:14.6", v).await;
    env.advance(10);
    let sh = format!("/v1/apps/big/machines/{pg}/exec");
    env.ok("POST", &sh, Some(json!({"command": ["sh", "-c", "PGPASSWORD=$OPERATOR_PASSWORD psql -U postgres -d postgres -c 'create table t (x int)'"]}))).await;
    let out = env
        .ok("POST", &sh, Some(json!({"command": ["sh", "-c", "PGPASSWORD=$OPERATOR_PASSWORD psql -U postgres -d postgres -tA -c 'insert into t select generate_series(0, 18446744073709551615)'"]})))
        .await;
    assert_eq!(out["exit_code"], 0, "{out}");
    let out = env
        .ok(
            "POST",
            &sh,
            Some(json!({"command": ["wal-g", "backup-list"]})),
        )
        .await;
    assert_eq!(out["exit_code"], 0);
}
