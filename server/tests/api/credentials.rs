//! Credential checks over real HTTP (security review H2, M1, M2, M3, M4, L5): re-authentication for the
//! second factor, the one limiter for every password or code check, and signing out while the audit log is
//! down.

use reqwest::Response;
use walden_app::api::auth::{ChangePassword, Login, Logout};
use walden_app::api::totp::{BeginTotp, ConfirmTotp, DisableTotp};
use walden_app::error::AppError;
use walden_core::audit::{AuditFilter, AuditRow};
use walden_core::users::totp;
use walden_core::users::Role;

use crate::helpers::{app, app_with, error_of, set_cookie, spawn_app_in, Session, TestApp, PW};

fn begin(password: &str, code: &str) -> BeginTotp {
    BeginTotp {
        current_password: password.into(),
        current_code: code.into(),
    }
}

fn code_for(secret_base32: &str, t: u64) -> String {
    let secret = totp::secret_from_base32(secret_base32).unwrap();
    totp::code_at(&secret, t).unwrap()
}

/// The newest rows of `action`, newest first.
async fn audit_rows(app: &TestApp, action: &str) -> Vec<AuditRow> {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let filter = AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    let rows = walden_core::audit::query(&pool, &filter, None, 100)
        .await
        .unwrap()
        .rows;
    pool.close().await;
    rows
}

/// Begin and confirm an enrolment on `s`; returns the secret.
async fn enrol(s: &Session, password: &str, code: &str) -> String {
    let res = s.call(&begin(password, code)).await;
    assert_eq!(res.status(), 200);
    let setup: serde_json::Value = res.json().await.unwrap();
    let secret = setup["secret_base32"].as_str().unwrap().to_owned();
    let first = code_for(&secret, totp::unix_now() - 30);
    let res = s.call(&ConfirmTotp { code: first }).await;
    assert_eq!(res.status(), 200);
    secret
}

async fn field_of(res: Response) -> String {
    match error_of(res).await {
        (status, AppError::Validation { field, .. }) if status == 422 => field,
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[tokio::test]
async fn beginning_an_enrolment_needs_the_password_and_is_audited() {
    let app = app().await;
    app.add_users(&[("pia", Role::Viewer)]).await;
    let s = app.login("pia", PW).await;
    for wrong in ["", "not her password"] {
        let res = s.call(&begin(wrong, "")).await;
        assert_eq!(field_of(res).await, "current_password");
    }
    let rows = audit_rows(&app, "user.totp_begin").await;
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.outcome == "failed"));

    let res = s.call(&begin(PW, "")).await;
    assert_eq!(res.status(), 200);
    let rows = audit_rows(&app, "user.totp_begin").await;
    assert_eq!(rows[0].outcome, "ok");
    assert!(rows[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("\"replacing\":false"));
    app.stop().await;
}

#[tokio::test]
async fn no_seed_is_issued_while_the_audit_log_is_down() {
    let app = app().await;
    app.add_users(&[("quin", Role::Viewer)]).await;
    let s = app.login("quin", PW).await;
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    sqlx::query(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let res = s.call(&begin(PW, "")).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 500);
    assert!(matches!(err, AppError::Internal { .. }), "{err:?}");
    let pending: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT totp_pending FROM users WHERE name = 'quin'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(pending, None, "no row, no seed");

    // Signing out does not wait on the log: the session ends although its row cannot be written.
    let id = s.id().unwrap();
    let res = s.call(&Logout {}).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.session_with_id(&id).whoami().await, None);
    sqlx::query("DROP TRIGGER audit_broken")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn replacing_a_factor_needs_the_current_code_and_ends_other_sessions() {
    let app = app().await;
    app.add_users(&[("rosa", Role::Operator)]).await;
    let here = app.login("rosa", PW).await;
    let old = enrol(&here, PW, "").await;
    // Another device signs in with the current factor.
    let there = app.session();
    let res = there
        .call(&Login {
            name: "rosa".into(),
            password: PW.into(),
            code: code_for(&old, totp::unix_now()),
        })
        .await;
    assert_eq!(res.status(), 200);

    // The session alone, or the session and the password, are not enough to replace the factor.
    let res = here.call(&begin(PW, "")).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(err.to_string().contains("password or code"), "{err}");
    let res = here.call(&begin(PW, "000000")).await;
    assert_eq!(res.status(), 422);
    let res = here
        .call(&begin(
            "not her password",
            &code_for(&old, totp::unix_now() + 30),
        ))
        .await;
    assert_eq!(res.status(), 422);
    let failed = audit_rows(&app, "user.totp_begin").await;
    assert_eq!(
        failed.iter().filter(|r| r.outcome == "failed").count(),
        3,
        "one row per failure"
    );

    // With both, it is replaced: this session goes on, the other one ends, and the row says so.
    let new = enrol(&here, PW, &code_for(&old, totp::unix_now() + 30)).await;
    assert_ne!(new, old);
    assert_eq!(here.whoami().await.as_deref(), Some("rosa"));
    assert_eq!(there.whoami().await, None);
    let enrolled = audit_rows(&app, "user.totp_enrol").await;
    assert!(enrolled[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("\"replaced\":true"));
    assert!(enrolled[1]
        .detail
        .as_deref()
        .unwrap()
        .contains("\"replaced\":false"));
    app.stop().await;
}

#[tokio::test]
async fn a_session_is_no_password_oracle() {
    let app = app().await;
    let id = app.add_users(&[("sven", Role::Viewer)]).await[0];
    let s = app.login("sven", PW).await;
    let disable = |password: &str| DisableTotp {
        user_id: id,
        current_password: password.into(),
    };
    for _ in 0..3 {
        let res = s.call(&disable("guess guess guess")).await;
        assert_eq!(field_of(res).await, "current_password");
    }
    for _ in 0..2 {
        let res = s
            .call(&ChangePassword {
                current_password: "guess guess guess".into(),
                new_password: "a brand new passphrase".into(),
            })
            .await;
        assert_eq!(field_of(res).await, "current_password");
    }
    // One limiter for both: the sixth check is refused, even with the right password, without being made.
    let res = s.call(&disable(PW)).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 429);
    assert_eq!(err, AppError::RateLimited);
    let res = s.call(&begin(PW, "")).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));

    let disable_rows = audit_rows(&app, "user.totp_disable").await;
    let outcomes: Vec<&str> = disable_rows.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["denied", "failed", "failed", "failed"]);
    assert!(disable_rows[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("throttled"));
    let change_rows = audit_rows(&app, "user.password_change").await;
    assert_eq!(change_rows.len(), 2);
    app.stop().await;
}

/// Sign in as `name` from `ip` (the proxy header the app trusts).
async fn login_from(app: &TestApp, ip: &str, name: &str, password: &str) -> Response {
    let s = app.session();
    let login = Login {
        name: name.into(),
        password: password.into(),
        code: String::new(),
    };
    s.request(&login)
        .header("fly-client-ip", ip)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failures_from_elsewhere_cannot_lock_the_admin_out() {
    let app = app_with(|c| c.client_ip_header = Some("fly-client-ip".parse().unwrap())).await;
    app.add_users(&[("root", Role::Admin)]).await;
    let office = "203.0.113.2";
    let res = login_from(&app, office, "root", PW).await;
    assert_eq!(res.status(), 200);

    // The attacker's own address is stopped after five failures, whatever it sends next.
    let attacker = "198.51.100.1";
    for _ in 0..5 {
        let res = login_from(&app, attacker, "root", "guess guess guess").await;
        assert_eq!(res.status(), 422);
    }
    for password in ["guess guess guess", PW] {
        let res = login_from(&app, attacker, "root", password).await;
        assert!(set_cookie(&res).is_none());
        assert_eq!(res.status(), 429);
    }
    // More addresses: the account-wide back-off starts after ten failures in an hour.
    for n in 2..7 {
        let res = login_from(&app, &format!("198.51.100.{n}"), "root", "guess guess").await;
        assert_eq!(res.status(), 422);
    }
    // A new address must now wait out the back-off (30 s after the last failure, doubling)...
    let res = login_from(&app, "198.51.100.50", "root", PW).await;
    assert_eq!(res.status(), 429);
    // ...but the admin, from where they signed in before, is not held by any of it.
    let res = login_from(&app, office, "root", PW).await;
    assert_eq!(res.status(), 200);
    assert!(set_cookie(&res).is_some());

    let denied = audit_rows(&app, "auth.login")
        .await
        .into_iter()
        .filter(|r| r.outcome == "denied")
        .count();
    assert_eq!(denied, 3, "one row per refusal");
    app.stop().await;
}

#[tokio::test]
async fn an_ipv6_client_is_one_slash_64() {
    let app = app_with(|c| c.client_ip_header = Some("fly-client-ip".parse().unwrap())).await;
    app.add_users(&[("tara", Role::Viewer)]).await;
    for n in 1..=5 {
        let ip = format!("2001:db8:1:2::{n}");
        let res = login_from(&app, &ip, "tara", "guess guess guess").await;
        assert_eq!(res.status(), 422);
    }
    // Another address in the same /64 is the same client; the next /64 is not.
    let res = login_from(&app, "2001:db8:1:2:ffff:ffff:ffff:ffff", "tara", PW).await;
    assert_eq!(res.status(), 429);
    let res = login_from(&app, "2001:db8:1:3::1", "tara", PW).await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn throttling_survives_a_restart() {
    let app = app().await;
    app.add_users(&[("ulla", Role::Viewer)]).await;
    for _ in 0..5 {
        let res = app.session().login("ulla", "guess guess guess").await;
        assert_eq!(res.status(), 422);
    }
    let dir = app.stop().await;
    // The same data directory, a new process state: the limit still holds, even for the right password.
    let app = spawn_app_in(dir, |c| {
        c.secure_cookies = false;
        c.password_hash = walden_core::users::HashParams::TEST;
        c.master_key = Some("ab".repeat(32).into());
    })
    .await;
    let res = app.session().login("ulla", PW).await;
    assert_eq!(res.status(), 429);
    app.stop().await;
}
