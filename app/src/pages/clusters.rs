use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::alerts::list_alerts;
use crate::api::clusters::{cluster_overview, HealthRow, Overview, RefreshCluster};
use crate::components::alerts::AlertsPanel;
use crate::error::AppError;
use crate::page_data::page_data;

/// The home page: one row per tracked cluster, worst first, with its backups health (refreshed in the
/// background by the monitor worker) and "Refresh now" for operators. The resource is made here, at the top,
/// and read inside the `Transition` (never made inside it: leptos#4866); it is fetched again after each
/// refresh. Everything is formatted on the server, so the page needs no date code in the browser.
#[component]
pub fn ClustersPage() -> impl IntoView {
    let refresh = ServerAction::<RefreshCluster>::new();
    let overview = page_data(move || refresh.version().get(), |_| cluster_overview());
    let alerts = page_data(move || refresh.version().get(), |_| list_alerts());
    let refresh_error = move || {
        refresh
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| e.to_string())
    };
    view! {
        <Title text="Clusters" />
        <h1>"Clusters"</h1>
        <AlertsPanel alerts />
        {move || refresh_error().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        <Transition fallback=|| view! { <p class="muted">"Reading the clusters' backups…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Ok(overview) => view! { <HealthTable overview refresh /> }.into_any(),
                    Err(AppError::Unauthorized) => view! {
                        <section class="panel empty-state" data-test="sign-in-needed">
                            <h2>"Sign in to see the clusters"</h2>
                            <p>
                                "Walden shows each Postgres cluster's machines, backups and restorable window to signed-in team members."
                            </p>
                            <p><a class="button" href="/login">"Go to the sign-in page"</a></p>
                        </section>
                    }.into_any(),
                    Err(e) => view! {
                        <section class="panel error-panel" role="alert" data-test="clusters-error">
                            <h2>"The clusters could not be listed"</h2>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The hint shown under the table (and instead of it when nothing is tracked).
#[component]
fn UntrackedHint(none: bool) -> impl IntoView {
    let text = if none {
        "No cluster is tracked yet. An admin tracks a Fly Postgres cluster in "
    } else {
        "A cluster that is not listed is not tracked: an admin tracks it in "
    };
    view! {
        <p class="muted" data-test="untracked-hint">
            {text} <a href="/settings/orgs">"Settings → Fly organizations"</a> "."
        </p>
    }
}

#[component]
fn HealthTable(overview: Overview, refresh: ServerAction<RefreshCluster>) -> impl IntoView {
    if overview.rows.is_empty() {
        return view! {
            <section class="panel empty-state" data-test="no-tracked-clusters">
                <h2>"No tracked clusters"</h2>
                <UntrackedHint none=true />
            </section>
        }
        .into_any();
    }
    let can_refresh = overview.can_refresh;
    view! {
        <div class="table-scroll panel">
            <table data-test="cluster-health">
                <caption class="visually-hidden">"Tracked clusters, worst first"</caption>
                <thead>
                    <tr>
                        <th scope="col">"Cluster"</th>
                        <th scope="col">"Health"</th>
                        <th scope="col">"Machines"</th>
                        <th scope="col">"Newest WAL"</th>
                        <th scope="col">"Newest base backup"</th>
                        <th scope="col">"Restorable"</th>
                        <th scope="col">"Findings"</th>
                        <th scope="col">"Refreshed"</th>
                    </tr>
                </thead>
                <tbody>
                    {overview
                        .rows
                        .into_iter()
                        .map(|row| view! { <Row row can_refresh refresh /> })
                        .collect_view()}
                </tbody>
            </table>
        </div>
        <UntrackedHint none=false />
    }
    .into_any()
}

fn badge(health: &str) -> &'static str {
    match health {
        "green" => "badge badge-ok",
        "red" => "badge badge-bad",
        "amber" => "badge badge-warn",
        _ => "badge badge-idle",
    }
}

fn or_dash(v: Option<String>) -> String {
    v.unwrap_or_else(|| "—".to_owned())
}

#[component]
fn Row(row: HealthRow, can_refresh: bool, refresh: ServerAction<RefreshCluster>) -> impl IntoView {
    let href = format!("/clusters/{}/{}", row.org, row.app);
    let machines = match (row.machines_up, row.machines_total) {
        (Some(up), Some(all)) => format!("{up}/{all} up"),
        _ => "unknown".to_owned(),
    };
    let leader = match (&row.leader, row.machines_total) {
        (Some(l), _) => format!("leader {l}"),
        (None, Some(_)) => "no leader".to_owned(),
        (None, None) => row.machines_error.clone().unwrap_or_default(),
    };
    let findings = match row.findings {
        Some((e, w, i)) => format!("{e} errors, {w} warnings, {i} notes"),
        None => "—".to_owned(),
    };
    let window = match (&row.earliest_restorable, &row.latest_restorable) {
        (Some(a), Some(b)) => format!("{a} → {b}"),
        _ => "—".to_owned(),
    };
    let commit = row.last_commit.clone().map(|c| format!("last commit {c}"));
    let banner = row.storage_error.clone().map(|e| {
        let kept = match &row.last_good {
            Some(at) => format!("The figures are from the last good refresh, {at}."),
            None => "Nothing has been read from this storage yet.".to_owned(),
        };
        view! {
            <tr class="storage-error" data-test="storage-error">
                <td colspan="8">
                    <p class="form-error" role="alert">
                        <strong>"Storage error: "</strong>{e}" "{kept}
                    </p>
                </td>
            </tr>
        }
    });
    let (org, app) = (row.org.clone(), row.app.clone());
    view! {
        <tr data-test="cluster-row" data-health=row.health.clone()>
            <th scope="row"><a href=href>{row.org.clone()} " / " {row.app.clone()}</a></th>
            <td>
                <span class=badge(&row.health)>{row.health.clone()}</span>
                <br />
                <span class="muted" data-test="health-reason">{row.reason.clone()}</span>
            </td>
            <td>{machines} <br /> <span class="muted">{leader}</span></td>
            <td>{or_dash(row.wal_age.clone())}</td>
            <td>{or_dash(row.base_backup_age.clone())}</td>
            <td>{window} {commit.map(|c| view! { <br /> <span class="muted">{c}</span> })}</td>
            <td>{findings}</td>
            <td>
                {or_dash(row.refreshed.clone())}
                {can_refresh.then(|| view! {
                    <button type="button" class="button-secondary" data-test="refresh-now"
                        disabled=move || refresh.pending().get()
                        on:click=move |_| { refresh.dispatch(RefreshCluster { org: org.clone(), app: app.clone() }); }>
                        "Refresh now"
                    </button>
                })}
            </td>
        </tr>
        {banner}
    }
}
