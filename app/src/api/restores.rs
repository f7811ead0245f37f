//! Restores in the console: the wizard's options and name check (viewers and up), the pre-flight plan and the
//! start of a run (operators and up, through `walden_core::restore`, which stores and audits both), a run's
//! progress and the list of recent runs (viewers and up).
//!
//! Invariants: nothing here carries a secret. The plan shows secrets only as the placeholders core wrote into
//! it (`<escrowed SU password>`); times and durations are formatted on the server (`2026-11-29 13:55:02 UTC`,
//! `3 min 4 s`) so the browser needs no date library.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
#[cfg(feature = "ssr")]
use {
    crate::server::Caller,
    leptos::server_fn::ServerFn,
    tracing::field::Empty,
    walden_core::restore::{
        engine::{Cleanup, RunState, RunSummary, RunView as CoreRun},
        request, ClusterRef, Destination, Plan, Reason, RestoreError, RestoreRequest,
        RestoreTarget,
    },
    walden_core::settings,
    walden_core::users::Role,
};

/// Who may call each server function of this module (`None`: anyone).
#[cfg(feature = "ssr")]
pub const POLICY: &[super::Access] = &[
    (<GetRestoreOptions as ServerFn>::PATH, Some(Role::Viewer)),
    (<CheckRestoreName as ServerFn>::PATH, Some(Role::Viewer)),
    (<PlanRestore as ServerFn>::PATH, Some(Role::Operator)),
    (<StartRestore as ServerFn>::PATH, Some(Role::Operator)),
    (<GetRestoreRun as ServerFn>::PATH, Some(Role::Viewer)),
    (<ListRestoreRuns as ServerFn>::PATH, Some(Role::Viewer)),
    (<RetryRestoreRun as ServerFn>::PATH, Some(Role::Operator)),
    (<CancelRestoreRun as ServerFn>::PATH, Some(Role::Operator)),
    (<GetPlanApproval as ServerFn>::PATH, Some(Role::Viewer)),
    (<ApproveRestorePlan as ServerFn>::PATH, Some(Role::Operator)),
    (
        <GetRequireRestoreApproval as ServerFn>::PATH,
        Some(Role::Viewer),
    ),
    (
        <SetRequireRestoreApproval as ServerFn>::PATH,
        Some(Role::Admin),
    ),
    (<GetCutover as ServerFn>::PATH, Some(Role::Viewer)),
    (<CutoverRestore as ServerFn>::PATH, Some(Role::Operator)),
    (<RollbackCutover as ServerFn>::PATH, Some(Role::Operator)),
];

/// The wizard's choices, as its address keeps them (`?step=2&kind=time&target=…&name=…`): every field a
/// string as typed, empty for "not chosen" or "the default".
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Choices {
    /// `latest`, `time`, `lsn` or `backup`.
    pub kind: String,
    /// A time target in UTC, `2026-11-29T14:02:05Z`.
    pub target: String,
    pub lsn: String,
    pub backup: String,
    /// The Postgres timeline to follow (empty: the main one).
    pub timeline: String,
    /// The new cluster's app name.
    pub name: String,
    pub region: String,
    pub memory: String,
    pub volume: String,
    /// An optional read-only query the verification runs on the restored cluster (it must return a row).
    #[serde(default)]
    pub assertion: String,
    /// The database the assertion runs in (empty: `postgres`).
    #[serde(default)]
    pub assertion_db: String,
}

impl Choices {
    /// The query keys, in the order the address lists them.
    pub const KEYS: [&'static str; 11] = [
        "kind",
        "target",
        "lsn",
        "backup",
        "timeline",
        "name",
        "region",
        "memory",
        "volume",
        "assertion",
        "assertion_db",
    ];

    /// The field of `key`.
    pub fn get(&self, key: &str) -> &str {
        match key {
            "kind" => &self.kind,
            "target" => &self.target,
            "lsn" => &self.lsn,
            "backup" => &self.backup,
            "timeline" => &self.timeline,
            "name" => &self.name,
            "region" => &self.region,
            "memory" => &self.memory,
            "assertion" => &self.assertion,
            "assertion_db" => &self.assertion_db,
            _ => &self.volume,
        }
    }

    /// From the page's query (`get` reads one key); a time without a kind (the timeline's link) is a time target.
    pub fn from_query(get: impl Fn(&str) -> Option<String>) -> Self {
        let field = |k: &str| get(k).unwrap_or_default().trim().to_owned();
        let mut c = Choices {
            kind: field("kind"),
            target: field("target"),
            lsn: field("lsn"),
            backup: field("backup"),
            timeline: field("timeline"),
            name: field("name"),
            region: field("region"),
            memory: field("memory"),
            volume: field("volume"),
            assertion: field("assertion"),
            assertion_db: field("assertion_db"),
        };
        if c.kind.is_empty() {
            c.kind = if c.target.is_empty() {
                "latest"
            } else {
                "time"
            }
            .into();
        }
        c
    }

    /// The target in words: `the latest archived commit`, `2026-11-29T14:02:05Z`, `LSN 0/3000028`, `backup …`.
    pub fn target_words(&self) -> String {
        match self.kind.as_str() {
            "time" => self.target.clone(),
            "lsn" => format!("LSN {}", self.lsn),
            "backup" => format!("backup {}", self.backup),
            _ => "the latest archived commit".into(),
        }
    }
}

/// What the wizard needs besides the cluster's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOptions {
    /// Operators and admins may plan and start a restore.
    pub can_restore: bool,
    /// Fly's regions, for the region select.
    pub regions: Vec<String>,
    /// The least memory a restoring machine gets, in MB.
    pub min_memory_mb: i64,
}

/// The wizard's options; whether the caller may restore. Viewers and up (a viewer sees why not).
#[server(endpoint = "get_restore_options")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn get_restore_options() -> Result<RestoreOptions, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    Ok(RestoreOptions {
        can_restore: cx.user.role >= Role::Operator,
        regions: request::REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        min_memory_mb: walden_core::restore::checks::MIN_MEMORY_MB,
    })
}

/// Fly's rule on an app name, as the user types it: `None` when the name is well formed, else why not. Whether
/// it is free is the plan's question (it asks Fly). Viewers and up.
#[server(endpoint = "check_restore_name")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn check_restore_name(name: String) -> Result<Option<String>, AppError> {
    Caller::require(Role::Viewer).await?;
    Ok(request::check_app_name(&name).err())
}

/// One reason a restore is refused, with its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonView {
    pub code: String,
    pub what: String,
    pub fix: String,
}

/// The plan's answer: every refusal at once, or the stored plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanAnswer {
    Refused(Vec<ReasonView>),
    Plan(Box<PlanView>),
}

/// A stored plan as the wizard's last step shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanView {
    pub hash: String,
    pub created_by: String,
    pub created_at: String,
    /// `org/app`.
    pub source: String,
    pub target: String,
    /// The Postgres timeline recovery follows.
    pub timeline: String,
    pub backup: String,
    pub backup_why: String,
    pub backup_timeline: u32,
    pub delta_chain: Vec<String>,
    pub backup_stored_bytes: Option<i64>,
    pub backup_uncompressed_bytes: Option<i64>,
    pub wal_from: String,
    pub wal_to: String,
    pub wal_segments: u64,
    pub wal_stored_bytes: i64,
    pub wal_replay_bytes: i64,
    pub escrow_version: i64,
    pub escrow_captured_at: String,
    pub escrow_captured_by: String,
    pub escrow_valid_at: String,
    pub escrow_proofs: Vec<String>,
    pub app: String,
    pub region: String,
    pub image: String,
    pub pg_version: Option<String>,
    pub memory_mb: i64,
    pub cpus: i64,
    pub cpu_kind: String,
    pub volume_gb: i64,
    pub volume_rule: String,
    pub walg_prefix: String,
    pub walg_prefix_variable: String,
    pub pg_parameters: Vec<(String, String)>,
    pub parameters_source: String,
    pub estimate: String,
    pub estimate_how: String,
    /// The exact calls in order: the call, then what it sends (secrets as the plan's placeholders).
    pub steps: Vec<(String, String)>,
    pub never_touched: Vec<String>,
    pub notes: Vec<String>,
    /// The two-person rule's state for this plan (`required` false when the setting is off).
    pub approval: Option<PlanApproval>,
}

/// Plans the restore the wizard's choices describe (`Restores::plan`: stored under its hash and audited, or
/// refused with every reason). A refusal is an answer, not an error. Operators and up.
#[server(endpoint = "plan_restore")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, org = %org, app = %app), err(level = "info"))
)]
pub async fn plan_restore(
    org: String,
    app: String,
    choices: Choices,
) -> Result<PlanAnswer, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let (req, mut reasons) = request_of(org, app, &choices);
    if !reasons.is_empty() {
        // The words alone are wrong: say so with the rules on the rest of the words, and plan nothing.
        reasons.extend(walden_core::restore::checks::request_words(&req));
        return Ok(PlanAnswer::Refused(
            reasons.into_iter().map(ReasonView::from).collect(),
        ));
    }
    match cx.restores().plan(&cx.actor, &cx.meta, &req).await {
        Ok(stored) => {
            let mut view = PlanView::of(
                &stored.hash,
                &stored.created_by,
                &stored.created_at,
                &stored.plan,
            );
            view.approval = Some(approval_of(&cx, &stored.hash).await?);
            Ok(PlanAnswer::Plan(Box::new(view)))
        }
        Err(RestoreError::Refused(refused)) => Ok(PlanAnswer::Refused(
            refused.reasons.into_iter().map(ReasonView::from).collect(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Starts a run of the stored plan `hash`; `confirm` must be the new cluster's name. Returns the run's id.
/// Operators and up; audited by core.
#[server(endpoint = "start_restore")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, plan = %hash), err(level = "info"))
)]
pub async fn start_restore(hash: String, confirm: String) -> Result<String, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let run = cx
        .restores()
        .start_run(&cx.actor, &cx.meta, &hash, &confirm)
        .await?;
    Ok(run.id)
}

/// A run as the progress page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunPage {
    pub id: String,
    /// `pending`, `running`, `paused`, `failed`, `cancelled` or `done`.
    pub state: String,
    /// A worker may still move it on: the page keeps polling.
    pub live: bool,
    pub source: String,
    pub target_app: String,
    pub target: String,
    pub plan_hash: String,
    pub created_by: String,
    pub started: String,
    pub finished: Option<String>,
    /// Since the start, until the end (or now).
    pub elapsed: String,
    /// Why it failed or paused, in plain words.
    pub failure: Option<String>,
    pub steps: Vec<RunStep>,
    /// The caller may retry, cancel and clean up (operators and admins).
    pub can_control: bool,
    /// What the run created on Fly so far (`machine: 1781…`): what "Cancel and clean up" destroys.
    pub created: Vec<String>,
    /// The report once a step has finished: each step's duration and the measured RTO.
    pub report: Option<RunReportView>,
    /// The clean-up of a run cancelled with "clean up": `pending` or `done`, and what is gone.
    pub cleanup: Option<String>,
}

/// What a run took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReportView {
    /// `(step, duration)`, in the run's order.
    pub steps: Vec<(String, String)>,
    /// From the start to the restored cluster verified; `None` until then.
    pub rto: Option<String>,
    pub elapsed: String,
}

/// A long step's live progress, as the engine stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepProgress {
    pub phase: String,
    /// Tenths of a percent, 0 to 1000 (whole numbers keep the type `Eq`).
    pub permille: i64,
    pub time_left: Option<String>,
    /// The machine's last log lines (the engine keeps only lines that cannot carry a secret).
    pub log_tail: Vec<String>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStep {
    pub number: usize,
    pub kind: String,
    /// The plan's call for this step.
    pub call: String,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub started: Option<String>,
    pub duration: Option<String>,
    /// The Fly ids it produced, as `machine: 1781…`.
    pub produced: Option<String>,
    pub error: Option<String>,
    pub progress: Option<StepProgress>,
}

/// A run and its steps (the progress page polls it while the run is live). Viewers and up.
#[server(endpoint = "get_restore_run")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, run = %id), err(level = "info"))
)]
pub async fn get_restore_run(id: String) -> Result<RunPage, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    run_page(&cx, cx.restores().run(&id).await?).await
}

/// The page of `run` as `cx` sees it.
#[cfg(feature = "ssr")]
async fn run_page(cx: &Caller, run: CoreRun) -> Result<RunPage, AppError> {
    let plan = cx.restores().stored(&run.plan_hash).await?.map(|s| s.plan);
    let mut page = RunPage::of(run, plan.as_ref(), time::OffsetDateTime::now_utc());
    page.can_control = cx.user.role >= Role::Operator;
    Ok(page)
}

/// Retries a failed run's failed step (the worker picks the run up again). Operators and up; audited by core.
#[server(endpoint = "retry_restore_run")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, run = %id), err(level = "info"))
)]
pub async fn retry_restore_run(id: String) -> Result<RunPage, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let run = cx.restores().retry_run(&cx.actor, &cx.meta, &id).await?;
    run_page(&cx, run).await
}

/// Cancels a run that is not done: `destroy` also destroys what the run created (only that; never the
/// source), else everything is left as it is. Operators and up; audited by core.
#[server(endpoint = "cancel_restore_run")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, run = %id, destroy), err(level = "info"))
)]
pub async fn cancel_restore_run(id: String, destroy: bool) -> Result<RunPage, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let cleanup = if destroy {
        Cleanup::Destroy
    } else {
        Cleanup::Leave
    };
    let run = cx
        .restores()
        .cancel_run(&cx.actor, &cx.meta, &id, cleanup)
        .await?;
    run_page(&cx, run).await
}

/// A done run's cutover: what the form needs, and the cutover (and rollback) once asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverInfo {
    /// The source cluster: what the confirmation must type.
    pub old_app: String,
    pub new_app: String,
    /// Fly's regions, for the replicas' region.
    pub regions: Vec<String>,
    pub can_cut_over: bool,
    pub cutover: Option<CutoverPage>,
}

/// A cutover as stored: its phase, each step and the checklist Walden checked itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoverPage {
    /// `cutover` or `rollback`.
    pub phase: String,
    /// `running`, `failed` or `done`.
    pub state: String,
    pub apps: Vec<String>,
    pub replica_region: Option<String>,
    pub failure: Option<String>,
    pub created_by: String,
    /// The current phase's steps: `(what, status, error)`.
    pub steps: Vec<(String, String, Option<String>)>,
    /// `(what, ok, found)`, as the phase's last step checked it.
    pub checklist: Vec<(String, bool, String)>,
}

/// The cutover of the run `run`: the form's facts and the cutover so far. Viewers and up.
#[server(endpoint = "get_cutover")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, run = %run), err(level = "info"))
)]
pub async fn get_cutover(run: String) -> Result<CutoverInfo, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let restores = cx.restores();
    let view = restores.run(&run).await?;
    let plan = restores
        .stored(&view.plan_hash)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Restore plan {}", view.plan_hash)))?
        .plan;
    let cutover = restores.cutover_view(&run).await?.map(CutoverPage::of);
    Ok(CutoverInfo {
        old_app: plan.source.app,
        new_app: plan.destination.app,
        regions: request::REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        can_cut_over: cx.user.role >= Role::Operator,
        cutover,
    })
}

/// Cuts the done run `run` over: archiving off on the old cluster, replicas for the new one (in `region`;
/// empty: the new leader's), `apps` (names separated by commas or spaces, as typed) pointed at it, the old
/// machines stopped (not destroyed), then the checklist. `confirm` must be the OLD cluster's name. It runs to its end (the page follows it with
/// [`get_cutover`]). Operators and up; audited by core.
#[server(endpoint = "cutover_restore")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, run = %run), err(level = "info"))
)]
pub async fn cutover_restore(
    run: String,
    apps: String,
    region: String,
    confirm: String,
) -> Result<CutoverPage, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let apps: Vec<String> = apps
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let options = walden_core::restore::cutover::CutoverOptions {
        replica_region: Some(region.trim().to_owned()).filter(|r| !r.is_empty()),
        ..Default::default()
    };
    let view = cx
        .restores()
        .cutover_with(&cx.actor, &cx.meta, &run, &apps, &confirm, &options)
        .await?;
    Ok(CutoverPage::of(view))
}

/// Rolls the cutover of `run` back (the apps' old `DATABASE_URL`, the old machines started, archiving on);
/// `confirm` must be the OLD cluster's name. Operators and up; audited by core.
#[server(endpoint = "rollback_cutover")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, run = %run), err(level = "info"))
)]
pub async fn rollback_cutover(run: String, confirm: String) -> Result<CutoverPage, AppError> {
    let cx = Caller::require(Role::Operator).await?;
    let view = cx
        .restores()
        .rollback(&cx.actor, &cx.meta, &run, &confirm)
        .await?;
    Ok(CutoverPage::of(view))
}

#[cfg(feature = "ssr")]
impl CutoverPage {
    fn of(v: walden_core::restore::cutover::CutoverView) -> Self {
        use walden_core::restore::cutover::{CutoverState, Phase};
        let steps = if v.phase == Phase::Rollback {
            &v.rollback
        } else {
            &v.cutover
        };
        CutoverPage {
            phase: v.phase.as_str().to_owned(),
            state: match v.state {
                CutoverState::Running => "running",
                CutoverState::Failed => "failed",
                CutoverState::Done => "done",
            }
            .to_owned(),
            steps: steps
                .iter()
                .map(|s| {
                    let what = match &s.app {
                        Some(app) => format!("{} {app}", s.kind.replace('_', " ")),
                        None => s.kind.replace('_', " "),
                    };
                    (what, s.status.clone(), s.error.clone())
                })
                .collect(),
            checklist: v
                .checklist
                .into_iter()
                .map(|c| (c.what, c.ok, c.detail))
                .collect(),
            apps: v.apps,
            replica_region: v.replica_region,
            failure: v.failure,
            created_by: v.created_by,
        }
    }
}

/// Whether a plan may start, under the two-person rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanApproval {
    /// The admin setting `require_restore_approval` is on.
    pub required: bool,
    pub author: String,
    /// Who approved, with when (`alice at 2026-11-29 14:02:05 UTC`).
    pub approvals: Vec<String>,
    /// Who may approve: the other enabled operators and admins.
    pub may_approve: Vec<String>,
    /// The caller may approve it (an operator or admin who is not the author and has not yet approved).
    pub can_approve: bool,
}

/// The two-person state of the stored plan `hash`. Viewers and up.
#[server(endpoint = "get_plan_approval")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, plan = %hash), err(level = "info"))
)]
pub async fn get_plan_approval(hash: String) -> Result<PlanApproval, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    approval_of(&cx, &hash).await
}

/// The two-person state of the stored plan `hash` as `cx` sees it.
#[cfg(feature = "ssr")]
async fn approval_of(cx: &Caller, hash: &str) -> Result<PlanApproval, AppError> {
    let restores = cx.restores();
    let stored = restores
        .stored(hash)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("Restore plan {hash}")))?;
    let approvals = restores.approvals(hash).await?;
    let me = cx.actor.display_name();
    let may_approve: Vec<String> = cx
        .accounts()
        .list(&cx.actor)
        .await?
        .into_iter()
        .filter(|u| !u.disabled && u.role >= Role::Operator && u.name != stored.created_by)
        .map(|u| u.name)
        .collect();
    Ok(PlanApproval {
        required: restores.approval_required().await?,
        can_approve: cx.user.role >= Role::Operator
            && me != stored.created_by
            && !approvals.iter().any(|a| a.approver == me),
        approvals: approvals
            .iter()
            .map(|a| format!("{} at {}", a.approver, stamp(&a.approved_at)))
            .collect(),
        author: stored.created_by,
        may_approve,
    })
}

/// The caller (another operator or admin than the plan's author) approves the plan `hash`. Operators and up;
/// audited by core.
#[server(endpoint = "approve_restore_plan")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, plan = %hash), err(level = "info"))
)]
pub async fn approve_restore_plan(hash: String) -> Result<(), AppError> {
    let cx = Caller::require(Role::Operator).await?;
    cx.restores()
        .approve_plan(&cx.actor, &cx.meta, &hash)
        .await?;
    Ok(())
}

/// Whether a restore needs a second person's approval of its plan. Viewers and up.
#[server(endpoint = "get_require_restore_approval")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn get_require_restore_approval() -> Result<bool, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    Ok(cx.settings().require_restore_approval().await?)
}

/// Require (or stop requiring) a second person's approval of restore plans. Admins only; audited.
#[server(endpoint = "set_require_restore_approval")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty, enabled), err(level = "info"))
)]
pub async fn set_require_restore_approval(enabled: bool) -> Result<(), AppError> {
    let cx = Caller::require(Role::Admin).await?;
    let key = settings::REQUIRE_RESTORE_APPROVAL;
    Ok(cx
        .settings()
        .set_bool(&cx.actor, &cx.meta, key, enabled)
        .await?)
}

/// A run in the list of recent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub state: String,
    pub source: String,
    pub target_app: String,
    pub created_by: String,
    /// `12 min ago`, and the absolute time for the hover.
    pub when: String,
    pub when_exact: String,
    pub duration: String,
    /// `4 of 9 steps`.
    pub progress: String,
    pub failure: Option<String>,
}

/// The 100 most recent restore runs, newest first. Viewers and up.
#[server(endpoint = "list_restore_runs")]
#[cfg_attr(
    feature = "ssr",
    tracing::instrument(skip_all, fields(user_id = Empty), err(level = "info"))
)]
pub async fn list_restore_runs() -> Result<Vec<RunRow>, AppError> {
    let cx = Caller::require(Role::Viewer).await?;
    let runs = cx.restores().list_runs(100).await?;
    let now = time::OffsetDateTime::now_utc();
    Ok(runs.iter().map(|r| RunRow::of(r, now)).collect())
}

/// The request the choices describe, and what is wrong with their words before anything is asked.
#[cfg(feature = "ssr")]
fn request_of(org: String, app: String, c: &Choices) -> (RestoreRequest, Vec<Reason>) {
    let mut reasons = Vec::new();
    let given = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
    let kind = c.kind.as_str();
    let target = RestoreTarget::from_flags(
        kind == "latest" || kind.is_empty(),
        (kind == "time").then_some(c.target.as_str()),
        (kind == "lsn").then_some(c.lsn.as_str()),
        (kind == "backup").then_some(c.backup.as_str()),
    )
    .unwrap_or_else(|why| {
        reasons.push(Reason::new(
            "bad_target",
            format!("The target cannot be used: {why}."),
            "Choose the target again (step 1).".into(),
        ));
        RestoreTarget::Latest
    });
    let mut number = |field: &str, text: &str, what: &str| -> Option<i64> {
        let text = given(text)?;
        text.parse::<i64>()
            .map_err(|_| {
                reasons.push(Reason::new(
                    &format!("bad_{field}"),
                    format!("The {what} '{text}' is not a whole number."),
                    format!("Give the {what} as a whole number, or leave it empty for the default (step 2)."),
                ))
            })
            .ok()
    };
    let memory_mb = number("memory", &c.memory, "memory in MB");
    let volume_gb = number("volume", &c.volume, "volume size in GB");
    let timeline = given(&c.timeline).and_then(|t| {
        t.parse::<u32>()
            .map_err(|_| {
                reasons.push(Reason::new(
                    "bad_timeline",
                    format!("'{t}' is not a timeline number."),
                    "Choose one of the listed timelines (step 1).".into(),
                ))
            })
            .ok()
    });
    let req = RestoreRequest {
        source: ClusterRef { org, app },
        target,
        timeline,
        destination: Destination {
            kind: walden_core::restore::DestinationKind::New,
            app: c.name.clone(),
            region: given(&c.region),
            memory_mb,
            volume_gb,
        },
        assertion: given(&c.assertion),
        assertion_database: given(&c.assertion_db),
    };
    (req, reasons)
}

#[cfg(feature = "ssr")]
impl From<Reason> for ReasonView {
    fn from(r: Reason) -> Self {
        ReasonView {
            code: r.code,
            what: r.what,
            fix: r.fix,
        }
    }
}

#[cfg(feature = "ssr")]
impl PlanView {
    fn of(hash: &str, created_by: &str, created_at: &str, p: &Plan) -> Self {
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        let target = match &p.target {
            RestoreTarget::Latest => "the latest archived commit".to_owned(),
            RestoreTarget::Time { at } => walg::plan::exact_time(*at),
            RestoreTarget::Lsn { lsn } => format!("LSN {lsn}"),
            RestoreTarget::Backup { name } => format!("backup {name}, to its consistency point"),
        };
        PlanView {
            hash: hash.to_owned(),
            created_by: created_by.to_owned(),
            created_at: stamp(created_at),
            source: format!("{}/{}", p.source.org, p.source.app),
            target,
            timeline: p.recovery.recovery_target_timeline.clone(),
            backup: p.backup.name.clone(),
            backup_why: p.backup.why.clone(),
            backup_timeline: p.backup.timeline,
            delta_chain: p.backup.delta_chain.clone(),
            backup_stored_bytes: p.backup.stored_bytes,
            backup_uncompressed_bytes: p.backup.uncompressed_bytes,
            wal_from: p.wal.from.clone(),
            wal_to: p.wal.to.clone(),
            wal_segments: p.wal.segments,
            wal_stored_bytes: bytes(p.wal.stored_bytes),
            wal_replay_bytes: bytes(p.wal.replay_bytes),
            escrow_version: p.escrow.version,
            escrow_captured_at: stamp(&p.escrow.captured_at),
            escrow_captured_by: p.escrow.captured_by.clone(),
            escrow_valid_at: p.escrow.valid_at.clone(),
            escrow_proofs: p.escrow.last_proofs.clone(),
            app: p.destination.app.clone(),
            region: p.destination.region.clone(),
            image: p.destination.image.clone(),
            pg_version: p.destination.pg_version.clone(),
            memory_mb: p.destination.memory_mb,
            cpus: p.destination.cpus,
            cpu_kind: p.destination.cpu_kind.clone(),
            volume_gb: p.destination.volume_gb,
            volume_rule: p.destination.volume_rule.clone(),
            walg_prefix: p.destination.walg_prefix.clone(),
            walg_prefix_variable: p.destination.walg_prefix_variable.clone(),
            pg_parameters: p
                .pg_parameters
                .values
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            parameters_source: p.pg_parameters.source.clone(),
            estimate: duration_words(i64::try_from(p.estimate.seconds).unwrap_or(i64::MAX)),
            estimate_how: p.estimate.how.clone(),
            steps: p.steps.iter().map(|s| (s.call(), step_detail(s))).collect(),
            never_touched: p.never_touched.clone(),
            notes: p.notes.clone(),
            approval: None,
        }
    }
}

/// What a step sends, in one line, from its stored form (so a step kind added to core shows without a change
/// here): every field but the step's name and app, lists joined, maps as `name=value`. The plan holds secrets
/// only as placeholders, so this shows them masked.
#[cfg(feature = "ssr")]
fn step_detail(step: &walden_core::restore::Step) -> String {
    use serde_json::Value;
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Null => "(unset)".into(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        }
    }
    let Ok(Value::Object(fields)) = serde_json::to_value(step) else {
        return String::new();
    };
    fields
        .iter()
        .filter(|(k, _)| k.as_str() != "step" && k.as_str() != "app")
        .map(|(k, v)| format!("{k}: {}", text(v)))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(feature = "ssr")]
impl RunPage {
    fn of(run: CoreRun, plan: Option<&Plan>, now: time::OffsetDateTime) -> Self {
        let started = walden_core::ts::parse(&run.created_at);
        let finished = run.finished_at.as_deref().and_then(walden_core::ts::parse);
        let elapsed = started
            .map(|s| duration_words((finished.unwrap_or(now) - s).whole_seconds()))
            .unwrap_or_default();
        let steps = run
            .steps
            .iter()
            .map(|s| {
                let from = s.started_at.as_deref().and_then(walden_core::ts::parse);
                let to = s.finished_at.as_deref().and_then(walden_core::ts::parse);
                let duration = match (from, to, s.status.as_str()) {
                    (Some(a), Some(b), _) => Some(duration_words((b - a).whole_seconds())),
                    (Some(a), None, "running") => Some(format!(
                        "{} so far",
                        duration_words((now - a).whole_seconds())
                    )),
                    _ => None,
                };
                let produced = s.produced.as_object().filter(|o| !o.is_empty()).map(|o| {
                    o.iter()
                        .map(|(k, v)| match v {
                            serde_json::Value::String(t) => format!("{k}: {t}"),
                            other => format!("{k}: {other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                RunStep {
                    number: s.index + 1,
                    kind: s.kind.clone(),
                    call: plan
                        .and_then(|p| p.steps.get(s.index))
                        .map(|st| st.call())
                        .unwrap_or_default(),
                    status: s.status.clone(),
                    attempts: s.attempts,
                    started: s.started_at.as_deref().map(stamp),
                    duration,
                    produced,
                    error: s.error.clone(),
                    progress: step_progress(&s.progress),
                }
            })
            .collect();
        // The Fly resources among the steps' products (each once): what a clean-up may destroy.
        let mut created: Vec<String> = Vec::new();
        for s in &run.steps {
            let Some(o) = s.produced.as_object() else {
                continue;
            };
            for kind in ["app", "volume", "machine"] {
                if let Some(id) = o.get(kind).and_then(serde_json::Value::as_str) {
                    let item = format!("{kind} {id}");
                    if !created.contains(&item) {
                        created.push(item);
                    }
                }
            }
        }
        let secs = |f: f64| duration_words(f.round() as i64);
        let report = run.report.as_ref().map(|r| RunReportView {
            steps: r
                .steps
                .iter()
                .map(|d| {
                    (
                        format!("{}. {}", d.index + 1, d.kind.replace('_', " ")),
                        secs(d.seconds),
                    )
                })
                .collect(),
            rto: r.rto_seconds.map(secs),
            elapsed: secs(r.elapsed_seconds),
        });
        let cleanup = run.cleanup.as_ref().map(|c| {
            let gone = if c.destroyed.is_empty() {
                "nothing destroyed yet".to_owned()
            } else {
                format!("destroyed: {}", c.destroyed.join(", "))
            };
            let error = c
                .error
                .as_deref()
                .map(|e| format!("; last attempt: {e}"))
                .unwrap_or_default();
            format!("Clean-up {} ({gone}){error}", c.state)
        });
        RunPage {
            live: run.state.runnable(),
            state: run.state.as_str().to_owned(),
            source: plan
                .map(|p| format!("{}/{}", p.source.org, p.source.app))
                .unwrap_or_default(),
            target_app: plan.map(|p| p.destination.app.clone()).unwrap_or_default(),
            target: plan
                .map(|p| match &p.target {
                    RestoreTarget::Latest => "the latest archived commit".to_owned(),
                    RestoreTarget::Time { at } => walg::plan::exact_time(*at),
                    RestoreTarget::Lsn { lsn } => format!("LSN {lsn}"),
                    RestoreTarget::Backup { name } => format!("backup {name}"),
                })
                .unwrap_or_default(),
            id: run.id,
            plan_hash: run.plan_hash,
            created_by: run.created_by,
            started: stamp(&run.created_at),
            finished: run.finished_at.as_deref().map(stamp),
            elapsed,
            failure: run.failure,
            steps,
            can_control: false,
            created,
            report,
            cleanup,
        }
    }
}

#[cfg(feature = "ssr")]
impl RunRow {
    fn of(r: &RunSummary, now: time::OffsetDateTime) -> Self {
        let started = walden_core::ts::parse(&r.created_at);
        let finished = r.finished_at.as_deref().and_then(walden_core::ts::parse);
        let live = matches!(r.state, RunState::Pending | RunState::Running);
        let duration = match (started, finished) {
            (Some(a), Some(b)) => duration_words((b - a).whole_seconds()),
            (Some(a), None) if live => {
                format!("{} so far", duration_words((now - a).whole_seconds()))
            }
            _ => "—".to_owned(),
        };
        RunRow {
            id: r.id.clone(),
            state: r.state.as_str().to_owned(),
            source: format!("{}/{}", r.source_org, r.source_app),
            target_app: r.target_app.clone(),
            created_by: r.created_by.clone(),
            when: started
                .map(|s| format!("{} ago", duration_words((now - s).whole_seconds())))
                .unwrap_or_default(),
            when_exact: stamp(&r.created_at),
            duration,
            progress: format!("{} of {} steps", r.steps_done, r.steps),
            failure: r.failure.clone(),
        }
    }
}

/// A step's stored progress (`phase`, `percent`, `seconds_left`, `log_tail`), when it has one.
#[cfg(feature = "ssr")]
fn step_progress(v: &serde_json::Value) -> Option<StepProgress> {
    let o = v.as_object()?;
    let phase = o.get("phase")?.as_str()?.replace('_', " ");
    let percent = o
        .get("percent")
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0);
    Some(StepProgress {
        phase,
        permille: (percent * 10.0).round().clamp(0.0, 1000.0) as i64,
        time_left: o
            .get("seconds_left")
            .and_then(serde_json::Value::as_i64)
            .map(duration_words),
        log_tail: o
            .get("log_tail")
            .and_then(serde_json::Value::as_array)
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// A stored time as `2026-11-29 13:55:02 UTC` (the stored text when it does not parse).
#[cfg(feature = "ssr")]
fn stamp(stored: &str) -> String {
    match walden_core::ts::parse(stored) {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        None => stored.to_owned(),
    }
}

/// `40 s`, `3 min 4 s`, `2 h 5 min`, `3 d 4 h`.
#[cfg(feature = "ssr")]
fn duration_words(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, s / 60 % 60),
        _ => format!("{} d {} h", s / 86_400, s / 3600 % 24),
    }
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_words(-3), "0 s");
        assert_eq!(duration_words(59), "59 s");
        assert_eq!(duration_words(184), "3 min 4 s");
        assert_eq!(duration_words(7500), "2 h 5 min");
        assert_eq!(duration_words(3 * 86_400 + 4 * 3600), "3 d 4 h");
    }

    #[test]
    fn choices_from_the_timelines_link_are_a_time_target() {
        let c = Choices::from_query(|k| (k == "target").then(|| "2026-11-29T14:02:05Z".into()));
        assert_eq!(c.kind, "time");
        let (_, reasons) = request_of("demo".into(), "demo-db".into(), &c);
        assert!(reasons.is_empty(), "{reasons:?}");
        let bad = Choices {
            kind: "lsn".into(),
            lsn: "zz".into(),
            memory: "lots".into(),
            ..Choices::default()
        };
        let (_, reasons) = request_of("demo".into(), "demo-db".into(), &bad);
        let codes: Vec<_> = reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["bad_target", "bad_memory"]);
    }
}
