//! The cluster page (`/clusters/{org}/{app}`) rendered by the server: the tracked demo cluster's timeline drawn
//! from its wal-g bucket on the emulator's local storage, the backups table and findings; an empty storage's
//! how-to; a banner when the storage cannot be read, without the storage's secret in the page.

use walden_app::api::escrow::CaptureCredentials;
use walden_app::api::timeline::{ClusterTimeline, GetClusterTimeline};
use walden_core::users::Role;

use crate::helpers::{app, escrow_storage, track_demo, TestApp};

const PAGE: &str = "/clusters/demo/demo-db";

/// The page's HTML as a viewer gets it.
async fn page_as_viewer(app: &TestApp) -> String {
    app.signed_in(Role::Viewer).await.page(PAGE).await
}

fn count(html: &str, test: &str) -> usize {
    html.matches(&format!("data-test=\"{test}\"")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tracked_demo_cluster_page_draws_its_timeline() {
    let app = app().await;
    track_demo(&app).await;
    // The real capture: the storage settings come from the demo cluster's leader, as in production.
    let operator = app.signed_in(Role::Operator).await;
    let capture = CaptureCredentials {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(operator.call(&capture).await.status(), 200);

    let html = page_as_viewer(&app).await;
    assert!(
        html.contains("<title>Cluster demo-db · Walden</title>"),
        "title"
    );
    assert_eq!(count(&html, "timeline-chart"), 1, "the chart");
    assert!(count(&html, "backup") >= 1, "backup markers");
    assert!(count(&html, "run") >= 1, "WAL runs");
    assert!(count(&html, "window") >= 1, "restorable windows");
    assert_eq!(count(&html, "now"), 1, "the now marker");
    assert_eq!(count(&html, "latest"), 1, "the latest restorable marker");
    assert!(count(&html, "backup-row") >= 1, "the backups table");
    assert!(html.contains("Restorable from "), "the restorable sentence");
    assert!(
        html.contains("/clusters/demo/demo-db/restore?kind=time&amp;target="),
        "the restore link"
    );
    assert!(!html.contains("data-test=\"storage-error\""), "{html}");
    // The leader's volume, read by the refresh of the first visit: one sample, no forecast yet.
    assert_eq!(count(&html, "volume"), 1, "{html}");
    assert!(
        html.contains("Leader&#x27;s volume: 10 % full (not enough samples yet")
            || html.contains("Leader's volume: 10 % full (not enough samples yet"),
        "{html}"
    );
    // The escrowed passwords never reach the page.
    assert!(!html.contains("demo-su-Zq81xKp2") && !html.contains("demo-op-Vb55nQe9"));

    // The server function answers the same view as JSON.
    let viewer = app.signed_in(Role::Viewer).await;
    let res = viewer
        .call(&GetClusterTimeline {
            org: flysim::DEMO_ORG.into(),
            app: flysim::DEMO_APP.into(),
        })
        .await;
    assert_eq!(res.status(), 200);
    let answer: ClusterTimeline = res.json().await.unwrap();
    let view = answer.timeline.expect("a timeline");
    assert!(answer.error.is_none());
    assert!(answer.storage.unwrap().starts_with("file://"));
    assert!(!view.backups.is_empty() && view.latest_restorable_ms.is_some());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_storage_shows_a_banner_without_its_secret() {
    let app = app().await;
    track_demo(&app).await;
    // Nothing listens on port 9: reading the bucket fails.
    escrow_storage(
        &app,
        &[
            ("WALG_S3_PREFIX", "s3://walden-missing/pg"),
            ("AWS_ENDPOINT", "http://127.0.0.1:9"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_S3_FORCE_PATH_STYLE", "true"),
            ("AWS_ACCESS_KEY_ID", "AKIAWALDENTEST"),
            ("AWS_SECRET_ACCESS_KEY", "secret-key-8f2c61d0"),
        ],
    )
    .await;
    let html = page_as_viewer(&app).await;
    assert_eq!(count(&html, "storage-error"), 1, "{html}");
    assert!(html.contains("s3://walden-missing/pg"), "names the storage");
    assert_eq!(count(&html, "timeline-chart"), 0);
    assert!(
        !html.contains("secret-key-8f2c61d0"),
        "the secret key in the page"
    );
    assert!(!html.contains("su pw"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_without_backups_says_how_to_turn_them_on() {
    let app = app().await;
    track_demo(&app).await;
    let empty = tempfile::tempdir().unwrap();
    escrow_storage(
        &app,
        &[("WALG_FILE_PREFIX", empty.path().to_str().unwrap())],
    )
    .await;
    let html = page_as_viewer(&app).await;
    assert_eq!(count(&html, "no-backups"), 1, "{html}");
    assert!(html.contains("wal-g backup-push /data/postgres"));
    assert!(html.contains("archive_command"));
    assert_eq!(count(&html, "storage-error"), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untracked_cluster_has_no_page() {
    let app = app().await;
    let html = page_as_viewer(&app).await;
    assert_eq!(count(&html, "cluster-error"), 1, "{html}");
    assert!(html.contains("not a tracked cluster"));
    app.stop().await;
}
