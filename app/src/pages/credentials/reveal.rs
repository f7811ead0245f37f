//! The reveal panel: reveal one field with a written reason or, when approval is required, request a reveal,
//! approve another person's request, and use an approved one. Its code is split off (`#[lazy]`): the browser
//! loads it when someone opens the panel, not with the credentials page.

use leptos::prelude::*;

use crate::api::escrow::{
    list_reveal_requests, ApproveReveal, Credentials, RequestReveal, RevealApproved,
    RevealCredential, Revealed,
};
use crate::page_data::page_data;

/// How long a revealed value stays in the page.
pub const REVEAL_SECONDS: u32 = 60;

/// What the panel needs to know: the cluster, the versions and fields that can be revealed, and whether a
/// second person must approve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevealTarget {
    pub org: String,
    pub app: String,
    /// Newest first.
    pub versions: Vec<i64>,
    /// The fields of the newest version.
    pub fields: Vec<String>,
    pub needs_approval: bool,
}

impl RevealTarget {
    pub fn of(org: String, app: String, credentials: &Credentials, needs_approval: bool) -> Self {
        RevealTarget {
            org,
            app,
            versions: credentials.versions.iter().map(|v| v.version).collect(),
            fields: credentials
                .versions
                .first()
                .map(|v| v.fields.iter().map(|f| f.field.clone()).collect())
                .unwrap_or_default(),
            needs_approval,
        }
    }
}

/// The panel, opened (see `RevealOpener`).
#[lazy]
pub fn reveal_panel(target: RevealTarget) -> AnyView {
    view! { <RevealPanel target /> }.into_any()
}

/// Reveal a field (with a reason), or, when approval is required, request it and use approved requests.
#[component]
fn RevealPanel(target: RevealTarget) -> impl IntoView {
    let RevealTarget {
        org,
        app,
        versions,
        fields,
        needs_approval,
    } = target;
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
    let requests = page_data(
        move || {
            (
                request.version().get(),
                approve.version().get(),
                use_approval.version().get(),
            )
        },
        |_| list_reveal_requests(),
    );
    if versions.is_empty() {
        return view! {
            <section class="panel" data-test="reveal"><h2>"Reveal"</h2><p class="muted">"Nothing to reveal yet."</p></section>
        }
        .into_any();
    }
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
