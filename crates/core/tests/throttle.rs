//! The credential limiter on a real SQLite file: it survives a restart (reopening the file) and its table
//! stays bounded (security review L5).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use secrecy::{ExposeSecret, SecretString};
use walden_core::audit::{Actor, RequestMeta};
use walden_core::db;
use walden_core::users::throttle::{unix_now, CredentialKey, Throttle, ThrottlePolicy};
use walden_core::users::{totp, Accounts, HashParams, Hasher, LoginError, Role};

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

/// Security review M2: "enter the code" (a right password without its code) is charged like any failure,
/// so it confirms a password no more cheaply than a full sign-in.
#[tokio::test]
async fn a_code_required_reply_is_charged_like_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let acc = accounts(&pool)
        .with_keyring(walden_core::keyring::Keyring::generate().unwrap())
        .with_throttle_policy(ThrottlePolicy {
            pair_max: 2,
            ..ThrottlePolicy::default()
        });
    let user = acc
        .create_user(&Actor::cli(), &meta(), "vera", &PW.into(), Role::Viewer)
        .await
        .unwrap();
    let enrolment = acc
        .begin_totp(&user.actor(), &meta(), &PW.into(), None)
        .await
        .unwrap();
    let secret = totp::secret_from_base32(enrolment.secret_base32.expose_secret()).unwrap();
    let first = totp::code_at(&secret, totp::unix_now() - 30).unwrap();
    acc.confirm_totp(&user.actor(), &meta(), &first)
        .await
        .unwrap();
    for _ in 0..2 {
        let err = acc
            .authenticate(&meta(), "vera", &PW.into(), None)
            .await
            .unwrap_err();
        assert!(matches!(err, LoginError::TotpRequired), "{err}");
    }
    let code = totp::code_at(&secret, totp::unix_now()).unwrap();
    let err = acc
        .authenticate(&meta(), "vera", &PW.into(), Some(&code))
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::Throttled), "{err}");
}

/// A burst of concurrent guesses cannot overrun the limit: each is counted before it is checked.
#[tokio::test]
async fn concurrent_guesses_are_counted_one_after_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let acc = accounts(&pool);
    acc.create_user(&Actor::cli(), &meta(), "wes", &PW.into(), Role::Viewer)
        .await
        .unwrap();
    let guesses: Vec<_> = (0..20)
        .map(|n| {
            let acc = acc.clone();
            tokio::spawn(async move {
                let guess = SecretString::from(format!("guess number {n}"));
                acc.authenticate(&meta(), "wes", &guess, None).await
            })
        })
        .collect();
    let (mut wrong, mut throttled) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap() {
            Err(LoginError::InvalidCredentials) => wrong += 1,
            Err(LoginError::Throttled) => throttled += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((wrong, throttled), (5, 15));
}
