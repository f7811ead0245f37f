use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::clusters::list_clusters;
use crate::api::clusters::{ClusterList, ClusterView};
use crate::components::status_panel::StatusPanel;
use crate::error::AppError;

/// The home page: the Postgres clusters of the watched Fly organisation.
#[component]
pub fn ClustersPage() -> impl IntoView {
    let clusters = Resource::new(|| (), |_| list_clusters());
    view! {
        <Title text="Clusters" />
        <h1>"Clusters"</h1>
        <Transition fallback=|| view! { <p class="muted">"Asking Fly for the clusters…"</p> }>
            {move || {
                clusters
                    .get()
                    .map(|result| match result {
                        Ok(list) => view! { <ClusterCards list /> }.into_any(),
                        Err(AppError::Unauthorized) => {
                            view! {
                                <section class="panel empty-state" data-test="sign-in-needed">
                                    <h2>"Sign in to see the clusters"</h2>
                                    <p>
                                        "Walden shows each Postgres cluster's machines, backups and restorable window to signed-in team members."
                                    </p>
                                    <p><a class="button" href="/login">"Go to the sign-in page"</a></p>
                                </section>
                            }
                                .into_any()
                        }
                        Err(e) => {
                            view! {
                                <section class="panel error-panel" role="alert" data-test="clusters-error">
                                    <h2>"The clusters could not be listed"</h2>
                                    <p>{e.to_string()}</p>
                                </section>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
        <StatusPanel />
    }
}

#[component]
fn ClusterCards(list: ClusterList) -> impl IntoView {
    if list.clusters.is_empty() {
        return view! {
            <section class="panel empty-state" data-test="no-clusters">
                <h2>"No Postgres clusters in " {list.org}</h2>
                <p>
                    "Walden watches Fly apps that run Fly's Postgres image and archive to a wal-g bucket. Create one with fly pg create, and it appears here."
                </p>
            </section>
        }
            .into_any();
    }
    let org = list.org.clone();
    view! {
        <p class="muted">"Organisation " <strong>{org}</strong></p>
        {list.clusters.into_iter().map(|cluster| view! { <ClusterCard cluster /> }).collect_view()}
    }
    .into_any()
}

#[component]
fn ClusterCard(cluster: ClusterView) -> impl IntoView {
    let leaders = cluster
        .machines
        .iter()
        .filter(|m| m.role == "leader")
        .count();
    let health = match leaders {
        1 => ("badge badge-ok", "one leader".to_string()),
        0 => ("badge badge-bad", "no leader".to_string()),
        n => ("badge badge-bad", format!("{n} leaders")),
    };
    let heading_id = format!("cluster-{}", cluster.app);
    let labelled_by = heading_id.clone();
    view! {
        <section class="panel" aria-labelledby=labelled_by data-test="cluster">
            <div class="panel-head">
                <h2 id=heading_id>{cluster.app.clone()}</h2>
                <span class=health.0>{health.1}</span>
            </div>
            <div class="table-scroll">
                <table>
                    <caption class="visually-hidden">"Machines of " {cluster.app.clone()}</caption>
                    <thead>
                        <tr>
                            <th scope="col">"Machine"</th>
                            <th scope="col">"Region"</th>
                            <th scope="col">"State"</th>
                            <th scope="col">"Role"</th>
                            <th scope="col">"Image"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {cluster
                            .machines
                            .into_iter()
                            .map(|m| {
                                let data_role = m.role.clone();
                                view! {
                                    <tr data-role=data_role>
                                        <td>
                                            {m.name} <br /> <span class="mono muted">{m.id}</span>
                                        </td>
                                        <td>{m.region}</td>
                                        <td>{m.state}</td>
                                        <td>{m.role}</td>
                                        <td class="mono">{m.image}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </tbody>
                </table>
            </div>
        </section>
    }
}
