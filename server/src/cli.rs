//! The command line: global options, one subcommand per job, and the error-to-exit-code policy.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;
use crate::config::{DataDirArgs, ServeArgs};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "walden",
    version,
    about = "Point-in-time backups and restores for Postgres on Fly.io",
    propagate_version = true
)]
pub struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, env = "WALDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web console.
    Serve(Box<ServeArgs>),
    /// Create or upgrade the database in the data directory, then exit.
    Migrate(DataDirArgs),
    /// Manage console users (first admin, recovery).
    User(cmd::user::UserArgs),
    /// Check or export the audit log.
    Audit(cmd::audit::AuditArgs),
    /// The master keys sealing secrets at rest: status, and rotation to a new key.
    Keys(cmd::keys::KeysArgs),
    /// Operator commands on the Fly Machines API (apps, machines, exec, secrets).
    Fly(cmd::fly::FlyArgs),
    /// Fly organisations added with their own token, their Postgres apps, and the clusters Walden tracks.
    Org(cmd::org::OrgArgs),
    /// Credential escrow of tracked clusters: capture, list, prove, reveal with a reason, enter by hand.
    Escrow(cmd::escrow::EscrowArgs),
    /// Restores of tracked clusters: `restore plan` checks everything and prints the plan and its hash.
    Restore(cmd::restore::RestoreArgs),
    /// After a verified restore: `cutover run RUN --apps a,b --confirm OLD_APP`, `cutover rollback`, `status`.
    Cutover(cmd::cutover::CutoverArgs),
    /// The built site's assets: `assets compress` writes the brotli and gzip copies the console serves.
    Assets(cmd::assets::AssetsArgs),
    /// Run the Fly API emulator standalone with a demo org (demo mode, end-to-end tests).
    Flysim(cmd::flysim::FlysimArgs),
    /// Show a wal-g bucket's backups, timelines, restorable windows and findings.
    Timeline(cmd::timeline::TimelineArgs),
    /// Check a wal-g bucket's integrity; exit code 1 when any finding is an error.
    Verify(cmd::timeline::VerifyArgs),
    /// Choose the base backup and recovery settings for a target; exit code 3 when refused.
    Plan(cmd::timeline::PlanArgs),
}

/// Parse the command line, run the command, and turn any failure into one `error: …` line and exit code 1.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => cmd::serve::run(*args).await,
        Command::Migrate(args) => cmd::migrate::run(args).await,
        Command::User(args) => cmd::user::run(args).await,
        Command::Audit(args) => cmd::audit::run(args).await,
        Command::Keys(args) => cmd::keys::run(args).await,
        Command::Fly(args) => cmd::fly::run(args).await,
        Command::Org(args) => cmd::org::run(args).await,
        Command::Escrow(args) => cmd::escrow::run(args).await,
        Command::Restore(args) => cmd::restore::run(args).await,
        Command::Cutover(args) => cmd::cutover::run(args).await,
        Command::Assets(args) => cmd::assets::run(args),
        Command::Flysim(args) => cmd::flysim::run(args).await,
        Command::Timeline(args) => cmd::timeline::run_timeline(args).await,
        Command::Verify(args) => cmd::timeline::run_verify(args).await,
        Command::Plan(args) => cmd::timeline::run_plan(args).await,
    }
}

/// Help and version go to stdout as clap prints them; a usage error becomes one line on stderr, exit 2.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid command line");
            let first = first.trim();
            if first.starts_with("error:") {
                eprintln!("{first} (see 'walden --help')");
            } else {
                eprintln!("error: {first} (see 'walden --help')");
            }
            ExitCode::from(2)
        }
    }
}
