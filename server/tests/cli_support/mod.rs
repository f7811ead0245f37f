//! The `walden` binary as an operator runs it, shared by the CLI process tests: a command on a data directory
//! with none of the test runner's own Walden settings, run to completion, its output read as text.
// Each test crate that declares `mod cli_support;` uses part of this.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `walden` on the data directory `data`. Every `WALDEN_*` variable and `FLY_API_TOKEN` of the environment the
/// tests run in is removed, so a developer's or CI's own settings (a master key, a sink, a Fly token) never
/// change what a test sees; a test sets what it needs with `.env(…)`.
pub fn walden(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_walden"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("WALDEN_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("FLY_API_TOKEN");
    cmd.env("WALDEN_DATA_DIR", data);
    cmd
}

/// Runs `cmd` to completion with nothing on its standard input.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

/// Runs `cmd` to completion with `input` on its standard input (a passphrase typed at a prompt).
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The passphrase every user these tests add types at the prompt.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// `walden user add <name>` (one audit row), as an operator would type it; the command must succeed.
pub fn add_user(data: &Path, name: &str) {
    add(walden(data).args(["user", "add", name]));
}

/// `walden user add --admin <name>`; the command must succeed.
pub fn add_admin(data: &Path, name: &str) {
    add(walden(data).args(["user", "add", "--admin", name]));
}

fn add(cmd: &mut Command) {
    let out = run_with_input(cmd, format!("{PASSPHRASE}\n").as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
}
