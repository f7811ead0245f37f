//! The home page (`pages/clusters.rs`, `api::clusters::{cluster_overview, refresh_cluster}`) over HTTP in demo
//! mode: the hint while nothing is tracked, then the demo cluster tracked and its credentials captured, a
//! "Refresh now" by an operator reading the emulator's wal-g bucket, the row rendered on the server with its
//! health, machines, window and link to the cluster page; viewers see it without the button and may not
//! refresh; a storage that became unreadable shows the banner above the last good figures.

use walden_app::api::clusters::{ClusterOverview, HealthRow, Overview, RefreshCluster};
use walden_app::api::escrow::CaptureCredentials;
use walden_app::api::orgs::TrackCluster;
use walden_core::users::Role;

use crate::helpers::{app, error_of};

fn refresh_demo() -> RefreshCluster {
    RefreshCluster {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_shows_each_tracked_clusters_health_and_refreshes_it_on_demand() {
    let app = app().await;
    let (admin, operator, viewer) = (
        app.signed_in(Role::Admin).await,
        app.signed_in(Role::Operator).await,
        app.signed_in(Role::Viewer).await,
    );

    // Nothing tracked: the hint to Settings → Fly organizations, no row.
    let html = viewer.page("/").await;
    assert!(html.contains("data-test=\"no-tracked-clusters\""), "{html}");
    assert!(html.contains("href=\"/settings/orgs\""));
    assert!(!html.contains("data-test=\"cluster-row\""));

    // Not tracked: Refresh now is refused with what to do; viewers may not refresh at all.
    let (status, err) = error_of(operator.call(&refresh_demo()).await).await;
    assert_eq!(status, 409, "{err}");
    assert!(err.to_string().contains("not tracked"), "{err}");
    assert_eq!(viewer.call(&refresh_demo()).await.status(), 403);

    let demo = (flysim::DEMO_ORG.to_owned(), flysim::DEMO_APP.to_owned());
    let track = TrackCluster {
        org: demo.0.clone(),
        app: demo.1.clone(),
    };
    assert_eq!(admin.call(&track).await.status(), 200);
    let capture = CaptureCredentials {
        org: demo.0.clone(),
        app: demo.1.clone(),
    };
    assert_eq!(operator.call(&capture).await.status(), 200);

    let res = operator.call(&refresh_demo()).await;
    assert_eq!(res.status(), 200);
    let row: HealthRow = res.json().await.unwrap();
    assert_eq!(row.storage_error, None, "{row:?}");
    assert!(
        row.earliest_restorable.is_some() && row.latest_restorable.is_some(),
        "{row:?}"
    );
    assert!(
        row.wal_age.is_some() && row.base_backup_age.is_some(),
        "{row:?}"
    );
    // The demo history holds one WAL gap (flysim's demo_history): one error finding, so the cluster is red
    // with the gap as its reason, and an alert is open.
    assert_eq!(row.findings.map(|f| f.0), Some(1), "{row:?}");
    assert_eq!(row.health, "red", "{row:?}");
    assert!(row.reason.contains("WAL gap"), "{row:?}");
    assert!(row.refreshed.is_some());

    // The overview as a viewer: the row, its machines and leader, no Refresh now.
    let res = viewer.call(&ClusterOverview {}).await;
    assert_eq!(res.status(), 200);
    let overview: Overview = res.json().await.unwrap();
    assert!(!overview.can_refresh);
    assert_eq!(overview.rows.len(), 1);
    let row = &overview.rows[0];
    assert_eq!(
        (row.machines_up, row.machines_total),
        (Some(3), Some(3)),
        "{row:?}"
    );
    assert!(row.leader.is_some(), "{row:?}");
    assert_eq!(row.health, "red", "{row:?}");

    let html = viewer.page("/").await;
    assert!(html.contains("data-test=\"cluster-row\""), "{html}");
    assert!(html.contains("href=\"/clusters/demo/demo-db\""), "{html}");
    assert!(html.contains(&format!("data-health=\"{}\"", row.health)));
    assert!(html.contains("3/3 up"));
    assert!(html.contains(row.earliest_restorable.as_deref().unwrap()));
    assert!(html.contains("data-test=\"untracked-hint\""));
    assert!(
        !html.contains("data-test=\"refresh-now\""),
        "viewers get no button"
    );
    assert!(!html.contains("data-test=\"storage-error\""));
    assert!(
        html.contains("data-test=\"alerts\""),
        "the gap's alert shows above the table"
    );
    assert!(html.contains("data-kind=\"backups_failing\""), "{html}");
    let html = operator.page("/").await;
    assert!(
        html.contains("data-test=\"refresh-now\""),
        "operators get the button"
    );

    // The bucket becomes unreadable (a file where its directory was): the banner says so, and the last good
    // window stays on the page.
    let bucket = app.data_dir().join("demo").join("walg");
    let moved = app.data_dir().join("demo").join("walg-away");
    std::fs::rename(&bucket, &moved).unwrap();
    std::fs::write(&bucket, b"not a directory").unwrap();
    let res = operator.call(&refresh_demo()).await;
    assert_eq!(res.status(), 200);
    let failed: HealthRow = res.json().await.unwrap();
    assert!(failed.storage_error.is_some(), "{failed:?}");
    assert_eq!(failed.health, "red");
    assert_eq!(failed.earliest_restorable, row.earliest_restorable);
    let html = viewer.page("/").await;
    assert!(html.contains("data-test=\"storage-error\""), "{html}");
    assert!(html.contains("The figures are from the last good refresh"));
    assert!(html.contains(row.earliest_restorable.as_deref().unwrap()));
    app.stop().await;
}
