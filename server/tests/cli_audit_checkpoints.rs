//! `walden audit verify` with signed checkpoints, as an operator runs it: a real binary, a real data
//! directory and a real checkpoint directory (security review H1).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use walden_core::audit_checkpoints::{CheckpointKey, Checkpointer, Reason, Sink};

use cli_support::{add_user, stderr, stdout, walden};

mod cli_support;

/// `n` audit rows, written by the CLI as an operator would (`walden user add`).
fn add_users(data: &Path, names: &[&str]) {
    for name in names {
        add_user(data, name);
    }
}

fn new_key() -> (SecretString, CheckpointKey) {
    let secret = CheckpointKey::generate_hex().unwrap();
    let key = CheckpointKey::from_hex(&secret).unwrap();
    (secret, key)
}

/// Write one checkpoint of the log in `data` to `sink`, as the server's worker does.
fn checkpoint(data: &Path, sink: &Path, key: &CheckpointKey) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = walden_core::db::open(data).await.unwrap();
        let writer = Checkpointer::new(
            pool.clone(),
            key.clone(),
            Sink::directory(sink).unwrap(),
            Duration::from_secs(300),
            100,
        );
        writer.write(Reason::Interval).await.unwrap();
        pool.close().await;
    });
}

/// Raw SQL on the file behind Walden's back, as `sqlite3` would run it: one connection of its own, the
/// append-only triggers dropped and put back.
fn tamper(data: &Path, sql: &str) {
    use sqlx::Connection;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let options =
            sqlx::sqlite::SqliteConnectOptions::new().filename(data.join(walden_core::db::DB_FILE));
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        sqlx::raw_sql(&format!(
            "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete; {sql} \
             CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END; \
             CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END;"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
}

fn verify(data: &Path, sink: &Path, public_key: &str, extra: &[&str]) -> Output {
    walden(data)
        .args(["audit", "verify", "--checkpoints"])
        .arg(sink)
        .args(["--public-key", public_key])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn verify_checks_the_checkpoints_and_finds_a_tail_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (data, sink) = (dir.path().join("data"), dir.path().join("checkpoints"));
    add_users(&data, &["erin", "fred", "gail", "hugo"]);
    let (secret, key) = new_key();
    checkpoint(&data, &sink, &key);

    let out = verify(&data, &sink, &key.public_key_hex(), &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("audit log intact: 4 rows"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("checkpoints intact: 1 signed checkpoints"),
        "{}",
        stdout(&out)
    );

    // The key from the environment is trusted when no --public-key is given; `public-key` prints it.
    let out = walden(&data)
        .env("WALDEN_AUDIT_SIGNING_KEY", secret.expose_secret())
        .env("WALDEN_AUDIT_SINK", &sink)
        .args(["audit", "verify"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = walden(&data)
        .env("WALDEN_AUDIT_SIGNING_KEY", secret.expose_secret())
        .args(["audit", "public-key"])
        .output()
        .unwrap();
    assert_eq!(
        stdout(&out).trim(),
        format!("{} {}", key.id(), key.public_key_hex())
    );
    assert!(!stdout(&out).contains(secret.expose_secret()));

    // Another key's public key: the checkpoint is signed by an unknown key.
    let (_, stranger) = new_key();
    let out = verify(&data, &sink, &stranger.public_key_hex(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("unknown key"), "{}", stdout(&out));

    // Review H1: the last row cut and sqlite_sequence set back. The chain alone still says intact.
    tamper(
        &data,
        "DELETE FROM audit_log WHERE id = 4; UPDATE sqlite_sequence SET seq = 3 WHERE name = 'audit_log';",
    );
    let out = verify(&data, &sink, &key.public_key_hex(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("audit log intact: 3 rows"), "{text}");
    assert!(text.contains("checkpoints BROKEN"), "{text}");
    assert!(text.contains("CUT from the end"), "{text}");
    let out = verify(&data, &sink, &key.public_key_hex(), &["--json"]);
    assert_eq!(out.status.code(), Some(3));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rows"], 3);
    assert_eq!(report["checkpoints"]["findings"][0]["kind"], "cut");
    assert_eq!(report["checkpoints"]["findings"][0]["head_id"], 4);
}

#[test]
fn verify_finds_a_wiped_log() {
    let dir = tempfile::tempdir().unwrap();
    let (data, sink) = (dir.path().join("data"), dir.path().join("checkpoints"));
    add_users(&data, &["ivan", "jane"]);
    let (_, key) = new_key();
    checkpoint(&data, &sink, &key);
    tamper(
        &data,
        "DELETE FROM audit_log; DELETE FROM sqlite_sequence WHERE name = 'audit_log';",
    );
    let out = verify(&data, &sink, &key.public_key_hex(), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("audit log is empty"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("WIPED"), "{}", stdout(&out));
}

#[test]
fn without_checkpoints_verify_checks_the_chain_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_users(&data, &["kate"]);
    let out = walden(&data).args(["audit", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("checkpoints NOT checked"),
        "{}",
        stdout(&out)
    );

    // A sink named explicitly but no key to trust it with: cannot check (exit 1, one line).
    let out = walden(&data)
        .args(["audit", "verify", "--checkpoints"])
        .arg(dir.path().join("checkpoints"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("--public-key"), "{}", stderr(&out));

    // A public key that is not one is refused by the argument parser.
    let out = walden(&data)
        .args(["audit", "verify", "--public-key", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// After a master-key rotation the checkpoints signed with the key derived from the old master key stay
/// trusted while the old key is given as retired (`walden keys rotate`'s procedure keeps it until the end).
#[test]
fn checkpoints_signed_before_a_master_key_rotation_verify_with_the_retired_key() {
    let dir = tempfile::tempdir().unwrap();
    let (data, sink) = (dir.path().join("data"), dir.path().join("checkpoints"));
    add_users(&data, &["kora", "lars"]);
    let (old, new) = ("1a".repeat(32), "2b".repeat(32));
    let ring =
        walden_core::keyring::Keyring::from_master_hex(&SecretString::from(old.clone())).unwrap();
    checkpoint(&data, &sink, &CheckpointKey::derived_from(&ring).unwrap());

    let run = |retired: Option<&str>| {
        let mut cmd = walden(&data);
        cmd.env("WALDEN_MASTER_KEY", &new)
            .env("WALDEN_AUDIT_SINK", &sink)
            .args(["audit", "verify"]);
        if let Some(retired) = retired {
            cmd.env("WALDEN_RETIRED_MASTER_KEYS", retired);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("unknown key"), "{}", stdout(&out));
    let out = run(Some(&old));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
}
