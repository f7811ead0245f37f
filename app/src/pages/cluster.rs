//! One tracked cluster: its restorable window in a sentence, the timeline drawn, the base backups and the
//! findings, each with what to do. `/clusters/{org}/{app}`.
//!
//! The page's one resource is made here and read in one `Transition` with `Suspend` (never made inside a
//! suspense boundary: leptos#4866).

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use crate::api::timeline::{
    get_cluster_timeline, restorable_sentence, BackupView, ClusterTimeline, FindingView,
    TimelineView,
};
use crate::components::timeline::{
    format_time, human_bytes, human_duration, restore_link, TimelineChart,
};
use crate::page_data::page_data;

/// The cluster page.
#[component]
pub fn ClusterPage() -> impl IntoView {
    let params = use_params_map();
    let org = move || params.read().get("org").unwrap_or_default();
    let app = move || params.read().get("app").unwrap_or_default();
    let timeline = page_data(move || (org(), app()), |(o, a)| get_cluster_timeline(o, a));
    view! {
        <Title text=move || format!("Cluster {}", app()) />
        <p class="muted"><a href="/clusters">"Clusters"</a> " / " {org} " / "</p>
        <div class="page-head">
            <h1 class="mono">{app}</h1>
            <a class="button" data-test="restore-action" href=move || format!("/clusters/{}/{}/restore", org(), app())>
                "Restore…"
            </a>
        </div>
        <Transition fallback=|| view! { <p class="muted">"Reading the backup storage…"</p> }>
            {move || Suspend::new(async move {
                match timeline.await {
                    Err(e) => view! {
                        <section class="panel error-panel" role="alert" data-test="cluster-error">
                            <h2>"This cluster could not be shown"</h2>
                            <p>{e.to_string()}</p>
                        </section>
                    }.into_any(),
                    Ok(t) => view! { <ClusterBody t /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The page under its title, from the server function's answer (public for the render benchmark,
/// `app/benches/cluster_page.rs`).
#[component]
pub fn ClusterBody(t: ClusterTimeline) -> impl IntoView {
    let storage = t.storage.clone().map(|s| {
        view! { <p class="muted">"Backups in " <span class="mono" data-test="storage">{s}</span></p> }
    });
    let volume = t.volume.clone().map(|v| {
        view! { <p class="muted" data-test="volume">"Leader's volume: " {v}</p> }
    });
    let banner = t.error.clone().map(|e| {
        view! {
            <section class="panel error-panel" role="alert" data-test="storage-error">
                <h2>"The backup storage could not be read"</h2>
                <p>{e}</p>
            </section>
        }
    });
    let body = t.timeline.map(|v| {
        if v.backups.is_empty() {
            view! { <NoBackups view=v /> }.into_any()
        } else {
            view! { <Timeline org=t.org.clone() app=t.app.clone() view=v /> }.into_any()
        }
    });
    view! { {storage} {volume} {banner} {body} }
}

#[component]
fn Timeline(org: String, app: String, view: TimelineView) -> impl IntoView {
    let latest = view.latest_restorable_ms.map(|ms| {
        view! {
            <a class="button" data-test="restore-latest" href=restore_link(&org, &app, ms)>
                "Restore to the latest restorable time"
            </a>
        }
    });
    let note = view
        .commit_note
        .clone()
        .map(|n| view! { <p class="muted" data-test="commit-note">{n}</p> });
    let truncated = view.coverage_truncated.then(|| {
        view! { <p class="muted">"More holes than can be listed: the WAL after the listed ones is drawn as one stretch."</p> }
    });
    view! {
        <section class="panel">
            <p class="tl-sentence" data-test="restorable">{restorable_sentence(&view)}</p>
            {note}
            <TimelineChart org app view=view.clone() />
            {truncated}
            {latest}
        </section>
        <BackupsTable backups=view.backups.clone() />
        <Findings findings=view.findings />
    }
}

#[component]
fn BackupsTable(backups: Vec<BackupView>) -> impl IntoView {
    view! {
        <section class="panel">
            <h2>"Base backups"</h2>
            <table class="table" data-test="backups">
                <thead><tr>
                    <th>"Name"</th><th>"Started (UTC)"</th><th>"Finished (UTC)"</th><th>"Took"</th>
                    <th>"Compressed"</th><th>"Uncompressed"</th><th>"LSNs"</th><th>"Timeline"</th>
                    <th>"Kind"</th><th>"Restorable"</th>
                </tr></thead>
                <tbody>
                    {backups.into_iter().rev().map(|b| {
                        let kind = match (&b.delta_from, b.permanent) {
                            (Some(p), perm) => format!("delta of {p}{}", if perm { ", permanent" } else { "" }),
                            (None, true) => "full, permanent".to_owned(),
                            (None, false) => "full".to_owned(),
                        };
                        let restorable = if b.restorable {
                            "yes".to_owned()
                        } else {
                            format!("no: {}", b.problems.join("; "))
                        };
                        view! {
                            <tr data-test="backup-row" class:problem=!b.restorable>
                                <td class="mono">{b.name}</td>
                                <td>{b.start_ms.map(|t| format_time(t, 0)).unwrap_or_else(|| "—".into())}</td>
                                <td>{format_time(b.finish_ms, 0)}</td>
                                <td>{b.duration_secs.map(human_duration).unwrap_or_else(|| "—".into())}</td>
                                <td>{human_bytes(b.compressed_bytes)}</td>
                                <td>{human_bytes(b.uncompressed_bytes)}</td>
                                <td class="mono">{format!("{} – {}", b.start_lsn.unwrap_or_default(), b.finish_lsn.unwrap_or_default())}</td>
                                <td>{b.timeline}</td>
                                <td>{kind}</td>
                                <td>{restorable}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn Findings(findings: Vec<FindingView>) -> impl IntoView {
    view! {
        <section class="panel">
            <h2>"Findings"</h2>
            {if findings.is_empty() {
                view! { <p class="muted" data-test="no-findings">"Nothing to report."</p> }.into_any()
            } else {
                view! {
                    <ul class="findings" data-test="findings">
                        {findings.into_iter().map(|f| view! {
                            <li class=format!("finding {}", f.severity) data-test="finding" data-code=f.code.clone()>
                                <strong>{f.severity.clone()}</strong> " " {f.message}
                                <br /><span class="muted">"What to do: " {f.advice}</span>
                            </li>
                        }).collect_view()}
                    </ul>
                }.into_any()
            }}
        </section>
    }
}

/// A storage without base backups: how to turn backups on (the steps of the wal-g guide Walden follows).
#[component]
fn NoBackups(view: TimelineView) -> impl IntoView {
    let wal = (!view.runs.is_empty()).then(|| {
        view! { <p>"WAL is being archived, but there is no complete base backup to restore it onto yet."</p> }
    });
    view! {
        <section class="panel empty-state" data-test="no-backups">
            <h2>"No base backups yet"</h2>
            {wal}
            <p>"Turn backups on for this cluster:"</p>
            <ol>
                <li>"Set " <code>"ENABLE_WALG=true"</code> " in the cluster's fly.toml [env], and the storage as secrets: "
                    <code>"fly secrets set WALG_S3_PREFIX=s3://bucket/prefix AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…"</code>
                    " (or another WALG_*_PREFIX), then " <code>"fly deploy"</code> "."</li>
                <li>"Enable archiving once, from one Machine: " <code>"fly ssh console"</code> ", "
                    <code>"export $(cat /data/.env | xargs)"</code> ", "
                    <code>{r#"stolonctl update --patch '{"pgParameters": {"archive_mode": "yes", "archive_timeout": "60", "archive_command": "wal-g wal-push %p"}}'"#}</code></li>
                <li>"Take the first base backup: " <code>"wal-g backup-push /data/postgres"</code>
                    ", and schedule it (daily, say)."</li>
                <li>"Capture the credentials again on the " <a href="/credentials">"credentials page"</a>
                    " so Walden knows the storage."</li>
            </ol>
        </section>
    }
}
