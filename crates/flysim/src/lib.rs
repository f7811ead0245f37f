//! flysim: an emulator of Fly.io's Machines API and of the Stolon Postgres image (`flyio/postgres`), for
//! tests and demo mode. It is an independent HTTP peer: any Machines-API client reaches it through
//! `FLY_FLAPS_BASE_URL` / `FLY_API_HOSTNAME` set to [`Running::base_url`].
//!
//! See README.md for what is emulated and what is not.

mod api;
pub mod clock;
mod demo;
mod exec;
pub mod faults;
mod image;
mod model;
mod sim;
mod stolon;
mod walg;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use clock::{Clock, ManualClock, SystemClock};
pub use demo::{ClusterSeed, DemoInfo, DEMO_APP, DEMO_ORG, DEMO_TOKEN};
pub use faults::Faults;
pub use sim::{valid_app_name, Sim, SimBuilder, SimError, Timing};

/// Serve the emulator on `listener` until the process ends.
pub async fn serve(listener: TcpListener, sim: Sim) -> std::io::Result<()> {
    serve_with_shutdown(listener, sim, CancellationToken::new()).await
}

/// Serve until `cancel` fires. On a real clock, a ticker advances transient states in the background.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    sim: Sim,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    if sim.inner.manual.is_none() {
        let ticker = sim.clone();
        let stop_ticking = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_ticking.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => { ticker.tick(); }
                }
            }
        });
    }
    let router = api::router(sim.clone());
    let stop_serving = cancel.clone();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop_serving.cancelled().await })
        .await;
    sim.save();
    served
}

/// A running emulator (see [`spawn`]).
pub struct Running {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`: use it as `FLY_FLAPS_BASE_URL` (paths under `/v1`) and as
    /// `FLY_API_HOSTNAME` (logs under `/api/v1`).
    pub base_url: String,
    pub cancel: CancellationToken,
    pub handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stop serving and wait for the server task.
    pub async fn shutdown(self) -> std::io::Result<()> {
        self.cancel.cancel();
        self.handle.await.map_err(std::io::Error::other)?
    }
}

/// Serve `sim` on `listener` in a background task; returns the base URL and a shutdown handle.
pub fn spawn(
    listener: TcpListener,
    sim: Sim,
    cancel: CancellationToken,
) -> std::io::Result<Running> {
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(serve_with_shutdown(listener, sim, cancel.clone()));
    Ok(Running {
        addr,
        base_url: format!("http://{addr}"),
        cancel,
        handle,
    })
}

/// Demo mode in one call: a real-clock Sim (persisted to `state` if given) with the demo seed, whose
/// wal-g storage is `storage`, served on `listener` until `cancel` fires. Returns the running server
/// (base URL) and the demo org/token/app.
pub async fn start_demo(
    listener: TcpListener,
    storage: impl AsRef<std::path::Path>,
    state: Option<std::path::PathBuf>,
    cancel: CancellationToken,
) -> Result<(Running, DemoInfo), SimError> {
    let mut builder = Sim::builder().seed(42);
    if let Some(path) = state {
        builder = builder.persist(path);
    }
    let sim = builder.build()?;
    let info = sim.seed_demo(storage)?;
    spawn_demo_traffic(sim.clone(), info.app.clone(), cancel.clone());
    let run = spawn(listener, sim, cancel)
        .map_err(|e| SimError::Invalid(format!("cannot serve: {e}")))?;
    Ok((run, info))
}

/// How often the demo's application writes (a few rows each time). Shorter than archive_timeout (60 s), so
/// the demo keeps archiving a segment a minute and its dashboard shows fresh WAL, as a busy cluster's would.
const DEMO_WRITE_EVERY: Duration = Duration::from_secs(20);

/// The demo's application traffic, until `cancel` fires (see [`Sim::demo_write`]).
fn spawn_demo_traffic(sim: Sim, app: String, cancel: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(DEMO_WRITE_EVERY) => { sim.demo_write(&app, 3); }
            }
        }
    });
}
