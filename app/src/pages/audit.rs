use leptos::prelude::*;
use leptos_meta::Title;

/// The audit log: who did what, when and why.
#[component]
pub fn AuditPage() -> impl IntoView {
    view! {
        <Title text="Audit" />
        <h1>"Audit log"</h1>
        <section class="panel empty-state">
            <h2>"Nothing recorded yet"</h2>
            <p>"Every sign-in, change, credential reveal and restore step is recorded here in a tamper-evident chain."</p>
        </section>
    }
}
