//! The credential limiter on a real SQLite file: it survives a restart (reopening the file) and its table
//! stays bounded (security review L5).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use secrecy::SecretString;
use walden_core::audit::{Actor, RequestMeta};
use walden_core::db;
use walden_core::users::throttle::{unix_now, CredentialKey, Throttle, ThrottlePolicy};
use walden_core::users::{Accounts, HashParams, Hasher, LoginError, Role};

const PW: &str = "a perfectly fine passphrase";

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some("req-1".into()),
        client_ip: Some("203.0.113.7".into()),
    }
}

fn accounts(pool: &sqlx::SqlitePool) -> Accounts {
    Accounts::new(pool.clone(), Hasher::new(HashParams::TEST).unwrap())
}

#[tokio::test]
async fn throttling_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let acc = accounts(&pool);
    acc.create_user(&Actor::cli(), &meta(), "uma", &PW.into(), Role::Admin)
        .await
        .unwrap();
    for _ in 0..5 {
        let err = acc
            .authenticate(&meta(), "uma", &SecretString::from("guess guess"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::InvalidCredentials), "{err}");
    }
    pool.close().await;

    // A new process on the same file still refuses this client, even the right password.
    let pool = db::open(dir.path()).await.unwrap();
    let acc = accounts(&pool);
    let err = acc
        .authenticate(&meta(), "uma", &PW.into(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::Throttled), "{err}");
    // Another client is not this one.
    let elsewhere = RequestMeta {
        client_ip: Some("198.51.100.9".into()),
        ..meta()
    };
    acc.authenticate(&elsewhere, "uma", &PW.into(), None)
        .await
        .unwrap();
}

async fn rows(pool: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM credential_failures")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_failures_are_pruned_and_a_success_clears_its_pair() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let throttle = Throttle::new(pool.clone(), ThrottlePolicy::default());
    let now = unix_now();
    let two_hours_ago = now - 2 * 3600;
    for n in 0..20 {
        let key = CredentialKey::new(format!("user:{n}"), Some("198.51.100.1"));
        // Twenty failures two hours ago, each from its own account.
        throttle
            .reserve(&key, two_hours_ago)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(rows(&pool).await, 20);
    // The next write prunes what no window looks at any more.
    let key = CredentialKey::new("user:1".into(), Some("203.0.113.7"));
    let first = throttle.reserve(&key, now).await.unwrap().unwrap();
    assert_eq!(rows(&pool).await, 1);
    let _second = throttle.reserve(&key, now).await.unwrap().unwrap();
    assert_eq!(rows(&pool).await, 2);
    // A success takes its own charge back and clears the pair.
    let mut conn = pool.acquire().await.unwrap();
    throttle
        .succeeded(&mut conn, first, true, now)
        .await
        .unwrap();
    drop(conn);
    assert_eq!(rows(&pool).await, 0);
    // The maintenance worker's prune: nothing old is left, and a known client from long ago goes too.
    sqlx::query("UPDATE credential_known_clients SET at = ?")
        .bind(now - 31 * 24 * 3600)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(throttle.prune(now).await.unwrap(), 1);
}
