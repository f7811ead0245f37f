//! The credentials of tracked clusters: versions and proofs for everyone signed in; reveals (with a reason, or
//! through a second person's approval) for operators and admins.
//!
//! A revealed value never comes with the page: it arrives only in answer to a reveal call made in the browser,
//! is masked until Show, and is dropped from the page (and from memory held by the page) after
//! [`REVEAL_SECONDS`] (see [`reveal`]).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::auth::get_current_user;
use crate::api::escrow::{
    get_credentials, get_require_reveal_approval, CaptureCredentials, Credentials, ProveCredentials,
};
use crate::api::orgs::list_tracked;
use crate::components::alerts::{alerts_resource, AlertsPanel};
use crate::page_data::page_data;

mod entry;
mod reveal;

use reveal::RevealTarget;
pub use reveal::REVEAL_SECONDS;

/// The tracked clusters, each linking to its credentials.
#[component]
pub fn CredentialsIndexPage() -> impl IntoView {
    let tracked = page_data(|| (), |_| list_tracked());
    let alerts = alerts_resource();
    view! {
        <Title text="Credentials" />
        <h1>"Credentials"</h1>
        <AlertsPanel alerts />
        <p class="muted">"Escrowed credentials of the tracked clusters. Track clusters under "
            <a href="/settings/orgs">"Settings → Fly organizations"</a> "."</p>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || tracked.get().map(|r| match r {
                Err(e) => view! { <p class="panel form-error">{e.to_string()}</p> }.into_any(),
                Ok(list) if list.is_empty() => view! { <p class="panel muted" data-test="no-tracked">"No tracked cluster yet."</p> }.into_any(),
                Ok(list) => view! {
                    <table class="table" data-test="tracked">
                        <thead><tr><th>"Cluster"</th><th>"Organization"</th><th>"Tracked since"</th><th>"By"</th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|t| view! {
                                <tr>
                                    <td><a class="mono" href=format!("/credentials/{}/{}", t.org, t.app)>{t.app.clone()}</a></td>
                                    <td>{t.org}</td>
                                    <td>{t.tracked_at}</td>
                                    <td>{t.tracked_by}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
    }
}

/// One cluster's credentials.
///
/// All of the page's data is loaded by resources made here and read in one `Transition` with `Suspend` (no
/// resource is made inside a suspense boundary: on the server that keeps the stream waiting for a task that
/// each re-render makes anew). The reveal panel is code the browser loads only when someone opens it.
#[component]
pub fn CredentialsPage() -> impl IntoView {
    let params = use_params_map();
    let org = move || params.read().get("org").unwrap_or_default();
    let app = move || params.read().get("app").unwrap_or_default();
    let capture = ServerAction::<CaptureCredentials>::new();
    let prove = ServerAction::<ProveCredentials>::new();
    // Bumped by the hand-entry form after each version it keeps.
    let entered = RwSignal::new(0u32);
    let credentials = page_data(
        move || {
            (
                org(),
                app(),
                capture.version().get(),
                prove.version().get(),
                entered.get(),
            )
        },
        |(o, a, _, _, _)| get_credentials(o, a),
    );
    let approval = page_data(|| (), |_| get_require_reveal_approval());
    let me = page_data(|| (), |_| get_current_user());
    // Kept here so the panel stays open when the page's data is loaded again (after a capture, say).
    let reveal_open = RwSignal::new(false);
    let entry_open = RwSignal::new(false);
    view! {
        <Title text=move || format!("Credentials of {}", app()) />
        <p class="muted"><a href="/credentials">"Credentials"</a> " / " {org} " / "</p>
        <h1 class="mono">{app}</h1>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let can_act = me
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|u| u.role == "admin" || u.role == "operator");
                let needs_approval = approval.await.unwrap_or(false);
                match credentials.await {
                    Err(e) => view! { <p class="panel form-error">{e.to_string()}</p> }.into_any(),
                    Ok(c) => {
                        let target = RevealTarget::of(org(), app(), &c, needs_approval);
                        view! {
                            {can_act.then(|| view! { <ActionsPanel org=org() app=app() capture prove entry_open /> })}
                            <ProofsPanel credentials=c.clone() />
                            {can_act.then(|| view! { <RevealOpener target open=reveal_open /> })}
                            <VersionsPanel credentials=c />
                        }.into_any()
                    }
                }
            })}
        </Transition>
        // Outside the Transition: the form stays as it is while the page's data loads again.
        {move || entry_open.get().then(|| view! {
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {Suspend::new(async move { entry::entry_panel(org(), app(), entered, entry_open).await })}
            </Transition>
        })}
    }
}

/// The "Reveal" panel, closed: a button that loads the panel's code and opens it. Reveals are rare, so their
/// code is not part of the page's first download.
#[component]
fn RevealOpener(target: RevealTarget, open: RwSignal<bool>) -> impl IntoView {
    let label = if target.needs_approval {
        "Request, approve or use a reveal…"
    } else {
        "Reveal a value…"
    };
    view! {
        {move || if open.get() {
            let target = target.clone();
            view! {
                <Transition fallback=|| view! { <section class="panel" data-test="reveal"><p class="muted">"Loading…"</p></section> }>
                    {Suspend::new(async move { reveal::reveal_panel(target).await })}
                </Transition>
            }.into_any()
        } else {
            view! {
                <section class="panel" data-test="reveal-closed">
                    <h2>"Reveal"</h2>
                    <p class="muted">"Show one kept value, with a reason written to the audit log."</p>
                    <button type="button" data-test="open-reveal" on:click=move |_| open.set(true)>{label}</button>
                </section>
            }.into_any()
        }}
    }
}

/// Capture the credentials from the cluster now, and prove that they open its roles.
#[component]
fn ActionsPanel(
    org: String,
    app: String,
    capture: ServerAction<CaptureCredentials>,
    prove: ServerAction<ProveCredentials>,
    entry_open: RwSignal<bool>,
) -> impl IntoView {
    let busy = move || capture.pending().get() || prove.pending().get();
    let (org2, app2) = (org.clone(), app.clone());
    view! {
        <section class="panel" data-test="escrow-actions">
            <h2>"Capture and prove"</h2>
            <p class="muted">
                "Capture reads SU_PASSWORD, REPL_PASSWORD, OPERATOR_PASSWORD and the storage settings on the leader and keeps "
                "a new version when anything changed. Prove signs in as each role with the kept passwords. When the "
                "Machines are down, enter the passwords by hand."
            </p>
            <div class="actions">
                <button type="button" data-test="capture" disabled=busy
                    on:click=move |_| { capture.dispatch(CaptureCredentials { org: org.clone(), app: app.clone() }); }>
                    {move || if capture.pending().get() { "Capturing…" } else { "Capture now" }}
                </button>
                <button type="button" data-test="prove" disabled=busy
                    on:click=move |_| { prove.dispatch(ProveCredentials { org: org2.clone(), app: app2.clone() }); }>
                    {move || if prove.pending().get() { "Proving…" } else { "Prove logins" }}
                </button>
                <button type="button" class="button-secondary" data-test="open-entry" on:click=move |_| entry_open.set(true)>
                    "Enter by hand…"
                </button>
            </div>
            {move || capture.value().get().map(|r| match r {
                Ok(c) if c.created => view! {
                    <p class="form-ok" role="status">"Captured version " {c.version} ": " {c.changed.join(", ")} " changed."</p>
                }.into_any(),
                Ok(c) => view! {
                    <p class="form-ok" role="status">"Nothing changed since version " {c.version} "."</p>
                }.into_any(),
                Err(e) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
            {move || prove.value().get().map(|r| match r {
                Ok(roles) => {
                    let failing: Vec<String> = roles.iter().filter(|p| p.status == "fails").map(|p| p.role.clone()).collect();
                    let unchecked: Vec<String> = roles.iter().filter(|p| p.status == "unchecked").map(|p| p.role.clone()).collect();
                    if !failing.is_empty() {
                        view! { <p class="form-error" role="alert">"The kept password no longer opens: " {failing.join(", ")} ". A restore with it would fail: capture again, or find out who changed it."</p> }.into_any()
                    } else if !unchecked.is_empty() {
                        view! { <p class="form-error" role="alert">"Could not check: " {unchecked.join(", ")} "."</p> }.into_any()
                    } else {
                        view! { <p class="form-ok" role="status">"Every role opens with the kept passwords."</p> }.into_any()
                    }
                }
                Err(e) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}

/// The latest login proof per role.
#[component]
fn ProofsPanel(credentials: Credentials) -> impl IntoView {
    view! {
        <section class="panel" data-test="proofs">
            <h2>"Proofs"</h2>
            {if credentials.proofs.is_empty() {
                view! { <p class="muted">"Not proven yet."</p> }.into_any()
            } else {
                view! {
                    <table class="table">
                        <thead><tr><th>"Role"</th><th>"Result"</th><th>"Version"</th><th></th></tr></thead>
                        <tbody>
                            {credentials.proofs.into_iter().map(|p| view! {
                                <tr>
                                    <td class="mono">{p.role}</td>
                                    <td>{if p.ok {
                                        view! { <span class="badge badge-ok">"proven"</span> " at " {p.proven_at} }.into_any()
                                    } else {
                                        view! { <span class="badge badge-bad">"failed"</span> " at " {p.proven_at} }.into_any()
                                    }}</td>
                                    <td>{p.version}</td>
                                    <td class="muted">{p.message.unwrap_or_default()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

/// Every captured version, newest first: when, by whom, how, and each field's fingerprint and whether it
/// changed.
#[component]
fn VersionsPanel(credentials: Credentials) -> impl IntoView {
    view! {
        <section class="panel" data-test="versions">
            <h2>"Versions"</h2>
            {if credentials.versions.is_empty() {
                view! { <p class="muted">"Nothing captured yet."</p> }.into_any()
            } else {
                view! {
                    <div class="table-scroll">
                        <table class="table">
                            <thead><tr><th>"#"</th><th>"Captured"</th><th>"By"</th><th>"How"</th><th>"Fields"</th></tr></thead>
                            <tbody>
                                {credentials.versions.into_iter().map(|v| view! {
                                    <tr>
                                        <td>{v.version}</td>
                                        <td>{v.captured_at}</td>
                                        <td>{v.captured_by}</td>
                                        <td>{how_label(&v.how)}</td>
                                        <td>
                                            <ul class="plain-list">
                                                {v.fields.into_iter().map(|f| view! {
                                                    <li>
                                                        <span class="mono">{f.field}</span> " "
                                                        <code class="muted" title="Keyed fingerprint">{f.fingerprint}</code> " "
                                                        {f.changed.then(|| view! { <span class="badge">"changed"</span> })}
                                                    </li>
                                                }).collect_view()}
                                                {v.removed.into_iter().map(|f| view! {
                                                    <li><span class="mono">{f}</span> " " <span class="badge badge-bad">"removed"</span></li>
                                                }).collect_view()}
                                            </ul>
                                        </td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }.into_any()
            }}
        </section>
    }
}

/// How a version was obtained, for people.
fn how_label(how: &str) -> &'static str {
    match how {
        "exec" => "read on the leader",
        "secrets_api" => "Fly secrets API",
        "manual" => "typed in",
        "manual_machines_down" => "typed in (machines down)",
        _ => "other",
    }
}
