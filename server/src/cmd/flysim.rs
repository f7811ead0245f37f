//! `walden flysim`: run the Fly emulator standalone with the demo org (for demo mode and end-to-end tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Run the Fly Machines API emulator (with a demo org and a sample Stolon cluster) as a real HTTP peer.
#[derive(Debug, clap::Args)]
pub struct FlysimArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "WALDEN_FLYSIM_BIND", default_value = "127.0.0.1:4280")]
    pub bind: SocketAddr,
    /// Keep the emulator's state in this JSON file so it survives restarts.
    #[arg(long, env = "WALDEN_FLYSIM_STATE")]
    pub state: Option<PathBuf>,
    /// Directory used as the demo cluster's wal-g storage (WALG_FILE_PREFIX).
    #[arg(
        long,
        env = "WALDEN_FLYSIM_STORAGE",
        default_value = "data/flysim-walg"
    )]
    pub storage: PathBuf,
}

pub async fn run(args: FlysimArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let cancel = crate::shutdown::on_signal().context("cannot listen for shutdown signals")?;
    let (running, demo) =
        flysim::start_demo(listener, &args.storage, args.state.clone(), cancel.clone())
            .await
            .context("cannot start the Fly emulator")?;
    println!(
        "flysim: Fly Machines API emulator listening on {}",
        running.base_url
    );
    println!(
        "demo org {:?}, app {:?}, wal-g storage {}",
        demo.org,
        demo.app,
        demo.storage.display()
    );
    println!("FLY_FLAPS_BASE_URL={}", running.base_url);
    println!("FLY_API_HOSTNAME={}", running.base_url);
    // The emulator's own demo token (not a Fly credential): printing it is the point of this command.
    println!("FLY_API_TOKEN={}", demo.token);
    cancel.cancelled().await;
    running
        .shutdown()
        .await
        .context("emulator stopped with an error")?;
    Ok(ExitCode::SUCCESS)
}
