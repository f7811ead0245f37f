//! Building the application: database, state, router, listener; and running it until shutdown.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos_axum::{generate_route_list, LeptosRoutes};
use secrecy::ExposeSecret;
use sqlx::SqlitePool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::{Level, Span};
use walden_app::server::refusals::ANONYMOUS_REFUSALS_PER_MIN;
use walden_app::server::{AppState, RefusalBudget};
use walden_app::{shell, App};
use walden_core::clusters::FlyConnection;
use walden_core::users::SetupToken;
use walden_core::{Walden, WaldenOptions};

use crate::config::ServeArgs;
use crate::jobs::Jobs;
use crate::security::{AllowedHosts, CspNonce, Guard};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Where an incoming `x-request-id` (a proxy's, or a client's) is kept, apart from the server's own.
const PROXY_REQUEST_ID: HeaderName = HeaderName::from_static("x-proxy-request-id");

/// A built console, bound to its port, ready to run.
pub struct Application {
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    router: Router,
    walden: Walden,
    config: ServeArgs,
    /// The signed audit checkpoint writer, when there is a key to sign with.
    checkpoints: Option<Arc<walden_core::audit_checkpoints::Checkpointer>>,
    /// Where alerts are sent, when `WALDEN_ALERT_WEBHOOK` is set.
    webhook: Option<crate::alerts::Webhook>,
    /// The built-in Fly emulator, in demo mode.
    demo: Option<flysim::Running>,
}

impl Application {
    /// Bind the configured address, then build.
    pub async fn build(config: ServeArgs) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind).await.with_context(|| {
            format!(
                "cannot listen on {} (is another program using that port? set WALDEN_BIND or --bind)",
                config.bind
            )
        })?;
        Self::build_on(config, listener).await
    }

    /// Build on a listener the caller bound (tests bind 127.0.0.1:0).
    pub async fn build_on(config: ServeArgs, listener: TcpListener) -> anyhow::Result<Self> {
        let metrics_listener = match config.metrics_bind {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        let pool = walden_core::db::open(&config.data.data_dir).await?;
        let addr = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let (fly, demo) = fly_connection(&config).await?;
        let sessions = crate::security::session_layer(&pool, &config).await?;
        let configured =
            crate::config::keyring(config.master_key.as_ref(), &config.retired_master_keys)?;
        // Audit checkpoints keep their own demo key when no master key is configured, as before.
        let checkpoints =
            crate::checkpoints::for_serve(&config, configured.as_ref(), pool.clone()).await?;
        let keyring = match configured {
            Some(ring) => Some(ring),
            None if config.demo_mode() => {
                let (key, path) = crate::config::demo_master_key(&config.data.data_dir)?;
                tracing::warn!(
                    key_file = %path.display(),
                    "demo mode: no WALDEN_MASTER_KEY is set, so secrets are sealed with a generated demo key kept \
                     in this file (set WALDEN_MASTER_KEY outside demo mode)"
                );
                crate::config::keyring(Some(&key), &config.retired_master_keys)?
            }
            // Outside demo mode the console holds real credentials: it does not start without the key that
            // seals them (issue #11: start-up refuses a missing key; a malformed one is refused above).
            None => anyhow::bail!(
                "WALDEN_MASTER_KEY is not set: outside demo mode Walden seals Fly tokens, escrowed passwords and                  TOTP secrets with it and does not start without it. Generate one with `openssl rand -hex 32` and                  set it as a secret (fly secrets set WALDEN_MASTER_KEY=...), or give --master-key-file"
            ),
        };
        let options = WaldenOptions {
            hash: config.password_hash,
            hash_limits: walden_core::users::HashLimits {
                permits: config.hash_permits.into(),
                ..walden_core::users::HashLimits::DEFAULT
            },
            keyring,
            fly: Some(fly),
            fly_endpoints: None,
        };
        let walden = Walden::from_pool(pool.clone(), options)?;
        let setup_token = setup_token(&config, &walden, addr).await?;
        let refusals = RefusalBudget::new(ANONYMOUS_REFUSALS_PER_MIN);
        let guard = Guard {
            hosts: Arc::new(AllowedHosts::from_config(&config)?),
            walden: walden.clone(),
            refusals: refusals.clone(),
            client_ip_header: config.client_ip_header.clone(),
        };
        let state = AppState {
            leptos_options: leptos_options(&config, addr),
            pool,
            demo_mode: config.demo_mode(),
            walden: walden.clone(),
            sessions: crate::security::session_policy(&config),
            client_ip_header: config.client_ip_header.clone(),
            setup_token,
            refusals,
        };
        let webhook = config
            .alert_webhook
            .clone()
            .map(crate::alerts::Webhook::new)
            .transpose()?;
        let guarded = |routes| crate::security::guard(routes, sessions, guard);
        let router = crate::security::headers(router(state, guarded), config.secure_cookies);
        Ok(Application {
            listener,
            metrics_listener,
            router,
            walden,
            config,
            checkpoints,
            webhook,
            demo,
        })
    }

    /// The address the console listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the metrics listener, when one is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serve until `shutdown` fires, then let in-flight requests and workers finish and close the database.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Application {
            listener,
            metrics_listener,
            router,
            walden,
            config,
            checkpoints,
            webhook,
            demo,
        } = self;
        let mut jobs = Jobs::spawn(walden.clone(), shutdown.child_token())
            .with_escrow(
                walden.clone(),
                Duration::from_secs(config.escrow_capture_secs),
                shutdown.child_token(),
            )
            .with_monitor(
                walden.clone(),
                Duration::from_secs(config.monitor_secs),
                shutdown.child_token(),
            )
            .with_restores(
                walden.clone(),
                crate::jobs::RESTORE_TICK,
                config.restore_engine(),
                shutdown.child_token(),
            );
        if let Some(writer) = checkpoints {
            jobs = jobs.with_checkpoints(writer, &walden, shutdown.child_token());
        }
        if let Some(webhook) = webhook {
            jobs = jobs.with_alert_webhook(walden.clone(), webhook, shutdown.child_token());
        }
        let metrics = metrics_listener
            .map(|l| tokio::spawn(crate::metrics::serve(l, shutdown.child_token())));
        let server = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

        let grace = config.shutdown_grace();
        let mut server = std::pin::pin!(server.into_future());
        tokio::select! {
            result = &mut server => result.context("the HTTP server failed")?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "requests still running after the grace period; stopping anyway");
            }
        }
        if tokio::time::timeout(grace, jobs.join()).await.is_err() {
            tracing::warn!("background work did not stop within the grace period");
        }
        if let Some(task) = metrics {
            task.abort();
        }
        if let Some(emulator) = demo {
            if let Err(e) = emulator.shutdown().await {
                tracing::warn!(error = %e, "the built-in Fly emulator did not stop cleanly");
            }
        }
        walden.close().await;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}

/// The gate of web setup (security review H3). The operator's token (`WALDEN_SETUP_TOKEN` or its file) when
/// set; else, while no user exists, a random one, printed once on standard output as a link to open (the way
/// Jupyter does), and never written to the log. `None` when users exist and no token is set: setup is closed.
async fn setup_token(
    config: &ServeArgs,
    walden: &Walden,
    addr: SocketAddr,
) -> anyhow::Result<Option<SetupToken>> {
    if let Some(token) = &config.setup_token {
        return Ok(Some(SetupToken::from_secret(token).map_err(|e| {
            anyhow::anyhow!("WALDEN_SETUP_TOKEN: {}", e.message)
        })?));
    }
    if !walden.accounts().needs_setup().await? {
        return Ok(None);
    }
    let (gate, token) = SetupToken::generate()?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_owned(),
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    tracing::info!(
        "no user yet: create the first admin with the setup link printed on standard output, \
         or with `walden user add --admin`"
    );
    // Standard output, not the log: the link is a credential until the first admin exists. A closed stdout
    // (`walden serve >&-`) must not stop the console; the CLI and WALDEN_SETUP_TOKEN remain.
    let link = format!(
        "http://{host}:{port}/setup?token={token}",
        port = addr.port(),
        token = token.expose_secret()
    );
    let printed = {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "\nTo create Walden's first admin, open this link (it works until an admin exists):\n\n    {link}\n"
        )
        .and_then(|()| out.flush())
    };
    if printed.is_err() {
        tracing::warn!(
            "the setup link could not be printed: set WALDEN_SETUP_TOKEN, or use `walden user add --admin`"
        );
    }
    Ok(Some(gate))
}

/// The Fly connection: the real API with the configured token, or, in demo mode, the built-in emulator
/// started on a loopback port with its state and sample wal-g bucket under `<data dir>/demo`.
async fn fly_connection(
    config: &ServeArgs,
) -> anyhow::Result<(FlyConnection, Option<flysim::Running>)> {
    if let Some(token) = &config.fly_api_token {
        let mut builder = fly::FlyClient::builder().token(token.clone());
        if let Some(url) = &config.fly_machines_url {
            builder = builder.machines_base_url(url.clone());
        }
        if let Some(url) = &config.fly_api_url {
            builder = builder.api_base_url(url.clone());
        }
        let client = builder.build().context("invalid Fly API settings")?;
        let org = config.fly_org.clone();
        return Ok((FlyConnection { client, org }, None));
    }
    let demo_dir = config.data.data_dir.join("demo");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot start the built-in Fly emulator for demo mode")?;
    let (running, info) = flysim::start_demo(
        listener,
        demo_dir.join("walg"),
        Some(demo_dir.join("flysim-state.json")),
        CancellationToken::new(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start the built-in Fly emulator for demo mode: {e}"))?;
    tracing::info!(
        url = %running.base_url,
        org = %info.org,
        bucket = %info.storage.display(),
        "demo mode: built-in Fly emulator started"
    );
    let client = fly::FlyClient::builder()
        .token(info.token.clone().into())
        .machines_base_url(running.base_url.clone())
        .api_base_url(running.base_url.clone())
        .build()
        .context("cannot reach the built-in Fly emulator")?;
    let org = info.org;
    Ok((FlyConnection { client, org }, Some(running)))
}

fn leptos_options(config: &ServeArgs, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name(Arc::<str>::from(
            option_env!("LEPTOS_OUTPUT_NAME").unwrap_or("walden"),
        ))
        .site_root(Arc::<str>::from(
            config.site_root.to_string_lossy().as_ref(),
        ))
        .site_pkg_dir(Arc::<str>::from("pkg"))
        .site_addr(addr)
        .build()
}

/// The whole HTTP surface: probes, the Leptos app and its server functions, static files, and the layers.
/// `guarded` wraps the routes in the guard layers (sessions, Host and cross-origin checks): inside the
/// request id and the trace span, so refusals carry a request id and are logged and counted like any answer.
pub fn router(state: AppState, guarded: impl FnOnce(Router) -> Router) -> Router {
    // Install the recorder before the first request is counted.
    let _ = crate::metrics::handle();
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let request_span = |request: &Request<_>| {
        let header = |name: &HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
        let request_id = header(&REQUEST_ID).unwrap_or("-");
        let path = request.uri().path();
        // Fly's health checks hit the probes every few seconds: they log at debug, everything else at info.
        // The path only: query strings may carry things that do not belong in logs.
        let span = if matches!(path, "/healthz" | "/readyz") {
            tracing::debug_span!("request", method = %request.method(), path, request_id, proxy_request_id = tracing::field::Empty)
        } else {
            tracing::info_span!("request", method = %request.method(), path, request_id, proxy_request_id = tracing::field::Empty)
        };
        if let Some(theirs) = header(&PROXY_REQUEST_ID) {
            span.record(
                "proxy_request_id",
                theirs.chars().take(128).collect::<String>(),
            );
        }
        span
    };
    let on_response = |response: &axum::http::Response<_>, latency: Duration, span: &Span| {
        let status = response.status().as_u16();
        let latency_ms = latency.as_millis();
        // A disabled span (its level filtered out) or a debug one marks a probe: keep its line quiet too.
        let quiet = span
            .metadata()
            .is_none_or(|meta| *meta.level() == Level::DEBUG);
        if quiet {
            tracing::debug!(status, latency_ms, "finished processing request");
        } else {
            tracing::info!(status, latency_ms, "finished processing request");
        }
    };
    let (pkg_path, pkg) = (format!("/{}", options.site_pkg_dir), pkg_service(&options));
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .leptos_routes_with_context(&state, routes, provide_csp_nonce, move || {
            shell(options.clone())
        })
        .nest_service(&pkg_path, pkg)
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(provide_csp_nonce, shell))
        .with_state(state);
    guarded(routes)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::map_request(set_aside_proxy_request_id))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(on_response),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

/// The bundle (`<site root>/pkg`), served precompressed (see [`crate::assets`]).
fn pkg_service(
    options: &LeptosOptions,
) -> tower_http::set_header::SetResponseHeader<
    tower_http::services::ServeDir,
    axum::http::HeaderValue,
> {
    crate::assets::serve_pkg(
        Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref()),
    )
}

/// Give Leptos this request's CSP nonce (made by `security::headers`, which also sends it in the
/// Content-Security-Policy header), so every script it renders carries the nonce the header allows. Leptos
/// would otherwise make a nonce of its own that the header does not know.
fn provide_csp_nonce() {
    let nonce = leptos::prelude::use_context::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<CspNonce>().cloned());
    if let Some(CspNonce(nonce)) = nonce {
        leptos::prelude::provide_context(nonce);
    }
}

/// The request id is always the server's own (security review L1): an incoming `x-request-id` is client-chosen
/// text that would otherwise land in audit rows and be echoed back. A proxy's id is kept apart as
/// `x-proxy-request-id`, logged beside ours so logs on both sides still line up.
async fn set_aside_proxy_request_id(
    mut request: Request<axum::body::Body>,
) -> Request<axum::body::Body> {
    if let Some(theirs) = request.headers_mut().remove(&REQUEST_ID) {
        request.headers_mut().insert(PROXY_REQUEST_ID, theirs);
    }
    request
}

/// Liveness: the process is up and serving.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
async fn readyz(State(pool): State<SqlitePool>) -> impl IntoResponse {
    if walden_core::db::ping(&pool).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database not reachable")
    }
}
