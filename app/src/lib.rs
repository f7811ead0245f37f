//! Walden's web console: routes, pages, components and server functions.
//!
//! The same crate compiles twice: natively with `ssr` (linked into the `walden` binary, renders HTML and runs
//! server functions) and to wasm with `hydrate` (takes over the server-rendered page in the browser).

pub mod api;
pub mod components;
pub mod error;
pub mod page_data;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes};
use leptos_router::{lazy_route, path, Lazy, LazyRoute};

use crate::components::layout::{Layout, MarkHydrated};
use crate::pages::{
    account::AccountPage,
    audit::AuditPage,
    cluster::ClusterPage,
    clusters::ClustersPage,
    credentials::{CredentialsIndexPage, CredentialsPage},
    invite::InvitePage,
    login::LoginPage,
    not_found::NotFound,
    orgs::OrgsPage,
    restore_wizard::RestoreWizardPage,
    restores::{RestoreRunPage, RestoresPage},
    settings::SettingsPage,
    setup::SetupPage,
    users::UsersPage,
};

/// The HTML document around the app; rendered on the server only.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The application: router and page layout.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let output_name = option_env!("LEPTOS_OUTPUT_NAME").unwrap_or("walden");
    view! {
        <Stylesheet id="walden-css" href=format!("/pkg/{output_name}.css") />
        <Title formatter=|text: String| if text.is_empty() { "Walden".to_string() } else { format!("{text} · Walden") } />
        <Router>
            <Layout>
                <Routes fallback=NotFound>
                    <Route path=path!("/") view={Lazy::<LazyClustersPage>::new()} />
                    <Route path=path!("/clusters") view={Lazy::<LazyClustersPage>::new()} />
                    <Route path=path!("/clusters/:org/:app") view={Lazy::<LazyClusterPage>::new()} />
                    <Route path=path!("/clusters/:org/:app/restore") view={Lazy::<LazyRestoreWizardPage>::new()} />
                    <Route path=path!("/restores") view={Lazy::<LazyRestoresPage>::new()} />
                    <Route path=path!("/restores/:run") view={Lazy::<LazyRestoreRunPage>::new()} />
                    <Route path=path!("/audit") view={Lazy::<LazyAuditPage>::new()} />
                    <Route path=path!("/credentials") view={Lazy::<LazyCredentialsIndexPage>::new()} />
                    <Route path=path!("/credentials/:org/:app") view={Lazy::<LazyCredentialsPage>::new()} />
                    <Route path=path!("/settings") view={Lazy::<LazySettingsPage>::new()} />
                    <Route path=path!("/settings/orgs") view={Lazy::<LazyOrgsPage>::new()} />
                    <Route path=path!("/login") view={Lazy::<LazyLoginPage>::new()} />
                    <Route path=path!("/setup") view={Lazy::<LazySetupPage>::new()} />
                    <Route path=path!("/invite") view={Lazy::<LazyInvitePage>::new()} />
                    <Route path=path!("/account") view={Lazy::<LazyAccountPage>::new()} />
                    <Route path=path!("/users") view={Lazy::<LazyUsersPage>::new()} />
                </Routes>
            </Layout>
        </Router>
    }
}

/// A page whose code the browser loads when the page is first visited (`cargo leptos build --split`): the main
/// module holds the shell (layout, navigation, the 404 page) and each first visit adds only that page's code.
macro_rules! lazy_page {
    ($($route:ident => $page:ident),* $(,)?) => {$(
        struct $route;

        #[lazy_route]
        impl LazyRoute for $route {
            fn data() -> Self {
                $route
            }

            fn view(_this: Self) -> AnyView {
                view! { <$page /> <MarkHydrated /> }.into_any()
            }
        }
    )*};
}

lazy_page! {
    LazyClustersPage => ClustersPage,
    LazyClusterPage => ClusterPage,
    LazyRestoreWizardPage => RestoreWizardPage,
    LazyRestoresPage => RestoresPage,
    LazyRestoreRunPage => RestoreRunPage,
    LazyAuditPage => AuditPage,
    LazyCredentialsIndexPage => CredentialsIndexPage,
    LazyCredentialsPage => CredentialsPage,
    LazySettingsPage => SettingsPage,
    LazyOrgsPage => OrgsPage,
    LazyLoginPage => LoginPage,
    LazySetupPage => SetupPage,
    LazyInvitePage => InvitePage,
    LazyAccountPage => AccountPage,
    LazyUsersPage => UsersPage,
}

/// The wasm entry point: hydrate the server-rendered body.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // hydrate_lazy: some routes are lazy-loaded (see `lazy_page!`); it waits for their code before hydrating.
    leptos::mount::hydrate_lazy(App);
}
