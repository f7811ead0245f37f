use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::SetupAdmin;

/// First run: create the first admin. The server refuses once any user exists, and without the setup token it
/// printed at start-up (the link it printed opens this page with the token filled in).
#[component]
pub fn SetupPage() -> impl IntoView {
    let setup = ServerAction::<SetupAdmin>::new();
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    view! {
        <Title text="Set up" />
        <h1>"Create the first admin"</h1>
        <section class="panel form-panel">
            <ActionForm action=setup>
                <label>
                    "Setup token (from the link the server printed when it started, or WALDEN_SETUP_TOKEN)"
                    <input type="password" name="token" autocomplete="off" required value=token />
                </label>
                <label>"User name" <input type="text" name="name" autocomplete="username" required maxlength="64" /></label>
                <label>
                    "Password (at least 12 characters)"
                    <input type="password" name="password" autocomplete="new-password" required minlength="12" maxlength="256" />
                </label>
                <button type="submit">"Create admin"</button>
            </ActionForm>
            {move || match setup.value().get() {
                Some(Ok(u)) => view! { <p class="form-ok">"Welcome, " {u.name} ". " <a href="/">"Continue"</a></p> }.into_any(),
                Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
    }
}
