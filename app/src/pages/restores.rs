//! Restore runs: `/restores` lists the recent ones; `/restores/{run}` follows one live (polling its server
//! function every 2 s while a worker may still move it on). Everything shown is read from SQLite, so both pages
//! survive a reload and a console restart.
//!
//! Resources are made at each page's top and read in a `Transition` (never made inside it: leptos#4866).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::restores::{get_restore_run, list_restore_runs, RunPage, RunRow};
use crate::page_data::page_data;

/// How often the progress page asks again while the run is live.
const POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Restore runs: past and in progress.
#[component]
pub fn RestoresPage() -> impl IntoView {
    let runs = page_data(|| (), |_| list_restore_runs());
    view! {
        <Title text="Restores" />
        <h1>"Restores"</h1>
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
    // Poll while the run is live (only in the browser: effects do not run on the server).
    Effect::new(move |_| {
        let handle = set_interval_with_handle(
            move || {
                let live = run
                    .get_untracked()
                    .and_then(Result::ok)
                    .is_some_and(|r| r.live);
                if live {
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
                    Ok(r) => view! { <RunBody r /> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn RunBody(r: RunPage) -> impl IntoView {
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
        <RunActions state=r.state.clone() />
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
                            {s.error.map(|e| view! { <p class="error" role="alert">{e}</p> })}
                        </div>
                    </li>
                }).collect_view()}
            </ol>
        </section>
    }
}

/// Where the run's buttons go: approve (two-person rule), retry the failed step, cancel and clean up, leave as
/// is. They are backed by the engine's control functions (`walden_core::restore::engine::control`, built
/// separately); until those land this renders nothing.
#[component]
fn RunActions(state: String) -> impl IntoView {
    // TODO(controls): when core's approve/retry/cancel exist, add their server functions (module POLICY and a
    // probe row) and render here: "Approve plan" while awaiting approval; "Retry step" and "Cancel and clean
    // up" while `failed` or `paused`; "Cancel" while `pending`/`running`.
    let _ = state;
}

fn step_icon(status: &str) -> &'static str {
    match status {
        "done" => "✓",
        "failed" => "✗",
        "running" => "↻",
        _ => "○",
    }
}
