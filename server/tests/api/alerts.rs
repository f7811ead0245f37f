//! Open alerts over HTTP: listed for viewers and up (critical first), shown at the top of the credentials
//! list, gone once resolved.

use walden_app::api::alerts::{AlertRow, ListAlerts};
use walden_core::alerts::{AlertSpec, Alerts, Severity};
use walden_core::audit::{Actor, RequestMeta};
use walden_core::users::Role;

use crate::helpers::app;

#[tokio::test]
async fn open_alerts_are_listed_and_shown_until_resolved() {
    let app = app().await;
    let viewer = app.signed_in(Role::Viewer).await;
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let alerts = Alerts::new(pool.clone());
    let (cli, meta) = (Actor::cli(), RequestMeta::default());
    let spec = AlertSpec::cluster(
        "escrow_proof_failed",
        Severity::Critical,
        flysim::DEMO_ORG,
        flysim::DEMO_APP,
        "The kept password of postgres no longer opens its role.",
    );
    alerts.raise(&cli, &meta, &spec).await.unwrap();

    let listed: Vec<AlertRow> = viewer.call(&ListAlerts {}).await.json().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].severity, "critical");
    let html = viewer.page("/credentials").await;
    assert!(html.contains("data-test=\"alerts\""), "the panel shows");
    assert!(html.contains("no longer opens its role"));
    assert!(html.contains(&format!(
        "/credentials/{}/{}",
        flysim::DEMO_ORG,
        flysim::DEMO_APP
    )));

    alerts
        .resolve(&cli, &meta, &spec.key, "Every role opens again.")
        .await
        .unwrap();
    let listed: Vec<AlertRow> = viewer.call(&ListAlerts {}).await.json().await.unwrap();
    assert!(listed.is_empty());
    let html = viewer.page("/credentials").await;
    assert!(
        !html.contains("data-test=\"alerts\""),
        "no panel without alerts"
    );
    pool.close().await;
    app.stop().await;
}
