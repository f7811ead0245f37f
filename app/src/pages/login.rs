use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::api::auth::{get_setup_needed, Login};
use crate::page_data::page_data;

/// Sign in. Errors never say whether the user exists.
#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let setup = page_data(|| (), |_| get_setup_needed());
    let error = move || {
        login
            .value()
            .get()
            .and_then(Result::err)
            .map(|e| e.to_string())
    };
    let signed_in = move || login.value().get().and_then(Result::ok);
    view! {
        <Title text="Sign in" />
        <h1>"Sign in"</h1>
        <Transition fallback=|| ()>
            {move || {
                setup
                    .get()
                    .and_then(Result::ok)
                    .filter(|needed| *needed)
                    .map(|_| {
                        view! {
                            <p class="panel notice" data-test="setup-hint">
                                "No users yet. " <A href="/setup">"Create the first admin"</A> "."
                            </p>
                        }
                    })
            }}
        </Transition>
        <section class="panel form-panel">
            <ActionForm action=login>
                <label>"User name" <input type="text" name="name" autocomplete="username" required maxlength="64" /></label>
                <label>"Password" <input type="password" name="password" autocomplete="current-password" required maxlength="256" /></label>
                <label>
                    "Code from your authenticator app (if you use one)"
                    <input type="text" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8" />
                </label>
                <button type="submit" data-test="login-submit">"Sign in"</button>
            </ActionForm>
            {move || error().map(|e| view! { <p class="form-error" role="alert" data-test="login-error">{e}</p> })}
            {move || {
                signed_in()
                    .map(|u| {
                        view! {
                            <p class="form-ok" data-test="login-ok">
                                "Signed in as " {u.name} ". " <a href="/">"Continue to the console"</a>
                            </p>
                        }
                    })
            }}
        </section>
    }
}
