//! Server functions one by one: what they answer, and the HTTP status of their errors.

use leptos::server_fn::ServerFn;
use walden_app::api::audit::{AuditQuery, ExportAudit, ListAudit};
use walden_app::api::clusters::{ClusterList, ListClusters};
use walden_app::api::status::{ConsoleStatus, GetConsoleStatus};
use walden_app::error::AppError;
use walden_core::users::Role;

use crate::helpers::{app, app_with, error_of, spawn_app};

#[tokio::test]
async fn console_status_round_trips() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url(<GetConsoleStatus as ServerFn>::PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let status: ConsoleStatus = res.json().await.unwrap();
    assert!(status.database_ok);
    assert!(status.demo_mode, "no Fly token configured");
    assert_eq!(
        status.migrations,
        walden_core::db::MIGRATOR.iter().count() as i64
    );
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    time::OffsetDateTime::parse(
        &status.checked_at,
        &time::format_description::well_known::Rfc3339,
    )
    .expect("checked_at is RFC 3339");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_clusters_finds_the_demo_cluster_on_the_built_in_emulator() {
    let app = app().await;
    let anonymous = app.session().call(&ListClusters {}).await;
    assert_eq!(anonymous.status(), 401);
    let viewer = app.signed_in(Role::Viewer).await;
    let res = viewer.call(&ListClusters {}).await;
    assert_eq!(res.status(), 200);
    let list: ClusterList = res.json().await.unwrap();
    assert_eq!(list.org, flysim::DEMO_ORG);
    assert_eq!(list.clusters.len(), 1, "{list:?}");
    let cluster = &list.clusters[0];
    assert_eq!(cluster.app, flysim::DEMO_APP);
    assert_eq!(
        cluster
            .machines
            .iter()
            .filter(|m| m.role == "leader")
            .count(),
        1
    );
    assert!(cluster
        .machines
        .iter()
        .all(|m| m.image.starts_with("flyio/postgres")));
    // The emulator keeps its state and sample bucket under the data dir.
    assert!(app.data_dir().join("demo/walg/basebackups_005").is_dir());
    app.stop().await;
}

/// A Fly API that refuses the console (here: a Fly emulator that does not know its token) is a failure
/// upstream: 502, with a text that says what could not be done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fly_api_failure_is_a_bad_gateway() {
    let fly_dir = tempfile::tempdir().unwrap();
    let (sim, _) = flysim::Sim::demo(fly_dir.path().join("walg")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fly = flysim::spawn(listener, sim, Default::default()).unwrap();
    let app = app_with(|c| {
        c.fly_api_token = Some(String::from("not the emulator's token").into());
        c.fly_machines_url = Some(fly.base_url.clone());
        c.fly_api_url = Some(fly.base_url.clone());
        c.fly_org = "walden-test".into();
        c.master_key = Some("cd".repeat(32).into());
    })
    .await;
    let viewer = app.signed_in(Role::Viewer).await;
    let (status, err) = error_of(viewer.call(&ListClusters {}).await).await;
    assert_eq!(status, 502);
    let AppError::Upstream(text) = err else {
        panic!("not an upstream error: {err:?}");
    };
    assert!(
        text.starts_with("Cannot list the clusters of walden-test: "),
        "{text}"
    );
    assert!(text.contains("401"), "{text}");
    app.stop().await;
    fly.shutdown().await.unwrap();
}

fn field_of(err: &AppError) -> &str {
    match err {
        AppError::Validation { field, .. } => field,
        other => panic!("not a validation error: {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_audit_filter_time_is_a_validation_error() {
    let app = app().await;
    let viewer = app.signed_in(Role::Viewer).await;
    let list = ListAudit {
        query: AuditQuery {
            since: "yesterday".into(),
            ..Default::default()
        },
        before: None,
        limit: 50,
    };
    let (status, err) = error_of(viewer.call(&list).await).await;
    assert_eq!(status, 422);
    assert_eq!(field_of(&err), "since");
    assert!(err.to_string().contains("2026-11-25T14:00:00Z"), "{err}");

    let export = ExportAudit {
        query: AuditQuery {
            until: "2026-13-45".into(),
            ..Default::default()
        },
        format: "csv".into(),
    };
    let (status, err) = error_of(viewer.call(&export).await).await;
    assert_eq!(status, 422);
    assert_eq!(field_of(&err), "until");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_export_format_is_a_validation_error() {
    let app = app().await;
    let viewer = app.signed_in(Role::Viewer).await;
    let export = ExportAudit {
        query: AuditQuery::default(),
        format: "xml".into(),
    };
    let (status, err) = error_of(viewer.call(&export).await).await;
    assert_eq!(status, 422);
    assert_eq!(field_of(&err), "format");
    app.stop().await;
}
