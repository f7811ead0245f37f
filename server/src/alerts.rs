//! Alerts to a webhook: each raise ("firing") and each recovery ("resolved") of `walden_core::alerts` is POSTed
//! once, as JSON with a Slack-compatible `text` field, to `WALDEN_ALERT_WEBHOOK` (a Slack or Mattermost incoming
//! webhook, or any receiver that takes JSON).
//!
//! Deliveries go out in the order the alerts were raised; a failed POST stops the batch and is tried again at
//! the next wake, so a receiver never sees a recovery before its raise. A delivery is recorded (audited
//! `alert.notify`) only after the receiver answered 2xx: a crash between the two re-sends it, never drops it.
//! The webhook's URL is a secret (Slack's carries its token): it never reaches logs or errors.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta};
use walden_core::alerts::{Alert, Delivery};
use walden_core::Walden;

/// How long one POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where alerts are sent.
#[derive(Clone)]
pub struct Webhook {
    url: SecretString,
    client: reqwest::Client,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Webhook([redacted])")
    }
}

impl Webhook {
    /// A webhook at `url` (`https://…`; `http://` only for a receiver on this machine's loopback).
    pub fn new(url: SecretString) -> anyhow::Result<Self> {
        let parsed = reqwest::Url::parse(url.expose_secret())
            .map_err(|_| anyhow::anyhow!("WALDEN_ALERT_WEBHOOK is not a URL"))?;
        let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => anyhow::bail!(
                "WALDEN_ALERT_WEBHOOK must be an https:// URL (http:// only on this machine's loopback)"
            ),
        }
        let client = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Webhook { url, client })
    }

    /// POST one message; `Err` says why in words that never include the URL.
    async fn post(&self, body: &serde_json::Value) -> Result<(), String> {
        let response = self
            .client
            .post(self.url.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "the webhook did not answer in time".to_owned()
                } else {
                    "the webhook could not be reached".to_owned()
                }
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {status}"))
        }
    }
}

/// The JSON a receiver gets: `text` for Slack-compatible receivers, the rest for everyone else.
pub fn payload(alert: &Alert, which: Delivery) -> serde_json::Value {
    let place = match (&alert.org, &alert.app) {
        (Some(org), Some(app)) => format!("{org}/{app}: "),
        _ => String::new(),
    };
    let (state, text) = match which {
        Delivery::Raised => (
            "firing",
            format!(
                "[Walden] {} {place}{}",
                alert.severity.to_uppercase(),
                alert.message
            ),
        ),
        Delivery::Resolved => (
            "resolved",
            format!(
                "[Walden] RESOLVED {place}{}",
                alert
                    .resolution
                    .as_deref()
                    .unwrap_or("the condition is over")
            ),
        ),
    };
    serde_json::json!({
        "text": text,
        "state": state,
        "alert": {
            "id": alert.id,
            "key": alert.key,
            "kind": alert.kind,
            "severity": alert.severity,
            "org": alert.org,
            "app": alert.app,
            "message": alert.message,
            "raised_at": alert.raised_at,
            "resolved_at": alert.resolved_at,
            "resolution": alert.resolution,
        },
    })
}

/// What one delivery run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub sent: usize,
    /// Whether a POST failed (the rest waits for the next run).
    pub failed: bool,
}

/// The actor the webhook worker records deliveries as.
fn notifier() -> Actor {
    Actor::System {
        label: "alert-webhook".into(),
    }
}

/// Send every due raise and recovery, in order, stopping at the first failure.
pub async fn deliver_due(walden: &Walden, webhook: &Webhook) -> anyhow::Result<Delivered> {
    let mut done = Delivered::default();
    for (alert, which) in walden.alerts().undelivered().await? {
        if let Err(why) = webhook.post(&payload(&alert, which)).await {
            metrics::counter!("walden_alert_webhook_failures_total").increment(1);
            tracing::warn!(alert = %alert.key, message = which.as_str(), %why,
                "alert webhook: delivery failed; trying again later");
            done.failed = true;
            break;
        }
        walden
            .alerts()
            .mark_delivered(&notifier(), &RequestMeta::default(), alert.id, which)
            .await?;
        metrics::counter!("walden_alert_webhook_deliveries_total").increment(1);
        done.sent += 1;
    }
    Ok(done)
}

/// Deliver due alerts at start (what a restart left), then whenever an audited commit happens (a raise is one)
/// and every `retry` for deliveries that failed, until `token` fires.
pub async fn webhook_worker(
    walden: Walden,
    webhook: Webhook,
    token: CancellationToken,
    retry: Duration,
) {
    // Subscribed before the first delivery: a raise committed after it wakes the loop, one before it is due.
    let mut commits = walden.audit().commits();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + retry, retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if let Err(e) = deliver_due(&walden, &webhook).await {
            tracing::warn!(error = %e, "alert webhook: cannot read or record deliveries");
        }
        tokio::select! {
            () = token.cancelled() => break,
            _ = tick.tick() => {}
            changed = commits.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::debug!("alert webhook worker stopped");
}
