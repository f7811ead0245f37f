//! `FlyClient::from_env` reads flyctl's variables. One test function in its own binary, because
//! it changes the process environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod common;

use common::{CaptureServer, Reply};
use fly::{Error, FlyClient};
use serde_json::json;

#[tokio::test]
async fn from_env_uses_flyctl_variable_names() {
    let s = CaptureServer::start(|r, _| {
        if r.path.ends_with("/logs") {
            Reply::Json(200, json!({"data": [], "meta": {"next_token": ""}}))
        } else {
            Reply::Json(200, json!({"apps": [], "total_apps": 0}))
        }
    })
    .await;

    std::env::remove_var("FLY_API_TOKEN");
    let err = FlyClient::from_env().unwrap_err();
    assert!(
        matches!(err, Error::Config(ref m) if m.contains("FLY_API_TOKEN")),
        "{err:?}"
    );

    std::env::set_var("FLY_API_TOKEN", "Bearer personal-oauth-token");
    // A trailing `/v1/` is tolerated: paths are always built under one `/v1`.
    std::env::set_var("FLY_FLAPS_BASE_URL", format!("{}/v1/", s.url()));
    std::env::set_var("FLY_API_HOSTNAME", s.url());
    let fly = FlyClient::from_env().unwrap();
    let dbg = format!("{fly:?}");
    assert!(!dbg.contains("personal-oauth-token"), "{dbg}");

    fly.list_apps("personal").await.unwrap();
    let page = fly.logs("pg-app", None, None, None).await.unwrap();
    assert!(page.entries.is_empty() && page.next_token.is_none());
    let reqs = s.requests();
    assert_eq!(reqs[0].uri, "/v1/apps?org_slug=personal");
    assert_eq!(
        reqs[0].header("authorization").as_deref(),
        Some("Bearer personal-oauth-token")
    );
    assert_eq!(reqs[1].path, "/api/v1/apps/pg-app/logs");

    std::env::set_var("FLY_FLAPS_BASE_URL", "not a url");
    let err = FlyClient::from_env().unwrap_err();
    assert!(err.to_string().contains("FLY_FLAPS_BASE_URL"), "{err}");
    for v in ["FLY_API_TOKEN", "FLY_FLAPS_BASE_URL", "FLY_API_HOSTNAME"] {
        std::env::remove_var(v);
    }
}
