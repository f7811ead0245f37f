//! `walden user …` and `walden audit …` as a user runs them: a real binary on a real data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn walden(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walden"));
    for var in ["WALDEN_BIND", "FLY_API_TOKEN", "WALDEN_LOG_FORMAT"] {
        cmd.env_remove(var);
    }
    cmd.env("WALDEN_DATA_DIR", data);
    cmd
}

/// Run with `stdin` piped in (not a terminal: one line is read).
fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn first_admin_from_piped_stdin_then_verify_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let mut cmd = walden(&data);
    cmd.args(["user", "add", "--admin", "alice"]);
    let out = run_with_stdin(cmd, b"correct horse battery staple\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("added alice (admin)"),
        "{}",
        stdout(&out)
    );

    let mut cmd = walden(&data);
    cmd.args(["user", "add", "--role", "operator", "bob"]);
    let out = run_with_stdin(cmd, b"another fine passphrase\n");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = walden(&data).args(["user", "list"]).output().unwrap();
    let list = stdout(&out);
    assert!(list.contains("alice") && list.contains("admin"), "{list}");
    assert!(list.contains("bob") && list.contains("operator"), "{list}");

    let out = walden(&data).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("audit log intact: 2 rows"),
        "{}",
        stdout(&out)
    );

    let out = walden(&data)
        .args(["audit", "export", "--format", "jsonl"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "user.create");
    assert!(lines[0]["actor_name"]
        .as_str()
        .unwrap()
        .starts_with("(system:cli"));
    assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);
    // The password is nowhere in the export.
    assert!(!stdout(&out).contains("horse"));

    let csv_path = dir.path().join("audit.csv");
    let out = walden(&data)
        .args([
            "audit",
            "export",
            "--format",
            "csv",
            "--since",
            "2000-01-01",
            "-o",
        ])
        .arg(&csv_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert!(csv.starts_with("id,at,actor_id,actor_name,action"), "{csv}");
    assert_eq!(csv.lines().count(), 3);

    let out = walden(&data)
        .args([
            "audit",
            "export",
            "--format",
            "csv",
            "--since",
            "2999-01-01",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).lines().count(), 1, "header only");
}

#[test]
fn bad_input_is_one_clear_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, stdin, needle) in [
        (
            &["user", "add", "carol"][..],
            &b"short\n"[..],
            "at least 12",
        ),
        (
            &["user", "add", "carol"],
            b"password1234\n",
            "commonly used",
        ),
        (
            &["user", "add", "carol"],
            b"\xff\xfe not utf-8 at all\n",
            "UTF-8",
        ),
        (&["user", "add", "carol"], b"", "no password"),
        (&["user", "add", "bad name"], b"a fine passphrase\n", "name"),
    ] {
        let mut cmd = walden(&data);
        cmd.args(args);
        let out = run_with_stdin(cmd, stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("error:") && lines[0].contains(needle),
            "{lines:?}"
        );
    }
    let out = walden(&data)
        .args(["user", "add", "--role", "root", "dan"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("viewer, operator or admin"),
        "{}",
        stderr(&out)
    );

    let out = walden(&data).args(["user", "list"]).output().unwrap();
    assert!(stdout(&out).contains("no users yet"), "{}", stdout(&out));
    let out = walden(&data).args(["audit", "verify"]).output().unwrap();
    assert!(stdout(&out).contains("empty"), "{}", stdout(&out));
}

#[test]
fn verify_exits_3_on_a_tampered_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["erin", "fred", "gail"] {
        let mut cmd = walden(&data);
        cmd.args(["user", "add", name]);
        let out = run_with_stdin(cmd, b"a perfectly fine passphrase\n");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Tamper behind Walden's back: drop the trigger, edit row 2.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = walden_core::db::open(&data).await.unwrap();
        sqlx::query("DROP TRIGGER audit_log_no_update")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET actor_name = 'someone-else' WHERE id = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let out = walden(&data).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("BROKEN at row 2"), "{}", stdout(&out));
    let out = walden(&data)
        .args(["audit", "verify", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_broken"]["id"], 2);
    assert_eq!(report["first_broken"]["breakage"]["kind"], "altered");
}

#[test]
fn passwd_role_disable_enable_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = walden(&data);
    cmd.args(["user", "add", "--admin", "hana"]);
    assert!(run_with_stdin(cmd, b"a perfectly fine passphrase\n")
        .status
        .success());
    let mut cmd = walden(&data);
    cmd.args(["user", "add", "ivo"]);
    assert!(run_with_stdin(cmd, b"a perfectly fine passphrase\n")
        .status
        .success());

    let mut cmd = walden(&data);
    cmd.args(["user", "passwd", "IVO"]);
    let out = run_with_stdin(cmd, b"a new and better passphrase\n");
    assert!(out.status.success(), "{}", stderr(&out));

    let out = walden(&data)
        .args(["user", "set-role", "ivo", "operator"])
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("ivo is now operator"),
        "{}",
        stderr(&out)
    );
    let out = walden(&data)
        .args(["user", "disable", "ivo"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = walden(&data).args(["user", "list"]).output().unwrap();
    assert!(stdout(&out).contains("disabled"), "{}", stdout(&out));
    let out = walden(&data)
        .args(["user", "enable", "ivo"])
        .output()
        .unwrap();
    assert!(out.status.success());
    // The last admin cannot be disabled, even from the CLI.
    let out = walden(&data)
        .args(["user", "disable", "hana"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no enabled admin"),
        "{}",
        stderr(&out)
    );
    let out = walden(&data)
        .args(["user", "disable", "nobody"])
        .output()
        .unwrap();
    assert!(stderr(&out).contains("no user called"), "{}", stderr(&out));

    let out = walden(&data).args(["audit", "verify"]).output().unwrap();
    assert!(stdout(&out).contains("intact: 6 rows"), "{}", stdout(&out));
}
