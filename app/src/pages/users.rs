use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::users::{
    list_invites, list_users, CreateInvite, RevokeInvite, SetUserDisabled, SetUserRole,
};
use crate::page_data::page_data;

/// Users and invitations (admins; the server refuses everyone else). Two-factor policy is on Settings.
#[component]
pub fn UsersPage() -> impl IntoView {
    let set_role = ServerAction::<SetUserRole>::new();
    let set_disabled = ServerAction::<SetUserDisabled>::new();
    let invite = ServerAction::<CreateInvite>::new();
    let revoke = ServerAction::<RevokeInvite>::new();
    let invites = page_data(
        move || (invite.version().get(), revoke.version().get()),
        |_| list_invites(),
    );
    let users = page_data(
        move || (set_role.version().get(), set_disabled.version().get()),
        |_| list_users(),
    );
    let action_error = move || {
        set_role
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| set_disabled.value().get().and_then(Result::err))
            .map(|e| e.to_string())
    };
    view! {
        <Title text="Users" />
        <h1>"Users"</h1>
        {move || action_error().map(|e| view! { <p class="form-error" role="alert">{e}</p> })}
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || users.get().map(|r| match r {
                Err(e) => view! { <p class="panel form-error">{e.to_string()}</p> }.into_any(),
                Ok(list) => view! {
                    <table class="table" data-test="users">
                        <thead><tr><th>"Name"</th><th>"Role"</th><th>"State"</th><th>"Since"</th><th></th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|u| {
                                let id = u.id.to_string();
                                let id2 = id.clone();
                                let next = if u.disabled { "false" } else { "true" };
                                let label = if u.disabled { "Enable" } else { "Disable" };
                                let role = u.role.clone();
                                view! {
                                    <tr>
                                        <td>{u.name}</td>
                                        <td>
                                            <ActionForm action=set_role>
                                                <input type="hidden" name="user_id" value=id />
                                                <select name="role">
                                                    <option value="viewer" selected=role == "viewer">"viewer"</option>
                                                    <option value="operator" selected=role == "operator">"operator"</option>
                                                    <option value="admin" selected=role == "admin">"admin"</option>
                                                </select>
                                                <button type="submit">"Set"</button>
                                            </ActionForm>
                                        </td>
                                        <td>{if u.disabled { "disabled" } else { "enabled" }}{if u.totp_enabled { ", TOTP" } else { "" }}</td>
                                        <td>{u.created_at}</td>
                                        <td>
                                            <ActionForm action=set_disabled>
                                                <input type="hidden" name="user_id" value=id2 />
                                                <input type="hidden" name="disabled" value=next />
                                                <button type="submit">{label}</button>
                                            </ActionForm>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            })}
        </Transition>
        <section class="panel form-panel">
            <h2>"Invite someone"</h2>
            <ActionForm action=invite>
                <label>"Role"
                    <select name="role">
                        <option value="viewer">"viewer"</option>
                        <option value="operator">"operator"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <label>"Valid for (hours)" <input type="number" name="hours" value="4" min="1" max="168" /></label>
                <p class="muted">"An admin invitation is valid for at most 24 hours; others for at most 7 days (168 hours)."</p>
                <button type="submit">"Make invitation link"</button>
            </ActionForm>
            {move || match invite.value().get() {
                Some(Ok(link)) => view! {
                    <p class="form-ok" data-test="invite-link">
                        "Send this link (shown once, valid until " {link.expires_at} "): " <code>{link.path}</code>
                    </p>
                }.into_any(),
                Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
        <section class="panel">
            <h2>"Pending invitations"</h2>
            {move || revoke.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || invites.get().map(|r| match r {
                    Err(e) => view! { <p class="form-error">{e.to_string()}</p> }.into_any(),
                    Ok(list) if list.is_empty() => view! { <p data-test="no-invites">"No pending invitations."</p> }.into_any(),
                    Ok(list) => view! {
                        <table class="table" data-test="invites">
                            <thead><tr><th>"#"</th><th>"Role"</th><th>"Made by"</th><th>"Made"</th><th>"Expires"</th><th></th></tr></thead>
                            <tbody>
                                {list.into_iter().map(|i| {
                                    let question = format!("Revoke invitation #{} ({})? Its link will stop working.", i.id, i.role);
                                    view! {
                                        <tr>
                                            <td>{i.id}</td>
                                            <td>{i.role}</td>
                                            <td>{i.created_by}</td>
                                            <td>{i.created_at}</td>
                                            <td>{i.expires_at}</td>
                                            <td>
                                                <ActionForm action=revoke>
                                                    <input type="hidden" name="id" value=i.id.to_string() />
                                                    <button
                                                        type="submit"
                                                        on:click=move |ev| {
                                                            if !confirmed(&question) {
                                                                ev.prevent_default();
                                                            }
                                                        }
                                                    >"Revoke"</button>
                                                </ActionForm>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                })}
            </Transition>
        </section>
    }
}

/// Ask the browser's confirmation dialog; no answer (no window) is a no.
fn confirmed(question: &str) -> bool {
    window().confirm_with_message(question).unwrap_or(false)
}
