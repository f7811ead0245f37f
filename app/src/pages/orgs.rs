use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::get_current_user;
use crate::api::orgs::{
    list_orgs, list_postgres_apps, AddOrg, OrgRow, PgAppRow, RemoveOrg, TrackCluster,
    UntrackCluster,
};
use crate::error::AppError;

/// Settings → Fly organizations: the organisations Walden reaches, their Postgres apps, and which of them are
/// tracked. Everyone signed in sees the lists; admins are offered the controls (the server checks).
///
/// The organisations and their apps load in one resource made here and read with `Suspend` (no resource is made
/// inside a suspense boundary: on the server that keeps the stream waiting for a task each re-render makes anew).
#[component]
pub fn OrgsPage() -> impl IntoView {
    let add = ServerAction::<AddOrg>::new();
    let remove = ServerAction::<RemoveOrg>::new();
    let track = ServerAction::<TrackCluster>::new();
    let untrack = ServerAction::<UntrackCluster>::new();
    let orgs = Resource::new(
        move || {
            (
                add.version().get(),
                remove.version().get(),
                track.version().get(),
                untrack.version().get(),
            )
        },
        |_| orgs_with_apps(),
    );
    let me = Resource::new(|| (), |_| get_current_user());
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
            {move || Suspend::new(async move { is_admin().await.then(|| view! { <AddOrgForm add /> }) })}
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

/// The form that adds an organisation. The token field is a password field, and the form is drawn anew after
/// each success so the pasted token does not linger in the page.
#[component]
fn AddOrgForm(add: ServerAction<AddOrg>) -> impl IntoView {
    view! {
        <section class="panel form-panel" data-test="add-org">
            <h2>"Add an organization"</h2>
            <p class="muted">
                "Create an organization token with " <code>"fly tokens create org -o SLUG"</code>
                " and paste it here. Fly checks it first; it is stored sealed and never shown again."
            </p>
            {move || {
                let _fresh = add.version().get();
                view! {
                    <ActionForm action=add>
                        <label>"Organization slug"
                            <input type="text" name="slug" required autocomplete="off" spellcheck="false" placeholder="personal" />
                        </label>
                        <label>"Organization token"
                            <input type="password" name="token" required autocomplete="off" spellcheck="false" />
                        </label>
                        <button type="submit" disabled=move || add.pending().get()>
                            {move || if add.pending().get() { "Checking with Fly…" } else { "Add organization" }}
                        </button>
                    </ActionForm>
                }
            }}
            {move || match add.value().get() {
                Some(Ok(org)) => view! {
                    <p class="form-ok" role="status">"Added " <strong>{org.name}</strong> " (" {org.slug} ")."</p>
                }.into_any(),
                Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
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
                        <ActionForm action=remove>
                            <input type="hidden" name="slug" value=slug />
                            <button
                                type="submit"
                                class="button-danger"
                                on:click=move |ev| {
                                    if !confirmed(&question) {
                                        ev.prevent_default();
                                    }
                                }
                            >"Remove"</button>
                        </ActionForm>
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
                        if tracked {
                            view! {
                                <ActionForm action=untrack>
                                    <input type="hidden" name="org" value=org />
                                    <input type="hidden" name="app" value=name />
                                    <button type="submit" class="button-secondary">"Untrack"</button>
                                </ActionForm>
                            }.into_any()
                        } else {
                            view! {
                                <ActionForm action=track>
                                    <input type="hidden" name="org" value=org />
                                    <input type="hidden" name="app" value=name />
                                    <button type="submit">"Track"</button>
                                </ActionForm>
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
