//! The `walden` binary as a user runs it: bad input gives one clear line and a non-zero exit, signals stop it
//! cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

fn walden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walden"));
    for var in [
        "WALDEN_DATA_DIR",
        "WALDEN_BIND",
        "FLY_API_TOKEN",
        "WALDEN_LOG_FORMAT",
        "WALDEN_MASTER_KEY",
        "WALDEN_MASTER_KEY_FILE",
        "WALDEN_SETUP_TOKEN",
        "WALDEN_SETUP_TOKEN_FILE",
        "WALDEN_ALLOWED_HOSTS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Exactly one line on stderr, starting with `error:`, no panic.
fn assert_one_error_line(out: &Output, expect: &str) {
    let lines = stderr_lines(out);
    assert_eq!(lines.len(), 1, "expected one line, got {lines:#?}");
    assert!(lines[0].starts_with("error:"), "{lines:?}");
    assert!(lines[0].contains(expect), "{:?} lacks {expect:?}", lines[0]);
    assert!(!lines[0].contains("panicked"));
}

#[test]
fn an_unknown_flag_is_one_line_and_exit_2() {
    let out = walden().args(["serve", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_one_error_line(&out, "--no-such-flag");
}

/// Security review M7: the master key is never a flag (a flag is readable in /proc/*/cmdline by every process).
#[test]
fn the_master_key_is_not_accepted_as_a_flag() {
    let out = walden()
        .args(["serve", "--master-key", &"ab".repeat(32)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_one_error_line(&out, "--master-key");
}

#[test]
fn a_master_key_file_that_cannot_be_read_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-key");
    let out = walden()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--master-key-file")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_one_error_line(&out, "no-such-key");
}

#[test]
fn a_bad_bind_address_is_refused() {
    let out = walden()
        .args(["serve", "--bind", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_one_error_line(&out, "not-an-address");
}

#[test]
fn an_unusable_data_dir_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = walden()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(file.join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_one_error_line(&out, "cannot create the data directory");
}

#[test]
fn an_occupied_port_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = walden()
        .args(["serve", "--bind", &addr, "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_one_error_line(&out, &format!("cannot listen on {addr}"));
}

#[test]
fn a_corrupt_database_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("walden.db"), vec![0x5a; 16384]).unwrap();
    let out = walden()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_one_error_line(&out, "is not a Walden database");
}

#[test]
fn migrate_creates_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = walden()
        .args(["migrate", "--data-dir"])
        .arg(dir.path().join("fresh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("is up to date"));
    assert!(dir.path().join("fresh/walden.db").exists());
}

#[test]
fn help_lists_the_commands() {
    let out = walden().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve") && text.contains("migrate"), "{text}");
}

/// Start `walden serve` on a free port and wait for its "listening" line.
fn start_server(
    dir: &std::path::Path,
) -> (std::process::Child, BufReader<std::process::ChildStderr>) {
    let (child, stderr, _) = start_server_at(dir);
    (child, stderr)
}

/// [`start_server`], also returning the `host:port` it listens on.
fn start_server_at(
    dir: &std::path::Path,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStderr>,
    String,
) {
    let mut child = walden()
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        let n = stderr.read_line(&mut line).unwrap();
        assert!(n > 0, "server exited before listening");
        if let Some((_, rest)) = line.split_once("Walden is listening on http://") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (child, stderr, addr)
}

fn stop_with(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut stderr) = start_server(dir.path());
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit {exit:?}; log: {rest}");
    assert!(rest.contains("shutting down"), "{rest}");
    assert!(rest.contains("stopped cleanly"), "{rest}");
    assert!(
        !dir.path().join("walden.db-wal").exists(),
        "database not closed cleanly"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    stop_with("-TERM");
}

#[test]
fn sigint_stops_the_server_cleanly() {
    stop_with("-INT");
}

/// One plain HTTP/1.1 request; the status line of the answer.
fn get_status_line(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("no answer").to_owned()
}

#[test]
fn a_closed_log_pipe_neither_hangs_requests_nor_blocks_shutdown() {
    // The process that read the log is gone (a crashed log shipper, `walden serve | head`): writing a log line
    // now fails. Requests are still answered and SIGTERM still stops the server.
    let dir = tempfile::tempdir().unwrap();
    let (mut child, stderr, addr) = start_server_at(dir.path());
    drop(stderr);
    assert!(get_status_line(&addr, "/nope").contains(" 404 "));
    assert!(get_status_line(&addr, "/").contains(" 200 "));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(exit.success(), "exit {exit:?}");
}

/// Start `walden serve` with both outputs piped (and `token` as WALDEN_SETUP_TOKEN, if any); stop it with SIGTERM
/// once it listens; its standard output and its log.
fn serve_and_stop(dir: &std::path::Path, token: Option<&str>) -> (String, String) {
    use std::io::Read;
    let mut cmd = walden();
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.env("WALDEN_SETUP_TOKEN", token);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("Walden is listening on") {
        let n = stderr.read_line(&mut log).unwrap();
        assert!(n > 0, "server exited before listening: {log}");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    stderr.read_to_string(&mut log).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success(), "{log}");
    (out, log)
}

/// Security review H3: a console without users prints a one-time setup link on standard output (never in the
/// log); with WALDEN_SETUP_TOKEN set, it prints nothing.
#[test]
fn a_fresh_console_prints_its_setup_link_on_standard_output_only() {
    let dir = tempfile::tempdir().unwrap();
    let (out, log) = serve_and_stop(dir.path(), None);
    let link = out
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:") && w.contains("/setup?token="))
        .unwrap_or_else(|| panic!("no setup link in {out:?}"));
    let token = link.split_once("token=").unwrap().1;
    assert_eq!(token.len(), 64, "{link}");
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{link}");
    assert!(!log.contains(token), "the token is not logged");
    assert!(log.contains("setup link"), "the log points to it: {log}");

    let dir = tempfile::tempdir().unwrap();
    let (out, _) = serve_and_stop(dir.path(), Some("an operator's setup token"));
    assert!(!out.contains("token="), "{out}");
    let (status, log) = {
        let dir = tempfile::tempdir().unwrap();
        let out = walden()
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("WALDEN_SETUP_TOKEN", "short")
            .output()
            .unwrap();
        (out.status, stderr_lines(&out).join("\n"))
    };
    assert!(!status.success());
    assert!(log.contains("WALDEN_SETUP_TOKEN"), "{log}");
}
