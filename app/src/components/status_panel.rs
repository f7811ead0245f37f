use leptos::prelude::*;

use crate::api::status::get_console_status;
use crate::page_data::page_data;

/// The settings page's "System" section: the console's own health, re-checked on demand (a server-function
/// round trip from the browser).
#[component]
pub fn StatusPanel() -> impl IntoView {
    let checks = RwSignal::new(0u32);
    let status = page_data(move || checks.get(), |_| get_console_status());

    view! {
        <section class="panel" aria-labelledby="status-heading" data-test="system">
            <div class="panel-head">
                <h2 id="status-heading">"System"</h2>
                <button
                    type="button"
                    class="button"
                    data-test="recheck"
                    on:click=move |_| checks.update(|n| *n += 1)
                >
                    "Check again"
                </button>
            </div>
            <Transition fallback=|| view! { <p class="muted">"Checking…"</p> }>
                {move || {
                    status
                        .get()
                        .map(|result| match result {
                            Ok(s) => {
                                view! {
                                    <dl class="facts" data-test="status">
                                        <dt>"Database"</dt>
                                        <dd data-test="database">
                                            {if s.database_ok { "reachable" } else { "not reachable" }}
                                        </dd>
                                        <dt>"Schema"</dt>
                                        <dd>
                                            {format!(
                                                "{} migration{} applied",
                                                s.migrations,
                                                if s.migrations == 1 { "" } else { "s" },
                                            )}
                                        </dd>
                                        <dt>"Fly"</dt>
                                        <dd>
                                            {if s.demo_mode {
                                                "built-in emulator (demo mode)"
                                            } else {
                                                "Fly Machines API"
                                            }}
                                        </dd>
                                        <dt>"Checked at"</dt>
                                        <dd data-test="checked-at">
                                            <time datetime=s.checked_at.clone()>{readable_utc(&s.checked_at)}</time>
                                        </dd>
                                    </dl>
                                    <p class="muted" data-test="check-count">
                                        {move || format!("Checks from this page: {}", checks.get())}
                                    </p>
                                }
                                    .into_any()
                            }
                            Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                        })
                }}
            </Transition>
        </section>
    }
}

/// `2026-11-25T13:35:09.140441309Z` → `2026-11-25 13:35:09.140 UTC` (RFC 3339 from the server, UTC).
fn readable_utc(rfc3339: &str) -> String {
    let trimmed = rfc3339.trim_end_matches('Z');
    let (date_time, fraction) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    let millis: String = fraction.chars().take(3).collect();
    let date_time = date_time.replacen('T', " ", 1);
    if millis.is_empty() {
        format!("{date_time} UTC")
    } else {
        format!("{date_time}.{millis} UTC")
    }
}

#[cfg(test)]
mod tests {
    use super::readable_utc;

    #[test]
    fn readable_utc_shortens_to_milliseconds() {
        assert_eq!(
            readable_utc("2026-11-25T13:35:09.140441309Z"),
            "2026-11-25 13:35:09.140 UTC"
        );
        assert_eq!(
            readable_utc("2026-11-25T13:35:09Z"),
            "2026-11-25 13:35:09 UTC"
        );
    }
}
