//! `walden restore plan` as an operator runs it: the real binary on a real data directory, pointed at an
//! in-process flysim (the demo org and its seeded Stolon cluster, tracked and escrowed through the CLI). A plan
//! prints its hash and steps with every secret masked; a refusal prints every reason and exits 3; each is
//! audited as `restore.plan`; nothing is created on the emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use std::process::Output;

use support::{run_off_runtime, walden};
use tokio_util::sync::CancellationToken;
use walden_core::audit::{self, AuditFilter};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_print_the_hash_and_refusals_exit_3_with_every_reason() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (running, info) = flysim::start_demo(
        listener,
        dir.path().join("bucket"),
        None,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let data = dir.path().join("data");
    let url = running.base_url.clone();
    let app = info.app.clone();
    let cmd = |args: &[&str]| {
        let mut cmd = walden(&data, &url);
        cmd.args(args);
        cmd
    };
    for setup in [
        vec!["org", "track", &info.org, &app],
        vec!["escrow", "capture", &app],
    ] {
        let out = run_off_runtime(cmd(&setup)).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let apps_before = run_off_runtime(cmd(&["fly", "apps", "--org", &info.org])).await;
    assert!(apps_before.status.success(), "{}", text(&apps_before));
    assert!(
        stdout(&apps_before).contains(&app),
        "{}",
        text(&apps_before)
    );

    let new = format!("{app}-restored");
    let out = run_off_runtime(cmd(&["restore", "plan", &app, "--latest", "--to", &new])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let printed = stdout(&out);
    let hash = printed
        .lines()
        .find_map(|l| l.strip_prefix("hash: "))
        .expect("a hash line")
        .to_owned();
    assert_eq!(hash.len(), 64, "{printed}");
    for expected in [
        "backup: base_",
        "<escrowed SU password",
        "stolonctl",
        "never touched:",
        "new wal-g prefix:",
    ] {
        assert!(printed.contains(expected), "{expected} in {printed}");
    }
    for secret in ["demo-su-Zq81xKp2", "demo-repl-Lw73Hs0", "demo-op-Vb55nQe9"] {
        assert!(!text(&out).contains(secret), "{secret} printed");
    }

    // As JSON: the hash is SHA-256 of the printed plan's canonical form. (Not compared with the run above: the
    // emulator's archive grows in real time, and a longer WAL is another plan.)
    let out = run_off_runtime(cmd(&[
        "restore", "plan", &app, "--latest", "--to", &new, "--json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["hash"],
        walden_core::restore::hash::hash(&doc["plan"]).as_str()
    );
    assert!(doc["plan"]["steps"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));

    // A taken name, an unknown region and 256 MB: refused with all three, exit 3.
    let out = run_off_runtime(cmd(&[
        "restore", "plan", &app, "--latest", "--to", &app, "--region", "xyz", "--memory", "256",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    for code in ["[name_taken]", "[unknown_region]", "[memory_too_small]"] {
        assert!(text(&out).contains(code), "{code} in {}", text(&out));
    }

    // Audited, and nothing created.
    let pool = walden_core::db::open(&data).await.unwrap();
    let rows = audit::query(&pool, &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    let plans: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "restore.plan")
        .map(|r| r.outcome.as_str())
        .collect();
    assert_eq!(plans.iter().filter(|o| **o == "ok").count(), 2, "{plans:?}");
    assert_eq!(
        plans.iter().filter(|o| **o == "failed").count(),
        1,
        "{plans:?}"
    );
    let apps_after = run_off_runtime(cmd(&["fly", "apps", "--org", &info.org])).await;
    assert_eq!(stdout(&apps_before), stdout(&apps_after), "no app created");
}
