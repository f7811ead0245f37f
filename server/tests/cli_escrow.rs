//! `walden escrow …` as an operator runs it: the real binary on a real data directory, pointed at an
//! in-process flysim (the demo org and its seeded Stolon cluster) through `FLY_FLAPS_BASE_URL` and
//! `FLY_API_TOKEN`. No password in argv, in `list`'s output, in the logs at trace level or in the SQLite files;
//! `reveal` prints one value, only with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use support::walden;

use tokio_util::sync::CancellationToken;
use walden_core::audit::{self, AuditFilter};

/// The demo cluster's passwords (flysim `ClusterSeed::new`).
const SU: &str = "demo-su-Zq81xKp2";
const REPL: &str = "demo-repl-Lw73Hs0";
const OPERATOR: &str = "demo-op-Vb55nQe9";
/// Typed in by hand with `enter`.
const TYPED: &str = "typed-su-Hk29fQ";

/// Run `cmd` with `input` on standard input, off the runtime's threads (the emulator serves on them).
async fn run(mut cmd: Command, input: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn raw_database(data: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(data.join(walden_core::db::DB_FILE)).unwrap();
    if let Ok(wal) = std::fs::read(data.join(format!("{}-wal", walden_core::db::DB_FILE))) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captures_lists_proves_and_reveals_only_with_a_reason() {
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
    // Outputs that must hold no password (everything but the successful reveal's stdout).
    let mut quiet = Vec::new();

    // Not tracked: refused.
    let out = run(cmd(&["escrow", "capture", &app]), b"").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("is not tracked"), "{}", text(&out));
    quiet.push(text(&out));

    let out = run(cmd(&["org", "track", &info.org, &app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));

    // Capture with the environment's organisation implied, then unchanged.
    let out = run(cmd(&["escrow", "capture", &app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains(&format!("captured {}/{app}: version 1", info.org)),
        "{}",
        text(&out)
    );
    quiet.push(text(&out));
    let out = run(cmd(&["escrow", "capture", &info.org, &app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("unchanged, still version 1"),
        "{}",
        text(&out)
    );
    quiet.push(text(&out));

    let out = run(cmd(&["escrow", "prove", &info.org, &app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    for role in ["flypgadmin", "repluser", "postgres"] {
        assert!(
            stdout(&out).contains(&format!("{role}\tversion 1\topens")),
            "{}",
            text(&out)
        );
    }
    quiet.push(text(&out));

    let out = run(cmd(&["escrow", "list", &info.org, &app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    let listed = stdout(&out);
    assert!(listed.contains("version 1\t"), "{listed}");
    assert!(listed.contains("  SU_PASSWORD\t"), "{listed}");
    assert!(listed.contains("proof\tflypgadmin\tversion 1"), "{listed}");
    quiet.push(text(&out));

    // Reveal without a reason: refused (and audited), nothing printed.
    let out = run(
        cmd(&["escrow", "reveal", &info.org, &app, "SU_PASSWORD"]),
        b"",
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("give a reason"), "{}", text(&out));
    assert!(stdout(&out).is_empty(), "{}", text(&out));
    quiet.push(text(&out));

    // With a reason: the value, once, on stdout.
    let out = run(
        cmd(&[
            "escrow",
            "reveal",
            &app,
            "SU_PASSWORD",
            "--reason",
            "restore drill",
        ]),
        b"",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), format!("{SU}\n"));
    quiet.push(String::from_utf8_lossy(&out.stderr).into_owned());

    // Typed in by hand, from stdin.
    let input: &'static [u8] = Box::leak(
        format!("SU_PASSWORD={TYPED}\nREPL_PASSWORD={REPL}\nOPERATOR_PASSWORD={OPERATOR}\n")
            .into_bytes()
            .into_boxed_slice(),
    );
    let out = run(cmd(&["escrow", "enter", &info.org, &app]), input).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("version 2"), "{}", text(&out));
    quiet.push(text(&out));
    let out = run(cmd(&["escrow", "list", &info.org, &app]), b"").await;
    assert!(
        stdout(&out).contains("manual_machines_down"),
        "{}",
        text(&out)
    );
    quiet.push(text(&out));

    // The typed SU_PASSWORD does not open flypgadmin: the proof says so, exit code 2.
    let out = run(cmd(&["escrow", "prove", &info.org, &app]), b"").await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("flypgadmin\tversion 2\tFAILS"),
        "{}",
        text(&out)
    );
    quiet.push(text(&out));

    // The logs were on, at trace level (so their silence about values means something).
    assert!(
        quiet.iter().any(|o| o.contains("TRACE")),
        "no trace output: {quiet:?}"
    );
    for output in &quiet {
        for secret in [SU, REPL, OPERATOR, TYPED, flysim::DEMO_TOKEN] {
            assert!(!output.contains(secret), "{secret} in: {output}");
        }
    }
    let raw = raw_database(&data);
    for secret in [SU, REPL, OPERATOR, TYPED] {
        assert!(!contains(&raw, secret), "{secret} in the database files");
    }

    // The reveal and its refusal are in the audit log, the reason with it.
    let pool = walden_core::db::open(&data).await.unwrap();
    let rows = audit::query(&pool, &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    let reveals: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "escrow.reveal")
        .collect();
    assert_eq!(reveals.len(), 2, "{reveals:?}");
    assert!(reveals
        .iter()
        .any(|r| r.outcome == "ok" && r.reason.as_deref() == Some("restore drill")));
    assert!(reveals.iter().any(|r| r.outcome == "denied"));
}
