//! `walden restore` as operators run it: the real binary on a real data directory, pointed at an in-process
//! flysim (the demo org and its seeded Stolon cluster, tracked and escrowed through the CLI). A plan prints its
//! hash and steps with every secret masked; a refusal prints every reason and exits 3; each is audited as
//! `restore.plan`; nothing is created on the emulator. With approvals required, a plan runs only after another
//! user approved it; `run` prints each step until the run stops, `status` shows it, and `cancel` destroys
//! exactly what it created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use flysim::DemoInfo;
use support::{run_off_runtime, walden};
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta};
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

/// The demo emulator with its cluster tracked and escrowed through the CLI, and a console's data directory.
struct Demo {
    data: PathBuf,
    url: String,
    info: DemoInfo,
    _keep: (flysim::Running, tempfile::TempDir),
}

impl Demo {
    async fn start() -> Demo {
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
        let demo = Demo {
            data: dir.path().join("data"),
            url: running.base_url.clone(),
            info,
            _keep: (running, dir),
        };
        for setup in [
            vec!["org", "track", &demo.info.org, &demo.info.app],
            vec!["escrow", "capture", &demo.info.app],
        ] {
            let out = run_off_runtime(demo.cmd(&setup)).await;
            assert!(out.status.success(), "{}", text(&out));
        }
        demo
    }

    /// `walden ARGS` on this console.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = walden(&self.data, &self.url);
        cmd.args(args);
        cmd
    }

    /// `walden ARGS` run by the CLI user `user` (`$USER`, the audit log's `cli:<user>`).
    fn as_user(&self, user: &str, args: &[&str]) -> Command {
        let mut cmd = self.cmd(args);
        cmd.env("USER", user);
        cmd
    }

    async fn audited(&self, action: &str, outcome: &str) -> usize {
        let pool = walden_core::db::open(&self.data).await.unwrap();
        let n = audit::query(&pool, &AuditFilter::default(), None, 5000)
            .await
            .unwrap()
            .rows
            .iter()
            .filter(|r| r.action == action && r.outcome == outcome)
            .count();
        pool.close().await;
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_print_the_hash_and_refusals_exit_3_with_every_reason() {
    let demo = Demo::start().await;
    let (data, info) = (&demo.data, &demo.info);
    let app = info.app.clone();
    let cmd = |args: &[&str]| demo.cmd(args);
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
    let pool = walden_core::db::open(data).await.unwrap();
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

/// `--assert SQL --assert-db DB` reach the plan's verification step; a statement that is not one read-only
/// query is refused (exit 3). `--into EXISTING_APP` restores into an existing cluster: the source itself and an
/// app that does not exist are refused with their reasons (exit 3); `--into` with `--to`, or `--assert-db`
/// without `--assert`, is a usage error (exit 2). Nothing is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_flags_for_an_assertion_and_an_existing_cluster() {
    let demo = Demo::start().await;
    let app = demo.info.app.clone();
    let cmd = |args: &[&str]| demo.cmd(args);
    let apps_before = run_off_runtime(cmd(&["fly", "apps", "--org", &demo.info.org])).await;
    let new = format!("{app}-checked");
    let out = run_off_runtime(cmd(&[
        "restore",
        "plan",
        &app,
        "--latest",
        "--to",
        &new,
        "--assert",
        "select count(*) >= 1 from events",
        "--assert-db",
        "app",
        "--json",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let verify = doc["plan"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "verify")
        .cloned()
        .unwrap();
    assert_eq!(verify["assertion"], "select count(*) >= 1 from events");
    assert_eq!(verify["database"], "app");

    let out = run_off_runtime(cmd(&[
        "restore",
        "plan",
        &app,
        "--latest",
        "--to",
        &new,
        "--assert",
        "delete from events",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("[bad_assertion]"), "{}", text(&out));

    for (into, code) in [
        (app.as_str(), "[into_source]"),
        ("no-such-db", "[no_such_app]"),
    ] {
        let out =
            run_off_runtime(cmd(&["restore", "plan", &app, "--latest", "--into", into])).await;
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        assert!(text(&out).contains(code), "{code} in {}", text(&out));
    }

    for usage in [
        vec![
            "restore", "plan", &app, "--latest", "--to", &new, "--into", "other-db",
        ],
        vec![
            "restore",
            "plan",
            &app,
            "--latest",
            "--to",
            &new,
            "--assert-db",
            "app",
        ],
        vec!["restore", "plan", &app, "--latest"],
    ] {
        let out = run_off_runtime(cmd(&usage)).await;
        assert_eq!(out.status.code(), Some(2), "{usage:?}: {}", text(&out));
    }
    let apps_after = run_off_runtime(cmd(&["fly", "apps", "--org", &demo.info.org])).await;
    assert_eq!(stdout(&apps_before), stdout(&apps_after), "no app created");
}

/// The line of `out` starting with `prefix`, without it.
fn line_after(out: &str, prefix: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("a line starting {prefix:?} in {out}"))
        .to_owned()
}

/// With restore approvals required (an admin setting, set here through core): alice plans; her run is refused
/// until another user approves, and she cannot approve her own plan; bob approves; alice's `run` prints each
/// step until the restore is done (verified, its first base backup pushed); `status` lists it and shows its
/// steps as JSON; `cancel` of a finished restore is refused and destroys nothing (a cancel's clean-up is
/// `restore_control.rs`'s). Every approval and refusal is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_run_status_and_cancel_through_the_cli() {
    let demo = Demo::start().await;
    let app = demo.info.app.clone();
    let new = format!("{app}-cli-run");
    let pool = walden_core::db::open(&demo.data).await.unwrap();
    walden_core::settings::set_bool(
        &pool,
        &Actor::cli(),
        &RequestMeta::default(),
        walden_core::settings::REQUIRE_RESTORE_APPROVAL,
        true,
    )
    .await
    .unwrap();
    pool.close().await;

    let out = run_off_runtime(demo.as_user(
        "alice",
        &["restore", "plan", &app, "--latest", "--to", &new],
    ))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let hash = line_after(&stdout(&out), "hash: ");
    let run_args = ["restore", "run", "--plan", &hash, "--confirm", &new];

    let out = run_off_runtime(demo.as_user("alice", &run_args)).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("second person's approval"),
        "{}",
        text(&out)
    );
    let out = run_off_runtime(demo.as_user("alice", &["restore", "approve", &hash])).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("author cannot approve"),
        "{}",
        text(&out)
    );
    let out = run_off_runtime(demo.as_user("bob", &["restore", "approve", &hash])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains("approved plan"), "{}", text(&out));

    let out = run_off_runtime(demo.as_user("alice", &run_args)).await;
    let printed = stdout(&out);
    let code = out.status.code();
    assert_eq!(code, Some(0), "{}", text(&out));
    let run = line_after(&printed, "run ")
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    for expected in [
        "step 1/",
        "create_app: started",
        "create_app: done",
        "create_machine: done",
        "wait: done",
        "pitr_progress: done",
        "verify: done",
        "backup_push: done",
    ] {
        assert!(printed.contains(expected), "{expected} in {printed}");
    }
    for secret in ["demo-su-Zq81xKp2", "demo-repl-Lw73Hs0", "demo-op-Vb55nQe9"] {
        assert!(!text(&out).contains(secret), "{secret} printed");
    }

    let out = run_off_runtime(demo.cmd(&["restore", "status"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stdout(&out).contains(&run), "{}", text(&out));
    let out = run_off_runtime(demo.cmd(&["restore", "status", &run, "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["id"], run.as_str());
    assert!(view["steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["kind"] == "wait" && s["status"] == "done"));

    let out = run_off_runtime(demo.as_user("bob", &["restore", "cancel", &run])).await;
    assert!(!out.status.success(), "{}", text(&out));
    let apps = run_off_runtime(demo.cmd(&["fly", "apps", "--org", &demo.info.org])).await;
    assert!(stdout(&apps).contains(&app), "{}", text(&apps));
    assert!(stdout(&apps).contains(&new), "{}", text(&apps));

    assert_eq!(demo.audited("restore.approve", "ok").await, 1);
    assert_eq!(demo.audited("restore.approve", "denied").await, 1);
    assert_eq!(demo.audited("restore.run.start", "failed").await, 1);
    assert_eq!(demo.audited("restore.run.cancel", "ok").await, 0);
    assert_eq!(demo.audited("restore.run.done", "ok").await, 1);
}
