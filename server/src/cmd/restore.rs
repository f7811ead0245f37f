//! `walden restore plan`: the restore's pre-flight plan through `walden_core::restore` (the same rules as the
//! console), stored under its hash and audited with the CLI user as the actor. Prints the plan and its hash;
//! exit code 3 with every reason when refused (as `walden plan`). The database, master key and Fly peer are
//! those of `walden org` ([`OrgConnection`]); the source is in `--org` (default: the environment's
//! organisation, `WALDEN_FLY_ORG`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use walden_core::access::RequestMeta;
use walden_core::restore::{
    ClusterRef, Destination, Plan, Refused, RestoreError, RestoreRequest, RestoreTarget, Step,
};

use super::org::OrgConnection;
use super::timeline::EXIT_REFUSED;

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub conn: OrgConnection,
    #[command(subcommand)]
    pub command: RestoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Plan a point-in-time restore of APP into a new app: checks everything, changes nothing on Fly.
    Plan(PlanArgs),
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The tracked cluster to restore from.
    #[arg(value_name = "APP")]
    pub app: String,
    /// Its organisation (default: the environment's, `WALDEN_FLY_ORG`).
    #[arg(long, value_name = "ORG")]
    pub org: Option<String>,
    /// Restore to the end of the archived WAL.
    #[arg(long)]
    pub latest: bool,
    /// Restore to a time (RFC 3339, or `2026-03-01 12:00:00+00`; no offset means UTC).
    #[arg(long, value_name = "T")]
    pub target_time: Option<String>,
    /// Restore to an LSN (`X/Y`).
    #[arg(long, value_name = "L")]
    pub lsn: Option<String>,
    /// Restore a named base backup to its consistency point.
    #[arg(long, value_name = "NAME")]
    pub backup: Option<String>,
    /// The Postgres timeline to follow, when the archive has more than one.
    #[arg(long, value_name = "N")]
    pub timeline: Option<u32>,
    /// The new app's name.
    #[arg(long, value_name = "NEW_APP")]
    pub to: String,
    /// The new cluster's region (default: the source's primary region).
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// The machine's memory in MB (default: the source's; never under 512).
    #[arg(long, value_name = "MB")]
    pub memory: Option<i64>,
    /// The volume's size in GB (default: the larger of the source's and what the restore needs).
    #[arg(long, value_name = "GB")]
    pub volume: Option<i64>,
    /// Print the plan (or the refusal) as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let RestoreCommand::Plan(plan) = args.command;
    let target = RestoreTarget::from_flags(
        plan.latest,
        plan.target_time.as_deref(),
        plan.lsn.as_deref(),
        plan.backup.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let request = RestoreRequest {
        source: ClusterRef {
            org: plan
                .org
                .clone()
                .unwrap_or_else(|| args.conn.fly_org.clone()),
            app: plan.app.clone(),
        },
        target,
        timeline: plan.timeline,
        destination: Destination {
            app: plan.to.clone(),
            region: plan.region.clone(),
            memory_mb: plan.memory,
            volume_gb: plan.volume,
        },
        assertion: None,
        assertion_database: None,
    };
    let walden = args.conn.open().await?;
    let actor = super::user::actor();
    match walden
        .restores()
        .plan(&actor, &RequestMeta::default(), &request)
        .await
    {
        Ok(stored) => {
            if plan.json {
                let doc = serde_json::json!({ "hash": stored.hash, "plan": stored.plan });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", render_plan(&stored.plan, &stored.hash));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(RestoreError::Refused(refused)) => {
            if plan.json {
                println!("{}", serde_json::to_string_pretty(&refused)?);
            } else {
                print!("{}", render_refused(&refused));
            }
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(other) => Err(other.into()),
    }
}

/// The refusal, one reason per paragraph.
pub fn render_refused(r: &Refused) -> String {
    let mut out = format!("refused: {} reason(s)\n", r.reasons.len());
    for reason in &r.reasons {
        out.push_str(&format!(
            "- [{}] {}\n  {}\n",
            reason.code, reason.what, reason.fix
        ));
    }
    out
}

/// The plan as a person reads it.
pub fn render_plan(p: &Plan, hash: &str) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "restore plan {}/{} → {}/{}",
        p.source.org, p.source.app, p.destination.org, p.destination.app
    ));
    line(format!("hash: {hash}"));
    line(format!("backup: {} ({})", p.backup.name, p.backup.why));
    if !p.backup.delta_chain.is_empty() {
        line(format!(
            "  delta chain: {}",
            p.backup.delta_chain.join(" ← ")
        ));
    }
    let target = p
        .recovery
        .recovery_target_time
        .clone()
        .or_else(|| p.recovery.recovery_target_lsn.clone())
        .or_else(|| p.recovery.recovery_target.clone())
        .unwrap_or_else(|| "end of the archived WAL".into());
    line(format!(
        "target: {target} on timeline {}, then {}",
        p.recovery.recovery_target_timeline, p.recovery.recovery_target_action
    ));
    line(format!(
        "WAL: {} … {} ({} segments, {} bytes stored, {} bytes replayed)",
        p.wal.from, p.wal.to, p.wal.segments, p.wal.stored_bytes, p.wal.replay_bytes
    ));
    line(format!(
        "credentials: escrow version {} captured {} by {} (valid at {}); proofs: {}",
        p.escrow.version,
        p.escrow.captured_at,
        p.escrow.captured_by,
        p.escrow.valid_at,
        if p.escrow.last_proofs.is_empty() {
            "none yet".into()
        } else {
            p.escrow.last_proofs.join(", ")
        }
    ));
    let d = &p.destination;
    line(format!(
        "new cluster: {} in {}, image {} (PostgreSQL {}), {} MB, {}×{} CPU, volume {} GB ({})",
        d.app,
        d.region,
        d.image,
        d.pg_version.as_deref().unwrap_or("?"),
        d.memory_mb,
        d.cpus,
        d.cpu_kind,
        d.volume_gb,
        d.volume_rule
    ));
    line(format!(
        "new wal-g prefix: {}={}",
        d.walg_prefix_variable, d.walg_prefix
    ));
    line(format!("pgParameters ({}):", p.pg_parameters.source));
    for (k, v) in &p.pg_parameters.values {
        line(format!("  {k} = {v}"));
    }
    line(format!(
        "estimated duration: {} s ({})",
        p.estimate.seconds, p.estimate.how
    ));
    line("steps:".into());
    for (i, step) in p.steps.iter().enumerate() {
        let detail = match step {
            Step::Exec { argv, why, .. } => format!("{why}: {argv:?}"),
            other => serde_json::to_string(other).unwrap_or_default(),
        };
        line(format!("  {}. {}  {detail}", i + 1, step.call()));
    }
    line("never touched:".into());
    for n in &p.never_touched {
        line(format!("  {n}"));
    }
    for n in &p.notes {
        line(format!("note: {n}"));
    }
    out
}
