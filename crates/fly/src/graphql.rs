//! The one GraphQL call Walden needs from api.fly.io (`FLY_API_HOSTNAME`, default
//! `https://api.fly.io`): `enablePostgresConsul`, which gives a Stolon cluster its Consul URL.
//! Everything else goes through the Machines API.
//!
//! Pinned to fly-go `resource_postgres.go::EnablePostgresConsul`, which flyctl
//! `flypg/launcher.go::setSecrets` → `generateConsulURL` calls when it creates a Stolon cluster
//! and stores the answer as the `FLY_CONSUL_URL` secret (postgres-ha `pkg/flypg/node.go::NewNode`
//! refuses to start without it). fly-go compacts the query's whitespace and posts
//! `{"query", "variables"}` as JSON to `{FLY_API_HOSTNAME}/graphql`.
//!
//! Invariants: the Consul URL (it carries the cluster's Consul token) is only ever held as a
//! [`SecretString`] and the response bytes are zeroized once decoded; the mutation is never
//! retried after it may have reached the server (it is not idempotent).

use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use zeroize::Zeroize;

use crate::client::{Call, FlyClient, Host, Idempotency};
use crate::error::Error;

/// fly-go's `EnablePostgresConsul` query, whitespace compacted as fly-go's `NewRequest` does.
pub const ENABLE_POSTGRES_CONSUL_QUERY: &str =
    "mutation($appName: ID!) { enablePostgresConsul(input: {appId: $appName}) { consulUrl } }";

/// A GraphQL answer: `data` and/or `errors`.
#[derive(Deserialize)]
struct Response<T> {
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct EnableConsulData {
    #[serde(rename = "enablePostgresConsul")]
    payload: Option<EnableConsulPayload>,
}

#[derive(Deserialize)]
struct EnableConsulPayload {
    #[serde(rename = "consulUrl")]
    consul_url: String,
}

impl FlyClient {
    /// `enablePostgresConsul(input: {appId: app})`: the Consul URL for the app's Stolon cluster,
    /// to be set as its `FLY_CONSUL_URL` secret.
    pub async fn enable_postgres_consul(&self, app: &str) -> Result<SecretString, Error> {
        let body = serde_json::json!({
            "query": ENABLE_POSTGRES_CONSUL_QUERY,
            "variables": { "appName": app },
        });
        let call = Call::new(Method::POST, &["graphql"], "graphql", app)
            .host(Host::Api)
            .json(&body)?
            .idempotency(Idempotency::NonIdempotent);
        let mut reply = self.send(&call).await?;
        let decoded = reply.decode::<Response<EnableConsulData>>();
        reply.body.zeroize();
        let answer = decoded?;
        if !answer.errors.is_empty() {
            let messages: Vec<String> = answer.errors.into_iter().map(|e| e.message).collect();
            return Err(Error::GraphQl {
                operation: "enablePostgresConsul",
                message: messages.join("; "),
            });
        }
        let url = answer
            .data
            .and_then(|d| d.payload)
            .map(|p| p.consul_url)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::GraphQl {
                operation: "enablePostgresConsul",
                message: format!("no consulUrl in the answer for app {app}"),
            })?;
        Ok(SecretString::from(url))
    }
}
