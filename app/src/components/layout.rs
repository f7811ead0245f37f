use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::auth::get_current_user;
use crate::api::status::get_console_status;
use crate::error::ErrorList;
use crate::page_data::page_data;

/// Whether the current page has hydrated: `<main data-hydrated="true">` then, which end2end tests wait for
/// before they click. The frame hydrates before a lazy page's code has arrived, so the page itself says so.
#[derive(Clone, Copy)]
pub struct PageHydrated(pub RwSignal<bool>);

/// Placed in every page: its effect runs only in the browser, once the page around it has hydrated.
#[component]
pub fn MarkHydrated() -> impl IntoView {
    let mark = use_context::<PageHydrated>();
    Effect::new(move |_| {
        if let Some(PageHydrated(hydrated)) = mark {
            hydrated.set(true);
        }
    });
}

/// The page frame: skip link, top bar with the demo badge, primary navigation, content, footer.
#[component]
pub fn Layout(children: Children) -> impl IntoView {
    let status = page_data(|| (), |_| get_console_status());
    let me = page_data(|| (), |_| get_current_user());
    let menu_open = RwSignal::new(false);
    let close_menu = move |_| menu_open.set(false);
    // Set by the page's own `MarkHydrated` once the page (loaded lazily, after this frame) has hydrated.
    let hydrated = RwSignal::new(false);
    provide_context(PageHydrated(hydrated));

    view! {
        <a class="skip-link" href="#content">"Skip to content"</a>
        <header class="topbar">
            <div class="topbar-inner">
                <a class="brand" href="/">
                    <span class="brand-mark" aria-hidden="true">"◆"</span>
                    "Walden"
                </a>
                <Transition fallback=|| ()>
                    {move || {
                        status
                            .get()
                            .and_then(Result::ok)
                            .filter(|s| s.demo_mode)
                            .map(|_| {
                                view! {
                                    <span
                                        class="badge badge-demo"
                                        data-test="demo-badge"
                                        title="No Fly token is configured: Walden is talking to its built-in Fly emulator with a sample cluster and bucket."
                                    >
                                        "Demo mode"
                                    </span>
                                }
                            })
                    }}
                </Transition>
                <button
                    class="menu-toggle"
                    type="button"
                    aria-controls="primary-nav"
                    aria-expanded=move || menu_open.get().to_string()
                    on:click=move |_| menu_open.update(|open| *open = !*open)
                >
                    "Menu"
                </button>
                <nav id="primary-nav" class="primary-nav" class:open=move || menu_open.get() aria-label="Primary">
                    <A href="/clusters" on:click=close_menu>"Clusters"</A>
                    <A href="/credentials" on:click=close_menu>"Credentials"</A>
                    <A href="/restores" on:click=close_menu>"Restores"</A>
                    <A href="/audit" on:click=close_menu>"Audit"</A>
                    <A href="/settings" on:click=close_menu>"Settings"</A>
                    // Shown to admins only; the server refuses everyone else anyway.
                    <Transition fallback=|| ()>
                        {move || match me.get().and_then(Result::ok).flatten() {
                            Some(u) => view! {
                                {(u.role == "admin").then(|| view! { <A href="/users" on:click=close_menu>"Users"</A> })}
                                <A href="/account" on:click=close_menu>
                                    <span data-test="current-user">{u.name}</span>
                                </A>
                            }.into_any(),
                            None => view! { <A href="/login" on:click=close_menu>"Sign in"</A> }.into_any(),
                        }}
                    </Transition>
                </nav>
            </div>
        </header>
        <main
            id="content"
            class="content"
            tabindex="-1"
            data-hydrated=move || if hydrated.get() { "true" } else { "false" }
        >
            <ErrorBoundary fallback=|errors| view! { <ErrorList errors /> }>{children()}</ErrorBoundary>
        </main>
        <footer class="footer">
            <span>"Walden " {env!("CARGO_PKG_VERSION")}</span>
            <span>"Point-in-time recovery for Postgres on Fly.io"</span>
        </footer>
    }
}
