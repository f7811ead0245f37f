//! `walden restore`: the restore's plan, approval and run through `walden_core::restore` (the same rules and
//! engine as the console), each audited with the CLI user (`cli:$USER`) as the actor. The database, master key
//! and Fly peer are those of `walden org` ([`OrgConnection`]).
//!
//! - `plan`: the pre-flight plan, stored under its hash; prints the plan and its hash, exit 3 with every reason
//!   when refused (as `walden plan`). The source is in `--org` (default: `WALDEN_FLY_ORG`).
//! - `approve HASH`: another person's approval (needed when `require_restore_approval` is on).
//! - `run --plan HASH --confirm NEW_APP`: starts the run (or follows the plan's live one) and drives it in this
//!   process with the console worker's engine, printing each step's start and end; exit 0 done, 1 failed (with
//!   the cause and the three choices) or cancelled, 4 paused before a step the engine cannot run yet. Ctrl-C
//!   stops at once; the run stays resumable (its lease expires within a minute, then the console's worker or
//!   this command again takes it on).
//! - `status [RUN] [--json]`, `cancel RUN [--leave]`, `retry RUN` (then drives it as `run` does).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use walden_core::access::RequestMeta;
use walden_core::restore::engine::{
    Advance, Cleanup, CleanupOutcome, Engine, EngineError, EngineOptions, RunState, RunSummary,
    RunView,
};
use walden_core::restore::{
    ClusterRef, Destination, DestinationKind, Plan, Refused, RestoreError, RestoreRequest,
    RestoreTarget, Step,
};
use walden_core::Walden;

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
    Plan(Box<PlanArgs>),
    /// Approve a plan someone else made (when restores need a second person's approval).
    Approve {
        #[arg(value_name = "HASH")]
        hash: String,
    },
    /// Run a plan: creates the new cluster on Fly and prints each step until the run ends.
    Run {
        /// The plan's hash (from `walden restore plan`).
        #[arg(long, value_name = "HASH")]
        plan: String,
        /// The new app's name, typed again to confirm.
        #[arg(long, value_name = "NEW_APP")]
        confirm: String,
    },
    /// The recent runs, or one run with its steps.
    Status {
        #[arg(value_name = "RUN")]
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run and destroy only what it created (or, with --leave, keep everything as it is).
    Cancel {
        #[arg(value_name = "RUN")]
        run: String,
        /// Keep everything the run created.
        #[arg(long)]
        leave: bool,
    },
    /// Retry a failed run's failed step, then follow the run as `run` does.
    Retry {
        #[arg(value_name = "RUN")]
        run: String,
    },
}

/// `walden restore run` stopped before a step the engine cannot run yet (everything before it is done).
pub const EXIT_PAUSED: u8 = 4;

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
    #[arg(
        long,
        value_name = "NEW_APP",
        required_unless_present = "into",
        conflicts_with = "into"
    )]
    pub to: Option<String>,
    /// Restore into an existing EMPTY cluster made with `fly pg create` instead of a new app: its SU, REPL and
    /// OPERATOR passwords are replaced with the source's escrowed ones and all its machines but one stopped.
    #[arg(long, value_name = "EXISTING_APP")]
    pub into: Option<String>,
    /// A read-only query the restored data must satisfy (its first value true or non-empty), checked after the
    /// recovery; one statement.
    #[arg(long = "assert", value_name = "SQL")]
    pub assertion: Option<String>,
    /// The database the assertion runs in (default `postgres`).
    #[arg(long = "assert-db", value_name = "DB", requires = "assertion")]
    pub assertion_database: Option<String>,
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
    let walden = &args.conn.open().await?;
    let actor = super::user::actor();
    let meta = RequestMeta::default();
    let restores = walden.restores();
    match args.command {
        RestoreCommand::Plan(plan) => run_plan(walden, &args.conn.fly_org, *plan).await,
        RestoreCommand::Approve { hash } => {
            let approval = restores.approve_plan(&actor, &meta, &hash).await?;
            println!(
                "approved plan {} by {} at {}",
                approval.plan_hash, approval.approver, approval.approved_at
            );
            Ok(ExitCode::SUCCESS)
        }
        RestoreCommand::Run { plan, confirm } => {
            let id = match restores.start_run(&actor, &meta, &plan, &confirm).await {
                Ok(view) => {
                    println!("run {} started ({} steps)", view.id, view.steps.len());
                    view.id
                }
                Err(EngineError::LiveRun(id)) => {
                    println!("plan {plan} already has run {id}; following it");
                    id
                }
                Err(e) => return Err(e.into()),
            };
            follow(walden, &id).await
        }
        RestoreCommand::Status {
            run: Some(id),
            json,
        } => {
            let view = restores.run(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", render_run(&view));
            }
            Ok(ExitCode::SUCCESS)
        }
        RestoreCommand::Status { run: None, json } => {
            let runs = restores.list_runs(20).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else if runs.is_empty() {
                println!("no restore runs yet");
            } else {
                for r in &runs {
                    println!("{}", summary_line(r));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RestoreCommand::Cancel { run, leave } => {
            let how = if leave {
                Cleanup::Leave
            } else {
                Cleanup::Destroy
            };
            let view = restores.cancel_run(&actor, &meta, &run, how).await?;
            let view = finish_clean_up(walden, view).await?;
            print!("{}", render_run(&view));
            Ok(match view.cleanup.as_ref().map(|c| c.state.as_str()) {
                Some("pending") => ExitCode::FAILURE,
                _ => ExitCode::SUCCESS,
            })
        }
        RestoreCommand::Retry { run } => {
            let view = restores.retry_run(&actor, &meta, &run).await?;
            println!("run {} retries from step {}", view.id, view.next_step + 1);
            follow(walden, &run).await
        }
    }
}

/// How long `cancel` waits for a clean-up held up by a worker still letting go of the run (its lease is at
/// most a minute).
const CLEAN_UP_WAIT: Duration = Duration::from_secs(5 * 60);

/// Tries the clean-up until it is done, or [`CLEAN_UP_WAIT`] passed (the console's worker then finishes it).
async fn finish_clean_up(walden: &Walden, mut view: RunView) -> anyhow::Result<RunView> {
    let start = tokio::time::Instant::now();
    let mut said = false;
    while view.cleanup.as_ref().is_some_and(|c| c.state == "pending") {
        if start.elapsed() > CLEAN_UP_WAIT {
            println!("the clean-up is not finished; the console's worker goes on with it");
            break;
        }
        match walden.restores().clean_up(&view.id).await? {
            CleanupOutcome::Waiting if !said => {
                println!("waiting for the worker running {} to stop…", view.id);
                said = true;
            }
            CleanupOutcome::Failed(why) => eprintln!("clean-up attempt failed: {why}"),
            _ => {}
        }
        view = walden.restores().run(&view.id).await?;
        if view.cleanup.as_ref().is_some_and(|c| c.state == "pending") {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    Ok(view)
}

/// Drives run `id` one step at a time with the console's engine, printing each step's start and end, until the
/// run stops; a worker elsewhere holding it is followed instead. Ctrl-C stops at once (see the module doc).
async fn follow(walden: &Walden, id: &str) -> anyhow::Result<ExitCode> {
    tokio::select! {
        code = drive(walden, id) => code,
        _ = tokio::signal::ctrl_c() => {
            println!(
                "\ninterrupted: run {id} stays as it is and resumes when its lease expires (within a minute), by \
                 the console's worker or `walden restore run` again"
            );
            Ok(ExitCode::from(130))
        }
    }
}

/// How often `run` looks at the run while a step is in progress.
const POLL: Duration = Duration::from_millis(250);

async fn drive(walden: &Walden, id: &str) -> anyhow::Result<ExitCode> {
    let engine = Engine::new(walden.restores(), EngineOptions::default());
    let mut seen: BTreeMap<usize, String> = BTreeMap::new();
    let mut following = false;
    loop {
        let view = walden.restores().run(id).await?;
        report_steps(&view, &mut seen);
        if !view.state.runnable() {
            return Ok(ended(&view));
        }
        // One step at a time, looking at the run meanwhile (a long step's start and retries show as they come).
        let step = engine.advance(id, 1);
        tokio::pin!(step);
        let advanced = loop {
            tokio::select! {
                r = &mut step => break r?,
                _ = tokio::time::sleep(POLL) => report_steps(&walden.restores().run(id).await?, &mut seen),
            }
        };
        match advanced {
            Advance::Ran(_) => following = false,
            Advance::Held => {
                if !following {
                    println!("another worker is running {id}; following it");
                    following = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Prints each step whose status changed since the last look (a step first seen finished gets its start line
/// too, from its record).
fn report_steps(view: &RunView, seen: &mut BTreeMap<usize, String>) {
    let total = view.steps.len();
    for s in &view.steps {
        if seen.get(&s.index) == Some(&s.status) || s.status == "pending" {
            continue;
        }
        let head = format!("step {}/{total} {}", s.index + 1, s.kind);
        if s.status != "running" && !seen.contains_key(&s.index) {
            println!("{head}: started");
        }
        match s.status.as_str() {
            "done" => println!(
                "{head}: done{}{}",
                took(s.started_at.as_deref(), s.finished_at.as_deref()),
                if s.produced.is_null() {
                    String::new()
                } else {
                    format!(" {}", s.produced)
                }
            ),
            "failed" => println!("{head}: failed: {}", s.error.as_deref().unwrap_or("?")),
            "running" => println!("{head}: started (attempt {})", s.attempts),
            other => println!("{head}: {other}"),
        }
        seen.insert(s.index, s.status.clone());
    }
}

/// ` in 1.2 s` between two stored times, when both are readable.
fn took(start: Option<&str>, end: Option<&str>) -> String {
    match (
        start.and_then(walden_core::ts::parse),
        end.and_then(walden_core::ts::parse),
    ) {
        (Some(a), Some(b)) => format!(" in {:.1} s", (b - a).as_seconds_f64()),
        _ => String::new(),
    }
}

/// The end of a run as the exit code, with what to do next.
fn ended(view: &RunView) -> ExitCode {
    let id = &view.id;
    match view.state {
        RunState::Done => {
            println!("run {id} done");
            ExitCode::SUCCESS
        }
        RunState::Paused => {
            println!("run {id} paused: {}", view.failure.as_deref().unwrap_or(""));
            ExitCode::from(EXIT_PAUSED)
        }
        RunState::Failed => {
            println!("run {id} failed: {}", view.failure.as_deref().unwrap_or(""));
            print!("{}", choices(id));
            ExitCode::FAILURE
        }
        RunState::Cancelled => {
            println!("run {id} was cancelled");
            ExitCode::FAILURE
        }
        RunState::Pending | RunState::Running => ExitCode::FAILURE,
    }
}

/// The three choices after a permanent failure.
pub fn choices(id: &str) -> String {
    format!(
        "what now (choose one):\n  \
         walden restore retry {id}            retry the failed step (it finds what it already made)\n  \
         walden restore cancel {id}           cancel and destroy only what this run created\n  \
         walden restore cancel {id} --leave   cancel and leave everything as it is\n"
    )
}

/// One line per run for `status` without a run.
fn summary_line(r: &RunSummary) -> String {
    format!(
        "{}  {:<9}  {}/{} steps  {}/{} → {}  by {} at {}{}",
        r.id,
        r.state.as_str(),
        r.steps_done,
        r.steps,
        r.source_org,
        r.source_app,
        r.target_app,
        r.created_by,
        r.created_at,
        r.failure
            .as_deref()
            .map(|f| format!("\n    {f}"))
            .unwrap_or_default()
    )
}

/// The head line of one run for `status RUN` and `cancel`.
fn run_line(v: &RunView) -> String {
    let done = v.steps.iter().filter(|s| s.status == "done").count();
    format!(
        "{}  {:<9}  {}/{} steps  plan {}  by {} at {}{}",
        v.id,
        v.state.as_str(),
        done,
        v.steps.len(),
        &v.plan_hash[..v.plan_hash.len().min(12)],
        v.created_by,
        v.created_at,
        v.failure
            .as_deref()
            .map(|f| format!("\n    {f}"))
            .unwrap_or_default()
    )
}

/// A run with its steps (and its clean-up) for `status RUN` and `cancel`.
pub fn render_run(v: &RunView) -> String {
    let mut out = format!("{}\n", run_line(v));
    for s in &v.steps {
        out.push_str(&format!(
            "  {:>2}. {:<16} {:<8} attempts {}{}{}{}\n",
            s.index + 1,
            s.kind,
            s.status,
            s.attempts,
            took(s.started_at.as_deref(), s.finished_at.as_deref()),
            if s.produced.is_null() {
                String::new()
            } else {
                format!("  {}", s.produced)
            },
            s.error
                .as_deref()
                .map(|e| format!("  error: {e}"))
                .unwrap_or_default()
        ));
    }
    if let Some(c) = &v.cleanup {
        out.push_str(&format!(
            "clean-up: {} (attempts {}); destroyed: {}{}\n",
            c.state,
            c.attempts,
            if c.destroyed.is_empty() {
                "nothing yet".into()
            } else {
                c.destroyed.join(", ")
            },
            c.error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        ));
    } else if v.state == RunState::Cancelled {
        out.push_str("left as is: everything the steps above produced still exists\n");
    }
    if v.state == RunState::Failed {
        out.push_str(&choices(&v.id));
    }
    out
}

/// `plan`: the source's organisation defaults to `fly_org` (the environment's).
async fn run_plan(walden: &Walden, fly_org: &str, plan: PlanArgs) -> anyhow::Result<ExitCode> {
    let target = RestoreTarget::from_flags(
        plan.latest,
        plan.target_time.as_deref(),
        plan.lsn.as_deref(),
        plan.backup.as_deref(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    let request = RestoreRequest {
        source: ClusterRef {
            org: plan.org.clone().unwrap_or_else(|| fly_org.to_owned()),
            app: plan.app.clone(),
        },
        target,
        timeline: plan.timeline,
        destination: Destination {
            kind: if plan.into.is_some() {
                DestinationKind::Existing
            } else {
                DestinationKind::New
            },
            app: plan
                .into
                .clone()
                .or_else(|| plan.to.clone())
                .unwrap_or_default(),
            region: plan.region.clone(),
            memory_mb: plan.memory,
            volume_gb: plan.volume,
        },
        assertion: plan.assertion.clone(),
        assertion_database: plan.assertion_database.clone(),
    };
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
