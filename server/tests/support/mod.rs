//! Set-up shared by the test crates that run the real `walden` binary against an in-process flysim (the demo
//! org and its seeded Stolon cluster): `cli_escrow.rs` and `plaintext_scan.rs`; and by the worker tests, which
//! run core in-process against it ([`fleet`]).
#![allow(dead_code)] // each test crate uses only part of it

pub mod fleet;

use std::path::Path;
use std::process::Command;

/// The master key of every console and CLI run these tests start (never a real one).
pub const MASTER_KEY: &str = "4444444444444444444444444444444444444444444444444444444444444444";

/// `walden` on the data directory `data`, pointed at the flysim serving `base_url` through flyctl's variables
/// (`FLY_FLAPS_BASE_URL`, `FLY_API_HOSTNAME`) with the demo org's token, with [`MASTER_KEY`] and the logs at
/// trace level (so their silence about secrets means something). Variables of the caller's environment that
/// would change the run are removed.
pub fn walden(data: &Path, base_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walden"));
    for var in [
        "WALDEN_BIND",
        "FLY_API_HOSTNAME",
        "WALDEN_LOG_FORMAT",
        "WALDEN_MASTER_KEY_FILE",
        "WALDEN_RETIRED_MASTER_KEYS",
        "WALDEN_RETIRED_MASTER_KEYS_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("WALDEN_DATA_DIR", data)
        .env("FLY_FLAPS_BASE_URL", base_url)
        .env("FLY_API_HOSTNAME", base_url)
        .env("FLY_API_TOKEN", flysim::DEMO_TOKEN)
        .env("WALDEN_FLY_ORG", flysim::DEMO_ORG)
        .env("WALDEN_MASTER_KEY", MASTER_KEY)
        .env("RUST_LOG", "trace");
    cmd
}

/// Runs `cmd` to completion with nothing on standard input, off the runtime's threads (the in-process emulator
/// serves on them).
pub async fn run_off_runtime(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.stdin(std::process::Stdio::null()).output().unwrap())
        .await
        .unwrap()
}
