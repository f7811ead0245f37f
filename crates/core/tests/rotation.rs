//! Master-key rotation (`walden_core::rotation`) against a real SQLite file: values sealed with key A are
//! re-sealed under key B with A retired, then open under B alone; a second rotation is a no-op; a value no
//! key opens refuses the rotation without changing anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use walden_core::audit::{self, Actor, AuditFilter, RequestMeta};
use walden_core::db;
use walden_core::keyring::Keyring;
use walden_core::rotation::{self, RotationError, Sealer};
use walden_core::seal::SealKey;
use walden_core::users::{totp, Accounts, HashParams, Hasher, LoginError, Role, User};

/// `(user id, totp_secret, totp_pending)`.
type SealedRow = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

const PW: &str = "a perfectly fine passphrase";

fn pw() -> SecretString {
    SecretString::from(PW)
}

fn meta() -> RequestMeta {
    RequestMeta::default()
}

fn accounts(pool: &SqlitePool, ring: &Keyring) -> Accounts {
    Accounts::new(pool.clone(), Hasher::new(HashParams::TEST).unwrap()).with_keyring(ring.clone())
}

async fn add(acc: &Accounts, name: &str) -> User {
    acc.create_user(&Actor::cli(), &meta(), name, &pw(), Role::Operator)
        .await
        .unwrap()
}

/// Every sealed column's values, by user id, in one list (to compare before and after).
async fn sealed_values(pool: &SqlitePool) -> Vec<SealedRow> {
    sqlx::query_as("SELECT id, totp_secret, totp_pending FROM users ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn rotation_rows(pool: &SqlitePool) -> Vec<audit::AuditRow> {
    audit::query(
        pool,
        &AuditFilter {
            action: Some("keys.rotate".into()),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap()
    .rows
}

/// A database with, under key A: a confirmed TOTP secret (kim), a pending one (lee), and a pending one in
/// format version 1 from before key ids (max).
async fn seeded(pool: &SqlitePool, a: &SealKey) -> (User, Vec<u8>) {
    let acc = accounts(pool, &Keyring::new(a.clone()));
    let kim = add(&acc, "kim").await;
    let enrol = acc
        .begin_totp(&kim.actor(), &meta(), &pw(), None)
        .await
        .unwrap();
    let secret = totp_rs::Secret::try_from_base32(enrol.secret_base32.expose_secret())
        .unwrap()
        .as_ref()
        .to_vec();
    let code = totp::code_at(&secret, totp::unix_now() - 30).unwrap();
    acc.confirm_totp(&kim.actor(), &meta(), &code)
        .await
        .unwrap();
    let lee = add(&acc, "lee").await;
    acc.begin_totp(&lee.actor(), &meta(), &pw(), None)
        .await
        .unwrap();
    let max = add(&acc, "max").await;
    let legacy = a
        .seal(b"legacy secret", &format!("walden/totp/user/{}", max.id))
        .unwrap();
    sqlx::query("UPDATE users SET totp_pending = ? WHERE id = ?")
        .bind(legacy)
        .bind(max.id)
        .execute(pool)
        .await
        .unwrap();
    (kim, secret)
}

/// A code that is not the current one (so a login with it must open the secret to refuse it).
fn wrong_code(secret: &[u8]) -> String {
    let now = totp::unix_now();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| {
            (-1..=1).all(|step: i64| {
                totp::code_at(secret, (now as i64 + step * 30) as u64).unwrap() != *c
            })
        })
        .unwrap()
}

#[tokio::test]
async fn rotate_reseals_everything_under_the_new_key_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let a = SealKey::generate().unwrap();
    let (_kim, secret) = seeded(&pool, &a).await;
    let b = SealKey::generate().unwrap();
    let ring = Keyring::new(b.clone()).with_retired(a.clone());

    let before = rotation::status(&pool, &ring, &Actor::cli()).await.unwrap();
    assert_eq!(before.pending(), 3);
    assert_eq!(
        before.columns["users.totp_pending"][&Sealer::Legacy],
        1,
        "{before:?}"
    );

    let report = rotation::rotate(&pool, &ring, &Actor::cli(), &meta())
        .await
        .unwrap();
    assert_eq!(report.total(), 3);
    assert_eq!(report.primary, b.id());
    assert_eq!(report.resealed[&Sealer::Key(a.id().to_string())], 2);
    assert_eq!(report.resealed[&Sealer::Legacy], 1);

    // Everything is under B now, and opens with B alone.
    let only_b = Keyring::new(b.clone());
    let after = rotation::status(&pool, &only_b, &Actor::cli())
        .await
        .unwrap();
    assert_eq!(after.pending(), 0, "{after:?}");
    for (id, secret_col, pending_col) in sealed_values(&pool).await {
        for sealed in [secret_col, pending_col].into_iter().flatten() {
            assert_eq!(Keyring::key_id_of(&sealed), Some(b.id()));
            only_b
                .open(&sealed, &format!("walden/totp/user/{id}"))
                .unwrap();
        }
    }
    // Through the account service too: kim's code is checked (not an internal error) under B alone.
    let err = accounts(&pool, &only_b)
        .authenticate(&meta(), "kim", &pw(), Some(&wrong_code(&secret)))
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::TotpInvalid), "{err:?}");
    let code = totp::code_at(&secret, totp::unix_now()).unwrap();
    let ok = accounts(&pool, &only_b)
        .authenticate(&meta(), "kim", &pw(), Some(&code))
        .await;
    assert!(
        ok.is_ok() || matches!(ok, Err(LoginError::TotpInvalid)),
        "{ok:?}"
    );

    // One audit row, with key ids and counts only.
    let rows = rotation_rows(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "ok");
    let detail = rows[0].detail.clone().unwrap();
    assert!(detail.contains(&b.id().to_string()), "{detail}");
    assert!(detail.contains(&a.id().to_string()), "{detail}");
    assert!(!detail.contains("legacy secret"), "{detail}");

    // Again: nothing to do, nothing written.
    let values = sealed_values(&pool).await;
    let again = rotation::rotate(&pool, &ring, &Actor::cli(), &meta())
        .await
        .unwrap();
    assert_eq!(again.total(), 0);
    assert_eq!(again.audit_id, None);
    assert_eq!(sealed_values(&pool).await, values);
    assert_eq!(rotation_rows(&pool).await.len(), 1);
    let again = rotation::rotate(&pool, &only_b, &Actor::cli(), &meta())
        .await
        .unwrap();
    assert_eq!(again.total(), 0);
}

#[tokio::test]
async fn a_value_no_key_opens_refuses_the_rotation_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let a = SealKey::generate().unwrap();
    seeded(&pool, &a).await;
    let values = sealed_values(&pool).await;
    // B with an unrelated retired key, not A.
    let ring =
        Keyring::new(SealKey::generate().unwrap()).with_retired(SealKey::generate().unwrap());
    let err = rotation::rotate(&pool, &ring, &Actor::cli(), &meta())
        .await
        .unwrap_err();
    let RotationError::Unopenable { count, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*count, 3);
    let text = err.to_string();
    assert!(text.contains("users.totp_secret of row 1"), "{text}");
    assert!(text.contains(&a.id().to_string()), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(sealed_values(&pool).await, values);
    let rows = rotation_rows(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "failed");

    // Only some values unopenable is refused whole too: nothing is re-sealed.
    let with_a = Keyring::new(SealKey::generate().unwrap()).with_retired(a.clone());
    sqlx::query("UPDATE users SET totp_pending = ? WHERE name = 'lee'")
        .bind(ring.seal(b"x", "walden/totp/user/2").unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let values = sealed_values(&pool).await;
    let err = rotation::rotate(&pool, &with_a, &Actor::cli(), &meta())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RotationError::Unopenable { count: 1, .. }),
        "{err:?}"
    );
    assert_eq!(sealed_values(&pool).await, values);
}

#[tokio::test]
async fn only_admins_rotate_and_a_refusal_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let ring = Keyring::generate().unwrap();
    let acc = accounts(&pool, &ring);
    let op = add(&acc, "olga").await;
    let err = rotation::rotate(&pool, &ring, &op.actor(), &meta())
        .await
        .unwrap_err();
    assert!(matches!(err, RotationError::Forbidden));
    let rows = rotation_rows(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].outcome, "denied");
    assert!(matches!(
        rotation::status(&pool, &ring, &op.actor()).await,
        Err(RotationError::Forbidden)
    ));
}
