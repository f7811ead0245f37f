use leptos::server_fn::ServerFn;
use walden_app::api::status::GetConsoleStatus;
use walden_app::model::ConsoleStatus;

use crate::helpers::spawn_app;

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
    use walden_app::api::clusters::ListClusters;
    use walden_app::model::ClusterList;

    use crate::accounts::{add_users, app, login, post_form, PW};
    use walden_core::users::Role;

    let app = app().await;
    add_users(&app, &[("viewer1", Role::Viewer)]).await;
    let anonymous = post_form(&app, <ListClusters as ServerFn>::PATH, None, &[]).await;
    assert_eq!(anonymous.status(), 401);
    let cookie = login(&app, "viewer1", PW).await;
    let res = post_form(&app, <ListClusters as ServerFn>::PATH, Some(&cookie), &[]).await;
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
