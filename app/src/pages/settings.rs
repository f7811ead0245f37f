use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::get_current_user;
use crate::api::escrow::{get_require_reveal_approval, SetRequireRevealApproval};
use crate::api::restores::{get_require_restore_approval, SetRequireRestoreApproval};
use crate::api::totp::{get_require_totp_for_admins, SetRequireTotpForAdmins};
use crate::components::status_panel::StatusPanel;
use crate::page_data::page_data;

/// Console settings. Signed-in users see them; only admins are offered the controls (the server checks). The
/// "System" section at the end is the console's own health (where an admin looks for it, not on the home page).
#[component]
pub fn SettingsPage() -> impl IntoView {
    let require = ServerAction::<SetRequireTotpForAdmins>::new();
    let required = page_data(
        move || require.version().get(),
        |_| get_require_totp_for_admins(),
    );
    let approval = ServerAction::<SetRequireRevealApproval>::new();
    let approval_required = page_data(
        move || approval.version().get(),
        |_| get_require_reveal_approval(),
    );
    let restore_approval = ServerAction::<SetRequireRestoreApproval>::new();
    let restore_approval_required = page_data(
        move || restore_approval.version().get(),
        |_| get_require_restore_approval(),
    );
    let me = page_data(|| (), |_| get_current_user());
    let is_admin = move || {
        me.get()
            .and_then(Result::ok)
            .flatten()
            .is_some_and(|u| u.role == "admin")
    };
    view! {
        <Title text="Settings" />
        <h1>"Settings"</h1>
        <section class="panel" data-test="orgs-link">
            <h2><a href="/settings/orgs">"Fly organizations"</a></h2>
            <p>"The Fly organizations Walden reaches, their Postgres apps, and which clusters it tracks."</p>
        </section>
        <section class="panel form-panel" data-test="require-totp">
            <h2>"Two-factor sign-in for admins"</h2>
            <p>"When it is required, an admin without an authenticator app can only set one up or sign out."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || required.get().map(|r| match r {
                    Err(e) => view! { <p class="form-error">{e.to_string()}</p> }.into_any(),
                    Ok(on) => view! {
                        <p data-test="require-totp-state">{if on { "Required for admins." } else { "Not required." }}</p>
                        {is_admin().then(|| view! {
                            <ActionForm action=require>
                                <input type="hidden" name="enabled" value=(!on).to_string() />
                                <button type="submit">{if on { "Stop requiring it" } else { "Require it for admins" }}</button>
                            </ActionForm>
                        })}
                    }.into_any(),
                })}
            </Transition>
            {move || require.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
        </section>
        <section class="panel form-panel" data-test="require-reveal-approval">
            <h2>"Two-person reveals"</h2>
            <p>"When it is required, revealing an escrowed credential needs another operator or admin to approve the request first."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || approval_required.get().map(|r| match r {
                    Err(e) => view! { <p class="form-error">{e.to_string()}</p> }.into_any(),
                    Ok(on) => view! {
                        <p data-test="require-reveal-approval-state">{if on { "Approval required." } else { "Not required." }}</p>
                        {is_admin().then(|| view! {
                            <ActionForm action=approval>
                                <input type="hidden" name="enabled" value=(!on).to_string() />
                                <button type="submit">{if on { "Stop requiring approval" } else { "Require approval for reveals" }}</button>
                            </ActionForm>
                        })}
                    }.into_any(),
                })}
            </Transition>
            {move || approval.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
        </section>
        <section class="panel form-panel" data-test="require-restore-approval">
            <h2>"Two-person restores"</h2>
            <p>"When it is required, a restore plan needs another operator or admin to approve it before its author can start it."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || restore_approval_required.get().map(|r| match r {
                    Err(e) => view! { <p class="form-error">{e.to_string()}</p> }.into_any(),
                    Ok(on) => view! {
                        <p data-test="require-restore-approval-state">{if on { "Approval required." } else { "Not required." }}</p>
                        {is_admin().then(|| view! {
                            <ActionForm action=restore_approval>
                                <input type="hidden" name="enabled" value=(!on).to_string() />
                                <button type="submit">{if on { "Stop requiring approval" } else { "Require approval for restores" }}</button>
                            </ActionForm>
                        })}
                    }.into_any(),
                })}
            </Transition>
            {move || restore_approval.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
        </section>
        <StatusPanel />
    }
}
