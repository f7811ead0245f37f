//! The credentials of tracked clusters: versions and proofs for everyone signed in; reveals (with a reason, or
//! through a second person's approval) for operators and admins.
//!
//! A revealed value never comes with the page: it arrives only in answer to a reveal call made in the browser,
//! is masked until Show, and is dropped from the page (and from memory held by the page) after
//! [`REVEAL_SECONDS`].

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::auth::get_current_user;
use crate::api::escrow::{
    get_credentials, get_require_reveal_approval, list_reveal_requests, ApproveReveal,
    CaptureCredentials, Credentials, ProveCredentials, RequestReveal, RevealApproved,
    RevealCredential, Revealed,
};
use crate::api::orgs::list_tracked;

/// How long a revealed value stays in the page.
pub const REVEAL_SECONDS: u32 = 60;

/// The tracked clusters, each linking to its credentials.
#[component]
pub fn CredentialsIndexPage() -> impl IntoView {
    let tracked = Resource::new(|| (), |_| list_tracked());
    view! {
        <Title text="Credentials" />
        <h1>"Credentials"</h1>
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
#[component]
pub fn CredentialsPage() -> impl IntoView {
    let params = use_params_map();
    let org = move || params.read().get("org").unwrap_or_default();
    let app = move || params.read().get("app").unwrap_or_default();
    let capture = ServerAction::<CaptureCredentials>::new();
    let prove = ServerAction::<ProveCredentials>::new();
    let credentials = Resource::new(
        move || (org(), app(), capture.version().get(), prove.version().get()),
        |(o, a, _, _)| get_credentials(o, a),
    );
    let approval = Resource::new(|| (), |_| get_require_reveal_approval());
    let me = Resource::new(|| (), |_| get_current_user());
    let can_act = Signal::derive(move || {
        me.get()
            .and_then(Result::ok)
            .flatten()
            .is_some_and(|u| u.role == "admin" || u.role == "operator")
    });
    view! {
        <Title text=move || format!("Credentials of {}", app()) />
        <p class="muted"><a href="/credentials">"Credentials"</a> " / " {org} " / "</p>
        <h1 class="mono">{app}</h1>
        {move || can_act.get().then(|| view! { <ActionsPanel org=org() app=app() capture prove /> })}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || credentials.get().map(|r| match r {
                Err(e) => view! { <p class="panel form-error">{e.to_string()}</p> }.into_any(),
                Ok(c) => {
                    let needs_approval = approval.get().and_then(Result::ok).unwrap_or(false);
                    let for_reveal = c.clone();
                    view! {
                        <ProofsPanel credentials=c.clone() />
                        {move || can_act.get().then(|| view! {
                            <RevealPanel org=org() app=app() credentials=for_reveal.clone() needs_approval />
                        })}
                        <VersionsPanel credentials=c />
                    }.into_any()
                }
            })}
        </Transition>
    }
}

/// Capture the credentials from the cluster now, and prove that they open its roles.
#[component]
fn ActionsPanel(
    org: String,
    app: String,
    capture: ServerAction<CaptureCredentials>,
    prove: ServerAction<ProveCredentials>,
) -> impl IntoView {
    let busy = move || capture.pending().get() || prove.pending().get();
    let (org2, app2) = (org.clone(), app.clone());
    view! {
        <section class="panel" data-test="escrow-actions">
            <h2>"Capture and prove"</h2>
            <p class="muted">
                "Capture reads SU_PASSWORD, REPL_PASSWORD, OPERATOR_PASSWORD and the storage settings on the leader and                  keeps a new version when anything changed. Prove signs in as each role with the kept passwords."
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

/// Reveal a field (with a reason), or, when approval is required, request it and use approved requests.
#[component]
fn RevealPanel(
    org: String,
    app: String,
    credentials: Credentials,
    needs_approval: bool,
) -> impl IntoView {
    let reveal = ServerAction::<RevealCredential>::new();
    let request = ServerAction::<RequestReveal>::new();
    let approve = ServerAction::<ApproveReveal>::new();
    let use_approval = ServerAction::<RevealApproved>::new();
    let shown = RwSignal::new(None::<Revealed>);
    // Move a fresh value out of the action into the timed display, so the action keeps no copy.
    Effect::new(move |_| {
        if let Some(Ok(value)) = reveal.value().get() {
            reveal.clear();
            shown.set(Some(value));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(value)) = use_approval.value().get() {
            use_approval.clear();
            shown.set(Some(value));
        }
    });
    let requests = Resource::new(
        move || {
            (
                request.version().get(),
                approve.version().get(),
                use_approval.version().get(),
            )
        },
        |_| list_reveal_requests(),
    );
    let Some(newest) = credentials.versions.first().cloned() else {
        return view! {
            <section class="panel" data-test="reveal"><h2>"Reveal"</h2><p class="muted">"Nothing to reveal yet."</p></section>
        }
        .into_any();
    };
    let versions: Vec<i64> = credentials.versions.iter().map(|v| v.version).collect();
    let fields: Vec<String> = newest.fields.iter().map(|f| f.field.clone()).collect();
    let error = move || {
        reveal
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| request.value().get().and_then(Result::err))
            .or_else(|| approve.value().get().and_then(Result::err))
            .or_else(|| use_approval.value().get().and_then(Result::err))
            .map(|e| e.to_string())
    };
    let (this_org, this_app) = (org.clone(), app.clone());
    view! {
        <section class="panel form-panel" data-test="reveal">
            <h2>"Reveal"</h2>
            <p class="muted">
                {if needs_approval {
                    "Reveals need a second person: request one, another operator or admin approves it, then you reveal it once within 15 minutes."
                } else {
                    "Every reveal is written to the audit log with your reason."
                }}
            </p>
            {move || {
                // Drawn anew after each success, so the reason box starts empty again.
                let _fresh = (reveal.version().get(), request.version().get());
                let (org, app, versions, fields) = (org.clone(), app.clone(), versions.clone(), fields.clone());
                let choose = view! {
                    <input type="hidden" name="org" value=org />
                    <input type="hidden" name="app" value=app />
                    <label>"Version"
                        <select name="version">
                            {versions.into_iter().map(|v| view! { <option value=v.to_string()>{v}</option> }).collect_view()}
                        </select>
                    </label>
                    <label>"Field"
                        <select name="field">
                            {fields.into_iter().map(|f| view! { <option value=f.clone()>{f.clone()}</option> }).collect_view()}
                        </select>
                    </label>
                    <label>"Reason (written to the audit log)"
                        <textarea name="reason" required rows="2" maxlength="1000" placeholder="Restoring demo-db after the failed upgrade"></textarea>
                    </label>
                };
                if needs_approval {
                    view! {
                        <ActionForm action=request>
                            {choose}
                            <button type="submit">"Request reveal"</button>
                        </ActionForm>
                    }.into_any()
                } else {
                    view! {
                        <ActionForm action=reveal>
                            {choose}
                            <button type="submit">"Reveal"</button>
                        </ActionForm>
                    }.into_any()
                }
            }}
            {move || error().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
            {move || request.value().get().and_then(Result::ok).map(|r| view! {
                <p class="form-ok" role="status">"Request #" {r.id} " made; another operator or admin must approve it."</p>
            })}
            <SecretValue shown />
            <Transition fallback=|| ()>
                {move || requests.get().map(|r| match r {
                    Err(e) => view! { <p class="form-error">{e.to_string()}</p> }.into_any(),
                    Ok(list) => {
                        let list: Vec<_> = list.into_iter().filter(|r| r.org == this_org && r.app == this_app).collect();
                        if list.is_empty() {
                            return ().into_any();
                        }
                        view! {
                            <h3>"Open requests"</h3>
                            <table class="table" data-test="requests">
                                <thead><tr><th>"#"</th><th>"Field"</th><th>"Asked by"</th><th>"Reason"</th><th>"State"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|r| {
                                        let state = match (&r.approver, &r.expires_at) {
                                            (Some(by), Some(until)) => format!("approved by {by}, usable until {until}"),
                                            (Some(by), None) => format!("approved by {by}"),
                                            _ => format!("waiting since {}", r.requested_at),
                                        };
                                        let action = match (r.mine, r.approver.is_some()) {
                                            (false, false) => view! {
                                                <ActionForm action=approve>
                                                    <input type="hidden" name="id" value=r.id.to_string() />
                                                    <button type="submit">"Approve"</button>
                                                </ActionForm>
                                            }.into_any(),
                                            (true, true) => view! {
                                                <ActionForm action=use_approval>
                                                    <input type="hidden" name="id" value=r.id.to_string() />
                                                    <button type="submit">"Reveal now"</button>
                                                </ActionForm>
                                            }.into_any(),
                                            (true, false) => view! { <span class="muted">"another person must approve"</span> }.into_any(),
                                            (false, true) => ().into_any(),
                                        };
                                        view! {
                                            <tr>
                                                <td>{r.id}</td>
                                                <td><span class="mono">{r.field}</span> " (version " {r.version} ")"</td>
                                                <td>{r.requester}</td>
                                                <td>{r.reason}</td>
                                                <td>{state}</td>
                                                <td>{action}</td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                    }
                })}
            </Transition>
        </section>
    }
    .into_any()
}

/// A revealed value: masked until Show, with Copy, and gone after [`REVEAL_SECONDS`] (or on Hide now). The
/// value is in the DOM only while shown; hiding drops it from the signal too.
#[component]
fn SecretValue(shown: RwSignal<Option<Revealed>>) -> impl IntoView {
    let visible = RwSignal::new(false);
    let left = RwSignal::new(0u32);
    let copied = RwSignal::new(false);
    let ticker = StoredValue::new(None::<IntervalHandle>);
    let forget = move || {
        if let Some(handle) = ticker.get_value() {
            handle.clear();
        }
        ticker.set_value(None);
        shown.set(None);
        visible.set(false);
        copied.set(false);
        left.set(0);
    };
    // Each new value starts its own countdown; the display forgets it at zero.
    Effect::new(move |_| {
        if shown.with(Option::is_none) {
            return;
        }
        if let Some(handle) = ticker.get_value() {
            handle.clear();
        }
        // A new value starts masked, whatever the previous one showed.
        visible.set(false);
        copied.set(false);
        left.set(REVEAL_SECONDS);
        let tick = move || {
            let now = left.get_untracked().saturating_sub(1);
            left.set(now);
            if now == 0 {
                forget();
            }
        };
        ticker.set_value(set_interval_with_handle(tick, std::time::Duration::from_secs(1)).ok());
    });
    on_cleanup(move || {
        if let Some(handle) = ticker.get_value() {
            handle.clear();
        }
    });
    let copy = move |_| {
        if let Some(r) = shown.get_untracked() {
            copy_to_clipboard(&r.value);
            copied.set(true);
        }
    };
    view! {
        {move || shown.get().map(|r| view! {
            <div class="secret" data-test="revealed" role="status">
                <div class="secret-head">
                    <span><span class="mono">{r.field.clone()}</span> " of version " {r.version}</span>
                    <span class="muted">"Hidden in " {move || left.get()} " s"</span>
                </div>
                <code class="secret-value" aria-live="off">
                    {move || if visible.get() { r.value.clone() } else { "••••••••••••".to_owned() }}
                </code>
                <div class="actions">
                    <button type="button" class="button-secondary" on:click=move |_| visible.update(|v| *v = !*v)>
                        {move || if visible.get() { "Mask" } else { "Show" }}
                    </button>
                    <button type="button" class="button-secondary" on:click=copy>
                        {move || if copied.get() { "Copied" } else { "Copy" }}
                    </button>
                    <button type="button" class="button-secondary" on:click=move |_| forget()>"Hide now"</button>
                </div>
            </div>
        })}
    }
}

/// Put `text` on the clipboard (the browser's asynchronous Clipboard API). Nothing on the server.
fn copy_to_clipboard(text: &str) {
    #[cfg(feature = "hydrate")]
    {
        #[wasm_bindgen::prelude::wasm_bindgen]
        extern "C" {
            #[wasm_bindgen(js_namespace = ["navigator", "clipboard"], js_name = writeText)]
            fn write_text(text: &str) -> wasm_bindgen::JsValue;
        }
        let _promise = write_text(text);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = text;
}
