//! The form that adds a Fly organisation by its token, loaded when an admin opens it (`#[lazy]`).

use leptos::prelude::*;

use crate::api::orgs::AddOrg;

/// The form, opened (see `AddOrgOpener`); `added` is bumped after each organisation it adds.
#[lazy]
pub fn add_org_panel(added: RwSignal<u32>) -> AnyView {
    view! { <AddOrgForm added /> }.into_any()
}

/// The form that adds an organisation. The token field is a password field, and the form is drawn anew after
/// each success so the pasted token does not linger in the page.
#[component]
fn AddOrgForm(added: RwSignal<u32>) -> impl IntoView {
    let add = ServerAction::<AddOrg>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = add.value().get() {
            added.update(|n| *n += 1);
        }
    });
    view! {
        <section class="panel form-panel" data-test="add-org">
            <h2>"Add an organization"</h2>
            <p class="muted">
                "Create an organization token with " <code>"fly tokens create org -o SLUG"</code>
                " and paste it here. Fly checks it first; it is stored sealed and never shown again."
            </p>
            {move || {
                let _fresh = add.version().get();
                view! {
                    <ActionForm action=add>
                        <label>"Organization slug"
                            <input type="text" name="slug" required autocomplete="off" spellcheck="false" placeholder="personal" />
                        </label>
                        <label>"Organization token"
                            <input type="password" name="token" required autocomplete="off" spellcheck="false" />
                        </label>
                        <button type="submit" disabled=move || add.pending().get()>
                            {move || if add.pending().get() { "Checking with Fly…" } else { "Add organization" }}
                        </button>
                    </ActionForm>
                }
            }}
            {move || match add.value().get() {
                Some(Ok(org)) => view! {
                    <p class="form-ok" role="status">"Added " <strong>{org.name}</strong> " (" {org.slug} ")."</p>
                }.into_any(),
                Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
    }
}
