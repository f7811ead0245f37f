//! Typing the three passwords in by hand, for a tracked cluster whose Machines are down (nothing can be read
//! from them). Rare, so its code is split off (`#[lazy]`) and loaded when someone opens the form.

use leptos::prelude::*;

use crate::api::escrow::EnterCredentials;

/// The form, opened from the page's "Capture and prove" panel. `entered` is bumped after each success, so
/// the page loads its versions again; `open` closes the form.
#[lazy]
pub fn entry_panel(
    org: String,
    app: String,
    entered: RwSignal<u32>,
    open: RwSignal<bool>,
) -> AnyView {
    view! { <EntryPanel org app entered open /> }.into_any()
}

#[component]
fn EntryPanel(
    org: String,
    app: String,
    entered: RwSignal<u32>,
    open: RwSignal<bool>,
) -> impl IntoView {
    let enter = ServerAction::<EnterCredentials>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = enter.value().get() {
            entered.update(|n| *n += 1);
        }
    });
    view! {
        <section class="panel form-panel" data-test="enter-by-hand">
            <h2>"Enter by hand"</h2>
            <p class="muted">
                "Only for a cluster whose Machines are down, so nothing can be read from them. The version is marked "
                "“typed in (machines down)”; capture and prove again once the cluster is up."
            </p>
            {move || {
                // Drawn anew after each success, so the typed values leave the page.
                let _fresh = enter.version().get();
                let (org, app) = (org.clone(), app.clone());
                view! {
                    <ActionForm action=enter>
                        <input type="hidden" name="org" value=org />
                        <input type="hidden" name="app" value=app />
                        <label>"SU_PASSWORD (the flypgadmin role)"
                            <input type="password" name="su_password" required autocomplete="new-password" spellcheck="false" />
                        </label>
                        <label>"REPL_PASSWORD (the repluser role)"
                            <input type="password" name="repl_password" required autocomplete="new-password" spellcheck="false" />
                        </label>
                        <label>"OPERATOR_PASSWORD (the postgres role)"
                            <input type="password" name="operator_password" required autocomplete="new-password" spellcheck="false" />
                        </label>
                        <div class="actions">
                            <button type="submit" disabled=move || enter.pending().get()>"Keep these passwords"</button>
                            <button type="button" class="button-secondary" on:click=move |_| open.set(false)>"Close"</button>
                        </div>
                    </ActionForm>
                }
            }}
            {move || enter.value().get().map(|r| match r {
                Ok(c) if c.created => view! {
                    <p class="form-ok" role="status">"Kept as version " {c.version} ": " {c.changed.join(", ")} " changed."</p>
                }.into_any(),
                Ok(c) => view! { <p class="form-ok" role="status">"Nothing changed since version " {c.version} "."</p> }.into_any(),
                Err(e) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}
