//! `walden timeline`, `walden verify` and `walden plan`: read a wal-g bucket directly (credentials from wal-g's
//! own environment variables) and print its timeline, its integrity findings, or a restore plan. The bucket's
//! index is kept in the data directory's database by `walden_core::backups` (shared with the console); these
//! commands only parse their arguments, call it, and print.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sqlx::SqlitePool;
use walden_core::backups::{self, Backups};
use walden_core::db;
use walg::plan::{PlanOutcome, Target};
use walg::report::{render_findings, render_plan, PlanJson};
use walg::{Reader, StorageConfig, Timeline};

use crate::config::DataDirArgs;

/// Exit code of `walden plan` when the restore is refused.
pub const EXIT_REFUSED: u8 = 3;

/// Where the bucket is and how to reach it.
#[derive(Debug, clap::Args)]
pub struct StorageArgs {
    /// Storage URL: s3://bucket/prefix, gs://bucket/prefix, azure://container/prefix, file:///path or a directory.
    /// Without it, WALG_S3_PREFIX / WALG_GS_PREFIX / WALG_AZ_PREFIX / WALG_FILE_PREFIX is used. Credentials and
    /// settings (AWS_*, WALG_STORAGE_PREFIX, WALG_PG_WAL_SIZE, WALG_LIBSODIUM_KEY, ...) come from the environment.
    pub storage_url: Option<String>,
    /// Also read wal-g settings from this file of KEY=value lines (e.g. a pasted wal-g env block).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// SQLite file that keeps the index instead of the data directory's database (created if missing). The
    /// index of each storage is kept there: refreshes read and store only new keys, and an index whose last full
    /// build is over an hour old is built in full again (refreshes miss deletions).
    #[arg(long, value_name = "FILE", env = "WALDEN_TIMELINE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Read everything again, without the kept index (nothing is stored).
    #[arg(long)]
    pub no_cache: bool,
    // The data directory whose database keeps the index (the console's, shared with it).
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Print the stable JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub commits: CommitArgs,
}

/// How much WAL is read to find the last commit, the true end of what a time target can reach.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Read up to N of the newest WAL segments (newest first) to find the last commit; 0 reads no WAL.
    #[arg(long, value_name = "N", default_value_t = walg::LAST_COMMIT_SEGMENTS)]
    pub commit_segments: usize,
}

impl CommitArgs {
    /// Finds the last commit of `timeline`'s lineage (default: the main one) and keeps it in `t`.
    async fn attach(&self, reader: &Reader, t: &mut Timeline, timeline: Option<u32>) {
        if self.commit_segments > 0 {
            reader
                .attach_last_commit(t, timeline, self.commit_segments)
                .await;
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["target_time", "latest", "lsn", "backup"])))]
pub struct PlanArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Restore to this time (RFC 3339, or '2026-03-01 12:00:00+00'; no offset means UTC).
    #[arg(long, value_name = "TIME")]
    pub target_time: Option<String>,
    /// Restore as far as the archived WAL goes.
    #[arg(long)]
    pub latest: bool,
    /// Restore to this LSN (X/Y).
    #[arg(long, value_name = "LSN")]
    pub lsn: Option<String>,
    /// Restore this backup to its consistency point.
    #[arg(long, value_name = "NAME")]
    pub backup: Option<String>,
    /// Follow this timeline's history (default: the timeline with the newest WAL).
    #[arg(long, value_name = "TLI")]
    pub timeline: Option<u32>,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub commits: CommitArgs,
}

fn storage_config(args: &StorageArgs) -> anyhow::Result<StorageConfig> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(f) = &args.env_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        env.extend(walg::parse_env_block(&text));
    }
    let cfg = match &args.storage_url {
        Some(url) => StorageConfig::from_url(url, &env)?,
        None => StorageConfig::from_env_map(&env)?,
    };
    Ok(cfg)
}

/// The timeline of the storage, from its index kept in the database (brought up to date by the backups service),
/// or read in full without storing anything (`--no-cache`, or when no database can be opened).
async fn load(args: &StorageArgs) -> anyhow::Result<Timeline> {
    Ok(load_with_reader(args).await?.0)
}

/// [`load`], also returning the reader (to read WAL afterwards).
async fn load_with_reader(args: &StorageArgs) -> anyhow::Result<(Timeline, Reader)> {
    let cfg = storage_config(args)?;
    let reader = Reader::connect(&cfg).await?; // finds an S3 bucket's region as wal-g does
    let now = time::OffsetDateTime::now_utc();
    let timeline = load_timeline(args, &reader, now).await?;
    Ok((timeline, reader))
}

async fn load_timeline(
    args: &StorageArgs,
    reader: &Reader,
    now: time::OffsetDateTime,
) -> anyhow::Result<Timeline> {
    if args.no_cache {
        return Ok(backups::timeline_without_storing(reader, now).await?);
    }
    let pool = match open_database(args).await {
        Ok(pool) => pool,
        Err(e) => {
            // A database that cannot be opened only costs time: the bucket is read in full.
            tracing::warn!(error = %e, "cannot open the database that keeps the index; reading everything");
            return Ok(backups::timeline_without_storing(reader, now).await?);
        }
    };
    let timeline = Backups::new(pool.clone()).timeline(reader, now).await;
    pool.close().await;
    Ok(timeline?)
}

/// The database that keeps the index: `--cache FILE` when given, else the data directory's.
async fn open_database(args: &StorageArgs) -> anyhow::Result<SqlitePool> {
    let Some(file) = &args.cache else {
        return Ok(db::open(&args.data.data_dir).await?);
    };
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    let pool = db::open_file(file).await?;
    db::migrate(&pool, file).await?;
    Ok(pool)
}

/// `walden timeline`: backups, timelines, windows and findings.
pub async fn run_timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let (mut t, reader) = load_with_reader(&args.storage).await?;
    args.commits.attach(&reader, &mut t, None).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&t.report())?);
    } else {
        print!("{}", t.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `walden verify`: the findings; exit code 1 when any is an error.
pub async fn run_verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let t = load(&args.storage).await?;
    let status = if t.has_errors() {
        "error"
    } else if t
        .findings
        .iter()
        .any(|f| f.severity == walg::Severity::Warning)
    {
        "warning"
    } else {
        "ok"
    };
    if args.json {
        let doc = serde_json::json!({ "status": status, "findings": t.findings });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("{}: {status}", t.url);
        print!("{}", render_findings(&t.findings));
    }
    Ok(if t.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `walden plan`: the backup and recovery settings for a target, or a refusal (exit code 3).
pub async fn run_plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let target = if let Some(t) = &args.target_time {
        Target::Time(walg::parse_target_time(t).map_err(|e| anyhow::anyhow!("--target-time: {e}"))?)
    } else if let Some(l) = &args.lsn {
        Target::Lsn(
            walg::Lsn::parse(l)
                .ok_or_else(|| anyhow::anyhow!("--lsn: '{l}' is not an LSN like 2A/C8000005"))?
                .0,
        )
    } else if let Some(b) = &args.backup {
        Target::Backup(b.clone())
    } else {
        Target::Latest
    };
    let (mut t, reader) = load_with_reader(&args.storage).await?;
    // Only a time target or --latest uses the last commit (a time at or after it is refused).
    if matches!(target, Target::Time(_) | Target::Latest) {
        args.commits.attach(&reader, &mut t, args.timeline).await;
    }
    let outcome = t.choose_backup(&target, args.timeline);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&PlanJson::from_outcome(&outcome))?
        );
    } else {
        print!("{}", render_plan(&outcome));
    }
    Ok(match outcome {
        PlanOutcome::Plan(_) => ExitCode::SUCCESS,
        PlanOutcome::Refusal(_) => ExitCode::from(EXIT_REFUSED),
    })
}
