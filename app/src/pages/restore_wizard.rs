//! The restore wizard, `/clusters/{org}/{app}/restore` (operators; a viewer sees why not): 1 the target,
//! 2 the destination, 3 the plan computed by the server and the typed confirmation that starts the run.
//!
//! Every choice lives in the address (`?step=2&kind=time&target=2026-11-29T14:02:05Z&name=…`): each step is a
//! GET form that carries the other steps' choices as hidden fields, so Back, Next and a reload keep them all.
//! The page's resources are made at its top and read in one `Transition` (never made inside it: leptos#4866).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use crate::api::restores::{
    check_restore_name, get_restore_options, plan_restore, start_restore, Choices, PlanAnswer,
    PlanView, RestoreOptions,
};
use crate::api::timeline::{get_cluster_timeline, TimelineView};
use crate::components::timeline::{format_time, human_bytes, offset_at, rfc3339_utc};
use crate::page_data::page_data;

/// The steps' titles, in order.
const STEPS: [&str; 3] = ["Target", "Destination", "Plan and confirm"];

/// The wizard page.
#[component]
pub fn RestoreWizardPage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let org = move || params.read().get("org").unwrap_or_default();
    let app = move || params.read().get("app").unwrap_or_default();
    let choices = Memo::new(move |_| Choices::from_query(|k| query.read().get(k)));
    let step = Memo::new(move |_| {
        query
            .read()
            .get("step")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(1)
            .clamp(1, STEPS.len())
    });
    let options = page_data(|| (), |_| get_restore_options());
    let timeline = page_data(move || (org(), app()), |(o, a)| get_cluster_timeline(o, a));
    // The plan is asked for on the last step only; core stores and audits each one.
    let plan = page_data(
        move || (step.get() == STEPS.len()).then(|| (org(), app(), choices.get())),
        |asked| async move {
            match asked {
                Some((o, a, c)) => plan_restore(o, a, c).await.map(Some),
                None => Ok(None),
            }
        },
    );
    view! {
        <Title text=move || format!("Restore {}", app()) />
        <p class="muted">
            <a href="/clusters">"Clusters"</a> " / " {org} " / "
            <a href=move || format!("/clusters/{}/{}", org(), app())>{app}</a> " /"
        </p>
        <h1>"Restore " <span class="mono">{app}</span></h1>
        <Transition fallback=|| view! { <p class="muted">"Reading the cluster's backups…"</p> }>
            {move || Suspend::new(async move {
                let options = options.await;
                let timeline = timeline.await;
                let plan = plan.await;
                match options {
                    Err(e) => view! {
                        <section class="panel error-panel" role="alert" data-test="wizard-error">
                            <h2>"The restore wizard could not open"</h2>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                    Ok(o) if !o.can_restore => view! {
                        <section class="panel empty-state" data-test="wizard-forbidden">
                            <h2>"Restoring needs the operator role"</h2>
                            <p>"Your role is viewer: you can see the cluster's restorable windows on its page, but only an \
                                operator or an admin can plan and start a restore. Ask an admin to change your role on the \
                                Users page, or ask an operator to restore."</p>
                            <p><a href=format!("/clusters/{}/{}", org(), app())>"Back to the cluster"</a></p>
                        </section>
                    }.into_any(),
                    Ok(o) => {
                        let view = timeline.ok().and_then(|t| t.timeline);
                        view! {
                            <Wizard org=org() app=app() step=step.get() choices=choices.get() options=o view plan />
                        }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The stepper, the current step's form and the summary of every choice.
#[component]
fn Wizard(
    org: String,
    app: String,
    step: usize,
    choices: Choices,
    options: RestoreOptions,
    view: Option<TimelineView>,
    plan: Result<Option<PlanAnswer>, crate::error::AppError>,
) -> impl IntoView {
    let stepper = STEPS
        .iter()
        .enumerate()
        .map(|(i, title)| {
            let n = i + 1;
            let label = format!("{n}. {title}");
            let body = if n < step {
                view! { <a href=format!("?{}", query(&choices, n))>{label}</a> }.into_any()
            } else {
                view! { <span>{label}</span> }.into_any()
            };
            view! {
                <li class:current=n == step class:done=n < step aria-current=(n == step).then_some("step")>{body}</li>
            }
        })
        .collect_view();
    let body = match step {
        1 => view! { <TargetStep choices=choices.clone() view /> }.into_any(),
        2 => view! { <DestinationStep choices=choices.clone() options /> }.into_any(),
        _ => view! { <PlanStep org=org.clone() app=app.clone() choices=choices.clone() plan /> }
            .into_any(),
    };
    view! {
        <ol class="stepper" data-test="wizard" data-step=step>{stepper}</ol>
        <div class="wizard">
            <div class="wizard-main">{body}</div>
            <Summary org app choices />
        </div>
    }
}

/// Every choice so far, beside the steps.
#[component]
fn Summary(org: String, app: String, choices: Choices) -> impl IntoView {
    let or_default = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_owned()
        } else {
            v.to_owned()
        }
    };
    view! {
        <aside class="panel wizard-summary" data-test="wizard-summary">
            <h2>"Your choices"</h2>
            <dl class="facts">
                <dt>"Source"</dt><dd class="mono">{format!("{org}/{app}")}</dd>
                <dt>"Target"</dt><dd>{choices.target_words()}</dd>
                <dt>"Timeline"</dt><dd>{or_default(&choices.timeline, "the main one")}</dd>
                <dt>"New cluster"</dt><dd class="mono">{or_default(&choices.name, "not chosen yet")}</dd>
                <dt>"Region"</dt><dd>{or_default(&choices.region, "the source's")}</dd>
                <dt>"Memory"</dt><dd>{if choices.memory.is_empty() { "the source's".to_owned() } else { format!("{} MB", choices.memory) }}</dd>
                <dt>"Volume"</dt><dd>{if choices.volume.is_empty() { "from the plan".to_owned() } else { format!("{} GB", choices.volume) }}</dd>
                <dt>"Assertion"</dt><dd class="mono small">{or_default(&choices.assertion, "none")}</dd>
            </dl>
        </aside>
    }
}

/// Step 1: latest, a time (in the viewer's zone, echoed in UTC, checked against the windows), an LSN or a
/// named backup; the timeline when the archive has more than one.
#[component]
fn TargetStep(choices: Choices, view: Option<TimelineView>) -> impl IntoView {
    let Some(view) = view else {
        return view! {
            <section class="panel error-panel" role="alert" data-test="no-timeline">
                <h2>"The cluster's backups could not be read"</h2>
                <p>"Its page says why. A restore needs a readable archive with at least one base backup."</p>
            </section>
        }
        .into_any();
    };
    let kind = RwSignal::new(choices.kind.clone());
    let at = RwSignal::new(parse_utc(&choices.target));
    let view = StoredValue::new(view);
    let problem = move || {
        (kind.get() == "time").then(|| match at.get() {
            None => Some("Choose a date and time.".to_owned()),
            Some(ms) => view.with_value(|v| time_problem(ms, v)),
        })?
    };
    let local_value = move || at.get().map(local_input).unwrap_or_default();
    // The attribute is what the server renders (a form sent before hydration keeps it); the property follows.
    let initial_local = at.get_untracked().map(local_input).unwrap_or_default();
    let utc_echo = move || {
        at.get()
            .map(|ms| format!("= {} UTC", format_time(ms, 0)))
            .unwrap_or_default()
    };
    let on_time = move |ev: leptos::ev::Event| at.set(parse_local(&event_target_value(&ev)));
    let (earliest, latest) = view.with_value(|v| (v.earliest_restorable_ms, last_restorable(v)));
    let bounds = match (earliest, latest) {
        (Some(a), Some(b)) => format!(
            "Restorable from {} to {} (your time zone).",
            zoned(a),
            zoned(b)
        ),
        _ => "No restorable window yet.".to_owned(),
    };
    let backups = view.with_value(|v| {
        v.backups
            .iter()
            .rev()
            .filter(|b| b.restorable)
            .map(|b| {
                (
                    b.name.clone(),
                    format!(
                        "{} — finished {} UTC, timeline {}",
                        b.name,
                        format_time(b.finish_ms, 0),
                        b.timeline
                    ),
                )
            })
            .collect::<Vec<_>>()
    });
    let timelines = view.with_value(|v| {
        let mut t: Vec<u32> = v
            .windows
            .iter()
            .map(|w| w.timeline)
            .chain(v.backups.iter().map(|b| b.timeline))
            .collect();
        t.sort_unstable();
        t.dedup();
        (t, v.main_timeline)
    });
    let chosen_backup = choices.backup.clone();
    let chosen_timeline = choices.timeline.clone();
    let timeline_field = (timelines.0.len() > 1).then(|| {
        let (list, main) = timelines.clone();
        let listed = list.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        view! {
            <div class="field" data-test="timeline-choice">
                <label for="timeline">"Postgres timeline"</label>
                <select id="timeline" name="timeline">
                    <option value="" selected=chosen_timeline.is_empty()>
                        {format!("the main one ({})", main.map(|m| m.to_string()).unwrap_or_default())}
                    </option>
                    {list.into_iter().map(|t| {
                        let v = t.to_string();
                        view! { <option value=v.clone() selected=chosen_timeline == v>{format!("timeline {t}")}</option> }
                    }).collect_view()}
                </select>
                <p class="help">{format!("This archive has more than one timeline ({listed}); recovery follows the one chosen here.")}</p>
            </div>
        }
    });
    let radio = move |value: &'static str, label: &'static str| {
        view! {
            <label class="choice">
                <input type="radio" name="kind" value=value checked=move || kind.get() == value
                    on:change=move |_| kind.set(value.to_owned()) />
                " " {label}
            </label>
        }
    };
    view! {
        <form method="get" class="panel" data-test="target-step">
            <h2>"What to restore to"</h2>
            <p class="muted">{bounds}</p>
            <fieldset class="choices">
                <legend>"Target"</legend>
                {radio("latest", "The latest archived commit")}
                {radio("time", "A point in time")}
                {radio("lsn", "An LSN")}
                {radio("backup", "A named base backup")}
            </fieldset>
            <div class="field" hidden=move || kind.get() != "time">
                <label for="target-local">"Date and time (your time zone)"</label>
                <input id="target-local" type="datetime-local" step="1" min=earliest.map(local_input) max=latest.map(local_input)
                    value=initial_local prop:value=local_value on:input=on_time />
                <input type="hidden" name="target" value=choices.target.clone()
                    prop:value=move || at.get().map(rfc3339_utc).unwrap_or_default() />
                <p class="help" data-test="utc-echo">{utc_echo}</p>
                {move || problem().map(|p| view! { <p class="error" role="alert" data-test="time-problem">{p}</p> })}
            </div>
            <div class="field" hidden=move || kind.get() != "lsn">
                <label for="lsn">"LSN"</label>
                <input id="lsn" name="lsn" class="mono" placeholder="0/3000028" value=choices.lsn.clone() />
                <p class="help">"As PostgreSQL writes it (pg_current_wal_lsn()): two hex numbers and a slash."</p>
            </div>
            <div class="field" hidden=move || kind.get() != "backup">
                <label for="backup">"Base backup"</label>
                <select id="backup" name="backup">
                    {backups.into_iter().map(|(name, label)| {
                        let selected = name == chosen_backup;
                        view! { <option value=name selected=selected>{label}</option> }
                    }).collect_view()}
                </select>
                <p class="help">"Restored to its consistency point (the end of the backup)."</p>
            </div>
            {timeline_field}
            <Carry choices=choices.clone() except=&["kind", "target", "lsn", "backup", "timeline"] />
            <div class="actions">
                <button type="submit" name="step" value="2" disabled=move || problem().is_some()>"Next: destination"</button>
            </div>
        </form>
    }
    .into_any()
}

/// Step 2: the new cluster's name (Fly's rule checked as it is typed; whether it is free, by the plan), region,
/// memory and volume (empty: the defaults).
#[component]
fn DestinationStep(choices: Choices, options: RestoreOptions) -> impl IntoView {
    let check = Action::new(|name: &String| check_restore_name(name.clone()));
    let name_problem = move || match check.value().get() {
        Some(Ok(Some(why))) => Some(why),
        Some(Err(e)) => Some(e.to_string()),
        _ => None,
    };
    let min = options.min_memory_mb;
    let memory = RwSignal::new(choices.memory.clone());
    let memory_problem = move || {
        let m = memory.get();
        if m.is_empty() {
            return None;
        }
        match m.parse::<i64>() {
            Ok(v) if v >= min => None,
            Ok(_) => Some(format!(
                "At least {min} MB: a smaller machine runs out of memory while it restores."
            )),
            Err(_) => Some("A whole number of MB.".to_owned()),
        }
    };
    let region = choices.region.clone();
    view! {
        <form method="get" class="panel" data-test="destination-step">
            <h2>"Where to restore"</h2>
            <p class="muted">"Always a new cluster: the source is only read."</p>
            <div class="grid-2">
                <div class="field">
                    <label for="name">"New cluster's app name"</label>
                    <input id="name" name="name" class="mono" required value=choices.name.clone()
                        autocomplete="off" spellcheck="false"
                        on:input=move |ev| { check.dispatch(event_target_value(&ev)); } />
                    <p class="help">"Lowercase letters, digits and dashes; it must not exist on Fly yet (the plan checks)."</p>
                    {move || name_problem().map(|p| view! { <p class="error" role="alert" data-test="name-problem">{p}</p> })}
                </div>
                <div class="field">
                    <label for="region">"Region"</label>
                    <select id="region" name="region">
                        <option value="" selected=region.is_empty()>"the source's region"</option>
                        {options.regions.into_iter().map(|r| {
                            let selected = r == region;
                            let value = r.clone();
                            view! { <option value=value selected=selected>{r}</option> }
                        }).collect_view()}
                    </select>
                    <p class="help">"Where the new machine and volume are made."</p>
                </div>
                <div class="field">
                    <label for="memory">"Memory (MB)"</label>
                    <input id="memory" name="memory" type="number" min=min step="256" placeholder="the source's"
                        value=choices.memory.clone() prop:value=move || memory.get() on:input=move |ev| memory.set(event_target_value(&ev)) />
                    <p class="help">{format!("Empty: the source machine's size; never under {min} MB.")}</p>
                    {move || memory_problem().map(|p| view! { <p class="error" role="alert">{p}</p> })}
                </div>
                <div class="field">
                    <label for="volume">"Volume (GB)"</label>
                    <input id="volume" name="volume" type="number" min="1" placeholder="from the plan" value=choices.volume.clone() />
                    <p class="help">"Empty: the larger of the source's volume and what the backup and WAL need."</p>
                </div>
            </div>
            <div class="grid-2">
                <div class="field">
                    <label for="assertion">"Assertion query (optional)"</label>
                    <textarea id="assertion" name="assertion" class="mono" rows="2" spellcheck="false"
                        placeholder="SELECT 1 FROM orders WHERE id = 41723">{choices.assertion.clone()}</textarea>
                    <p class="help">"One read-only statement the verification runs on the restored cluster; it must return a row. The plan refuses anything else, with the reason."</p>
                </div>
                <div class="field">
                    <label for="assertion_db">"Its database"</label>
                    <input id="assertion_db" name="assertion_db" class="mono" placeholder="postgres"
                        autocomplete="off" spellcheck="false" value=choices.assertion_db.clone() />
                    <p class="help">"Empty: postgres."</p>
                </div>
            </div>
            <Carry choices=choices.clone() except=&["name", "region", "memory", "volume", "assertion", "assertion_db"] />
            <div class="actions">
                <button type="submit" name="step" value="3"
                    disabled=move || name_problem().is_some() || memory_problem().is_some()>"Next: plan"</button>
                <button type="submit" name="step" value="1" class="button-secondary" formnovalidate>"Back"</button>
            </div>
        </form>
    }
}

/// Step 3: the server's plan (or every refusal with its fix), and the typed confirmation.
#[component]
fn PlanStep(
    org: String,
    app: String,
    choices: Choices,
    plan: Result<Option<PlanAnswer>, crate::error::AppError>,
) -> impl IntoView {
    let back = view! {
        <a class="button button-secondary" href=format!("?{}", query(&choices, 2))>"Back: destination"</a>
    };
    let body = match plan {
        Err(e) => view! {
            <section class="panel error-panel" role="alert" data-test="plan-error">
                <h2>"The plan could not be computed"</h2>
                <p>{e.to_string()}</p>
            </section>
        }
        .into_any(),
        Ok(None) => ().into_any(),
        Ok(Some(PlanAnswer::Refused(reasons))) => view! {
            <section class="panel error-panel" role="alert" data-test="refused">
                <h2>{format!("The restore is refused ({} {})", reasons.len(), if reasons.len() == 1 { "reason" } else { "reasons" })}</h2>
                <ul class="refusals">
                    {reasons.into_iter().map(|r| view! {
                        <li data-test="refusal" data-code=r.code.clone()>
                            <strong>{r.what}</strong><br /><span>"Fix: " {r.fix}</span>
                        </li>
                    }).collect_view()}
                </ul>
                <p>"Nothing was created. Go back, change what the reasons name, and plan again."</p>
            </section>
        }
        .into_any(),
        Ok(Some(PlanAnswer::Plan(p))) => view! { <PlanShown org app plan=*p /> }.into_any(),
    };
    view! {
        {body}
        <div class="actions">{back}</div>
    }
}

/// The plan in words and calls, and the confirmation that starts it.
#[component]
fn PlanShown(org: String, app: String, plan: PlanView) -> impl IntoView {
    let expected = plan.app.clone();
    let typed = RwSignal::new(String::new());
    let start = Action::new(|(hash, confirm): &(String, String)| {
        start_restore(hash.clone(), confirm.clone())
    });
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(run)) = start.value().get() {
            navigate(&format!("/restores/{run}"), Default::default());
        }
    });
    let hash = plan.hash.clone();
    let matches = {
        let expected = expected.clone();
        move || typed.get().trim() == expected
    };
    let label = format!("Restore {org}/{app} to {} into {}", plan.target, plan.app);
    let approval = plan.approval.clone().filter(|a| a.required).map(|a| {
        let link = format!("/restores?plan={}", plan.hash);
        let who = if a.may_approve.is_empty() {
            "nobody yet: invite another operator or admin".to_owned()
        } else {
            a.may_approve.join(", ")
        };
        let given = if a.approvals.is_empty() {
            "Not approved yet.".to_owned()
        } else {
            format!("Approved by {}.", a.approvals.join(", "))
        };
        view! {
            <div class="notice" data-test="approval-needed">
                <p><strong>"A second person's approval is needed."</strong> " " {given}</p>
                <p>"Who may approve: " <span data-test="approvers">{who}</span>
                    ". Send them this link: " <a class="mono" href=link.clone()>{link.clone()}</a>
                    "; once one has approved, start here."</p>
            </div>
        }
    });
    let delta = (!plan.delta_chain.is_empty()).then(
        || view! { <dt>"Delta chain"</dt><dd class="mono">{plan.delta_chain.join(" ← ")}</dd> },
    );
    let proofs = if plan.escrow_proofs.is_empty() {
        "none yet: the restore proves the logins on the new cluster".to_owned()
    } else {
        plan.escrow_proofs.join("; ")
    };
    view! {
        <section class="panel" data-test="plan">
            <div class="panel-head">
                <h2>"The plan"</h2>
                <span class="mono muted" data-test="plan-hash" title="SHA-256 of the plan: what is audited and run">{plan.hash.clone()}</span>
            </div>
            <dl class="facts">
                <dt>"Restore"</dt><dd>{format!("{} to {}", plan.source, plan.target)}</dd>
                <dt>"Base backup"</dt><dd><span class="mono">{plan.backup.clone()}</span> " — " {plan.backup_why.clone()}
                    {format!(" (timeline {}, {} stored, {} uncompressed)", plan.backup_timeline, human_bytes(plan.backup_stored_bytes), human_bytes(plan.backup_uncompressed_bytes))}</dd>
                {delta}
                <dt>"WAL to replay"</dt><dd><span class="mono">{format!("{} – {}", plan.wal_from, plan.wal_to)}</span>
                    {format!(": {} segments, {} stored, {} replayed; timeline {}", plan.wal_segments, human_bytes(Some(plan.wal_stored_bytes)), human_bytes(Some(plan.wal_replay_bytes)), plan.timeline)}</dd>
                <dt>"Credentials"</dt><dd>{format!("escrow version {}, captured {} by {}, valid at {}", plan.escrow_version, plan.escrow_captured_at, plan.escrow_captured_by, plan.escrow_valid_at)}</dd>
                <dt>"Login proofs"</dt><dd>{proofs}</dd>
                <dt>"New cluster"</dt><dd><span class="mono">{plan.app.clone()}</span>
                    {format!(" in {}, {} MB, {} {} CPU, volume {} GB ({})", plan.region, plan.memory_mb, plan.cpus, plan.cpu_kind, plan.volume_gb, plan.volume_rule)}</dd>
                <dt>"Image"</dt><dd class="mono">{plan.image.clone()}</dd>
                <dt>"Its archive"</dt><dd><span class="mono">{format!("{}={}", plan.walg_prefix_variable, plan.walg_prefix)}</span> " (never the source's)"</dd>
                <dt>"Estimate"</dt><dd title=plan.estimate_how.clone()>{format!("about {} ({})", plan.estimate, plan.estimate_how)}</dd>
            </dl>
            <h3>"pgParameters"</h3>
            <p class="muted">{plan.parameters_source.clone()}</p>
            <table class="table compact" data-test="pg-parameters">
                <tbody>
                    {plan.pg_parameters.iter().map(|(k, v)| view! { <tr><td class="mono">{k.clone()}</td><td class="mono">{v.clone()}</td></tr> }).collect_view()}
                </tbody>
            </table>
            <h3>"The calls, in order"</h3>
            <ol class="plan-steps" data-test="plan-steps">
                {plan.steps.iter().map(|(call, detail)| view! {
                    <li>
                        <code>{call.clone()}</code>
                        {(!detail.is_empty()).then(|| view! { <br /><span class="mono small">{detail.clone()}</span> })}
                    </li>
                }).collect_view()}
            </ol>
            <h3>"Never touched"</h3>
            <ul>{plan.never_touched.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view()}</ul>
            {(!plan.notes.is_empty()).then(|| view! {
                <h3>"Notes"</h3>
                <ul>{plan.notes.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view()}</ul>
            })}
        </section>
        <section class="panel danger-zone" data-test="confirm">
            <h2>"Confirm"</h2>
            <div class="field">
                <label for="confirm">{format!("Type the new cluster's name, {expected}, to start")}</label>
                <input id="confirm" class="mono" autocomplete="off" spellcheck="false"
                    prop:value=move || typed.get() on:input=move |ev| typed.set(event_target_value(&ev)) />
                <p class="help">"The run creates a new app, volume and machine on Fly; the source is only read."</p>
            </div>
            {move || start.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
            {approval}
            <div class="actions">
                <button type="button" class="button-danger" data-test="start"
                    disabled=move || !matches() || start.pending().get()
                    on:click=move |_| { start.dispatch((hash.clone(), typed.get_untracked().trim().to_owned())); }>
                    {label}
                </button>
            </div>
        </section>
    }
}

/// Hidden fields carrying the other steps' choices through this step's form.
#[component]
fn Carry(choices: Choices, except: &'static [&'static str]) -> impl IntoView {
    Choices::KEYS
        .iter()
        .filter(|k| !except.contains(k))
        .map(|k| view! { <input type="hidden" name=*k value=choices.get(k).to_owned() /> })
        .collect_view()
}

/// The address query of `step` with every choice.
fn query(c: &Choices, step: usize) -> String {
    let mut q = format!("step={step}");
    for k in Choices::KEYS {
        let v = c.get(k);
        if !v.is_empty() {
            q.push('&');
            q.push_str(k);
            q.push('=');
            q.push_str(&encode(v));
        }
    }
    q
}

/// Percent-encodes a query value (everything but unreserved characters and `:` and `/`).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Why a time cannot be restored to, or `None`: after the last archived commit (PostgreSQL would never
/// finish), or outside every restorable window.
fn time_problem(ms: i64, v: &TimelineView) -> Option<String> {
    if let Some(last) = last_restorable(v) {
        if ms > last {
            return Some(format!(
                "After the last archived commit ({}): PostgreSQL would wait for WAL that does not exist. Choose an \
                 earlier time, or the latest archived commit.",
                zoned(last)
            ));
        }
    }
    if v.windows.iter().any(|w| w.from_ms <= ms && ms <= w.to_ms) {
        return None;
    }
    let windows = v
        .windows
        .iter()
        .map(|w| format!("{} – {}", zoned(w.from_ms), zoned(w.to_ms)))
        .collect::<Vec<_>>()
        .join("; ");
    Some(if windows.is_empty() {
        "No restorable window yet: there is no base backup with unbroken WAL after it.".to_owned()
    } else {
        format!("Outside every restorable window (no base backup with unbroken WAL reaches it). Restorable: {windows}.")
    })
}

/// The last time a restore can reach: the last archived commit when known, else the latest restorable time.
fn last_restorable(v: &TimelineView) -> Option<i64> {
    v.last_commit
        .as_ref()
        .map(|c| c.time_ms)
        .or(v.latest_restorable_ms)
}

/// A time in the viewer's zone with its offset: `2026-11-29 15:02 UTC+01:00`.
fn zoned(ms: i64) -> String {
    let off = offset_at(ms, false);
    let zone = if off == 0 {
        "UTC".to_owned()
    } else {
        let sign = if off < 0 { '-' } else { '+' };
        format!("UTC{sign}{:02}:{:02}", off.abs() / 60, off.abs() % 60)
    };
    format!("{} {zone}", format_time(ms, off))
}

/// The value of a `datetime-local` input for `ms`, in the viewer's zone: `2026-11-29T15:02:05`.
fn local_input(ms: i64) -> String {
    let off = offset_at(ms, false);
    let secs = (ms + i64::from(off) * 60_000).rem_euclid(60_000) / 1000;
    format!("{}:{secs:02}", format_time(ms, off).replacen(' ', "T", 1))
}

/// A `datetime-local` value (`2026-11-29T15:02` or with seconds) in the viewer's zone, as UTC milliseconds.
fn parse_local(s: &str) -> Option<i64> {
    let naive = parse_naive(s)?;
    // The zone's offset at that wall-clock time (looked up twice so a DST change between is followed).
    let guess = naive - i64::from(offset_at(naive, false)) * 60_000;
    Some(naive - i64::from(offset_at(guess, false)) * 60_000)
}

/// `2026-11-29T14:02:05Z` (the address's target) as milliseconds.
fn parse_utc(s: &str) -> Option<i64> {
    parse_naive(s.strip_suffix('Z').unwrap_or(s))
}

/// `YYYY-MM-DDTHH:MM[:SS]` read as if in UTC.
fn parse_naive(s: &str) -> Option<i64> {
    let (date, clock) = s.trim().split_once(['T', ' '])?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut c = clock
        .splitn(3, ':')
        .map(|p| p.split('.').next().and_then(|p| p.parse::<i64>().ok()));
    let (h, mi) = (c.next()??, c.next()??);
    let sec = c.next().flatten().unwrap_or(0);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some((days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + sec) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::timeline::WindowView;

    #[test]
    fn times_round_trip_through_the_address_and_the_input() {
        let ms = 1_795_960_925_000; // 2026-11-29T14:02:05Z
        assert_eq!(rfc3339_utc(ms), "2026-11-29T14:02:05Z");
        assert_eq!(parse_utc("2026-11-29T14:02:05Z"), Some(ms));
        // On the server (and in these tests) the viewer's zone is UTC.
        assert_eq!(local_input(ms), "2026-11-29T14:02:05");
        assert_eq!(parse_local("2026-11-29T14:02:05"), Some(ms));
        assert_eq!(parse_local("2026-11-29T14:02"), Some(ms - 5000));
        assert_eq!(parse_utc("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        assert_eq!(parse_local("not a time"), None);
        assert_eq!(parse_local("2026-13-01T00:00"), None);
    }

    #[test]
    fn times_outside_a_window_or_after_the_last_commit_are_refused() {
        let v = TimelineView {
            windows: vec![WindowView {
                timeline: 1,
                from_ms: 1_000_000,
                to_ms: 2_000_000,
            }],
            latest_restorable_ms: Some(1_900_000),
            ..TimelineView::default()
        };
        assert_eq!(time_problem(1_500_000, &v), None);
        assert!(time_problem(1_950_000, &v)
            .unwrap()
            .starts_with("After the last archived commit"));
        assert!(time_problem(500_000, &v)
            .unwrap()
            .starts_with("Outside every restorable window"));
    }

    #[test]
    fn the_query_keeps_every_choice() {
        let c = Choices {
            kind: "lsn".into(),
            lsn: "0/3000028".into(),
            name: "demo-db-0412".into(),
            memory: "1024".into(),
            ..Choices::default()
        };
        assert_eq!(
            query(&c, 2),
            "step=2&kind=lsn&lsn=0/3000028&name=demo-db-0412&memory=1024"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
