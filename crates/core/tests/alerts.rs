//! Alerts on a real SQLite file: raised once while a condition lasts, resolved with a recovery message, each
//! change audited, deliveries listed in order (a recovery only after its raise) and recorded once; the schema
//! refuses what the service would never write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use walden_core::alerts::{AlertSpec, AlertsError, Delivery, Severity};
use walden_core::audit::{Actor, AuditFilter, RequestMeta};
use walden_core::{Walden, WaldenOptions};

async fn open() -> (tempfile::TempDir, Walden) {
    let dir = tempfile::tempdir().unwrap();
    let walden = Walden::open(dir.path(), WaldenOptions::default())
        .await
        .unwrap();
    (dir, walden)
}

fn stale(app: &str) -> AlertSpec {
    AlertSpec::cluster(
        "wal_stale",
        Severity::Warning,
        "demo",
        app,
        format!("No WAL from {app} for 20 minutes."),
    )
}

async fn actions(walden: &Walden) -> Vec<String> {
    let page = walden
        .audit()
        .query(&AuditFilter::default(), None, 100)
        .await
        .unwrap();
    let mut rows: Vec<String> = page.rows.into_iter().map(|r| r.action).collect();
    rows.reverse();
    rows
}

#[tokio::test]
async fn an_alert_is_raised_once_while_it_lasts_and_resolved_with_a_recovery_message() {
    let (_dir, walden) = open().await;
    let alerts = walden.alerts();
    let (actor, meta) = (Actor::cli(), RequestMeta::default());

    let raised = alerts.raise(&actor, &meta, &stale("db-a")).await.unwrap();
    let raised = raised.expect("a new alert");
    assert_eq!(raised.key, "wal_stale/demo/db-a");
    assert!(raised.is_open());
    assert_eq!(raised.severity(), Severity::Warning);
    // Seen again while open: nothing new.
    assert!(alerts
        .raise(&actor, &meta, &stale("db-a"))
        .await
        .unwrap()
        .is_none());
    // Another cluster's condition is its own alert.
    alerts
        .raise(&actor, &meta, &stale("db-b"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alerts.open().await.unwrap().len(), 2);

    let resolved = alerts
        .resolve(&actor, &meta, "wal_stale/demo/db-a", "WAL arrives again.")
        .await
        .unwrap()
        .expect("it was open");
    assert_eq!(resolved.resolution.as_deref(), Some("WAL arrives again."));
    // Nothing open under that key any more: resolving again does nothing.
    let again = alerts
        .resolve(&actor, &meta, "wal_stale/demo/db-a", "WAL arrives again.")
        .await
        .unwrap();
    assert!(again.is_none());
    // The condition comes back: a new alert, the old one stays in the history.
    alerts
        .raise(&actor, &meta, &stale("db-a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alerts.recent().await.unwrap().len(), 3);

    assert_eq!(
        actions(&walden).await,
        ["alert.raise", "alert.raise", "alert.resolve", "alert.raise"]
    );
    let err = alerts
        .resolve(&actor, &meta, "wal_stale/demo/db-b", "  ")
        .await
        .unwrap_err();
    assert!(matches!(err, AlertsError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn critical_alerts_come_first_and_bad_specs_are_refused() {
    let (_dir, walden) = open().await;
    let alerts = walden.alerts();
    let (actor, meta) = (Actor::cli(), RequestMeta::default());
    alerts.raise(&actor, &meta, &stale("db-a")).await.unwrap();
    let critical = AlertSpec::cluster(
        "escrow_proof_failed",
        Severity::Critical,
        "demo",
        "db-a",
        "The kept password of postgres no longer opens its role.",
    );
    alerts.raise(&actor, &meta, &critical).await.unwrap();
    let open = alerts.open().await.unwrap();
    assert_eq!(open[0].kind, "escrow_proof_failed");
    assert_eq!(open[1].kind, "wal_stale");

    for bad in [
        AlertSpec {
            kind: "Wal-Stale".into(),
            ..stale("db-c")
        },
        AlertSpec {
            message: " ".into(),
            ..stale("db-c")
        },
        AlertSpec {
            key: String::new(),
            ..stale("db-c")
        },
    ] {
        let err = alerts.raise(&actor, &meta, &bad).await.unwrap_err();
        assert!(matches!(err, AlertsError::Invalid(_)), "{err:?}");
    }
    // The schema defends itself too: a kind the service would refuse cannot be written behind its back.
    let written = sqlx::query(
        "INSERT INTO alerts (key, kind, severity, message, raised_at) VALUES ('k', 'Bad Kind', 'warning', 'm', 't')",
    )
    .execute(walden.pool())
    .await;
    assert!(written.is_err());
    let written = sqlx::query(
        "INSERT INTO alerts (key, kind, severity, message, raised_at) VALUES ('k', 'ok', 'panic', 'm', 't')",
    )
    .execute(walden.pool())
    .await;
    assert!(written.is_err());
}

#[tokio::test]
async fn deliveries_are_listed_in_order_and_recorded_once() {
    let (_dir, walden) = open().await;
    let alerts = walden.alerts();
    let (actor, meta) = (Actor::cli(), RequestMeta::default());
    let a = alerts
        .raise(&actor, &meta, &stale("db-a"))
        .await
        .unwrap()
        .unwrap();
    alerts
        .resolve(&actor, &meta, &a.key, "WAL arrives again.")
        .await
        .unwrap();
    // Raised and resolved before any delivery: only the raise is due, the recovery waits for it.
    let due = alerts.undelivered().await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].0.id, due[0].1), (a.id, Delivery::Raised));

    alerts
        .mark_delivered(&actor, &meta, a.id, Delivery::Raised)
        .await
        .unwrap();
    let due = alerts.undelivered().await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].0.id, due[0].1), (a.id, Delivery::Resolved));
    alerts
        .mark_delivered(&actor, &meta, a.id, Delivery::Resolved)
        .await
        .unwrap();
    // A second delivery mark changes nothing and writes no row.
    alerts
        .mark_delivered(&actor, &meta, a.id, Delivery::Resolved)
        .await
        .unwrap();
    assert!(alerts.undelivered().await.unwrap().is_empty());
    let notified = actions(&walden)
        .await
        .into_iter()
        .filter(|a| a == "alert.notify")
        .count();
    assert_eq!(notified, 2);
    assert!(walden.audit().verify().await.unwrap().is_intact());
}
