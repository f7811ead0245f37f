use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::layout::MarkHydrated;

/// Shown for any address the router does not know; answers HTTP 404 on the server.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Page not found" />
        <section class="panel not-found" data-test="not-found">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address. It may have moved, or the link may be mistyped."</p>
            <p><a href="/" class="button">"Go to the clusters"</a></p>
        </section>
        <MarkHydrated />
    }
}
