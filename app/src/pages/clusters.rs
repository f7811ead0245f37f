use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::status_panel::StatusPanel;

/// The home page: the clusters Walden watches.
#[component]
pub fn ClustersPage() -> impl IntoView {
    view! {
        <Title text="Clusters" />
        <h1>"Clusters"</h1>
        <section class="panel empty-state">
            <h2>"No clusters yet"</h2>
            <p>
                "Walden watches Postgres clusters on Fly.io that archive to a wal-g bucket. Once a cluster is added, this page shows its backups, its restorable window and its escrowed credentials."
            </p>
        </section>
        <StatusPanel />
    }
}
