use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::audit::{export_audit, list_audit, verify_audit, AuditQuery};
use crate::page_data::page_data;

const PAGE: u32 = 50;

/// Percent-encode for a `data:` URL.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~ ,:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The audit log: who did what, when and why. Filter, page, check the chain, export the view.
#[component]
pub fn AuditPage() -> impl IntoView {
    let actor = RwSignal::new(String::new());
    let action = RwSignal::new(String::new());
    let cluster = RwSignal::new(String::new());
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let text = RwSignal::new(String::new());
    let applied = RwSignal::new(AuditQuery::default());
    let before = RwSignal::new(None::<i64>);
    let rows = page_data(
        move || (applied.get(), before.get()),
        |(q, b)| list_audit(q, b, PAGE),
    );
    let chain = page_data(|| (), |_| verify_audit());
    let export = Action::new(move |format: &String| {
        let q = applied.get_untracked();
        let format = format.clone();
        async move { export_audit(q, format.clone()).await.map(|t| (format, t)) }
    });
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        before.set(None);
        applied.set(AuditQuery {
            actor: actor.get_untracked(),
            action: action.get_untracked(),
            cluster: cluster.get_untracked(),
            since: since.get_untracked(),
            until: until.get_untracked(),
            text: text.get_untracked(),
        });
    };
    view! {
        <Title text="Audit" />
        <h1>"Audit log"</h1>
        <Transition fallback=|| ()>
            {move || chain.get().map(|r| match r {
                Ok(c) if c.intact => view! {
                    <p class="panel chain-ok" data-test="chain-status">
                        "Chain verified through row " {c.verified_through} " (" {c.rows} " rows)."
                    </p>
                }.into_any(),
                Ok(c) => view! {
                    <p class="panel chain-broken" role="alert" data-test="chain-status">
                        "Chain BROKEN at " {c.problem.unwrap_or_default()} "; verified through row " {c.verified_through} "."
                    </p>
                }.into_any(),
                Err(e) => view! { <p class="panel form-error">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
        <form class="panel filters" on:submit=apply>
            <label>"Actor" <input type="text" bind:value=actor /></label>
            <label>"Action" <input type="text" placeholder="user. or auth.login" bind:value=action /></label>
            <label>"Cluster" <input type="text" bind:value=cluster /></label>
            <label>"Since" <input type="text" placeholder="2026-11-25T00:00:00Z" bind:value=since /></label>
            <label>"Until" <input type="text" placeholder="2026-11-26T00:00:00Z" bind:value=until /></label>
            <label>"Text" <input type="search" bind:value=text /></label>
            <button type="submit">"Filter"</button>
        </form>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || rows.get().map(|r| match r {
                Err(e) => view! { <p class="panel form-error" data-test="audit-error">{e.to_string()}</p> }.into_any(),
                Ok(page) if page.rows.is_empty() => view! {
                    <section class="panel empty-state">
                        <h2>"Nothing recorded yet"</h2>
                        <p>"Every sign-in, change, credential reveal and restore step is recorded here in a tamper-evident chain."</p>
                    </section>
                }.into_any(),
                Ok(page) => {
                    let next = page.next_before;
                    view! {
                        <p>{page.total} " matching rows"</p>
                        <table class="table" data-test="audit-rows">
                            <thead><tr><th>"#"</th><th>"Time (UTC)"</th><th>"Actor"</th><th>"Action"</th><th>"Target"</th><th>"Outcome"</th><th>"Reason"</th><th>"From"</th></tr></thead>
                            <tbody>
                                {page.rows.into_iter().map(|e| view! {
                                    <tr title=e.detail.unwrap_or_default()>
                                        <td>{e.id}</td><td>{e.at}</td><td>{e.actor}</td><td>{e.action}</td>
                                        <td>{e.target}</td><td>{e.outcome}</td><td>{e.reason.unwrap_or_default()}</td>
                                        <td>{e.client_ip.unwrap_or_default()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                        <p class="pager">
                            <button type="button" on:click=move |_| before.set(None)>"Newest"</button>
                            {next.map(|n| view! { <button type="button" on:click=move |_| before.set(Some(n))>"Older"</button> })}
                        </p>
                    }.into_any()
                }
            })}
        </Transition>
        <section class="panel">
            <button type="button" on:click=move |_| { export.dispatch("csv".to_string()); }>"Export view as CSV"</button>
            <button type="button" on:click=move |_| { export.dispatch("jsonl".to_string()); }>"Export view as JSON lines"</button>
            {move || export.value().get().map(|r| match r {
                Ok((format, body)) => {
                    let mime = if format == "csv" { "text/csv" } else { "application/x-ndjson" };
                    let href = format!("data:{mime};charset=utf-8,{}", encode(&body));
                    let file = format!("walden-audit.{format}");
                    view! { <a href=href download=file>"Download " {file.clone()}</a> }.into_any()
                }
                Err(e) => view! { <span class="form-error">{e.to_string()}</span> }.into_any(),
            })}
        </section>
    }
}
