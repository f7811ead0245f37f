//! The alert webhook against a real HTTP receiver on loopback: a raise is POSTed once with a Slack-compatible
//! `text`; a receiver that fails gets it again later, never twice once it answered 2xx; a recovery follows its
//! raise; the worker delivers on the audited commit of a raise without waiting for its retry interval; the URL
//! (a secret: Slack's carries a token) shows in no error or Debug output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use walden::alerts::{deliver_due, webhook_worker, Delivered, Webhook};
use walden_core::access::{Actor, RequestMeta};
use walden_core::alerts::{AlertSpec, Severity};
use walden_core::{Walden, WaldenOptions};

/// A receiver that records every body and answers with the status it is set to.
#[derive(Clone, Default)]
struct Receiver {
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.status.store(200, Ordering::SeqCst);
        let app = Router::new()
            .route("/hooks/T000/B000/secret-token", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/hooks/T000/B000/secret-token",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

async fn receive(State(r): State<Receiver>, Json(body): Json<serde_json::Value>) -> StatusCode {
    let status = StatusCode::from_u16(r.status.load(Ordering::SeqCst)).unwrap();
    if status.is_success() {
        r.bodies.lock().unwrap().push(body);
    }
    status
}

fn proof_failed() -> AlertSpec {
    AlertSpec::cluster(
        "escrow_proof_failed",
        Severity::Critical,
        "demo",
        "demo-db",
        "The kept password of postgres no longer opens its role.",
    )
}

#[tokio::test]
async fn raises_and_recoveries_are_delivered_once_in_order_and_retried_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let walden = Walden::open(dir.path(), WaldenOptions::default())
        .await
        .unwrap();
    let (receiver, url) = Receiver::start().await;
    let webhook = Webhook::new(SecretString::from(url.clone())).unwrap();
    assert!(!format!("{webhook:?}").contains("secret-token"));
    let (actor, meta) = (Actor::cli(), RequestMeta::default());
    let alert = walden
        .alerts()
        .raise(&actor, &meta, &proof_failed())
        .await
        .unwrap()
        .unwrap();

    // The receiver is down: nothing is recorded as delivered.
    receiver.status.store(503, Ordering::SeqCst);
    let done = deliver_due(&walden, &webhook).await.unwrap();
    assert_eq!(
        done,
        Delivered {
            sent: 0,
            failed: true
        }
    );
    assert_eq!(walden.alerts().undelivered().await.unwrap().len(), 1);

    // Back up: delivered once, and not again.
    receiver.status.store(200, Ordering::SeqCst);
    assert_eq!(deliver_due(&walden, &webhook).await.unwrap().sent, 1);
    assert_eq!(deliver_due(&walden, &webhook).await.unwrap().sent, 0);
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["state"], "firing");
    assert_eq!(bodies[0]["alert"]["kind"], "escrow_proof_failed");
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("CRITICAL") && text.contains("demo/demo-db") && text.contains("postgres"),
        "{text}"
    );

    // The recovery.
    walden
        .alerts()
        .resolve(&actor, &meta, &alert.key, "Every role opens again.")
        .await
        .unwrap();
    assert_eq!(deliver_due(&walden, &webhook).await.unwrap().sent, 1);
    let bodies = receiver.bodies();
    assert_eq!(bodies[1]["state"], "resolved");
    assert!(bodies[1]["text"]
        .as_str()
        .unwrap()
        .contains("RESOLVED demo/demo-db: Every role opens again."));
    let rows = walden
        .audit()
        .query(&Default::default(), None, 50)
        .await
        .unwrap()
        .rows;
    assert_eq!(
        rows.iter().filter(|r| r.action == "alert.notify").count(),
        2
    );
    for row in &rows {
        assert!(
            !format!("{row:?}").contains("secret-token"),
            "the URL in the audit log"
        );
    }
}

#[tokio::test]
async fn the_worker_delivers_a_raise_on_its_commit_and_a_bad_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let walden = Walden::open(dir.path(), WaldenOptions::default())
        .await
        .unwrap();
    let (receiver, url) = Receiver::start().await;
    let webhook = Webhook::new(SecretString::from(url)).unwrap();
    let token = CancellationToken::new();
    // A retry interval far away: only the first run or the commit's wake-up can deliver within the test.
    let worker = tokio::spawn(webhook_worker(
        walden.clone(),
        webhook,
        token.clone(),
        Duration::from_secs(3600),
    ));
    walden
        .alerts()
        .raise(&Actor::cli(), &RequestMeta::default(), &proof_failed())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.bodies().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    worker.await.unwrap();
    assert_eq!(receiver.bodies().len(), 1);

    for bad in [
        "ftp://example.com/hook",
        "http://example.com/hooks/secret-token",
        "not a url secret-token",
    ] {
        let err = Webhook::new(SecretString::from(bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("WALDEN_ALERT_WEBHOOK"), "{err}");
        assert!(!err.contains("secret-token"), "{err}");
    }
}
