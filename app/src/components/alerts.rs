//! The open alerts, as a list at the top of a page: nothing at all when there are none.

use leptos::prelude::*;

use crate::api::alerts::AlertRow;
use crate::page_data::{page_data, PageData};

/// The open alerts (`list_alerts`), each with its cluster linked. `alerts` is the page's resource (made at the
/// page's top, see docs/ARCHITECTURE.md).
#[component]
pub fn AlertsPanel(
    alerts: PageData<Result<Vec<AlertRow>, crate::error::AppError>>,
) -> impl IntoView {
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match alerts.await {
                    Ok(list) if !list.is_empty() => Some(view! {
                        <section class="panel alerts" data-test="alerts" role="alert">
                            <h2>"Needs attention"</h2>
                            <ul class="plain-list">
                                {list.into_iter().map(|a| view! { <AlertItem alert=a /> }).collect_view()}
                            </ul>
                        </section>
                    }),
                    _ => None,
                }
            })}
        </Transition>
    }
}

#[component]
fn AlertItem(alert: AlertRow) -> impl IntoView {
    let badge = if alert.severity == "critical" {
        "badge badge-bad"
    } else {
        "badge badge-warn"
    };
    let place = match (&alert.org, &alert.app) {
        (Some(org), Some(app)) if alert.kind.starts_with("escrow_") => {
            Some((format!("/credentials/{org}/{app}"), format!("{org}/{app}")))
        }
        (Some(org), Some(app)) => Some((format!("/clusters/{org}/{app}"), format!("{org}/{app}"))),
        _ => None,
    };
    view! {
        <li data-test="alert" data-kind=alert.kind.clone()>
            <span class=badge>{alert.severity.clone()}</span> " "
            {place.map(|(href, name)| view! { <a class="mono" href=href>{name}</a> ": " })}
            {alert.message} " "
            <span class="muted">"since " {alert.raised_at}</span>
        </li>
    }
}

/// A page's alerts resource: make it at the page's top and pass it to [`AlertsPanel`].
pub fn alerts_resource() -> PageData<Result<Vec<AlertRow>, crate::error::AppError>> {
    page_data(|| (), |_| crate::api::alerts::list_alerts())
}
