use leptos::prelude::*;
use leptos_meta::Title;

/// Restore runs: past and in progress.
#[component]
pub fn RestoresPage() -> impl IntoView {
    view! {
        <Title text="Restores" />
        <h1>"Restores"</h1>
        <section class="panel empty-state">
            <h2>"No restore runs"</h2>
            <p>"Point-in-time restores into a new cluster appear here, with every step and its outcome."</p>
        </section>
    }
}
