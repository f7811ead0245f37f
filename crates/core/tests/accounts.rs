//! Accounts against a real SQLite file (walden_core::db::open on a temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use time::Duration;
use walden_core::audit::{self, Actor, AuditFilter, RequestMeta};
use walden_core::keyring::Keyring;
use walden_core::seal::SealKey;
use walden_core::settings::SettingsError;
use walden_core::users::{
    totp, Accounts, HashParams, Hasher, LoginError, Role, SetupToken, ThrottlePolicy, User,
    UserError,
};
use walden_core::{db, settings};

const PW: &str = "a perfectly fine passphrase";

struct Env {
    _dir: tempfile::TempDir,
    pool: SqlitePool,
    acc: Accounts,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let acc = Accounts::new(pool.clone(), Hasher::new(HashParams::TEST).unwrap())
        .with_keyring(Keyring::generate().unwrap());
    Env {
        _dir: dir,
        pool,
        acc,
    }
}

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some("req-1".into()),
        client_ip: Some("203.0.113.7".into()),
    }
}

async fn add(e: &Env, name: &str, role: Role) -> User {
    e.acc
        .create_user(&Actor::cli(), &meta(), name, &pw(PW), role)
        .await
        .unwrap()
}

async fn rows(pool: &SqlitePool, action: &str) -> Vec<audit::AuditRow> {
    audit::query(
        pool,
        &AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        },
        None,
        500,
    )
    .await
    .unwrap()
    .rows
}

async fn count(pool: &SqlitePool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_user_stores_a_phc_hash_and_audits() {
    let e = env().await;
    let u = add(&e, "Alice", Role::Operator).await;
    assert_eq!(u.name, "Alice");
    assert_eq!(u.role, Role::Operator);
    assert!(!u.disabled && !u.totp_enabled);
    let phc: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(u.id)
        .fetch_one(&e.pool)
        .await
        .unwrap();
    assert!(phc.starts_with("$argon2id$v=19$"), "{phc}");
    assert!(!phc.contains(PW));
    let r = rows(&e.pool, "user.create").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].actor_name, "(system:cli)");
    assert_eq!(r[0].subject.as_deref(), Some(&*format!("user:{}", u.id)));
    assert_eq!(r[0].client_ip.as_deref(), Some("203.0.113.7"));
    assert_eq!(r[0].request_id.as_deref(), Some("req-1"));
    assert!(r[0].detail.as_deref().unwrap().contains("operator"));

    // Names are unique without regard to case.
    let err = e
        .acc
        .create_user(&Actor::cli(), &meta(), "ALICE", &pw(PW), Role::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::NameTaken), "{err}");
    assert_eq!(count(&e.pool, "users").await, 1);
}

#[tokio::test]
async fn bad_input_is_a_field_error_and_writes_nothing() {
    let e = env().await;
    let long_name = "n".repeat(65);
    let long_pw = "x1".repeat(200);
    for (name, password, field) in [
        ("", PW, "name"),
        (long_name.as_str(), PW, "name"),
        ("bob smith", PW, "name"),
        ("bob", "", "password"),
        ("bob", "short", "password"),
        ("bob", "password1234", "password"),
        ("bob", long_pw.as_str(), "password"),
    ] {
        match e
            .acc
            .create_user(&Actor::cli(), &meta(), name, &pw(password), Role::Viewer)
            .await
        {
            Err(UserError::Invalid(f)) => assert_eq!(f.field, field, "{name:?}"),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert_eq!(count(&e.pool, "users").await, 0);
    assert_eq!(count(&e.pool, "audit_log").await, 0);
}

#[tokio::test]
async fn login_ok_and_failures_look_the_same_from_outside() {
    let e = env().await;
    let alice = add(&e, "alice", Role::Viewer).await;
    let ok = e
        .acc
        .authenticate(&meta(), "ALICE", &pw(PW), None)
        .await
        .unwrap();
    assert_eq!(ok.user.id, alice.id);
    assert!(!ok.must_enrol_totp);

    let wrong = e
        .acc
        .authenticate(&meta(), "alice", &pw("not the password at all"), None)
        .await
        .unwrap_err();
    let unknown = e
        .acc
        .authenticate(&meta(), "nobody", &pw(PW), None)
        .await
        .unwrap_err();
    assert!(matches!(wrong, LoginError::InvalidCredentials));
    assert!(matches!(unknown, LoginError::InvalidCredentials));
    assert_eq!(wrong.to_string(), unknown.to_string());

    e.acc
        .set_disabled(&Actor::cli(), &meta(), alice.id, true)
        .await
        .unwrap();
    let disabled = e
        .acc
        .authenticate(&meta(), "alice", &pw(PW), None)
        .await
        .unwrap_err();
    assert_eq!(disabled.to_string(), unknown.to_string());

    let logins = rows(&e.pool, "auth.login").await;
    let outcomes: Vec<&str> = logins.iter().rev().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["ok", "failed", "failed", "failed"]);
    assert_eq!(logins.last().unwrap().actor_name, "alice");
    // The audit row says why; the caller's error did not.
    let details: Vec<String> = logins
        .iter()
        .rev()
        .skip(1)
        .map(|r| r.detail.clone().unwrap())
        .collect();
    assert!(details[0].contains("wrong password"));
    assert!(details[1].contains("unknown user"));
    assert!(details[2].contains("disabled"));
    // The password never reaches the log.
    let mut out = Vec::new();
    audit::export(
        &e.pool,
        &AuditFilter::default(),
        audit::ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    assert!(!String::from_utf8(out).unwrap().contains("not the password"));
}

#[tokio::test]
async fn login_rehashes_when_parameters_change() {
    let e = env().await;
    let u = add(&e, "carol", Role::Viewer).await;
    let stronger = Accounts::new(
        e.pool.clone(),
        Hasher::new(HashParams {
            m_cost: 256,
            t_cost: 2,
            p_cost: 1,
        })
        .unwrap(),
    );
    stronger
        .authenticate(&meta(), "carol", &pw(PW), None)
        .await
        .unwrap();
    let phc: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ?")
        .bind(u.id)
        .fetch_one(&e.pool)
        .await
        .unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=256,t=2,p=1$"), "{phc}");
    // Still the same password, under either hasher.
    stronger
        .authenticate(&meta(), "carol", &pw(PW), None)
        .await
        .unwrap();
    e.acc
        .authenticate(&meta(), "carol", &pw(PW), None)
        .await
        .unwrap();
    let r = rows(&e.pool, "auth.login").await;
    assert!(r
        .iter()
        .any(|r| r.detail.as_deref().unwrap().contains("rehashed")));
}

#[tokio::test]
async fn roles_guard_admin_actions_and_denials_are_audited() {
    let e = env().await;
    let admin = add(&e, "root-admin", Role::Admin).await;
    let op = add(&e, "oscar", Role::Operator).await;
    let viewer = add(&e, "vera", Role::Viewer).await;

    for actor in [op.actor(), viewer.actor(), Actor::Anonymous] {
        let err = e
            .acc
            .set_role(&actor, &meta(), viewer.id, Role::Admin)
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::Forbidden), "{err}");
        let err = e
            .acc
            .create_user(&actor, &meta(), "mallory", &pw(PW), Role::Admin)
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::Forbidden));
        let err = e
            .acc
            .create_invite(&actor, &meta(), Role::Admin, Duration::hours(1))
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::Forbidden));
        let err = e
            .acc
            .set_disabled(&actor, &meta(), admin.id, true)
            .await
            .unwrap_err();
        assert!(matches!(err, UserError::Forbidden));
    }
    assert_eq!(
        e.acc.get(viewer.id).await.unwrap().unwrap().role,
        Role::Viewer
    );
    let denied = audit::query(
        &e.pool,
        &AuditFilter {
            text: Some("denied".into()),
            ..Default::default()
        },
        None,
        100,
    )
    .await
    .unwrap();
    assert_eq!(denied.rows.len(), 12);

    let up = e
        .acc
        .set_role(&admin.actor(), &meta(), viewer.id, Role::Operator)
        .await
        .unwrap();
    assert_eq!(up.role, Role::Operator);
    let change = &rows(&e.pool, "user.role_change").await[0];
    assert_eq!(change.actor_name, "root-admin");
    assert_eq!(change.actor_id, Some(admin.id));
    assert_eq!(
        change.detail.as_deref(),
        Some(r#"{"from":"viewer","to":"operator"}"#)
    );

    // The last enabled admin can be neither demoted nor disabled.
    let err = e
        .acc
        .set_role(&admin.actor(), &meta(), admin.id, Role::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::LastAdmin));
    let err = e
        .acc
        .set_disabled(&admin.actor(), &meta(), admin.id, true)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::LastAdmin));
    e.acc
        .set_role(&admin.actor(), &meta(), op.id, Role::Admin)
        .await
        .unwrap();
    e.acc
        .set_role(&admin.actor(), &meta(), admin.id, Role::Viewer)
        .await
        .unwrap();
    let err = e
        .acc
        .set_role(&Actor::cli(), &meta(), 9999, Role::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::NotFound));
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_ends_other_sessions() {
    let e = env().await;
    let u = add(&e, "dave", Role::Viewer).await;
    assert!(e
        .acc
        .session_user(u.id, u.session_epoch)
        .await
        .unwrap()
        .is_some());
    let err = e
        .acc
        .change_password(
            &u.actor(),
            &meta(),
            &pw("wrong current password"),
            &pw("another fine passphrase"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::WrongPassword));
    let err = e
        .acc
        .change_password(&u.actor(), &meta(), &pw(PW), &pw("tooshort"))
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Invalid(ref f) if f.field == "password"));

    let after = e
        .acc
        .change_password(&u.actor(), &meta(), &pw(PW), &pw("another fine passphrase"))
        .await
        .unwrap();
    assert_eq!(after.session_epoch, u.session_epoch + 1);
    assert!(e
        .acc
        .session_user(u.id, u.session_epoch)
        .await
        .unwrap()
        .is_none());
    assert!(e
        .acc
        .session_user(u.id, after.session_epoch)
        .await
        .unwrap()
        .is_some());
    assert!(e
        .acc
        .authenticate(&meta(), "dave", &pw(PW), None)
        .await
        .is_err());
    e.acc
        .authenticate(&meta(), "dave", &pw("another fine passphrase"), None)
        .await
        .unwrap();
    let r = rows(&e.pool, "user.password_change").await;
    assert_eq!(
        r.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
        ["ok", "failed"]
    );

    // Logging out everywhere: own sessions yes, someone else's only as admin.
    let other = add(&e, "erin", Role::Viewer).await;
    assert!(matches!(
        e.acc
            .logout_everywhere(&other.actor(), &meta(), u.id)
            .await
            .unwrap_err(),
        UserError::Forbidden
    ));
    e.acc
        .logout_everywhere(&after.actor(), &meta(), u.id)
        .await
        .unwrap();
    assert!(e
        .acc
        .session_user(u.id, after.session_epoch)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn disabling_ends_sessions_and_enabling_restores_login() {
    let e = env().await;
    let u = add(&e, "fay", Role::Viewer).await;
    let d = e
        .acc
        .set_disabled(&Actor::cli(), &meta(), u.id, true)
        .await
        .unwrap();
    assert!(d.disabled);
    assert!(e
        .acc
        .session_user(u.id, d.session_epoch)
        .await
        .unwrap()
        .is_none());
    e.acc
        .set_disabled(&Actor::cli(), &meta(), u.id, false)
        .await
        .unwrap();
    e.acc
        .authenticate(&meta(), "fay", &pw(PW), None)
        .await
        .unwrap();
    assert_eq!(rows(&e.pool, "user.disable").await.len(), 1);
    assert_eq!(rows(&e.pool, "user.enable").await.len(), 1);
}

#[tokio::test]
async fn invites_are_one_time_hashed_and_expire() {
    let e = env().await;
    let admin = add(&e, "admin", Role::Admin).await;
    let (inv, token) = e
        .acc
        .create_invite(&admin.actor(), &meta(), Role::Operator, Duration::hours(24))
        .await
        .unwrap();
    assert_eq!(inv.role, Role::Operator);
    assert_eq!(token.expose_secret().len(), 64);
    // Only the SHA-256 is stored: the token appears nowhere in the database.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM invites WHERE id = ?")
        .bind(inv.id)
        .fetch_one(&e.pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert_ne!(hex::encode(&stored), token.expose_secret());
    e.pool.close().await;
    let file = std::fs::read(e._dir.path().join(db::DB_FILE)).unwrap();
    let wal = std::fs::read(e._dir.path().join(format!("{}-wal", db::DB_FILE))).unwrap_or_default();
    let needle = token.expose_secret().as_bytes();
    assert!(!file.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));
    let pool = db::open(e._dir.path()).await.unwrap();
    let acc = Accounts::new(pool.clone(), Hasher::new(HashParams::TEST).unwrap());

    assert_eq!(acc.check_invite(&token).await.unwrap(), Role::Operator);
    // A weak password is a form error and does not spend the invite.
    assert!(matches!(
        acc.accept_invite(&meta(), &token, "gina", &pw("weak"))
            .await
            .unwrap_err(),
        UserError::Invalid(_)
    ));
    let gina = acc
        .accept_invite(&meta(), &token, "gina", &pw(PW))
        .await
        .unwrap();
    assert_eq!(gina.role, Role::Operator);
    let again = acc
        .accept_invite(&meta(), &token, "gina2", &pw(PW))
        .await
        .unwrap_err();
    assert!(matches!(again, UserError::InviteInvalid), "{again}");
    let accepted = rows(&pool, "invite.accept").await;
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].actor_name, "gina");

    // Garbage and unknown tokens.
    for bad in ["", "zz", &"0".repeat(64)] {
        assert!(matches!(
            acc.accept_invite(&meta(), &pw(bad), "hank", &pw(PW))
                .await
                .unwrap_err(),
            UserError::InviteInvalid
        ));
    }

    // Expired.
    let (old, old_token) = acc
        .create_invite(&admin.actor(), &meta(), Role::Viewer, Duration::hours(1))
        .await
        .unwrap();
    sqlx::query("UPDATE invites SET expires_at = '2000-01-01T00:00:00.000Z' WHERE id = ?")
        .bind(old.id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        acc.accept_invite(&meta(), &old_token, "ivan", &pw(PW))
            .await
            .unwrap_err(),
        UserError::InviteExpired
    ));

    // Revoked.
    let (rev, rev_token) = acc
        .create_invite(&admin.actor(), &meta(), Role::Viewer, Duration::hours(1))
        .await
        .unwrap();
    acc.revoke_invite(&admin.actor(), &meta(), rev.id)
        .await
        .unwrap();
    assert!(matches!(
        acc.accept_invite(&meta(), &rev_token, "jo", &pw(PW))
            .await
            .unwrap_err(),
        UserError::InviteInvalid
    ));
    assert_eq!(acc.list_invites(&admin.actor()).await.unwrap().len(), 3);
    assert!(acc.list_invites(&gina.actor()).await.is_err());

    // Lifetimes out of range.
    for ttl in [Duration::seconds(10), Duration::days(31)] {
        assert!(matches!(
            acc.create_invite(&admin.actor(), &meta(), Role::Viewer, ttl)
                .await
                .unwrap_err(),
            UserError::Invalid(ref f) if f.field == "ttl"
        ));
    }
    assert_eq!(count(&pool, "users").await, 2);
}

#[tokio::test]
async fn setup_works_only_while_there_are_no_users() {
    let e = env().await;
    let (gate, token) = SetupToken::generate().unwrap();
    let gate = Some(&gate);
    assert!(e.acc.needs_setup().await.unwrap());
    assert!(matches!(
        e.acc
            .setup_first_admin(&meta(), gate, &token, "first", &pw("weak"))
            .await
            .unwrap_err(),
        UserError::Invalid(_)
    ));
    let first = e
        .acc
        .setup_first_admin(&meta(), gate, &token, "first", &pw(PW))
        .await
        .unwrap();
    assert_eq!(first.role, Role::Admin);
    assert!(!e.acc.needs_setup().await.unwrap());
    assert!(matches!(
        e.acc
            .setup_first_admin(&meta(), gate, &token, "second", &pw(PW))
            .await
            .unwrap_err(),
        UserError::SetupClosed
    ));
    assert_eq!(count(&e.pool, "users").await, 1);
    assert_eq!(rows(&e.pool, "setup.first_admin").await.len(), 1);
}

/// Security review H3: without the setup token nobody becomes the first admin, and each refusal leaves a row.
#[tokio::test]
async fn setup_needs_the_setup_token() {
    let e = env().await;
    let (gate, token) = SetupToken::generate().unwrap();
    let refused = [
        (Some(&gate), pw("not the token at all")),
        (Some(&gate), pw("")),
        (None, token.clone()),
    ];
    for (gate, presented) in &refused {
        assert!(matches!(
            e.acc
                .setup_first_admin(&meta(), *gate, presented, "first", &pw(PW))
                .await
                .unwrap_err(),
            UserError::SetupTokenInvalid
        ));
    }
    assert_eq!(count(&e.pool, "users").await, 0);
    let denied = rows(&e.pool, "setup.first_admin").await;
    assert_eq!(denied.len(), 3);
    assert!(denied.iter().all(|r| r.outcome == "denied"), "{denied:?}");
    // Surrounding whitespace (a pasted link) does not matter.
    let padded = pw(&format!(" {} ", token.expose_secret()));
    let first = e
        .acc
        .setup_first_admin(&meta(), Some(&gate), &padded, "first", &pw(PW))
        .await
        .unwrap();
    assert_eq!(first.role, Role::Admin);
    // An operator's token must not be trivially short.
    assert!(SetupToken::from_secret(&pw("short")).is_err());
    assert!(SetupToken::from_secret(&pw("a long enough operator token")).is_ok());
}

fn secret_of(enrolment: &totp::TotpEnrolment) -> Vec<u8> {
    totp_rs::Secret::try_from_base32(enrolment.secret_base32.expose_secret())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn totp_enrolment_login_and_replay() {
    let e = env().await;
    let u = add(&e, "kim", Role::Operator).await;
    let enrol = e
        .acc
        .begin_totp(&u.actor(), &meta(), &pw(PW), None)
        .await
        .unwrap();
    let secret = secret_of(&enrol);
    // Not active until confirmed.
    e.acc
        .authenticate(&meta(), "kim", &pw(PW), None)
        .await
        .unwrap();
    assert!(matches!(
        e.acc
            .confirm_totp(&u.actor(), &meta(), "000000")
            .await
            .unwrap_err(),
        UserError::TotpInvalid
    ));
    let now = totp::unix_now();
    // Confirm with the previous step's code, so the current step's code is still fresh for the login below.
    let confirm_code = totp::code_at(&secret, now - 30).unwrap();
    let kim = e
        .acc
        .confirm_totp(&u.actor(), &meta(), &confirm_code)
        .await
        .unwrap();
    assert!(kim.totp_enabled);

    // The secret is sealed at rest.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT totp_secret FROM users WHERE id = ?")
        .bind(u.id)
        .fetch_one(&e.pool)
        .await
        .unwrap();
    assert!(!stored.windows(secret.len()).any(|w| w == secret.as_slice()));

    let err = e
        .acc
        .authenticate(&meta(), "kim", &pw(PW), None)
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::TotpRequired));
    let err = e
        .acc
        .authenticate(&meta(), "kim", &pw(PW), Some("123456"))
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::TotpInvalid));
    // Wrong password with a right code is still just "invalid credentials".
    let code = totp::code_at(&secret, totp::unix_now()).unwrap();
    let err = e
        .acc
        .authenticate(&meta(), "kim", &pw("wrong wrong wrong"), Some(&code))
        .await
        .unwrap_err();
    assert!(matches!(err, LoginError::InvalidCredentials));
    let ok = e
        .acc
        .authenticate(&meta(), "kim", &pw(PW), Some(&code))
        .await;
    // The code may have rolled over to a step already used by the confirm (only when the test straddles a
    // 30 s boundary twice); otherwise it must succeed.
    let ok = match ok {
        Ok(ok) => ok,
        Err(_) => {
            let code = totp::code_at(&secret, totp::unix_now() + 30).unwrap();
            e.acc
                .authenticate(&meta(), "kim", &pw(PW), Some(&code))
                .await
                .unwrap()
        }
    };
    assert_eq!(ok.user.id, u.id);
    // The same code twice: refused (RFC 6238 §5.2).
    let replay = e
        .acc
        .authenticate(&meta(), "kim", &pw(PW), Some(&code))
        .await
        .unwrap_err();
    assert!(matches!(replay, LoginError::TotpInvalid), "{replay}");

    // Disable: own needs the password; an admin may reset anyone's.
    assert!(matches!(
        e.acc
            .disable_totp(&u.actor(), &meta(), u.id, Some(&pw("wrong wrong wrong")))
            .await
            .unwrap_err(),
        UserError::WrongPassword
    ));
    let admin = add(&e, "adm", Role::Admin).await;
    let cleared = e
        .acc
        .disable_totp(&admin.actor(), &meta(), u.id, None)
        .await
        .unwrap();
    assert!(!cleared.totp_enabled);
    e.acc
        .authenticate(&meta(), "kim", &pw(PW), None)
        .await
        .unwrap();
    assert_eq!(rows(&e.pool, "user.totp_enrol").await.len(), 2); // one failed, one ok
                                                                 // One failed own attempt (wrong password), one ok.
    assert_eq!(rows(&e.pool, "user.totp_disable").await.len(), 2);
}

#[tokio::test]
async fn admins_must_enrol_when_the_setting_says_so() {
    let e = env().await;
    let admin = add(&e, "boss", Role::Admin).await;
    let viewer = add(&e, "val", Role::Viewer).await;
    assert!(
        !e.acc
            .authenticate(&meta(), "boss", &pw(PW), None)
            .await
            .unwrap()
            .must_enrol_totp
    );
    assert!(matches!(
        settings::set_bool(
            &e.pool,
            &viewer.actor(),
            &meta(),
            settings::REQUIRE_TOTP_FOR_ADMINS,
            true
        )
        .await
        .unwrap_err(),
        SettingsError::Forbidden
    ));
    assert!(matches!(
        settings::set_bool(&e.pool, &admin.actor(), &meta(), "no_such_setting", true)
            .await
            .unwrap_err(),
        SettingsError::Invalid(_)
    ));
    settings::set_bool(
        &e.pool,
        &admin.actor(),
        &meta(),
        settings::REQUIRE_TOTP_FOR_ADMINS,
        true,
    )
    .await
    .unwrap();
    assert!(
        settings::get_bool(&e.pool, settings::REQUIRE_TOTP_FOR_ADMINS)
            .await
            .unwrap()
    );
    assert!(
        e.acc
            .authenticate(&meta(), "boss", &pw(PW), None)
            .await
            .unwrap()
            .must_enrol_totp
    );
    assert!(
        !e.acc
            .authenticate(&meta(), "val", &pw(PW), None)
            .await
            .unwrap()
            .must_enrol_totp
    );
    let r = rows(&e.pool, "setting.change").await;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].outcome, "ok");
    assert_eq!(r[1].outcome, "denied");
}

#[tokio::test]
async fn totp_without_a_key_is_a_clear_error() {
    let e = env().await;
    let u = add(&e, "lee", Role::Viewer).await;
    let keyless = Accounts::new(e.pool.clone(), Hasher::new(HashParams::TEST).unwrap());
    assert!(matches!(
        keyless
            .begin_totp(&u.actor(), &meta(), &pw(PW), None)
            .await
            .unwrap_err(),
        UserError::NoSealKey
    ));
}

#[tokio::test]
async fn fail_closed_no_audit_row_no_change() {
    let e = env().await;
    let admin = add(&e, "admin", Role::Admin).await;
    let v = add(&e, "victor", Role::Viewer).await;
    let before = count(&e.pool, "audit_log").await;
    // Make every audit insert fail, as a full disk or a damaged table would.
    sqlx::query(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END",
    )
    .execute(&e.pool)
    .await
    .unwrap();

    let err = e
        .acc
        .create_user(&admin.actor(), &meta(), "newbie", &pw(PW), Role::Viewer)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Audit(_)), "{err}");
    assert!(e.acc.find_by_name("newbie").await.unwrap().is_none());

    let err = e
        .acc
        .set_role(&admin.actor(), &meta(), v.id, Role::Admin)
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Audit(_)));
    assert_eq!(e.acc.get(v.id).await.unwrap().unwrap().role, Role::Viewer);

    let err = e
        .acc
        .change_password(&v.actor(), &meta(), &pw(PW), &pw("a brand new passphrase"))
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Audit(_)));
    let err = e
        .acc
        .create_invite(&admin.actor(), &meta(), Role::Viewer, Duration::hours(1))
        .await
        .unwrap_err();
    assert!(matches!(err, UserError::Audit(_)));
    assert_eq!(count(&e.pool, "invites").await, 0);
    // A login that cannot be recorded does not happen either.
    assert!(matches!(
        e.acc
            .authenticate(&meta(), "victor", &pw(PW), None)
            .await
            .unwrap_err(),
        LoginError::Internal(_)
    ));
    assert!(settings::set_bool(
        &e.pool,
        &admin.actor(),
        &meta(),
        settings::REQUIRE_TOTP_FOR_ADMINS,
        true
    )
    .await
    .is_err());
    assert!(
        !settings::get_bool(&e.pool, settings::REQUIRE_TOTP_FOR_ADMINS)
            .await
            .unwrap()
    );

    sqlx::query("DROP TRIGGER audit_broken")
        .execute(&e.pool)
        .await
        .unwrap();
    // The old password still works: the change was rolled back.
    e.acc
        .authenticate(&meta(), "victor", &pw(PW), None)
        .await
        .unwrap();
    assert_eq!(count(&e.pool, "audit_log").await, before + 1);
    assert!(audit::verify(&e.pool).await.unwrap().is_intact());
}

#[tokio::test]
async fn nothing_secret_in_debug_or_errors() {
    let e = env().await;
    let admin = add(&e, "admin", Role::Admin).await;
    let (_inv, token) = e
        .acc
        .create_invite(&admin.actor(), &meta(), Role::Viewer, Duration::hours(1))
        .await
        .unwrap();
    assert!(!format!("{token:?}").contains(token.expose_secret()));
    let enrol = e
        .acc
        .begin_totp(&admin.actor(), &meta(), &pw(PW), None)
        .await
        .unwrap();
    assert!(!format!("{enrol:?}").contains(enrol.secret_base32.expose_secret()));
    let dbg = format!("{:?}", e.acc);
    assert!(!dbg.contains("argon2id$"), "{dbg}");
    let err = e
        .acc
        .authenticate(&meta(), "admin", &pw("secret-guess-xyz"), None)
        .await
        .unwrap_err();
    assert!(!format!("{err:?} {err}").contains("secret-guess-xyz"));
    let err = e
        .acc
        .create_user(
            &Actor::cli(),
            &meta(),
            "x",
            &pw("password12345"),
            Role::Viewer,
        )
        .await
        .unwrap_err();
    assert!(!format!("{err:?} {err}").contains("password12345"));
}

#[tokio::test]
async fn admins_and_the_cli_can_reset_a_password() {
    let e = env().await;
    let admin = add(&e, "admin", Role::Admin).await;
    let u = add(&e, "mo", Role::Viewer).await;
    assert!(matches!(
        e.acc
            .reset_password(&u.actor(), &meta(), admin.id, &pw("taken over by mo!"))
            .await
            .unwrap_err(),
        UserError::Forbidden
    ));
    assert!(matches!(
        e.acc
            .reset_password(&admin.actor(), &meta(), u.id, &pw("short"))
            .await
            .unwrap_err(),
        UserError::Invalid(_)
    ));
    let after = e
        .acc
        .reset_password(&Actor::cli(), &meta(), u.id, &pw("a fresh start for mo"))
        .await
        .unwrap();
    assert_eq!(after.session_epoch, u.session_epoch + 1);
    e.acc
        .authenticate(&meta(), "mo", &pw("a fresh start for mo"), None)
        .await
        .unwrap();
    let r = rows(&e.pool, "user.password_reset").await;
    assert_eq!(
        r.iter().map(|r| r.outcome.as_str()).collect::<Vec<_>>(),
        ["ok", "denied"]
    );
}

/// The rule "admins must enrol two-factor" is answered by one method, for a user loaded at any time (a page
/// reload), not only at login.
#[tokio::test]
async fn must_enrol_totp_is_answered_for_a_reloaded_user() {
    let e = env().await;
    let admin = add(&e, "ada", Role::Admin).await;
    let operator = add(&e, "otto", Role::Operator).await;
    assert!(!e.acc.must_enrol_totp(&admin).await.unwrap());
    settings::set_bool(
        &e.pool,
        &admin.actor(),
        &meta(),
        settings::REQUIRE_TOTP_FOR_ADMINS,
        true,
    )
    .await
    .unwrap();
    let reloaded = e.acc.get(admin.id).await.unwrap().unwrap();
    assert!(e.acc.must_enrol_totp(&reloaded).await.unwrap());
    assert!(!e.acc.must_enrol_totp(&operator).await.unwrap());
    // Once enrolled, no longer.
    let enrol = e
        .acc
        .begin_totp(&admin.actor(), &meta(), &pw(PW), None)
        .await
        .unwrap();
    let code = totp::code_at(&secret_of(&enrol), totp::unix_now()).unwrap();
    let enrolled = e
        .acc
        .confirm_totp(&admin.actor(), &meta(), &code)
        .await
        .unwrap();
    assert!(!e.acc.must_enrol_totp(&enrolled).await.unwrap());
}

/// TOTP secrets sealed before key ids existed (format 1) still sign their users in; new enrolments are
/// sealed in format 2 with the primary key's id.
#[tokio::test]
async fn totp_secrets_sealed_before_key_ids_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let key = SealKey::generate().unwrap();
    let keyring = Keyring::new(key.clone());
    let acc = Accounts::new(pool.clone(), Hasher::new(HashParams::TEST).unwrap())
        .with_keyring(keyring.clone());
    let u = acc
        .create_user(&Actor::cli(), &meta(), "old-timer", &pw(PW), Role::Viewer)
        .await
        .unwrap();
    let secret = totp::new_secret().unwrap();
    let legacy = key
        .seal(&secret, &format!("walden/totp/user/{}", u.id))
        .unwrap();
    assert_eq!(legacy[0], 1);
    sqlx::query("UPDATE users SET totp_secret = ? WHERE id = ?")
        .bind(&legacy)
        .bind(u.id)
        .execute(&pool)
        .await
        .unwrap();
    assert!(matches!(
        acc.authenticate(&meta(), "old-timer", &pw(PW), None)
            .await
            .unwrap_err(),
        LoginError::TotpRequired
    ));
    let code = totp::code_at(&secret, totp::unix_now()).unwrap();
    let ok = acc
        .authenticate(&meta(), "old-timer", &pw(PW), Some(&code))
        .await
        .unwrap();
    assert_eq!(ok.user.id, u.id);

    // Replacing an enrolled factor needs a current code: the next step's (this one's is spent).
    let next = totp::code_at(&secret, totp::unix_now() + 30).unwrap();
    acc.begin_totp(&u.actor(), &meta(), &pw(PW), Some(&next))
        .await
        .unwrap();
    let pending: Vec<u8> = sqlx::query_scalar("SELECT totp_pending FROM users WHERE id = ?")
        .bind(u.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pending[0], 2);
    assert_eq!(Keyring::key_id_of(&pending), Some(keyring.primary_id()));
}

/// Security review L2: a sign-in name that is no user (often a password typed into the wrong field) is never
/// stored as typed in the append-only log: a keyed fingerprint stands for it, the same for the same name, so
/// repeated attempts still line up. A real user's name is recorded as the user. Throttled attempts likewise.
#[tokio::test]
async fn a_failed_sign_in_keeps_an_unknown_name_only_as_a_keyed_fingerprint() {
    let e = env().await;
    let alice = add(&e, "alice", Role::Viewer).await;
    let typed = "Hunter2-MySecretPassphrase!";
    // Two failures per (account, client), so the third attempt is throttled.
    let acc = e.acc.clone().with_throttle_policy(ThrottlePolicy {
        pair_max: 2,
        ..ThrottlePolicy::default()
    });
    for _ in 0..3 {
        acc.authenticate(&meta(), typed, &pw(PW), None)
            .await
            .unwrap_err();
    }
    for name in ["alice", "alice", "ALICE"] {
        acc.authenticate(&meta(), name, &pw("not the password"), None)
            .await
            .unwrap_err();
    }

    let logins = rows(&e.pool, "auth.login").await;
    let outcomes: Vec<&str> = logins.iter().rev().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        ["failed", "failed", "denied", "failed", "failed", "denied"]
    );
    let subjects: Vec<String> = logins
        .into_iter()
        .rev()
        .map(|r| r.subject.unwrap())
        .collect();
    assert!(subjects[0].starts_with("login-name:"), "{subjects:?}");
    assert_eq!(
        subjects[0], subjects[1],
        "the same name, the same fingerprint"
    );
    assert_eq!(subjects[0], subjects[2], "throttled attempts too");
    for s in &subjects[3..] {
        assert_eq!(s, &format!("user:{}", alice.id));
    }

    let mut out = Vec::new();
    audit::export(
        &e.pool,
        &AuditFilter::default(),
        audit::ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    assert!(!String::from_utf8(out).unwrap().contains("Hunter2"));

    // Without a key nothing of the name is kept.
    let keyless = Accounts::new(e.pool.clone(), Hasher::new(HashParams::TEST).unwrap());
    keyless
        .authenticate(&meta(), typed, &pw(PW), None)
        .await
        .unwrap_err();
    let newest = rows(&e.pool, "auth.login").await.remove(0);
    assert_eq!(newest.subject.as_deref(), Some("login-name:(not recorded)"));
}
