//! `walden cutover`: the cutover of a verified restore and its rollback through `walden_core::restore::cutover`
//! (the same rules, steps and audit rows as the console), with the CLI user as the actor. `run` and `rollback`
//! drive the steps to their end (asked again after an interruption, they resume where they were) and print each
//! step and the checklist; `status` prints them. Exit code 3 with the reasons when refused. The database,
//! master key and Fly peer are those of `walden org` ([`OrgConnection`]).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use walden_core::access::RequestMeta;
use walden_core::restore::cutover::{CutoverError, CutoverOptions, CutoverStepView, CutoverView};

use super::org::OrgConnection;
use super::timeline::EXIT_REFUSED;

#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub conn: OrgConnection,
    #[command(subcommand)]
    pub command: CutoverCommand,
}

#[derive(Debug, Subcommand)]
pub enum CutoverCommand {
    /// Cut a verified restore over: archiving off on the old cluster, replicas cloned for the new one (its
    /// leader's region, or --region), the
    /// selected apps' DATABASE_URL pointed at it, the old machines stopped (not destroyed), then the checklist.
    Run(RunArgs),
    /// Put back what the cutover changed: the apps' old DATABASE_URL, the old machines started, archiving on.
    Rollback(RollbackArgs),
    /// The cutover (and rollback) of a run: each step and the checklist.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The restore run (done, verified).
    #[arg(value_name = "RUN")]
    pub run: String,
    /// The apps to point at the new cluster, comma-separated.
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub apps: Vec<String>,
    /// The OLD cluster's name, typed to confirm.
    #[arg(long, value_name = "OLD_APP")]
    pub confirm: String,
    /// The region of the new cluster's replicas (default: its leader's).
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[arg(value_name = "RUN")]
    pub run: String,
    /// The OLD cluster's name, typed to confirm.
    #[arg(long, value_name = "OLD_APP")]
    pub confirm: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(value_name = "RUN")]
    pub run: String,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: CutoverArgs) -> anyhow::Result<ExitCode> {
    let walden = args.conn.open().await?;
    let restores = walden.restores();
    let actor = super::user::actor();
    let meta = RequestMeta::default();
    let (result, json) = match &args.command {
        CutoverCommand::Run(a) => {
            let options = CutoverOptions {
                replica_region: a.region.clone(),
                ..CutoverOptions::default()
            };
            let done = restores
                .cutover_with(&actor, &meta, &a.run, &a.apps, &a.confirm, &options)
                .await;
            (done, a.json)
        }
        CutoverCommand::Rollback(a) => (
            restores.rollback(&actor, &meta, &a.run, &a.confirm).await,
            a.json,
        ),
        CutoverCommand::Status(a) => match restores.cutover_view(&a.run).await? {
            Some(view) => (Ok(view), a.json),
            None => anyhow::bail!("restore run {} has no cutover", a.run),
        },
    };
    match result {
        Ok(view) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", render(&view));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(
            e @ (CutoverError::Refused(_)
            | CutoverError::ConfirmMismatch { .. }
            | CutoverError::NotDone { .. }
            | CutoverError::Forbidden
            | CutoverError::RolledBack(_)
            | CutoverError::NoCutover(_)),
        ) => {
            println!("refused: {e}");
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        Err(other) => Err(other.into()),
    }
}

fn render_step(out: &mut String, s: &CutoverStepView) {
    let app = s
        .app
        .as_deref()
        .map(|a| format!(" {a}"))
        .unwrap_or_default();
    out.push_str(&format!("  {}. {}{app}: {}", s.index + 1, s.kind, s.status));
    if let Some(e) = &s.error {
        out.push_str(&format!(" ({e})"));
    }
    out.push('\n');
}

/// The cutover as a person reads it.
pub fn render(v: &CutoverView) -> String {
    let mut out = format!(
        "cutover of run {}: {} -> {} ({}), apps: {}\nphase {}: {:?}\n",
        v.run,
        v.old_app,
        v.new_app,
        v.org,
        v.apps.join(", "),
        v.phase.as_str(),
        v.state
    );
    if let Some(f) = &v.failure {
        out.push_str(&format!("failure: {f}\n"));
    }
    out.push_str("cutover steps:\n");
    v.cutover.iter().for_each(|s| render_step(&mut out, s));
    if !v.rollback.is_empty() {
        out.push_str("rollback steps:\n");
        v.rollback.iter().for_each(|s| render_step(&mut out, s));
    }
    if !v.checklist.is_empty() {
        out.push_str("checklist:\n");
        for c in &v.checklist {
            let mark = if c.ok { "ok " } else { "NOT" };
            out.push_str(&format!("  [{mark}] {}: {}\n", c.what, c.detail));
        }
    }
    out
}
