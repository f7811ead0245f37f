//! Prometheus metrics: request counts and latencies per route, served on their own listener
//! (`WALDEN_METRICS_BIND`) so they are never exposed on the public port.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder (installed once; tests build many applications in one process).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is already installed (embedding): keep a private one so /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Middleware counting every request by method, route pattern (never the raw path) and status.
pub async fn track(request: Request, next: Next) -> impl IntoResponse {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A signed audit checkpoint was written (`diverged`: the log no longer held the previous checkpoint's head).
pub fn audit_checkpoint_written(diverged: bool) {
    metrics::counter!("walden_audit_checkpoints_total").increment(1);
    if diverged {
        metrics::counter!("walden_audit_checkpoint_divergences_total").increment(1);
    }
}

/// A signed audit checkpoint could not be written (alert on any increase).
pub fn audit_checkpoint_failed() {
    metrics::counter!("walden_audit_checkpoint_failures_total").increment(1);
}

/// The gauges of one tracked cluster after a refresh (labels `org`, `app`): ages and window bounds from the last
/// good refresh (absent until there is one), finding counts, the refresh's duration, and a counter of refreshes
/// that could not read the storage. Alert on `walden_cluster_refresh_errors_total` increasing, on
/// `walden_wal_age_seconds` above 3 × archive_timeout, on `walden_base_backup_age_seconds` above
/// 7 days, and on `walden_findings{severity="error"}` above 0. The leader's volume (once read):
/// `walden_volume_used_bytes`, `walden_volume_total_bytes`, and `walden_volume_full_seconds`, the seconds until
/// it is full at the pace of the last hours (+Inf when it is not growing, NaN while there are too few samples
/// for a forecast, so an old forecast never lingers); alert on it below 86400 while WAL is late.
pub fn cluster_health(h: &walden_core::monitor::ClusterHealth, now: time::OffsetDateTime) {
    let labels = [("org", h.org.clone()), ("app", h.app.clone())];
    if let Some(v) = &h.volume {
        volume_gauges(&labels, v, now);
    }
    let unix = |t: time::OffsetDateTime| t.unix_timestamp_nanos() as f64 / 1e9;
    let age = |t: time::OffsetDateTime| (now - t).as_seconds_f64().max(0.0);
    if let Some(status) = &h.status {
        if let Some(ms) = status.duration_ms {
            metrics::gauge!("walden_cluster_refresh_duration_seconds", &labels)
                .set(ms as f64 / 1000.0);
        }
        metrics::gauge!("walden_cluster_refresh_ok", &labels).set(if status.last_error.is_none() {
            1.0
        } else {
            0.0
        });
        if status.last_error.is_some() {
            metrics::counter!("walden_cluster_refresh_errors_total", &labels).increment(1);
        }
    }
    let Some(s) = &h.summary else {
        return;
    };
    let gauges = [
        ("walden_wal_age_seconds", s.newest_wal.map(age)),
        (
            "walden_base_backup_age_seconds",
            s.newest_base_backup.map(age),
        ),
        (
            "walden_restorable_earliest_timestamp_seconds",
            s.earliest_restorable.map(unix),
        ),
        (
            "walden_restorable_latest_timestamp_seconds",
            s.latest_restorable.map(unix),
        ),
        (
            "walden_last_commit_timestamp_seconds",
            s.last_commit.map(unix),
        ),
        (
            "walden_cluster_last_good_refresh_timestamp_seconds",
            Some(unix(s.refreshed_at)),
        ),
    ];
    for (name, value) in gauges {
        if let Some(v) = value {
            metrics::gauge!(name, &labels).set(v);
        }
    }
    for (severity, count) in [
        ("error", s.findings.error),
        ("warning", s.findings.warning),
        ("info", s.findings.info),
    ] {
        let labels = [
            ("org", h.org.clone()),
            ("app", h.app.clone()),
            ("severity", severity.to_owned()),
        ];
        metrics::gauge!("walden_findings", &labels).set(count as f64);
    }
}

/// The leader's volume gauges of one cluster (see [`cluster_health`]).
fn volume_gauges(
    labels: &[(&'static str, String); 2],
    v: &walden_core::monitor::VolumeStatus,
    now: time::OffsetDateTime,
) {
    use walden_core::monitor::Forecast;
    let Some(latest) = v.latest else {
        return;
    };
    metrics::gauge!("walden_volume_used_bytes", labels).set(latest.used as f64);
    metrics::gauge!("walden_volume_total_bytes", labels).set(latest.total as f64);
    let full = match v.forecast {
        Forecast::Growing { full_at, .. } => (full_at - now).as_seconds_f64().max(0.0),
        Forecast::NotGrowing { .. } => f64::INFINITY,
        Forecast::NotEnoughSamples => f64::NAN,
    };
    metrics::gauge!("walden_volume_full_seconds", labels).set(full);
}

/// The monitor could not even list the tracked clusters (the database).
pub fn monitor_failed() {
    metrics::counter!("walden_monitor_failures_total").increment(1);
}

/// Serve `/metrics` on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
    let handle = handle();
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Bind the metrics listener with a clear error.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (WALDEN_METRICS_BIND)"))
}
