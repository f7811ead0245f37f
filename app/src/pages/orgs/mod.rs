use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::get_current_user;
use crate::api::orgs::{
    list_orgs, list_postgres_apps, OrgRow, PgAppRow, RemoveOrg, TrackCluster, UntrackCluster,
};
use crate::error::AppError;
use crate::page_data::page_data;

/// Settings → Fly organizations: the organisations Walden reaches, their Postgres apps, and which of them are
/// tracked. Everyone signed in sees the lists; admins are offered the controls (the server checks).
///
/// The organisations and their apps load in one resource made here and read with `Suspend` (no resource is made
/// inside a suspense boundary: on the server that keeps the stream waiting for a task each re-render makes anew).
#[component]
pub fn OrgsPage() -> impl IntoView {
    // Bumped by the add form (loaded on demand, `add.rs`) after each organisation it adds.
    let added = RwSignal::new(0u32);
    let add_open = RwSignal::new(false);
    let remove = ServerAction::<RemoveOrg>::new();
    let track = ServerAction::<TrackCluster>::new();
    let untrack = ServerAction::<UntrackCluster>::new();
    let orgs = page_data(
        move || {
            (
                added.get(),
                remove.version().get(),
                track.version().get(),
                untrack.version().get(),
            )
        },
        |_| orgs_with_apps(),
    );
    let me = page_data(|| (), |_| get_current_user());
    let is_admin =
        move || async move { me.await.ok().flatten().is_some_and(|u| u.role == "admin") };
    let action_error = move || {
        remove
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| track.value().get().and_then(Result::err))
            .or_else(|| untrack.value().get().and_then(Result::err))
            .map(|e| e.to_string())
    };
    view! {
        <Title text="Fly organizations" />
        <p class="muted"><a href="/settings">"Settings"</a> " / Fly organizations"</p>
        <h1>"Fly organizations"</h1>
        {move || action_error().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                let is_admin = is_admin().await;
                match orgs.await {
                    Err(e) => view! { <p class="panel form-error">{e.to_string()}</p> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <p class="panel muted" data-test="no-orgs">"No organization yet. Add one with an organization token below."</p>
                    }.into_any(),
                    Ok(list) => list.into_iter().map(|(org, apps)| view! {
                        <OrgPanel org apps is_admin remove track untrack />
                    }).collect_view().into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move { is_admin().await.then(|| view! { <AddOrgOpener added open=add_open /> }) })}
        </Transition>
    }
}

/// The organisations with each one's Postgres apps (or why Fly could not list them), in one load.
async fn orgs_with_apps() -> Result<Vec<(OrgRow, Result<Vec<PgAppRow>, AppError>)>, AppError> {
    let mut out = Vec::new();
    for org in list_orgs().await? {
        let apps = list_postgres_apps(org.slug.clone()).await;
        out.push((org, apps));
    }
    Ok(out)
}

mod add;

/// "Add an organization", closed: a button that loads the form's code and opens it (admins add organisations
/// rarely, so the form is not part of the page's first download).
#[component]
fn AddOrgOpener(added: RwSignal<u32>, open: RwSignal<bool>) -> impl IntoView {
    view! {
        {move || if open.get() {
            view! {
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                    {Suspend::new(async move { add::add_org_panel(added).await })}
                </Transition>
            }.into_any()
        } else {
            view! {
                <section class="panel" data-test="add-org-closed">
                    <h2>"Add an organization"</h2>
                    <p class="muted">"Paste an organization token: Walden checks it with Fly and keeps it sealed."</p>
                    <button type="button" data-test="open-add-org" on:click=move |_| open.set(true)>
                        "Add an organization…"
                    </button>
                </section>
            }.into_any()
        }}
    }
}

/// One organisation: what is known of it, and its Postgres apps.
#[component]
fn OrgPanel(
    org: OrgRow,
    apps: Result<Vec<PgAppRow>, AppError>,
    is_admin: bool,
    remove: ServerAction<RemoveOrg>,
    track: ServerAction<TrackCluster>,
    untrack: ServerAction<UntrackCluster>,
) -> impl IntoView {
    let question = format!(
        "Remove the organization {}? Its sealed token is deleted; add it again with a token to reach it.",
        org.slug
    );
    let removable = !org.from_environment;
    let slug = org.slug.clone();
    view! {
        <section class="panel" data-test="org" data-org=org.slug.clone()>
            <div class="panel-head">
                <h2>
                    {org.name.clone()} " " <span class="muted mono">{org.slug.clone()}</span> " "
                    {org.from_environment.then(|| view! {
                        <span class="badge" title="From FLY_API_TOKEN; unset the variable to remove it">"environment"</span>
                    })}
                </h2>
                {(is_admin && removable).then(|| {
                    view! {
                        <button
                            type="button"
                            class="button-danger"
                            on:click=move |_| {
                                if confirmed(&question) {
                                    remove.dispatch(RemoveOrg { slug: slug.clone() });
                                }
                            }
                        >"Remove"</button>
                    }
                })}
            </div>
            {(!org.from_environment).then(|| view! {
                <dl class="facts">
                    <dt>"Token fingerprint"</dt><dd class="mono">{org.fingerprint.clone().unwrap_or_default()}</dd>
                    <dt>"Added"</dt><dd>{org.added_at.clone().unwrap_or_default()} " by " {org.added_by.clone().unwrap_or_default()}</dd>
                    <dt>"Last checked with Fly"</dt><dd>{org.last_validated_at.clone().unwrap_or_default()}</dd>
                </dl>
            })}
            <h3>"Postgres apps"</h3>
            {match apps {
                    Err(e) => view! { <p class="form-error">{e.to_string()}</p> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p class="muted">"No Postgres app in this organization."</p> }.into_any(),
                    Ok(list) => view! {
                        <div class="table-scroll">
                            <table class="table" data-test="pg-apps">
                                <thead><tr>
                                    <th>"App"</th><th>"Kind"</th><th>"Postgres"</th><th>"Regions"</th>
                                    <th>"Machines"</th><th>"Status"</th><th>"Tracked"</th>
                                </tr></thead>
                                <tbody>
                                    {list.into_iter().map(|app| view! { <AppRow app is_admin track untrack /> }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any(),
            }}
        </section>
    }
}

/// One Postgres app, with Track or Untrack for admins and a link to its credentials once tracked.
#[component]
fn AppRow(
    app: PgAppRow,
    is_admin: bool,
    track: ServerAction<TrackCluster>,
    untrack: ServerAction<UntrackCluster>,
) -> impl IntoView {
    let kind = match app.flavour.as_str() {
        "stolon" => "Stolon (flyio/postgres)",
        "flex" => "Flex (flyio/postgres-flex)",
        other => other,
    }
    .to_owned();
    let roles = app
        .machines
        .iter()
        .map(|m| format!("{} {} ({})", m.role, m.region, m.state))
        .collect::<Vec<_>>();
    let credentials = format!("/credentials/{}/{}", app.org, app.app);
    let (org, name, tracked) = (app.org.clone(), app.app.clone(), app.tracked);
    view! {
        <tr>
            <td class="mono">{app.app.clone()}</td>
            <td>{kind}</td>
            <td>{app.pg_version.clone().unwrap_or_else(|| "unknown".into())}</td>
            <td>{app.regions.join(", ")}</td>
            <td>
                {app.machines.len()}
                <ul class="plain-list muted">{roles.into_iter().map(|r| view! { <li>{r}</li> }).collect_view()}</ul>
            </td>
            <td>{app.status.clone()}</td>
            <td>
                <div class="actions">
                    {if tracked {
                        view! { <span class="badge badge-ok">"tracked"</span> " " <a href=credentials>"Credentials"</a> }.into_any()
                    } else {
                        view! { <span class="muted">"no"</span> }.into_any()
                    }}
                    {is_admin.then(|| {
                        // Buttons that dispatch (not forms): a form per server function adds its form-decoding
                        // code to the page's download.
                        let (o, n) = (org.clone(), name.clone());
                        if tracked {
                            view! {
                                <button type="button" class="button-secondary"
                                    on:click=move |_| { untrack.dispatch(UntrackCluster { org: o.clone(), app: n.clone() }); }>
                                    "Untrack"
                                </button>
                            }.into_any()
                        } else {
                            view! {
                                <button type="button"
                                    on:click=move |_| { track.dispatch(TrackCluster { org: o.clone(), app: n.clone() }); }>
                                    "Track"
                                </button>
                            }.into_any()
                        }
                    })}
                </div>
            </td>
        </tr>
    }
}

/// Ask the browser's confirmation dialog; no answer (no window) is a no.
fn confirmed(question: &str) -> bool {
    window().confirm_with_message(question).unwrap_or(false)
}
