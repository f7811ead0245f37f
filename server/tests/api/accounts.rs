//! Sign-in, sessions, throttling, CSRF, headers and TOTP, over real HTTP.

use walden_app::api::auth::{
    AcceptInvite, ChangePassword, GetCurrentUser, GetSetupNeeded, Login, Logout, LogoutEverywhere,
    SetupAdmin,
};
use walden_app::api::totp::{BeginTotp, ConfirmTotp, SetRequireTotpForAdmins};
use walden_app::api::users::{CreateInvite, ListUsers};
use walden_app::error::AppError;
use walden_core::users::Role;

use crate::helpers::{app, app_with, error_of, set_cookie, set_cookie_named, PW, SETUP_TOKEN};

/// The arguments of a login without a TOTP code.
fn credentials(name: &str, password: &str) -> Login {
    Login {
        name: name.into(),
        password: password.into(),
        code: String::new(),
    }
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_rotates_the_id() {
    let app = app().await;
    app.add_users(&[("alice", Role::Viewer)]).await;

    let browser = app.session();
    let res = browser.login("alice", PW).await;
    assert_eq!(res.status(), 200);
    let set = set_cookie(&res).unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(
        !set.contains("Secure"),
        "secure cookies are off in this test app: {set}"
    );
    let first = browser.id().unwrap();
    assert_eq!(browser.whoami().await.as_deref(), Some("alice"));
    assert_eq!(app.session().whoami().await, None);

    // Session fixation: logging in while presenting a session id never keeps that id.
    let res = browser.login("alice", PW).await;
    assert!(set_cookie(&res).is_some());
    let second = browser.id().unwrap();
    assert_ne!(first, second);
    assert_eq!(
        app.session_with_id(&first).whoami().await,
        None,
        "the old id is dead"
    );
    assert_eq!(browser.whoami().await.as_deref(), Some("alice"));

    // An id planted by an attacker is not adopted either.
    let planted = "AAAAAAAAAAAAAAAAAAAAAA";
    let victim = app.session_with_id(planted);
    let res = victim.login("alice", PW).await;
    assert!(set_cookie(&res).is_some());
    assert_ne!(victim.id().unwrap(), planted);
    assert_eq!(app.session_with_id(planted).whoami().await, None);
    app.stop().await;
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured() {
    let app = app_with(|c| c.secure_cookies = true).await;
    app.add_users(&[("bob", Role::Viewer)]).await;
    let res = app.session().login("bob", PW).await;
    assert_eq!(res.status(), 200);
    // Security review L3: the `__Host-` prefix (Secure, Path=/, no Domain), and no Max-Age (a browser-session
    // cookie; the idle lifetime is kept on the server).
    assert!(
        set_cookie(&res).is_none(),
        "the plain name is for plain HTTP only"
    );
    let set = set_cookie_named(&res, walden::security::SECURE_SESSION_COOKIE).unwrap();
    assert!(set.contains("Secure"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(!set.contains("Domain"), "{set}");
    assert!(!set.contains("Max-Age"), "{set}");
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_are_generic_and_audited() {
    let app = app().await;
    app.add_users(&[("carol", Role::Viewer)]).await;
    let browser = app.session();
    let wrong = browser.login("carol", "not her password").await;
    assert!(set_cookie(&wrong).is_none());
    let (s1, e1) = error_of(wrong).await;
    let unknown = browser.login("nobody", PW).await;
    let (s2, e2) = error_of(unknown).await;
    assert_eq!((s1, &e1), (s2, &e2));
    assert_eq!(s1, 422);
    assert!(
        e1.to_string()
            .contains("user name or password is not correct"),
        "{e1}"
    );

    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let page = walden_core::audit::query(
        &pool,
        &walden_core::audit::AuditFilter {
            action: Some("auth.login".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .await
    .unwrap();
    assert_eq!(page.rows.len(), 2);
    assert!(page.rows.iter().all(|r| r.outcome == "failed"));
    assert!(page
        .rows
        .iter()
        .all(|r| r.client_ip.as_deref() == Some("127.0.0.1")));
    assert!(page.rows.iter().all(|r| r.request_id.is_some()));
    app.stop().await;
}

#[tokio::test]
async fn logins_are_throttled_per_account() {
    let app = app().await;
    app.add_users(&[("dave", Role::Viewer), ("erin", Role::Viewer)])
        .await;
    let browser = app.session();
    for _ in 0..5 {
        let res = browser.login("dave", "wrong wrong wrong").await;
        assert_eq!(res.status(), 422);
    }
    // Now even the right password is refused for a while, without being checked.
    let res = browser.login("DAVE", PW).await;
    assert!(set_cookie(&res).is_none());
    let (status, err) = error_of(res).await;
    assert_eq!(status, 429);
    assert_eq!(err, AppError::RateLimited);
    // Another account from the same address is unaffected.
    app.login("erin", PW).await;

    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let denied = walden_core::audit::count(
        &pool,
        &walden_core::audit::AuditFilter {
            text: Some("throttled".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(denied, 1);
    app.stop().await;
}

#[tokio::test]
async fn cross_origin_posts_are_refused() {
    let app = app().await;
    app.add_users(&[("fay", Role::Viewer)]).await;
    let browser = app.session();
    let login = credentials("fay", PW);
    let evil = browser
        .request(&login)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    assert!(set_cookie(&evil).is_none());
    let evil = browser
        .request(&login)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let evil = browser
        .request(&login)
        .header("referer", "https://evil.example/page")
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    // Nothing was attempted: no audit row.
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    assert_eq!(
        walden_core::audit::count(
            &pool,
            &walden_core::audit::AuditFilter {
                action: Some("auth.login".into()),
                ..Default::default()
            }
        )
        .await
        .unwrap(),
        0
    );

    let same = browser
        .request(&login)
        .header("origin", app.base.clone())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    // Reading is never refused.
    let get = app
        .client
        .get(app.url("/audit"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn security_headers_are_set() {
    let app = app().await;
    for path in ["/", "/audit", "/healthz"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        let h = res.headers();
        let csp = h.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(csp.contains("'wasm-unsafe-eval'"), "{csp}");
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(h.get("referrer-policy").unwrap(), "same-origin");
    }
    app.stop().await;
}

#[tokio::test]
async fn logout_and_logout_everywhere() {
    let app = app().await;
    app.add_users(&[("gina", Role::Operator)]).await;
    let a = app.login("gina", PW).await;
    let b = app.login("gina", PW).await;
    let c = app.login("gina", PW).await;
    let (a_id, b_id) = (a.id().unwrap(), b.id().unwrap());
    let res = a.call(&Logout {}).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.session_with_id(&a_id).whoami().await, None);
    assert_eq!(b.whoami().await.as_deref(), Some("gina"));
    let res = b.call(&LogoutEverywhere {}).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.session_with_id(&b_id).whoami().await, None);
    assert_eq!(c.whoami().await, None, "the other device is signed out too");
    app.stop().await;
}

#[tokio::test]
async fn a_password_change_ends_other_sessions_but_keeps_this_one() {
    let app = app().await;
    app.add_users(&[("hank", Role::Viewer)]).await;
    let here = app.login("hank", PW).await;
    let there = app.login("hank", PW).await;
    let res = here
        .call(&ChangePassword {
            current_password: PW.into(),
            new_password: "a brand new passphrase".into(),
        })
        .await;
    assert_eq!(res.status(), 200);
    set_cookie(&res).expect("a fresh id for this session");
    assert_eq!(here.whoami().await.as_deref(), Some("hank"));
    assert_eq!(there.whoami().await, None);
    app.stop().await;
}

#[tokio::test]
async fn idle_sessions_expire() {
    let app = app_with(|c| c.session_idle_secs = 1).await;
    app.add_users(&[("ivy", Role::Viewer)]).await;
    let s = app.login("ivy", PW).await;
    assert_eq!(s.whoami().await.as_deref(), Some("ivy"));
    // Present the id after the idle time (the client-side cookie would have expired by itself).
    let id = s.id().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(app.session_with_id(&id).whoami().await, None);
    // The refused session's row is still on disk until the maintenance worker deletes expired ones.
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM tower_sessions")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    assert_eq!(count().await, 1);
    walden::jobs::delete_expired_sessions(&pool).await.unwrap();
    assert_eq!(count().await, 0);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn sessions_expire_after_the_absolute_lifetime_however_active() {
    let app = app_with(|c| {
        c.session_idle_secs = 60;
        c.session_max_secs = 2;
    })
    .await;
    app.add_users(&[("jo", Role::Viewer)]).await;
    let s = app.login("jo", PW).await;
    let start = std::time::Instant::now();
    let mut last = s.whoami().await;
    assert_eq!(last.as_deref(), Some("jo"));
    while start.elapsed() < std::time::Duration::from_millis(3500) {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        last = s.whoami().await;
        if last.is_none() {
            break;
        }
    }
    assert_eq!(last, None);
    assert!(start.elapsed() >= std::time::Duration::from_secs(1));
    app.stop().await;
}

#[tokio::test]
async fn setup_works_once_and_signs_in() {
    let app = app().await;
    let browser = app.session();
    let res = browser.call(&GetSetupNeeded {}).await;
    assert!(res.json::<bool>().await.unwrap());
    let setup = |password: &str| SetupAdmin {
        token: SETUP_TOKEN.into(),
        name: "root".into(),
        password: password.into(),
    };
    let res = browser.call(&setup("short")).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(matches!(err, AppError::Validation { ref field, .. } if field == "password"));
    let res = browser.call(&setup(PW)).await;
    assert_eq!(res.status(), 200);
    assert!(set_cookie(&res).is_some());
    assert_eq!(browser.whoami().await.as_deref(), Some("root"));
    let res = app
        .session()
        .call(&SetupAdmin {
            token: SETUP_TOKEN.into(),
            name: "root2".into(),
            password: PW.into(),
        })
        .await;
    let (status, _) = error_of(res).await;
    assert_eq!(status, 409);
    app.stop().await;
}

#[tokio::test]
async fn an_invite_link_makes_an_account_once() {
    let app = app().await;
    app.add_users(&[("kim", Role::Admin)]).await;
    let admin = app.login("kim", PW).await;
    let res = admin
        .call(&CreateInvite {
            role: "operator".into(),
            hours: 24,
        })
        .await;
    assert_eq!(res.status(), 200);
    let link: serde_json::Value = res.json().await.unwrap();
    let path = link["path"].as_str().unwrap();
    let token = path.split("token=").nth(1).unwrap();
    let accept = |name: &str| AcceptInvite {
        token: token.into(),
        name: name.into(),
        password: PW.into(),
    };
    let newcomer = app.session();
    let res = newcomer.call(&accept("lena")).await;
    assert_eq!(res.status(), 200);
    assert!(set_cookie(&res).is_some());
    assert_eq!(newcomer.whoami().await.as_deref(), Some("lena"));
    let res = app.session().call(&accept("lena2")).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(matches!(err, AppError::Validation { ref field, .. } if field == "token"));
    app.stop().await;
}

#[tokio::test]
async fn the_client_ip_comes_from_the_configured_proxy_header() {
    let app = app_with(|c| c.client_ip_header = Some("fly-client-ip".parse().unwrap())).await;
    app.add_users(&[("max", Role::Viewer)]).await;
    let browser = app.session();
    let wrong = credentials("max", "wrong wrong wrong");
    let res = browser
        .request(&wrong)
        .header("fly-client-ip", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    // Without the header (or with garbage in it), the TCP peer.
    let res = browser
        .request(&wrong)
        .header("fly-client-ip", "not an address")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let rows = walden_core::audit::query(&pool, &Default::default(), None, 10)
        .await
        .unwrap()
        .rows;
    let ips: Vec<_> = rows
        .iter()
        .filter(|r| r.action == "auth.login")
        .map(|r| r.client_ip.clone().unwrap_or_default())
        .collect();
    assert_eq!(ips, ["127.0.0.1", "203.0.113.9"]);
    app.stop().await;
}

fn code_for(secret_base32: &str, t: u64) -> String {
    let secret = walden_core::users::totp::secret_from_base32(secret_base32).unwrap();
    walden_core::users::totp::code_at(&secret, t).unwrap()
}

fn unix_now() -> u64 {
    walden_core::users::totp::unix_now()
}

/// Begin an enrolment, confirming with the password (no factor enrolled yet, so no current code).
fn begin_with_password() -> BeginTotp {
    BeginTotp {
        current_password: PW.into(),
        current_code: String::new(),
    }
}

fn confirm(code: &str) -> ConfirmTotp {
    ConfirmTotp { code: code.into() }
}

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code() {
    let app = app().await;
    app.add_users(&[("nia", Role::Operator)]).await;
    let s = app.login("nia", PW).await;
    let res = s.call(&begin_with_password()).await;
    assert_eq!(res.status(), 200);
    let setup: serde_json::Value = res.json().await.unwrap();
    let secret = setup["secret_base32"].as_str().unwrap().to_owned();
    assert!(setup["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let res = s.call(&confirm("000000")).await;
    assert_eq!(res.status(), 422);
    let now = unix_now();
    let res = s.call(&confirm(&code_for(&secret, now - 30))).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // Now the password alone is not enough.
    let res = app.session().login("nia", PW).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(
        matches!(err, AppError::Validation { ref field, .. } if field == "code"),
        "{err:?}"
    );
    let res = app
        .session()
        .call(&Login {
            code: code_for(&secret, now + 30),
            ..credentials("nia", PW)
        })
        .await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn admins_without_totp_are_held_at_enrolment_when_required() {
    let app = app().await;
    app.add_users(&[("olga", Role::Admin)]).await;
    let s = app.login("olga", PW).await;
    let res = s.call(&SetRequireTotpForAdmins { enabled: true }).await;
    assert_eq!(res.status(), 200);
    // The same admin, without TOTP, is now refused everything but enrolment and signing out.
    let res = s.call(&ListUsers {}).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(
        matches!(err, AppError::Validation { ref field, .. } if field == "totp"),
        "{err:?}"
    );
    // A reload (the page asks who is signed in) tells the UI too, not only the login answer.
    let res = s.call(&GetCurrentUser {}).await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["name"], "olga");
    assert_eq!(me["must_enrol_totp"], true);
    let res = app.session().login("olga", PW).await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["must_enrol_totp"], true);
    let res = s.call(&begin_with_password()).await;
    assert_eq!(res.status(), 200);
    let secret = res.json::<serde_json::Value>().await.unwrap()["secret_base32"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s.call(&confirm(&code_for(&secret, unix_now()))).await;
    assert_eq!(res.status(), 200);
    let res = s.call(&ListUsers {}).await;
    assert_eq!(res.status(), 200);
    let res = s.call(&GetCurrentUser {}).await;
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["must_enrol_totp"], false);
    app.stop().await;
}
