use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::{get_current_user, ChangePassword, Logout, LogoutEverywhere};

/// One's own account: password, sign out, sign out everywhere.
#[component]
pub fn AccountPage() -> impl IntoView {
    let change = ServerAction::<ChangePassword>::new();
    let logout = ServerAction::<Logout>::new();
    let everywhere = ServerAction::<LogoutEverywhere>::new();
    let me = Resource::new(
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
                    <section class="panel">
                        <ActionForm action=logout><button type="submit" data-test="logout">"Sign out"</button></ActionForm>
                        <ActionForm action=everywhere><button type="submit">"Sign out everywhere"</button></ActionForm>
                    </section>
                }.into_any(),
            }}
        </Transition>
    }
}
