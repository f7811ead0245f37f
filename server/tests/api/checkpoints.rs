//! The running console writes signed audit checkpoints (security review H1): at start, after enough rows,
//! and at clean shutdown, with the key derived from the master key when no signing key is set.

use walden_core::audit_checkpoints::{self, CheckpointKey, Reason, Sink};
use walden_core::keyring::Keyring;
use walden_core::users::Role;

use crate::helpers::app_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_checkpoints_its_audit_log_until_it_stops() {
    let app = app_with(|c| c.audit_checkpoint_rows = 1).await;
    // Signing in makes audit rows (the user is created by the CLI path, then signs in).
    let _admin = app.signed_in(Role::Admin).await;
    let data = app.data_dir();
    let dir = app.stop().await;

    let sink = Sink::directory(&data.join("audit-checkpoints")).unwrap();
    let bodies: Vec<_> = sink
        .read_all()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, cp)| cp.unwrap().body)
        .collect();
    assert_eq!(bodies.first().map(|b| b.reason), Some(Reason::Start));
    assert_eq!(bodies.last().map(|b| b.reason), Some(Reason::Shutdown));

    let pool = walden_core::db::open(&data).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(rows > 0);
    let ring = Keyring::from_master_hex(&"ab".repeat(32).into()).unwrap();
    let key = CheckpointKey::derived_from(&ring).unwrap();
    let report = audit_checkpoints::verify(&pool, &sink, &[key.public_key()], None)
        .await
        .unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        report.confirmed_through, rows,
        "the shutdown checkpoint saw every row"
    );
    pool.close().await;
    drop(dir);
}
