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
