//! `walden timeline`, `walden verify` and `walden plan`: read a wal-g bucket directly (credentials from wal-g's
//! own environment variables) and print its timeline, its integrity findings, or a restore plan.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use walg::plan::{PlanOutcome, Target};
use walg::report::{render_findings, render_plan, PlanJson};
use walg::{Index, Reader, StorageConfig, Timeline};

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
    /// Index cache file; refreshes read only new keys, and a cache whose last full build is over an hour old is
    /// rebuilt in full (refreshes miss deletions). Default: one file per storage under the user cache dir.
    #[arg(long, value_name = "FILE", env = "WALDEN_TIMELINE_CACHE")]
    pub cache: Option<PathBuf>,
    /// Read everything again instead of refreshing the cached index.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, clap::Args)]
pub struct TimelineArgs {
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Print the stable JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
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

fn default_cache(url: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    // FNV-1a of the URL: a stable file name without special characters.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in url.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    Some(
        base.join("walden")
            .join(format!("walg-index-{h:016x}.json")),
    )
}

/// Builds or refreshes the index (through the cache file) and computes the timeline.
async fn load(args: &StorageArgs) -> anyhow::Result<Timeline> {
    let cfg = storage_config(args)?;
    let reader = Reader::new(&cfg)?;
    let cache = if args.no_cache {
        None
    } else {
        args.cache.clone().or_else(|| default_cache(reader.url()))
    };
    let cached: Option<Index> = cache
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let index = match cached {
        Some(mut idx) => {
            reader
                .refresh_or_build(&mut idx, walg::FULL_BUILD_MAX_AGE)
                .await?;
            idx
        }
        None => reader.build().await?.0,
    };
    if let Some(p) = &cache {
        // A cache that cannot be written only costs time next run.
        let write = || -> std::io::Result<()> {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = p.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&index)?)?;
            std::fs::rename(&tmp, p)
        };
        if let Err(e) = write() {
            tracing::warn!(cache = %p.display(), error = %e, "cannot write the index cache");
        }
    }
    Ok(Timeline::from_index(
        &index,
        time::OffsetDateTime::now_utc(),
    ))
}

/// `walden timeline`: backups, timelines, windows and findings.
pub async fn run_timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    let t = load(&args.storage).await?;
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
    let t = load(&args.storage).await?;
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
