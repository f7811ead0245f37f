//! `walden audit …`: check the audit log's hash chain and its signed checkpoints, and write the log out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use walden_core::audit::{AuditFilter, ExportFormat, VerifyReport};
use walden_core::audit_checkpoints::{self, CheckpointReport, PublicKey};
use walden_core::keyring::Keyring;
use walden_core::{Walden, WaldenOptions};

use crate::config::{CheckpointArgs, DataDirArgs};

/// Exit code of `walden audit verify` when the chain is broken (1 means it could not be checked).
pub const EXIT_BROKEN: u8 = 3;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and report the first broken row, then check the log against the signed
    /// checkpoints (rewritten rows, rows cut from the end, a wiped log, a missing checkpoint interval, a
    /// checkpoint signed by an unknown key). Exit 0: intact; 3: broken; 1: could not check.
    Verify {
        #[command(flatten)]
        data: DataDirArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// Trust checkpoints signed by this Ed25519 public key (64 hex characters, as logged at start-up and
        /// printed by `walden audit public-key`); repeat for old keys. When given, only these keys are
        /// trusted; otherwise the configured signing key (or the one derived from the master key) is.
        #[arg(long = "public-key", value_name = "HEX", value_parser = parse_public_key)]
        public_keys: Vec<PublicKey>,
        /// A file holding the master key, when the checkpoint key is derived from it.
        #[arg(long, env = "WALDEN_MASTER_KEY_FILE", value_name = "PATH")]
        master_key_file: Option<PathBuf>,
    },
    /// Print the id and the public key of the key that signs audit checkpoints, to keep off the box.
    PublicKey {
        #[command(flatten)]
        data: DataDirArgs,
        #[command(flatten)]
        checkpoints: CheckpointArgs,
        /// A file holding the master key, when the checkpoint key is derived from it.
        #[arg(long, env = "WALDEN_MASTER_KEY_FILE", value_name = "PATH")]
        master_key_file: Option<PathBuf>,
    },
    /// Write the log, oldest first, with every column and both hashes.
    Export {
        #[command(flatten)]
        data: DataDirArgs,
        /// jsonl (one JSON object per line) or csv.
        #[arg(long, value_name = "jsonl|csv")]
        format: ExportFormat,
        /// Only rows at or after this time: 2026-11-25 or 2026-11-25T14:00:00Z.
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        since: Option<OffsetDateTime>,
        /// Only rows before this time (same forms as --since).
        #[arg(long, value_parser = parse_time, value_name = "TIME")]
        until: Option<OffsetDateTime>,
        /// Write to this file instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn parse_public_key(s: &str) -> Result<PublicKey, String> {
    audit_checkpoints::parse_public_key(s).map_err(|e| e.to_string())
}

/// The signing key configured on this machine (`WALDEN_AUDIT_SIGNING_KEY` or its file, else derived from the
/// master key, else a demo data directory's key): what `verify` trusts when no `--public-key` is given.
fn local_signing_key(
    data: &DataDirArgs,
    checkpoints: &mut CheckpointArgs,
    master_key_file: Option<PathBuf>,
) -> anyhow::Result<Option<walden_core::audit_checkpoints::CheckpointKey>> {
    checkpoints.load_signing_key(std::env::var(crate::config::SIGNING_KEY.env).ok())?;
    let master = crate::config::MASTER_KEY.from_env(master_key_file.as_deref())?;
    let keyring = master
        .as_ref()
        .map(Keyring::from_master_hex)
        .transpose()
        .context("WALDEN_MASTER_KEY")?;
    Ok(crate::checkpoints::signing_key(
        checkpoints,
        keyring.as_ref(),
        &data.data_dir,
        crate::checkpoints::DemoKey::IfPresent,
    )?
    .map(|(key, _)| key))
}

/// The checkpoint keys derived from retired master keys (`WALDEN_RETIRED_MASTER_KEYS`): without a signing key
/// of its own, the console signed the checkpoints written before a master-key rotation with these, so they stay
/// trusted while the old key is kept as retired.
fn retired_signing_keys() -> anyhow::Result<Vec<PublicKey>> {
    let retired = crate::config::retired_keys(
        std::env::var(crate::config::RETIRED_MASTER_KEYS.env).ok(),
        None,
    )?;
    retired
        .iter()
        .enumerate()
        .map(|(n, key)| {
            let ring = Keyring::from_master_hex(key)
                .with_context(|| format!("WALDEN_RETIRED_MASTER_KEYS: key {}", n + 1))?;
            Ok(audit_checkpoints::CheckpointKey::derived_from(&ring)?.public_key())
        })
        .collect()
}

/// The whole outcome of `walden audit verify --json`: the chain report's fields, and the checkpoints'.
#[derive(serde::Serialize)]
struct FullReport<'a> {
    #[serde(flatten)]
    chain: &'a VerifyReport,
    checkpoints: Option<&'a CheckpointReport>,
}

async fn verify(
    data: DataDirArgs,
    json: bool,
    mut checkpoints: CheckpointArgs,
    public_keys: Vec<PublicKey>,
    master_key_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let explicit_sink = checkpoints.sink.is_some();
    let trusted = if public_keys.is_empty() {
        let mut keys: Vec<PublicKey> = local_signing_key(&data, &mut checkpoints, master_key_file)?
            .map(|k| vec![k.public_key()])
            .unwrap_or_default();
        keys.extend(retired_signing_keys()?);
        keys
    } else {
        public_keys
    };
    let walden = Walden::open(&data.data_dir, WaldenOptions::default()).await?;
    let report = walden.audit().verify().await?;
    let sink = crate::checkpoints::sink(&checkpoints, &data.data_dir, false).await?;
    let checked = match (&sink, trusted.is_empty()) {
        (Some(sink), false) => Some(
            audit_checkpoints::verify(walden.pool(), sink, &trusted, Some(walden_core::ts::now()))
                .await?,
        ),
        (Some(sink), true) if explicit_sink => {
            walden.close().await;
            anyhow::bail!(
                "cannot check the checkpoints in {} without a key: pass --public-key, or set \
                 WALDEN_AUDIT_SIGNING_KEY or WALDEN_MASTER_KEY",
                sink.display()
            );
        }
        _ => None,
    };
    walden.close().await;
    let intact = report.is_intact() && checked.as_ref().is_none_or(CheckpointReport::is_intact);
    if json {
        let full = FullReport {
            chain: &report,
            checkpoints: checked.as_ref(),
        };
        println!("{}", serde_json::to_string_pretty(&full)?);
    } else {
        print_chain(&report);
        match (&checked, &sink) {
            (Some(c), _) => print_checkpoints(c),
            (None, Some(s)) => println!(
                "checkpoints NOT checked: no key to trust for {} (pass --public-key)",
                s.display()
            ),
            (None, None) => println!(
                "checkpoints NOT checked: none configured (set WALDEN_AUDIT_SINK or pass --checkpoints)"
            ),
        }
    }
    Ok(if intact {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BROKEN)
    })
}

fn print_chain(report: &VerifyReport) {
    if let Some(b) = &report.first_broken {
        println!(
            "audit log BROKEN at row {}: {} (rows 1..{} verified)",
            b.id, b.breakage, report.verified_through
        );
    } else if report.rows == 0 {
        println!("audit log is empty");
    } else {
        println!(
            "audit log intact: {} rows, head hash {}",
            report.rows,
            report.head_hash.as_deref().unwrap_or("-")
        );
    }
}

fn print_checkpoints(c: &CheckpointReport) {
    if c.is_intact() {
        let confirmed = match c.confirmed_through {
            0 => "no rows yet".to_owned(),
            n => format!("rows 1..{n}"),
        };
        println!(
            "checkpoints intact: {} signed checkpoints in {} confirm {confirmed}{}",
            c.trusted,
            c.sink,
            c.latest_at
                .as_deref()
                .map(|at| format!(", the newest written at {at}"))
                .unwrap_or_default()
        );
        return;
    }
    println!(
        "checkpoints BROKEN: {} problem(s) in {} ({} of {} checkpoints trusted, rows 1..{} confirmed):",
        c.findings.len(),
        c.sink,
        c.trusted,
        c.checkpoints,
        c.confirmed_through
    );
    for finding in &c.findings {
        println!("  - {finding}");
    }
}

/// A date (midnight UTC) or an RFC 3339 time.
fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    use time::format_description::well_known::Rfc3339;
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &date_fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            format!("{s:?} is not a date (2026-11-25) or an RFC 3339 time (2026-11-25T14:00:00Z)")
        })
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify {
            data,
            json,
            checkpoints,
            public_keys,
            master_key_file,
        } => verify(data, json, checkpoints, public_keys, master_key_file).await,
        AuditCommand::PublicKey {
            data,
            mut checkpoints,
            master_key_file,
        } => match local_signing_key(&data, &mut checkpoints, master_key_file)? {
            Some(key) => {
                println!("{} {}", key.id(), key.public_key_hex());
                Ok(ExitCode::SUCCESS)
            }
            None => anyhow::bail!(
                "no audit signing key: set WALDEN_AUDIT_SIGNING_KEY (or its file) or WALDEN_MASTER_KEY"
            ),
        },
        AuditCommand::Export {
            data,
            format,
            since,
            until,
            output,
        } => {
            let walden = Walden::open(&data.data_dir, WaldenOptions::default()).await?;
            let filter = AuditFilter {
                since,
                until,
                ..AuditFilter::default()
            };
            match &output {
                Some(path) => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let n = walden.audit().export(&filter, format, &file).await?;
                    file.sync_all()
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!("wrote {n} rows to {}", path.display());
                }
                None => {
                    let out = std::io::stdout();
                    walden.audit().export(&filter, format, &out).await?;
                    (&out).flush()?;
                }
            }
            walden.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_dates_or_rfc3339() {
        assert_eq!(
            parse_time("2026-11-25").unwrap(),
            time::macros::datetime!(2026-11-25 00:00 UTC)
        );
        assert_eq!(
            parse_time("2026-11-25T14:00:00+01:00").unwrap(),
            time::macros::datetime!(2026-11-25 13:00 UTC)
        );
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }
}
