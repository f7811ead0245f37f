use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::{get_current_user, ChangePassword, Logout, LogoutEverywhere};
use crate::api::totp::{BeginTotp, ConfirmTotp, DisableTotp};
use crate::page_data::page_data;

/// One's own account: password, sign out, sign out everywhere.
#[component]
pub fn AccountPage() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let logout = ServerAction::<Logout>::new();
    let everywhere = ServerAction::<LogoutEverywhere>::new();
    let begin = ServerAction::<BeginTotp>::new();
    let confirm = ServerAction::<ConfirmTotp>::new();
    let disable = ServerAction::<DisableTotp>::new();
    let me = page_data(
        move || (logout.version().get(), everywhere.version().get()),
        |_| get_current_user(),
    );
    view! {
        <Title text="Account" />
        <h1>"Your account"</h1>
        <Transition fallback=|| ()>
            {move || match me.get().and_then(Result::ok).flatten() {
                None => view! { <p class="panel">"You are not signed in. " <a href="/login">"Sign in"</a></p> }.into_any(),
                Some(u) => view! {
                    <p class="panel" data-test="whoami">"Signed in as " <strong>{u.name}</strong> " (" {u.role} ")"</p>
                    <section class="panel form-panel">
                        <h2>"Change password"</h2>
                        <ActionForm action=change>
                            <label>"Current password" <input type="password" name="current_password" autocomplete="current-password" required /></label>
                            <label>"New password" <input type="password" name="new_password" autocomplete="new-password" required minlength="12" maxlength="256" /></label>
                            <button type="submit">"Change password"</button>
                        </ActionForm>
                        {move || match change.value().get() {
                            Some(Ok(())) => view! { <p class="form-ok">"Password changed. Your other sessions have ended."</p> }.into_any(),
                            Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                            None => ().into_any(),
                        }}
                    </section>
                    <section class="panel form-panel" data-test="totp">
                        <h2>"Two-factor sign-in"</h2>
                        <p>"To set up an authenticator app, or to replace the one you use, confirm who you are first."</p>
                        <div data-test="totp-begin">
                        <ActionForm action=begin>
                            <label>"Current password" <input type="password" name="current_password" autocomplete="current-password" required maxlength="256" /></label>
                            <label>
                                "Current code from your authenticator app (only if you already use one)"
                                <input type="text" name="current_code" inputmode="numeric" autocomplete="one-time-code" maxlength="8" />
                            </label>
                            <button type="submit">"Set up an authenticator app"</button>
                        </ActionForm>
                        </div>
                        {move || match begin.value().get() {
                            Some(Ok(t)) => view! {
                                <p>"Add this to your authenticator app, then enter the code it shows:"</p>
                                <p><code data-test="totp-secret">{t.secret_base32}</code></p>
                                <p><a href=t.otpauth_url>"Open in an authenticator app"</a></p>
                                <ActionForm action=confirm>
                                    <label>"Code" <input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required maxlength="8" /></label>
                                    <button type="submit">"Confirm"</button>
                                </ActionForm>
                            }.into_any(),
                            Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                            None => ().into_any(),
                        }}
                        {move || match confirm.value().get() {
                            Some(Ok(())) => view! { <p class="form-ok">"Two-factor sign-in is on. If it replaced an authenticator, your other sessions have ended."</p> }.into_any(),
                            Some(Err(e)) => view! { <p class="form-error" role="alert">{e.to_string()}</p> }.into_any(),
                            None => ().into_any(),
                        }}
                        <ActionForm action=disable>
                            <input type="hidden" name="user_id" value=u.id.to_string() />
                            <label>"Current password" <input type="password" name="current_password" autocomplete="current-password" /></label>
                            <button type="submit">"Turn two-factor sign-in off"</button>
                        </ActionForm>
                        {move || disable.value().get().and_then(Result::err).map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })}
                    </section>
                    <section class="panel">
                        <ActionForm action=logout><button type="submit" data-test="logout">"Sign out"</button></ActionForm>
                        <ActionForm action=everywhere><button type="submit">"Sign out everywhere"</button></ActionForm>
                    </section>
                }.into_any(),
            }}
        </Transition>
    }
}
