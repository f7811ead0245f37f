use leptos::prelude::*;
use leptos_meta::Title;

/// Console settings.
#[component]
pub fn SettingsPage() -> impl IntoView {
    view! {
        <Title text="Settings" />
        <h1>"Settings"</h1>
        <section class="panel empty-state">
            <h2>"Console settings"</h2>
            <p>"Team members, roles and security settings are managed here."</p>
        </section>
    }
}
