//! `walden keys …`: the master keys that seal secrets at rest: which key sealed what (`status`), and
//! re-sealing everything under the current master key (`rotate`; security review M7).
//!
//! Keys never come from a flag's value (readable by every process in /proc/*/cmdline): the master key from
//! `WALDEN_MASTER_KEY` or `--master-key-file`, retired keys from `WALDEN_RETIRED_MASTER_KEYS` or
//! `--retired-master-keys-file`. The rotation is audited with the actor `(system:cli)` and key ids only.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use walden_core::access::RequestMeta;
use walden_core::keyring::Keyring;
use walden_core::rotation::{self, KeyStatus, RotationReport};
use walden_core::{Walden, WaldenOptions};

use crate::config::DataDirArgs;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show which key sealed the values in the database, and how many a rotation would re-seal.
    Status(KeyArgs),
    /// Re-seal every sealed value under the master key, opening old ones with the retired keys (one
    /// transaction, audited; running it again changes nothing).
    Rotate(KeyArgs),
}

/// Where the keys come from (the values themselves only from the environment or files).
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// A file holding the master key (64 hex characters), instead of `WALDEN_MASTER_KEY`.
    #[arg(long, env = "WALDEN_MASTER_KEY_FILE", value_name = "PATH")]
    pub master_key_file: Option<PathBuf>,
    /// A file holding the retired master keys (separated by commas, spaces or lines), instead of
    /// `WALDEN_RETIRED_MASTER_KEYS`.
    #[arg(long, env = "WALDEN_RETIRED_MASTER_KEYS_FILE", value_name = "PATH")]
    pub retired_master_keys_file: Option<PathBuf>,
}

impl KeyArgs {
    /// The keyring from the environment or the files; the master key is required.
    fn keyring(&self) -> anyhow::Result<Keyring> {
        let master = crate::config::MASTER_KEY.from_env(self.master_key_file.as_deref())?;
        let retired = crate::config::retired_keys(
            std::env::var(crate::config::RETIRED_MASTER_KEYS.env).ok(),
            self.retired_master_keys_file.as_deref(),
        )?;
        crate::config::keyring(master.as_ref(), &retired)?.context(
            "no master key: set WALDEN_MASTER_KEY (or --master-key-file) to the key that seals, and \
             WALDEN_RETIRED_MASTER_KEYS to the keys it replaces",
        )
    }

    async fn open(&self) -> anyhow::Result<(Walden, Keyring)> {
        let keyring = self.keyring()?;
        let options = WaldenOptions {
            keyring: Some(keyring.clone()),
            ..WaldenOptions::default()
        };
        Ok((Walden::open(&self.data.data_dir, options).await?, keyring))
    }
}

pub async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::Status(keys) => {
            let (walden, keyring) = keys.open().await?;
            let status = rotation::status(walden.pool(), &keyring, &super::user::actor()).await?;
            print!("{}", status_text(&status));
        }
        KeysCommand::Rotate(keys) => {
            let (walden, keyring) = keys.open().await?;
            let report = rotation::rotate(
                walden.pool(),
                &keyring,
                &super::user::actor(),
                &RequestMeta::default(),
            )
            .await?;
            println!("{}", report_text(&report));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_text(status: &KeyStatus) -> String {
    let primary = status.primary.to_string();
    let retired: Vec<String> = status.retired.iter().map(ToString::to_string).collect();
    let mut out = format!("master key: {primary}\n");
    out += &format!(
        "retired keys: {}\n",
        if retired.is_empty() {
            "none".to_owned()
        } else {
            retired.join(", ")
        }
    );
    for (column, by) in &status.columns {
        if by.is_empty() {
            out += &format!("{column}: no values\n");
        }
        for (sealer, n) in by {
            let sealer = sealer.to_string();
            let note = if sealer == primary {
                " (master key)"
            } else if retired.contains(&sealer) {
                " (retired key)"
            } else if sealer.starts_with("legacy") {
                ""
            } else {
                " (unknown key)"
            };
            out += &format!("{column}: {n} sealed with {sealer}{note}\n");
        }
    }
    out += &match status.pending() {
        0 => "every sealed value is under the master key\n".to_owned(),
        n => format!("{n} value(s) not under the master key: run `walden keys rotate`\n"),
    };
    out
}

fn report_text(report: &RotationReport) -> String {
    if report.total() == 0 {
        return format!(
            "nothing to do: every sealed value is under the master key {}",
            report.primary
        );
    }
    let from: Vec<String> = report
        .resealed
        .iter()
        .map(|(sealer, n)| format!("{n} from {sealer}"))
        .collect();
    format!(
        "re-sealed {} value(s) under the master key {} ({}){}",
        report.total(),
        report.primary,
        from.join(", "),
        report
            .audit_id
            .map(|id| format!("; audit row {id}"))
            .unwrap_or_default()
    )
}
