use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::AcceptInvite;

/// Accept an invitation link: choose a name and a password.
#[component]
pub fn InvitePage() -> impl IntoView {
    let accept = ServerAction::<AcceptInvite>::new();
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    view! {
        <Title text="Join" />
        <h1>"Join Walden"</h1>
        <section class="panel form-panel">
            <ActionForm action=accept>
                <input type="hidden" name="token" prop:value=token />
                <label>"User name" <input type="text" name="name" autocomplete="username" required maxlength="64" /></label>
                <label>
                    "Password (at least 12 characters)"
                    <input type="password" name="password" autocomplete="new-password" required minlength="12" maxlength="256" />
                </label>
                <button type="submit">"Create my account"</button>
            </ActionForm>
            {move || match accept.value().get() {
                Some(Ok(u)) => view! { <p class="form-ok">"Welcome, " {u.name} ". " <a href="/">"Continue"</a></p> }.into_any(),
                Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
    }
}
