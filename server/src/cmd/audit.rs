//! `walden audit …`: check the audit log's hash chain, and write the log out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use time::OffsetDateTime;
use walden_core::audit::{AuditFilter, ExportFormat};
use walden_core::{Walden, WaldenOptions};

use crate::config::DataDirArgs;

/// Exit code of `walden audit verify` when the chain is broken (1 means it could not be checked).
pub const EXIT_BROKEN: u8 = 3;

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and report the first broken row. Exit 0: intact; 3: broken; 1: could not check.
    Verify {
        #[command(flatten)]
        data: DataDirArgs,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
        AuditCommand::Verify { data, json } => {
            let walden = Walden::open(&data.data_dir, WaldenOptions::default()).await?;
            let report = walden.audit().verify().await?;
            walden.close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else if let Some(b) = &report.first_broken {
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
            Ok(if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_BROKEN)
            })
        }
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
