//! `walden keys …` and the invitation commands of `walden user …`, as an operator runs them: the real binary
//! on a real data directory, keys from the environment or files only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::path::Path;

use cli_support::{add_admin, run, stderr, stdout, walden};

use walden_core::keyring::Keyring;
use walden_core::seal::SealKey;

mod cli_support;

/// `(user id, totp_secret, totp_pending)`.
type SealedRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

const KEY_A: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY_B: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn key(hex: &str) -> SealKey {
    SealKey::from_hex(&hex.into()).unwrap()
}

/// The sealed TOTP values of every user, straight from the database file.
fn sealed(data: &Path) -> Vec<SealedRow> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = walden_core::db::open(data).await.unwrap();
        let rows = sqlx::query_as("SELECT id, totp_secret, totp_pending FROM users ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        rows
    })
}

fn seal_totp(data: &Path, ring: &Keyring, user_id: i64, column: &str) {
    let value = ring
        .seal(
            b"twenty bytes secret!",
            &format!("walden/totp/user/{user_id}"),
        )
        .unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = walden_core::db::open(data).await.unwrap();
        sqlx::query(&format!("UPDATE users SET {column} = ? WHERE id = ?"))
            .bind(value)
            .bind(user_id)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
}

#[test]
fn rotate_reseals_under_the_new_key_once_and_refuses_what_it_cannot_open() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_admin(&data, "alice");
    add_admin(&data, "bob");
    let ring_a = Keyring::new(key(KEY_A));
    seal_totp(&data, &ring_a, 1, "totp_secret");
    seal_totp(&data, &ring_a, 2, "totp_pending");
    let (a, b) = (key(KEY_A).id().to_string(), key(KEY_B).id().to_string());

    // Without a master key: a clear refusal.
    let out = run(walden(&data).args(["keys", "status"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no master key"), "{}", stderr(&out));
    // Never on the command line.
    let out = run(walden(&data).args(["keys", "rotate", "--master-key", KEY_B]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // B alone cannot open A's values: the rotation is refused, and nothing changes.
    let before = sealed(&data);
    let out = run(walden(&data)
        .args(["keys", "rotate"])
        .env("WALDEN_MASTER_KEY", KEY_B));
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("2 sealed value(s) cannot be opened"), "{err}");
    assert!(
        err.contains(&a) && err.contains("nothing was changed"),
        "{err}"
    );
    assert!(!err.contains(KEY_A) && !err.contains(KEY_B), "{err}");
    assert_eq!(sealed(&data), before);

    let out = run(walden(&data)
        .args(["keys", "status"])
        .env("WALDEN_MASTER_KEY", KEY_B));
    assert!(out.status.success(), "{}", stderr(&out));
    let status = stdout(&out);
    assert!(status.contains(&format!("master key: {b}")), "{status}");
    assert!(
        status.contains(&format!(
            "users.totp_secret: 1 sealed with {a} (unknown key)"
        )),
        "{status}"
    );
    assert!(
        status.contains("2 value(s) not under the master key"),
        "{status}"
    );

    // B with A retired (from a file): everything is re-sealed under B.
    let retired = dir.path().join("retired");
    std::fs::write(&retired, format!("{KEY_A}\n")).unwrap();
    let out = run(walden(&data)
        .args(["keys", "rotate", "--retired-master-keys-file"])
        .arg(&retired)
        .env("WALDEN_MASTER_KEY", KEY_B));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "re-sealed 2 value(s) under the master key {b} (2 from {a})"
        )),
        "{}",
        stdout(&out)
    );
    let only_b = Keyring::new(key(KEY_B));
    for (id, secret, pending) in sealed(&data) {
        for value in [secret, pending].into_iter().flatten() {
            let opened = only_b
                .open(&value, &format!("walden/totp/user/{id}"))
                .unwrap();
            assert_eq!(&opened[..], b"twenty bytes secret!");
        }
    }

    // Again, from the environment this time: nothing to do, nothing written.
    let after = sealed(&data);
    let out = run(walden(&data)
        .args(["keys", "rotate"])
        .env("WALDEN_MASTER_KEY", KEY_B)
        .env("WALDEN_RETIRED_MASTER_KEYS", KEY_A));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing to do"), "{}", stdout(&out));
    assert_eq!(sealed(&data), after);
    let out = run(walden(&data)
        .args(["keys", "status"])
        .env("WALDEN_MASTER_KEY", KEY_B));
    assert!(
        stdout(&out).contains("every sealed value is under the master key"),
        "{}",
        stdout(&out)
    );

    // Both a variable and a file: refused.
    let out = run(walden(&data)
        .args(["keys", "rotate", "--retired-master-keys-file"])
        .arg(&retired)
        .env("WALDEN_MASTER_KEY", KEY_B)
        .env("WALDEN_RETIRED_MASTER_KEYS", KEY_A));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not both"), "{}", stderr(&out));

    // The log holds the refusal and the rotation, with key ids and never a key; the chain is intact.
    let out = run(walden(&data).args(["audit", "export", "--format", "jsonl"]));
    let rows: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "keys.rotate")
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "failed");
    assert_eq!(rows[1]["outcome"], "ok");
    assert!(rows[1]["actor_name"]
        .as_str()
        .unwrap()
        .contains("system:cli"));
    let text = stdout(&out);
    assert!(!text.contains(KEY_A) && !text.contains(KEY_B));
    assert!(text.contains(&a) && text.contains(&b));
    let out = run(walden(&data).args(["audit", "verify"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn invitations_are_made_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    add_admin(&data, "alice");

    let out = run(walden(&data).args(["user", "invites"]));
    assert!(
        stdout(&out).contains("no pending invitations"),
        "{}",
        stdout(&out)
    );

    let out = run(walden(&data).args(["user", "invite", "--role", "admin"]));
    assert!(out.status.success(), "{}", stderr(&out));
    let made = stdout(&out);
    assert!(made.contains("invitation 1 for a new admin"), "{made}");
    let token = made.split("token=").nth(1).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);

    // Admin links live hours, not weeks.
    let out = run(walden(&data).args(["user", "invite", "--role", "admin", "--hours", "25"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("24 hours"), "{}", stderr(&out));
    let out = run(walden(&data).args(["user", "invite", "--role", "viewer", "--hours", "100"]));
    assert!(out.status.success(), "{}", stderr(&out));

    let out = run(walden(&data).args(["user", "invites"]));
    let list = stdout(&out);
    assert!(!list.contains(&token), "{list}");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].trim_start().starts_with("1  admin"), "{list}");
    assert!(lines[1].trim_start().starts_with("2  viewer"), "{list}");
    assert!(lines[0].contains("(cli)"), "{list}");

    let out = run(walden(&data).args(["user", "revoke-invite", "1"]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("invitation 1 is revoked"));
    let out = run(walden(&data).args(["user", "revoke-invite", "1"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invitation 1: this invitation link is not valid"),
        "{}",
        stderr(&out)
    );
    let out = run(walden(&data).args(["user", "invites"]));
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));

    let out = run(walden(&data).args(["audit", "export", "--format", "jsonl"]));
    let outcomes: Vec<(String, String)> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"].as_str().unwrap().starts_with("invite."))
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("invite.create", "ok"),
        ("invite.create", "failed"),
        ("invite.create", "ok"),
        ("invite.revoke", "ok"),
        ("invite.revoke", "failed"),
    ];
    assert_eq!(
        outcomes,
        expected.map(|(a, o)| (a.to_owned(), o.to_owned()))
    );
}
