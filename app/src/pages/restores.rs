//! Restore runs: `/restores` lists the recent ones; `/restores/{run}` follows one live (polling its server
//! function every 2 s while a worker may still move it on). Everything shown is read from SQLite, so both pages
//! survive a reload and a console restart.
//!
//! Resources are made at each page's top and read in a `Transition` (never made inside it: leptos#4866).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use crate::api::restores::{
    approve_restore_plan, cancel_restore_run, cutover_restore, get_cutover, get_plan_approval,
    get_restore_run, list_restore_runs, retry_restore_run, rollback_cutover, CutoverInfo,
    CutoverPage, PlanApproval, RunPage, RunReportView, RunRow, StepProgress,
};
use crate::error::AppError;
use crate::page_data::page_data;

/// A cutover call: `(run, apps, region, confirm)`.
type CutoverCall = Action<(String, String, String, String), Result<CutoverPage, AppError>>;
/// A rollback call: `(run, confirm)`.
type RollbackCall = Action<(String, String), Result<CutoverPage, AppError>>;

/// How often the progress page asks again while the run is live.
const POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Restore runs: past and in progress. `/restores?plan=HASH` (the link the wizard gives a plan's author under
/// the two-person rule) also shows that plan's approval, for another operator or admin to give.
#[component]
pub fn RestoresPage() -> impl IntoView {
    let runs = page_data(|| (), |_| list_restore_runs());
    let query = use_query_map();
    let plan = move || query.read().get("plan").unwrap_or_default();
    let approved = RwSignal::new(0u32);
    let approval = page_data(
        move || (plan(), approved.get()),
        |(hash, _)| async move {
            if hash.is_empty() {
                Ok(None)
            } else {
                get_plan_approval(hash).await.map(Some)
            }
        },
    );
    view! {
        <Title text="Restores" />
        <h1>"Restores"</h1>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match approval.await {
                    Ok(None) => ().into_any(),
                    Err(e) => view! {
                        <section class="panel error-panel" role="alert" data-test="approval-error">
                            <h2>"This plan's approval could not be read"</h2>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                    Ok(Some(a)) => view! { <ApprovalPanel hash=plan() a approved /> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| view! { <p class="muted">"Reading the restore runs…"</p> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Err(e) => view! {
                        <section class="panel error-panel" role="alert" data-test="runs-error">
                            <h2>"The restore runs could not be listed"</h2>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                    Ok(rows) if rows.is_empty() => view! {
                        <section class="panel empty-state" data-test="no-runs">
                            <h2>"No restore runs"</h2>
                            <p>"Point-in-time restores into a new cluster appear here, with every step and its outcome. \
                                Start one from a cluster's page: click a time inside a restorable window, or Restore…."</p>
                            <p><a class="button" href="/clusters">"Choose a cluster"</a></p>
                        </section>
                    }.into_any(),
                    Ok(rows) => view! { <RunsTable rows /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunsTable(rows: Vec<RunRow>) -> impl IntoView {
    view! {
        <section class="panel">
            <div class="table-scroll">
                <table class="table" data-test="runs">
                    <thead><tr>
                        <th>"State"</th><th>"Source → new cluster"</th><th>"Started by"</th><th>"When"</th>
                        <th>"Duration"</th><th>"Progress"</th><th>"Run"</th>
                    </tr></thead>
                    <tbody>
                        {rows.into_iter().map(|r| view! {
                            <tr data-test="run-row" data-run=r.id.clone()>
                                <td><StateBadge state=r.state.clone() /></td>
                                <td><span class="mono">{r.source}</span> " → " <span class="mono">{r.target_app}</span>
                                    {r.failure.map(|f| view! { <br /><span class="muted small">{f}</span> })}</td>
                                <td>{r.created_by}</td>
                                <td title=r.when_exact>{r.when}</td>
                                <td class="num">{r.duration}</td>
                                <td>{r.progress}</td>
                                <td><a class="mono" href=format!("/restores/{}", r.id)>{r.id.clone()}</a></td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
}

/// A run's state with an icon and a word (never colour alone).
#[component]
fn StateBadge(state: String) -> impl IntoView {
    let (class, icon) = match state.as_str() {
        "done" => ("badge badge-ok", "✓"),
        "failed" => ("badge badge-bad", "✗"),
        "paused" => ("badge badge-warn", "⏸"),
        "running" | "pending" => ("badge badge-warn", "↻"),
        _ => ("badge badge-idle", "–"),
    };
    let word = state.clone();
    view! { <span class=class data-test="run-state" data-state=state>{icon} " " {word}</span> }
}

/// One run, live: `/restores/{run}`.
#[component]
pub fn RestoreRunPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("run").unwrap_or_default();
    let tick = RwSignal::new(0u32);
    let run = page_data(move || (id(), tick.get()), |(id, _)| get_restore_run(id));
    let cutover = page_data(move || (id(), tick.get()), |(id, _)| get_cutover(id));
    // The cutover and rollback calls live as long as the page (not the panel, which each refresh redraws):
    // while one runs, the page follows its steps; when it ends, the page reads the result.
    let cut: CutoverCall = Action::new(
        |(run, apps, region, confirm): &(String, String, String, String)| {
            cutover_restore(run.clone(), apps.clone(), region.clone(), confirm.clone())
        },
    );
    let back: RollbackCall = Action::new(|(run, confirm): &(String, String)| {
        rollback_cutover(run.clone(), confirm.clone())
    });
    Effect::new(move |_| {
        if cut.value().get().is_some() || back.value().get().is_some() {
            tick.update(|t| *t = t.wrapping_add(1));
        }
    });
    // Poll while the run is live (only in the browser: effects do not run on the server).
    Effect::new(move |_| {
        let handle = set_interval_with_handle(
            move || {
                let live = run
                    .get_untracked()
                    .and_then(Result::ok)
                    .is_some_and(|r| r.live);
                let cutting = cut.pending().get_untracked() || back.pending().get_untracked();
                if live || cutting {
                    tick.update(|t| *t = t.wrapping_add(1));
                }
            },
            POLL,
        )
        .ok();
        on_cleanup(move || {
            if let Some(h) = handle {
                h.clear();
            }
        });
    });
    view! {
        <Title text=move || format!("Restore run {}", id()) />
        <p class="muted"><a href="/restores">"Restores"</a> " /"</p>
        <h1>"Restore run " <span class="mono">{id}</span></h1>
        <Transition fallback=|| view! { <p class="muted">"Reading the run…"</p> }>
            {move || Suspend::new(async move {
                match run.await {
                    Err(e) => view! {
                        <section class="panel error-panel" role="alert" data-test="run-error">
                            <h2>"This run could not be shown"</h2>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                    Ok(r) => view! { <RunBody r changed=tick /> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let done = run.await.is_ok_and(|r| r.state == "done");
                match cutover.await {
                    Ok(info) if done => view! { <CutoverPanel run=id() info cut back /> }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunBody(r: RunPage, changed: RwSignal<u32>) -> impl IntoView {
    let failure = r.failure.clone().map(|f| {
        let title = if r.state == "paused" {
            "The run is paused"
        } else {
            "The run failed"
        };
        view! {
            <section class="panel error-panel" role="alert" data-test="run-failure">
                <h2>{title}</h2>
                <p>{f}</p>
            </section>
        }
    });
    let live = r.live.then(|| {
        view! { <p class="muted" data-test="run-live">"Live: this page follows the run every 2 s."</p> }
    });
    view! {
        <section class="panel" data-test="run-summary">
            <dl class="facts">
                <dt>"State"</dt><dd><StateBadge state=r.state.clone() /></dd>
                <dt>"Restore"</dt><dd><span class="mono">{r.source.clone()}</span> " to " {r.target.clone()}
                    " into " <span class="mono">{r.target_app.clone()}</span></dd>
                <dt>"Started"</dt><dd>{format!("{} by {}", r.started, r.created_by)}</dd>
                <dt>"Finished"</dt><dd>{r.finished.clone().unwrap_or_else(|| "not yet".into())}</dd>
                <dt>"Elapsed"</dt><dd data-test="run-elapsed">{r.elapsed.clone()}</dd>
                <dt>"Plan"</dt><dd class="mono small">{r.plan_hash.clone()}</dd>
            </dl>
            {live}
        </section>
        {failure}
        <RunActions r=r.clone() changed />
        {r.cleanup.clone().map(|c| view! { <section class="panel" data-test="run-cleanup"><p>{c}</p></section> })}
        {r.report.clone().filter(|_| r.state == "done").map(|rep| view! { <Report rep /> })}
        <section class="panel">
            <h2>"Steps"</h2>
            <ol class="run-steps" aria-live="polite" data-test="run-steps">
                {r.steps.into_iter().map(|s| view! {
                    <li class=format!("run-step {}", s.status) data-test="run-step" data-status=s.status.clone()>
                        <span class="run-step-icon" aria-hidden="true">{step_icon(&s.status)}</span>
                        <div>
                            <strong>{format!("{}. {}", s.number, s.kind.replace('_', " "))}</strong>
                            " " <span class="muted">{s.status.clone()}</span>
                            {s.duration.map(|d| view! { " · " <span>{d}</span> })}
                            {(s.attempts > 1).then(|| view! { " · " <span class="muted">{format!("{} attempts", s.attempts)}</span> })}
                            <br /><code class="small">{s.call}</code>
                            {s.produced.map(|p| view! { <br /><span class="mono small muted">{p}</span> })}
                            {s.progress.filter(|_| s.status == "running").map(|p| view! { <Progress p /> })}
                            {s.error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
                        </div>
                    </li>
                }).collect_view()}
            </ol>
        </section>
    }
}

/// A long step's live progress: its phase, a percentage bar, the time left and the machine's last log lines.
#[component]
fn Progress(p: StepProgress) -> impl IntoView {
    let percent = format!("{}.{}", p.permille / 10, p.permille % 10);
    let label = format!("{percent} %");
    view! {
        <div class="run-progress" data-test="step-progress">
            <p>
                <span data-test="progress-phase">{p.phase}</span> " · "
                <span data-test="progress-percent">{label.clone()}</span>
                {p.time_left.map(|t| view! { " · about " <span data-test="progress-left">{t}</span> " left" })}
            </p>
            <div class="progress-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"
                aria-valuenow=percent.clone() aria-label="Restore progress">
                <div class="progress-fill" style=format!("width: {percent}%")></div>
            </div>
            {(!p.log_tail.is_empty()).then(|| view! {
                <pre class="log-tail mono small" data-test="log-tail">{p.log_tail.join("\n")}</pre>
            })}
        </div>
    }
}

/// A finished run's report: each step's duration and the measured RTO.
#[component]
fn Report(rep: RunReportView) -> impl IntoView {
    view! {
        <section class="panel" data-test="run-report">
            <h2>"Report"</h2>
            <dl class="facts">
                <dt>"Measured RTO"</dt>
                <dd data-test="run-rto">{rep.rto.unwrap_or_else(|| "not verified".into())}</dd>
                <dt>"Whole run"</dt><dd>{rep.elapsed}</dd>
            </dl>
            <table class="table compact" data-test="report-steps">
                <thead><tr><th>"Step"</th><th class="num">"Duration"</th></tr></thead>
                <tbody>
                    {rep.steps.into_iter().map(|(step, took)| view! {
                        <tr><td>{step}</td><td class="num">{took}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

/// The choices on a run (operators and admins; a viewer sees the state only): after a failure, retry the
/// failed step, cancel and clean up (after a confirmation that lists what will be destroyed), or leave as is;
/// while it runs, cancel. Each is `walden_core::restore::engine::control`, audited there.
#[component]
fn RunActions(r: RunPage, changed: RwSignal<u32>) -> impl IntoView {
    if !r.can_control || matches!(r.state.as_str(), "done" | "cancelled") {
        return ().into_any();
    }
    let id = r.id.clone();
    let retry = Action::new(|id: &String| retry_restore_run(id.clone()));
    let cancel =
        Action::new(|(id, destroy): &(String, bool)| cancel_restore_run(id.clone(), *destroy));
    Effect::new(move |_| {
        if retry.value().get().is_some_and(|r| r.is_ok())
            || cancel.value().get().is_some_and(|r| r.is_ok())
        {
            changed.update(|t| *t = t.wrapping_add(1));
        }
    });
    let confirming = RwSignal::new(false);
    let failed = r.state == "failed";
    let busy = move || retry.pending().get() || cancel.pending().get();
    let created = if r.created.is_empty() {
        vec!["nothing yet".to_owned()]
    } else {
        r.created.clone()
    };
    let error = move || {
        retry
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| cancel.value().get().and_then(Result::err))
            .map(|e| view! { <p class="form-error" role="alert" data-test="action-error">{e.to_string()}</p> })
    };
    let (retry_id, leave_id, destroy_id) = (id.clone(), id.clone(), id);
    view! {
        <section class="panel danger-zone" data-test="run-actions">
            <h2>{if failed { "What to do now" } else { "Stop this run" }}</h2>
            <div class="actions">
                {failed.then(|| view! {
                    <button type="button" data-test="retry" disabled=busy
                        on:click=move |_| { retry.dispatch(retry_id.clone()); }>"Retry the failed step"</button>
                })}
                <button type="button" class="button-danger" data-test="cancel-destroy" disabled=busy
                    on:click=move |_| confirming.set(true)>"Cancel and clean up…"</button>
                <button type="button" class="button-secondary" data-test="cancel-leave" disabled=busy
                    on:click=move |_| { cancel.dispatch((leave_id.clone(), false)); }>
                    {if failed { "Leave as is" } else { "Cancel, leave what exists" }}</button>
            </div>
            <Show when=move || confirming.get()>
                <div class="confirm-box" data-test="destroy-confirm">
                    <p>"The run stops, and Walden destroys only what this run created (the source is never touched):"</p>
                    <ul>{created.iter().map(|c| view! { <li class="mono">{c.clone()}</li> }).collect_view()}</ul>
                    <div class="actions">
                        <button type="button" class="button-danger" data-test="destroy" disabled=busy
                            on:click={let id = destroy_id.clone(); move |_| { cancel.dispatch((id.clone(), true)); }}>
                            "Cancel the run and destroy these"</button>
                        <button type="button" class="button-secondary" on:click=move |_| confirming.set(false)>"Keep them"</button>
                    </div>
                </div>
            </Show>
            {error}
        </section>
    }
    .into_any()
}

/// A plan's two-person approval: who wrote it, who approved it, and the button for another operator or admin.
#[component]
fn ApprovalPanel(hash: String, a: PlanApproval, approved: RwSignal<u32>) -> impl IntoView {
    let approve = Action::new(|hash: &String| approve_restore_plan(hash.clone()));
    Effect::new(move |_| {
        if approve.value().get().is_some_and(|r| r.is_ok()) {
            approved.update(|t| *t = t.wrapping_add(1));
        }
    });
    let given = if a.approvals.is_empty() {
        "not approved yet".to_owned()
    } else {
        format!("approved by {}", a.approvals.join(", "))
    };
    view! {
        <section class="panel" data-test="plan-approval">
            <h2>"Approve a restore plan"</h2>
            <dl class="facts">
                <dt>"Plan"</dt><dd class="mono small">{hash.clone()}</dd>
                <dt>"Planned by"</dt><dd>{a.author.clone()}</dd>
                <dt>"Approval"</dt><dd data-test="approval-state">{given}</dd>
            </dl>
            {a.can_approve.then(|| view! {
                <p class="help">"Approving lets the author start this exact plan (its hash): read it in the wizard first."</p>
                <button type="button" data-test="approve" disabled=move || approve.pending().get()
                    on:click={let hash = hash.clone(); move |_| { approve.dispatch(hash.clone()); }}>"Approve this plan"</button>
            })}
            {move || approve.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
        </section>
    }
}

/// The cutover of a done run (operators act; viewers follow): pick the apps to point at the new cluster and the
/// replicas' region, confirm by typing the OLD cluster's name; then the steps and the checklist Walden checked
/// itself, and a confirmed one-click rollback. The call runs the cutover to its end; the page follows it.
#[component]
fn CutoverPanel(
    run: String,
    info: CutoverInfo,
    cut: CutoverCall,
    back: RollbackCall,
) -> impl IntoView {
    let old = info.old_app.clone();
    let typed = RwSignal::new(String::new());
    let apps = RwSignal::new(String::new());
    let region = RwSignal::new(String::new());
    let expected = StoredValue::new(old.clone());
    let matches = move || typed.with(|t| expected.with_value(|e| t.trim() == e));
    let busy = move || cut.pending().get() || back.pending().get();
    let error = move || {
        cut.value()
            .get()
            .and_then(Result::err)
            .or_else(|| back.value().get().and_then(Result::err))
            .map(|e| view! { <p class="form-error" role="alert" data-test="cutover-error">{e.to_string()}</p> })
    };
    let confirm_field = view! {
        <div class="field">
            <label for="cutover-confirm">{format!("Type the old cluster's name, {old}, to go on")}</label>
            <input id="cutover-confirm" class="mono" autocomplete="off" spellcheck="false"
                prop:value=move || typed.get() on:input=move |ev| typed.set(event_target_value(&ev)) />
        </div>
    };
    let body = match info.cutover.clone() {
        None if !info.can_cut_over => view! {
            <p class="muted">"No cutover yet. An operator or admin can point the apps at the new cluster from here."</p>
        }.into_any(),
        None => {
            let run = run.clone();
            view! {
                <p>"Stops archiving on " <span class="mono">{old.clone()}</span> ", clones replicas for "
                    <span class="mono">{info.new_app.clone()}</span> ", points the apps you name at it (their old "
                    <span class="mono">"DATABASE_URL"</span> " kept) and stops the old machines without destroying them."</p>
                <div class="grid-2">
                    <div class="field">
                        <label for="cutover-apps">"Apps to point at the new cluster"</label>
                        <input id="cutover-apps" class="mono" autocomplete="off" spellcheck="false" placeholder="web, worker"
                            prop:value=move || apps.get() on:input=move |ev| apps.set(event_target_value(&ev)) />
                        <p class="help">"Your organisation's apps, comma-separated (never either cluster); each must use the old cluster now."</p>
                    </div>
                    <div class="field">
                        <label for="cutover-region">"Replicas' region"</label>
                        <select id="cutover-region" on:change=move |ev| region.set(event_target_value(&ev))>
                            <option value="">"the new leader's region"</option>
                            {info.regions.iter().map(|r| view! { <option value=r.clone()>{r.clone()}</option> }).collect_view()}
                        </select>
                        <p class="help">"Where the new cluster's replicas are made."</p>
                    </div>
                </div>
                {confirm_field}
                <div class="actions">
                    <button type="button" class="button-danger" data-test="cutover"
                        disabled=move || !matches() || busy()
                        on:click=move |_| { cut.dispatch((run.clone(), apps.get_untracked(), region.get_untracked(), typed.get_untracked().trim().to_owned())); }>
                        {format!("Cut over from {} to {}", old, info.new_app)}</button>
                </div>
            }.into_any()
        }
        Some(c) => {
            let rollback_offered = info.can_cut_over && c.phase == "cutover" && c.state != "running";
            let resume = (info.can_cut_over && c.state == "failed").then(|| {
                let (run, apps_given) = (run.clone(), c.apps.join(","));
                view! {
                    <button type="button" data-test="cutover-resume" disabled=move || !matches() || busy()
                        on:click=move |_| { cut.dispatch((run.clone(), apps_given.clone(), String::new(), typed.get_untracked().trim().to_owned())); }>
                        {format!("Resume the {}", c.phase)}</button>
                }
            });
            let rollback = rollback_offered.then(|| {
                let run = run.clone();
                view! {
                    <button type="button" class="button-danger" data-test="rollback" disabled=move || !matches() || busy()
                        on:click=move |_| { back.dispatch((run.clone(), typed.get_untracked().trim().to_owned())); }>
                        "Roll back: the apps to the old cluster"</button>
                }
            });
            let offered = resume.is_some() || rollback.is_some();
            view! {
                <p data-test="cutover-state" data-phase=c.phase.clone() data-state=c.state.clone()>
                    {format!("{} {} (by {}); apps: {}; replicas in {}", c.phase, c.state, c.created_by,
                        if c.apps.is_empty() { "none".to_owned() } else { c.apps.join(", ") },
                        c.replica_region.clone().unwrap_or_else(|| "the new leader's region".into()))}</p>
                {c.failure.clone().map(|f| view! { <p class="error" role="alert">{f}</p> })}
                <ol class="run-steps" aria-live="polite" data-test="cutover-steps">
                    {c.steps.into_iter().map(|(what, status, error)| {
                        let (class, icon, word) = (format!("run-step {status}"), step_icon(&status), status.clone());
                        view! {
                        <li class=class data-status=status>
                            <span class="run-step-icon" aria-hidden="true">{icon}</span>
                            <div><strong>{what}</strong> " " <span class="muted">{word}</span>
                                {error.map(|e| view! { <p class="error" role="alert">{e}</p> })}</div>
                        </li>
                    }}).collect_view()}
                </ol>
                {(!c.checklist.is_empty()).then(|| view! {
                    <h3>"Checklist (checked by Walden)"</h3>
                    <ul class="checklist" data-test="checklist">
                        {c.checklist.into_iter().map(|(what, ok, found)| view! {
                            <li data-test="check" data-ok=ok.to_string()>
                                <span class=if ok { "badge badge-ok" } else { "badge badge-bad" }>{if ok { "✓ ok" } else { "✗ not yet" }}</span>
                                " " {what} " — " <span class="muted">{found}</span>
                            </li>
                        }).collect_view()}
                    </ul>
                })}
                {offered.then(|| view! { {confirm_field} <div class="actions">{resume}{rollback}</div> })}
            }.into_any()
        }
    };
    view! {
        <section class="panel danger-zone" id="cutover" data-test="cutover-panel">
            <h2>"Cutover"</h2>
            {body}
            {error}
        </section>
    }
}

fn step_icon(status: &str) -> &'static str {
    match status {
        "done" => "✓",
        "failed" => "✗",
        "running" => "↻",
        _ => "○",
    }
}
