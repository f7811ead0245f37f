//! `walden assets compress [DIR]`: the brotli and gzip copies of the built site's `pkg/` that the console
//! serves (see [`crate::assets`]). walden.sh and the Dockerfile run it after `cargo leptos build`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::DEFAULT_SITE_ROOT;

#[derive(Debug, Args)]
pub struct AssetsArgs {
    #[command(subcommand)]
    pub command: AssetsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// Write NAME.br and NAME.gz beside each .wasm, .js and .css of DIR whose copies are missing or stale.
    Compress {
        /// The directory of the built bundle (default: the site root's `pkg/`).
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub fn run(args: AssetsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AssetsCommand::Compress { dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(DEFAULT_SITE_ROOT).join("pkg"));
            let done = crate::assets::compress_dir(&dir)
                .with_context(|| format!("cannot compress the assets in {}", dir.display()))?;
            println!(
                "{}: {} files compressed ({} KiB → {} KiB brotli, {} KiB gzip), {} already up to date",
                dir.display(),
                done.written,
                done.bytes / 1024,
                done.brotli_bytes / 1024,
                done.gzip_bytes / 1024,
                done.up_to_date
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
