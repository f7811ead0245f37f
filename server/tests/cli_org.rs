//! `walden org …` as an operator runs it: the real binary on a real data directory, pointed at an in-process
//! flysim (the demo org) through `FLY_FLAPS_BASE_URL`, the token piped on standard input, never in argv.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tokio_util::sync::CancellationToken;
use walden_core::audit::{self, AuditFilter};

const KEY: &str = "3333333333333333333333333333333333333333333333333333333333333333";

fn walden(data: &Path, base_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walden"));
    for var in [
        "WALDEN_BIND",
        "FLY_API_TOKEN",
        "FLY_API_HOSTNAME",
        "WALDEN_FLY_ORG",
        "WALDEN_LOG_FORMAT",
        "WALDEN_MASTER_KEY",
        "WALDEN_MASTER_KEY_FILE",
        "WALDEN_RETIRED_MASTER_KEYS",
        "WALDEN_RETIRED_MASTER_KEYS_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("WALDEN_DATA_DIR", data)
        .env("FLY_FLAPS_BASE_URL", base_url)
        .env("RUST_LOG", "trace");
    cmd
}

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

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn raw_database(data: &Path) -> Vec<u8> {
    let db: PathBuf = data.join(walden_core::db::DB_FILE);
    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(data.join(format!("{}-wal", walden_core::db::DB_FILE))) {
        bytes.extend(wal);
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_the_demo_org_from_stdin_lists_its_apps_and_tracks_its_cluster() {
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
    let with_key = |args: &[&str]| {
        let mut cmd = walden(&data, &url);
        cmd.env("WALDEN_MASTER_KEY", KEY).arg("org").args(args);
        cmd
    };
    let mut outputs = Vec::new();

    // Without a master key nothing is stored.
    let mut cmd = walden(&data, &url);
    cmd.args(["org", "add", "demo"]);
    let out = run(cmd, b"fm2_flysim_demo_org_token\n").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("WALDEN_MASTER_KEY"), "{}", text(&out));
    outputs.push(out);

    // A token Fly does not know.
    let out = run(with_key(&["add", "demo"]), b"fm2_wrong_token\n").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("wrong, expired or revoked"),
        "{}",
        text(&out)
    );
    outputs.push(out);

    // No token at all.
    let out = run(with_key(&["add", "demo"]), b"").await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no token"), "{}", text(&out));
    outputs.push(out);

    // The demo org's token, piped.
    let out = run(
        with_key(&["add", &info.org]),
        b"fm2_flysim_demo_org_token\n",
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("added organisation demo (Demo Org)"),
        "{}",
        text(&out)
    );
    outputs.push(out);

    let out = run(with_key(&["list"]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("demo\tDemo Org\tadded by (system:cli"));
    outputs.push(out);

    let out = run(with_key(&["check", "demo"]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("the token of demo is valid"),
        "{}",
        text(&out)
    );
    outputs.push(out);

    let out = run(with_key(&["apps", "demo"]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    let apps = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        apps.contains("demo-db\tstolon\tpostgres 14.6\tiad,ord"),
        "{apps}"
    );
    assert_eq!(apps.matches("\tleader").count(), 1, "{apps}");
    outputs.push(out);

    let out = run(with_key(&["track", "demo", &info.app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(out);
    let out = run(with_key(&["tracked"]), b"").await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("demo\tdemo-db\ttracked by (system:cli"),
        "{}",
        text(&out)
    );
    outputs.push(out);
    let out = run(with_key(&["untrack", "demo", &info.app]), b"").await;
    assert!(out.status.success(), "{}", text(&out));
    outputs.push(out);

    // The audit log names the CLI as the actor, for the changes and the refusals.
    let pool = walden_core::db::open(&data).await.unwrap();
    let rows = audit::query(&pool, &AuditFilter::default(), None, 100)
        .await
        .unwrap()
        .rows;
    let seen: Vec<(String, String)> = rows
        .iter()
        .rev()
        .map(|r| (r.action.clone(), r.outcome.clone()))
        .collect();
    let expected = [
        ("org.add", "failed"),
        ("org.add", "failed"),
        ("org.add", "ok"),
        ("org.validate", "ok"),
        ("cluster.track", "ok"),
        ("cluster.untrack", "ok"),
    ];
    assert_eq!(
        seen,
        expected.map(|(a, o)| (a.to_string(), o.to_string())),
        "no key and the unknown token are refused with a row each; no input is refused before the database"
    );
    assert!(rows.iter().all(|r| r.actor_name.starts_with("(system:cli")));
    pool.close().await;

    // The token is in no output (logs at trace level included), no audit row and not in the file or WAL.
    let raw = raw_database(&data);
    let token = "fm2_flysim_demo_org_token";
    assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()));
    assert!(!format!("{rows:?}").contains(token));
    for out in &outputs {
        assert!(!text(out).contains(token), "{}", text(out));
    }
    running.shutdown().await.unwrap();
}
