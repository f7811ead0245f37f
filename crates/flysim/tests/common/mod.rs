#![allow(dead_code)]
//! Shared helpers: a Sim on a manual clock served over real HTTP on 127.0.0.1:0.

use std::time::Duration;

use std::sync::OnceLock;

use flysim::{Running, Sim};
use openapi_contract::Contract;
use serde_json::{json, Value};
use time::macros::datetime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "fm2_test_org_token";
pub const ORG: &str = "acme";

pub struct Env {
    pub sim: Sim,
    pub run: Running,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub request_id: Option<String>,
}

pub async fn start() -> Env {
    start_with(
        Sim::builder()
            .manual_clock(datetime!(2026-03-01 12:00 UTC))
            .seed(7)
            .build()
            .unwrap(),
    )
    .await
}

pub async fn start_with(sim: Sim) -> Env {
    sim.add_org(ORG, "Acme Inc");
    sim.add_token(TOKEN, &[ORG]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();
    Env {
        sim,
        run,
        http: reqwest::Client::new(),
        token: TOKEN.to_string(),
    }
}

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.run.base_url, path)
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call_h(method, path, body, &[]).await
    }

    pub async fn call_h(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, self.url(path))
            .header("Authorization", format!("FlyV1 {}", self.token));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let request_id = r
            .headers()
            .get("fly-request-id")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string());
        let text = r.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Resp {
            status,
            body,
            request_id,
        }
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.call(method, path, body).await;
        assert!(r.status < 300, "{method} {path} → {}: {}", r.status, r.body);
        r.body
    }

    pub fn advance(&self, secs: u64) {
        self.sim.advance(Duration::from_secs(secs));
    }

    pub async fn exec(&self, app: &str, id: &str, argv: &[&str]) -> Value {
        self.ok(
            "POST",
            &format!("/v1/apps/{app}/machines/{id}/exec"),
            Some(json!({"command": argv, "timeout": 30})),
        )
        .await
    }

    /// `sh -c` with /data/.env exported, stolonctl args passed as positional parameters (no pasting).
    pub async fn stolonctl(&self, app: &str, id: &str, args: &[&str]) -> Value {
        let mut argv = vec![
            "sh",
            "-c",
            "export $(cat /data/.env | xargs) && exec stolonctl \"$@\"",
            "sh",
        ];
        argv.extend_from_slice(args);
        self.exec(app, id, &argv).await
    }

    pub async fn create_app(&self, name: &str) {
        self.ok(
            "POST",
            "/v1/apps",
            Some(json!({"name": name, "org_slug": ORG, "app_role_id": "postgres_cluster"})),
        )
        .await;
        self.wait_for_app(name).await;
    }

    /// Retry `GET /v1/apps/{name}` while it is 404, as fly-go `flaps/flaps_apps.go::WaitForApp` does (a
    /// new app is not visible at once; on a manual clock the 404 moves the clock).
    pub async fn wait_for_app(&self, name: &str) {
        for _ in 0..100 {
            let r = self.call("GET", &format!("/v1/apps/{name}"), None).await;
            if r.status != 404 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("app {name} never became visible");
    }

    pub async fn set_secrets(&self, app: &str, values: Value) -> u64 {
        let v = self
            .ok(
                "POST",
                &format!("/v1/apps/{app}/secrets"),
                Some(json!({"values": values})),
            )
            .await;
        v["version"].as_u64().unwrap()
    }

    /// A volume + a Stolon Machine in `region`; returns the Machine id.
    pub async fn pg_machine(
        &self,
        app: &str,
        region: &str,
        image: &str,
        min_secrets: u64,
    ) -> String {
        let vol = self
            .ok(
                "POST",
                &format!("/v1/apps/{app}/volumes"),
                Some(json!({"name": "pg_data", "region": region, "size_gb": 1})),
            )
            .await;
        let cfg = json!({
            "image": image,
            "env": {"PRIMARY_REGION": "iad"},
            "mounts": [{"volume": vol["id"], "path": "/data"}],
            "restart": {"policy": "always"},
            "metadata": {"fly-managed-postgres": "true"}
        });
        let m = self
            .ok(
                "POST",
                &format!("/v1/apps/{app}/machines"),
                Some(json!({"region": region, "config": cfg, "min_secrets_version": min_secrets})),
            )
            .await;
        m["id"].as_str().unwrap().to_string()
    }

    pub async fn machine(&self, app: &str, id: &str) -> Value {
        self.ok("GET", &format!("/v1/apps/{app}/machines/{id}"), None)
            .await
    }

    pub async fn role(&self, app: &str, id: &str) -> (String, String) {
        let m = self.machine(app, id).await;
        let c = m["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "role")
            .cloned()
            .unwrap();
        (
            c["status"].as_str().unwrap().to_string(),
            c["output"].as_str().unwrap().to_string(),
        )
    }

    pub async fn logs(&self, app: &str) -> Vec<String> {
        self.sim.log_messages(app)
    }
}

/// The OpenAPI document, with the deviations the reference notes document (each says why). Responses are
/// strict: a field the emulator invents (and the notes do not back) fails the test and is named.
pub fn contract() -> &'static Contract {
    static C: OnceLock<Contract> = OnceLock::new();
    C.get_or_init(|| {
        Contract::load()
            .expect("OpenAPI document")
            .with_strict_responses(true)
            // Notes §1.5: fly-go reads `app_role` (postgres_cluster); the docs' create example returns
            // `created_at`. Neither is in the document's App.
            .extend_property("App", "app_role", json!({"type": "string"}))
            .extend_property("App", "created_at", json!({"type": "string"}))
            // Notes §1.5: the lease wire shape is {"status":"success","data":{nonce,expires_at,owner,
            // description,version}} (docs examples, fly-go MachineLease), not the bare Lease schema.
            .extend_property("Lease", "status", json!({"type": "string"}))
            .extend_property(
                "Lease",
                "data",
                json!({"$ref": "#/components/schemas/Lease"}),
            )
            // Notes §1.4: flyctl sends app_role_id on create; docs list metadata.{key} filters on list.
            .extend_property("CreateAppRequest", "app_role_id", json!({"type": "string"}))
            .allow_query_param("GET", "/apps/{app_name}/machines", "metadata.")
    })
}

/// Validate a response from the emulator against the document; panics naming the field.
pub fn check_response(method: &str, path: &str, status: u16, body: &Value) {
    if !path.starts_with("/v1/") {
        return; // the logs endpoint (api.fly.io) is not part of the Machines API document
    }
    let b = if body.is_null() { None } else { Some(body) };
    if let Err(v) = contract().check_response(method, path, status, b) {
        panic!(
            "emulator response {status} to {method} {path} breaks the contract: {v}\nbody: {body}"
        );
    }
}

pub fn pg_secrets(su: &str, repl: &str, op: &str, walg_dir: &str) -> Value {
    json!({
        "SU_PASSWORD": su, "REPL_PASSWORD": repl, "OPERATOR_PASSWORD": op,
        "PGUSER": "postgres", "PGPASSWORD": op, "PGHOST": "localhost", "PGPORT": "5432",
        "WALG_FILE_PREFIX": walg_dir,
        // What `fly pg create` sets (flyctl `flypg/launcher.go::setSecrets`); the image panics without it.
        "FLY_CONSUL_URL": "https://:token@consul-flysim.fly-shared.net/flysim-test-xyz/",
    })
}
