//! Sign-in, sessions, throttling, CSRF, headers and the authorization matrix, over real HTTP.

use leptos::server_fn::ServerFn;
use reqwest::{Response, StatusCode};
use walden_app::api::audit::{ExportAudit, ListAudit, VerifyAudit};
use walden_app::api::auth::{
    AcceptInvite, ChangePassword, GetCurrentUser, GetSetupNeeded, Login, Logout, LogoutEverywhere,
    SetupAdmin,
};
use walden_app::api::clusters::ListClusters;
use walden_app::api::status::GetConsoleStatus;
use walden_app::api::totp::{
    BeginTotp, ConfirmTotp, DisableTotp, GetRequireTotpForAdmins, SetRequireTotpForAdmins,
};
use walden_app::api::users::{CreateInvite, ListUsers, SetUserDisabled, SetUserRole};
use walden_app::error::AppError;
use walden_core::audit::Actor;
use walden_core::users::{Accounts, HashParams, Hasher, Role};

use crate::helpers::{spawn_app_with, TestApp};

const CHEAP: HashParams = HashParams {
    m_cost: 64,
    t_cost: 1,
    p_cost: 1,
};
pub(crate) const PW: &str = "a perfectly fine passphrase";
const COOKIE: &str = "walden_session";

pub(crate) async fn app_with(tweak: impl FnOnce(&mut walden::config::ServeArgs)) -> TestApp {
    spawn_app_with(|c| {
        c.secure_cookies = false;
        c.password_hash = CHEAP;
        c.master_key = Some("ab".repeat(32).into());
        tweak(c);
    })
    .await
}

pub(crate) async fn app() -> TestApp {
    app_with(|_| {}).await
}

/// Add users straight through walden_core, on the console's own database file.
pub(crate) async fn add_users(app: &TestApp, users: &[(&str, Role)]) -> Vec<i64> {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let acc = Accounts::new(pool.clone(), Hasher::new(CHEAP).unwrap());
    let mut ids = Vec::new();
    for (name, role) in users {
        let u = acc
            .create_user(&Actor::cli(), &Default::default(), name, &PW.into(), *role)
            .await
            .unwrap();
        ids.push(u.id);
    }
    pool.close().await;
    ids
}

/// The session id from a response's Set-Cookie, if it sets one.
fn session_cookie(res: &Response) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{COOKIE}=")))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches(&format!("{COOKIE}="))
        .to_owned()
}

/// `application/x-www-form-urlencoded`.
fn encode_form(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else if b == b' ' {
                out.push('+');
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// POST a form-encoded server function.
pub(crate) async fn post_form(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
) -> Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(form));
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{COOKIE}={c}"));
    }
    req.send().await.unwrap()
}

/// POST a JSON-encoded server function.
async fn post_json(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    body: serde_json::Value,
) -> Response {
    let mut req = app.client.post(app.url(path)).json(&body);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("{COOKIE}={c}"));
    }
    req.send().await.unwrap()
}

/// Log in; returns the session id.
pub(crate) async fn login(app: &TestApp, name: &str, pw: &str) -> String {
    let res = post_form(
        app,
        Login::PATH,
        None,
        &[("name", name), ("password", pw), ("code", "")],
    )
    .await;
    assert_eq!(res.status(), 200, "login {name}");
    cookie_value(&session_cookie(&res).expect("login sets the session cookie"))
}

async fn whoami(app: &TestApp, cookie: Option<&str>) -> Option<String> {
    let res = post_form(app, GetCurrentUser::PATH, cookie, &[]).await;
    assert_eq!(res.status(), 200);
    let v: serde_json::Value = res.json().await.unwrap();
    v.get("name").and_then(|n| n.as_str()).map(str::to_owned)
}

async fn error_of(res: Response) -> (StatusCode, AppError) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let err: AppError =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, err)
}

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_rotates_the_id() {
    let app = app().await;
    add_users(&app, &[("alice", Role::Viewer)]).await;

    let res = post_form(
        &app,
        Login::PATH,
        None,
        &[("name", "alice"), ("password", PW), ("code", "")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let set = session_cookie(&res).unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(set.contains("Path=/"), "{set}");
    assert!(
        !set.contains("Secure"),
        "secure cookies are off in this test app: {set}"
    );
    let first = cookie_value(&set);
    assert_eq!(whoami(&app, Some(&first)).await.as_deref(), Some("alice"));
    assert_eq!(whoami(&app, None).await, None);

    // Session fixation: logging in while presenting a session id never keeps that id.
    let res = post_form(
        &app,
        Login::PATH,
        Some(&first),
        &[("name", "alice"), ("password", PW), ("code", "")],
    )
    .await;
    let second = cookie_value(&session_cookie(&res).unwrap());
    assert_ne!(first, second);
    assert_eq!(whoami(&app, Some(&first)).await, None, "the old id is dead");
    assert_eq!(whoami(&app, Some(&second)).await.as_deref(), Some("alice"));

    // An id planted by an attacker is not adopted either.
    let planted = "AAAAAAAAAAAAAAAAAAAAAA";
    let res = post_form(
        &app,
        Login::PATH,
        Some(planted),
        &[("name", "alice"), ("password", PW), ("code", "")],
    )
    .await;
    let got = cookie_value(&session_cookie(&res).unwrap());
    assert_ne!(got, planted);
    assert_eq!(whoami(&app, Some(planted)).await, None);
    app.stop().await;
}

#[tokio::test]
async fn the_cookie_is_secure_when_configured() {
    let app = app_with(|c| c.secure_cookies = true).await;
    add_users(&app, &[("bob", Role::Viewer)]).await;
    let res = post_form(
        &app,
        Login::PATH,
        None,
        &[("name", "bob"), ("password", PW), ("code", "")],
    )
    .await;
    let set = session_cookie(&res).unwrap();
    assert!(set.contains("Secure"), "{set}");
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_are_generic_and_audited() {
    let app = app().await;
    add_users(&app, &[("carol", Role::Viewer)]).await;
    let wrong = post_form(
        &app,
        Login::PATH,
        None,
        &[
            ("name", "carol"),
            ("password", "not her password"),
            ("code", ""),
        ],
    )
    .await;
    assert!(session_cookie(&wrong).is_none());
    let (s1, e1) = error_of(wrong).await;
    let unknown = post_form(
        &app,
        Login::PATH,
        None,
        &[("name", "nobody"), ("password", PW), ("code", "")],
    )
    .await;
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
    add_users(&app, &[("dave", Role::Viewer), ("erin", Role::Viewer)]).await;
    for _ in 0..5 {
        let res = post_form(
            &app,
            Login::PATH,
            None,
            &[
                ("name", "dave"),
                ("password", "wrong wrong wrong"),
                ("code", ""),
            ],
        )
        .await;
        assert_eq!(res.status(), 422);
    }
    // Now even the right password is refused for a while, without being checked.
    let res = post_form(
        &app,
        Login::PATH,
        None,
        &[("name", "DAVE"), ("password", PW), ("code", "")],
    )
    .await;
    assert!(session_cookie(&res).is_none());
    let (status, err) = error_of(res).await;
    assert_eq!(status, 429);
    assert_eq!(err, AppError::RateLimited);
    // Another account from the same address is unaffected.
    login(&app, "erin", PW).await;

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
    add_users(&app, &[("fay", Role::Viewer)]).await;
    let form = [("name", "fay"), ("password", PW), ("code", "")];
    let evil = app
        .client
        .post(app.url(Login::PATH))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    assert!(session_cookie(&evil).is_none());
    let evil = app
        .client
        .post(app.url(Login::PATH))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&form))
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let evil = app
        .client
        .post(app.url(Login::PATH))
        .header("referer", "https://evil.example/page")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&form))
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

    let same = app
        .client
        .post(app.url(Login::PATH))
        .header("origin", app.base.clone())
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode_form(&form))
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
    add_users(&app, &[("gina", Role::Operator)]).await;
    let a = login(&app, "gina", PW).await;
    let b = login(&app, "gina", PW).await;
    let c = login(&app, "gina", PW).await;
    let res = post_form(&app, Logout::PATH, Some(&a), &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(whoami(&app, Some(&a)).await, None);
    assert_eq!(whoami(&app, Some(&b)).await.as_deref(), Some("gina"));
    let res = post_form(&app, LogoutEverywhere::PATH, Some(&b), &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(whoami(&app, Some(&b)).await, None);
    assert_eq!(
        whoami(&app, Some(&c)).await,
        None,
        "the other device is signed out too"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_password_change_ends_other_sessions_but_keeps_this_one() {
    let app = app().await;
    add_users(&app, &[("hank", Role::Viewer)]).await;
    let here = login(&app, "hank", PW).await;
    let there = login(&app, "hank", PW).await;
    let res = post_form(
        &app,
        ChangePassword::PATH,
        Some(&here),
        &[
            ("current_password", PW),
            ("new_password", "a brand new passphrase"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let here = cookie_value(&session_cookie(&res).expect("a fresh id for this session"));
    assert_eq!(whoami(&app, Some(&here)).await.as_deref(), Some("hank"));
    assert_eq!(whoami(&app, Some(&there)).await, None);
    app.stop().await;
}

#[tokio::test]
async fn idle_sessions_expire() {
    let app = app_with(|c| c.session_idle_secs = 1).await;
    add_users(&app, &[("ivy", Role::Viewer)]).await;
    let s = login(&app, "ivy", PW).await;
    assert_eq!(whoami(&app, Some(&s)).await.as_deref(), Some("ivy"));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(whoami(&app, Some(&s)).await, None);
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
    add_users(&app, &[("jo", Role::Viewer)]).await;
    let s = login(&app, "jo", PW).await;
    let start = std::time::Instant::now();
    let mut last = whoami(&app, Some(&s)).await;
    assert_eq!(last.as_deref(), Some("jo"));
    while start.elapsed() < std::time::Duration::from_millis(3500) {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        last = whoami(&app, Some(&s)).await;
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
    let res = post_form(&app, GetSetupNeeded::PATH, None, &[]).await;
    assert!(res.json::<bool>().await.unwrap());
    let res = post_form(
        &app,
        SetupAdmin::PATH,
        None,
        &[("name", "root"), ("password", "short")],
    )
    .await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(matches!(err, AppError::Validation { ref field, .. } if field == "password"));
    let res = post_form(
        &app,
        SetupAdmin::PATH,
        None,
        &[("name", "root"), ("password", PW)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let s = cookie_value(&session_cookie(&res).unwrap());
    assert_eq!(whoami(&app, Some(&s)).await.as_deref(), Some("root"));
    let res = post_form(
        &app,
        SetupAdmin::PATH,
        None,
        &[("name", "root2"), ("password", PW)],
    )
    .await;
    let (status, _) = error_of(res).await;
    assert_eq!(status, 409);
    app.stop().await;
}

#[tokio::test]
async fn an_invite_link_makes_an_account_once() {
    let app = app().await;
    add_users(&app, &[("kim", Role::Admin)]).await;
    let admin = login(&app, "kim", PW).await;
    let res = post_form(
        &app,
        CreateInvite::PATH,
        Some(&admin),
        &[("role", "operator"), ("hours", "24")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let link: serde_json::Value = res.json().await.unwrap();
    let path = link["path"].as_str().unwrap();
    let token = path.split("token=").nth(1).unwrap();
    let res = post_form(
        &app,
        AcceptInvite::PATH,
        None,
        &[("token", token), ("name", "lena"), ("password", PW)],
    )
    .await;
    assert_eq!(res.status(), 200);
    let s = cookie_value(&session_cookie(&res).unwrap());
    assert_eq!(whoami(&app, Some(&s)).await.as_deref(), Some("lena"));
    let res = post_form(
        &app,
        AcceptInvite::PATH,
        None,
        &[("token", token), ("name", "lena2"), ("password", PW)],
    )
    .await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(matches!(err, AppError::Validation { ref field, .. } if field == "token"));
    app.stop().await;
}

/// Who may call what. Every server function of this issue, as anonymous, viewer, operator and admin. Grows
/// with every later issue.
#[tokio::test]
async fn authorization_matrix() {
    let app = app().await;
    let ids = add_users(
        &app,
        &[
            ("viewer1", Role::Viewer),
            ("operator1", Role::Operator),
            ("admin1", Role::Admin),
            ("target", Role::Viewer),
        ],
    )
    .await;
    let target = ids[3].to_string();
    let sessions: Vec<(&str, Option<String>, Option<Role>)> = vec![
        ("anonymous", None, None),
        (
            "viewer",
            Some(login(&app, "viewer1", PW).await),
            Some(Role::Viewer),
        ),
        (
            "operator",
            Some(login(&app, "operator1", PW).await),
            Some(Role::Operator),
        ),
        (
            "admin",
            Some(login(&app, "admin1", PW).await),
            Some(Role::Admin),
        ),
    ];

    enum Body {
        Form(Vec<(&'static str, String)>),
        Json(serde_json::Value),
    }
    let q = serde_json::json!({
        "actor": "", "action": "", "cluster": "", "since": "", "until": "", "text": ""
    });
    // (name, path, body, minimum role; None = open to anyone)
    let calls: Vec<(&str, &str, Body, Option<Role>)> = vec![
        // The console's own health (the demo badge shows on the sign-in page too).
        (
            "get_console_status",
            GetConsoleStatus::PATH,
            Body::Form(vec![]),
            None,
        ),
        (
            "list_clusters",
            ListClusters::PATH,
            Body::Form(vec![]),
            Some(Role::Viewer),
        ),
        (
            "get_current_user",
            GetCurrentUser::PATH,
            Body::Form(vec![]),
            None,
        ),
        (
            "get_setup_needed",
            GetSetupNeeded::PATH,
            Body::Form(vec![]),
            None,
        ),
        (
            "list_users",
            ListUsers::PATH,
            Body::Form(vec![]),
            Some(Role::Admin),
        ),
        (
            "set_user_role",
            SetUserRole::PATH,
            Body::Form(vec![("user_id", target.clone()), ("role", "viewer".into())]),
            Some(Role::Admin),
        ),
        (
            "set_user_disabled",
            SetUserDisabled::PATH,
            Body::Form(vec![
                ("user_id", target.clone()),
                ("disabled", "false".into()),
            ]),
            Some(Role::Admin),
        ),
        (
            "create_invite",
            CreateInvite::PATH,
            Body::Form(vec![("role", "viewer".into()), ("hours", "1".into())]),
            Some(Role::Admin),
        ),
        (
            "list_audit",
            ListAudit::PATH,
            Body::Json(serde_json::json!({ "query": q, "before": null, "limit": 50 })),
            Some(Role::Viewer),
        ),
        (
            "verify_audit",
            VerifyAudit::PATH,
            Body::Form(vec![]),
            Some(Role::Viewer),
        ),
        (
            "export_audit",
            ExportAudit::PATH,
            Body::Json(serde_json::json!({ "query": q, "format": "csv" })),
            Some(Role::Viewer),
        ),
        (
            "get_require_totp_for_admins",
            GetRequireTotpForAdmins::PATH,
            Body::Form(vec![]),
            Some(Role::Viewer),
        ),
        (
            "set_require_totp_for_admins",
            SetRequireTotpForAdmins::PATH,
            Body::Form(vec![("enabled", "false".into())]),
            Some(Role::Admin),
        ),
        // Someone else's TOTP: admins only (the target has none; removing none is fine).
        (
            "disable_totp",
            DisableTotp::PATH,
            Body::Form(vec![
                ("user_id", target.clone()),
                ("current_password", String::new()),
            ]),
            Some(Role::Admin),
        ),
        // Enrolment is one's own business: any signed-in user.
        (
            "begin_totp",
            BeginTotp::PATH,
            Body::Form(vec![]),
            Some(Role::Viewer),
        ),
        // A wrong current password: allowed callers get a field error, nothing changes.
        (
            "change_password",
            ChangePassword::PATH,
            Body::Form(vec![
                ("current_password", "not the password".into()),
                ("new_password", "a brand new passphrase".into()),
            ]),
            Some(Role::Viewer),
        ),
    ];

    let mut table = Vec::new();
    for (who, cookie, role) in &sessions {
        for (name, path, body, min) in &calls {
            let res = match body {
                Body::Form(f) => {
                    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    post_form(&app, path, cookie.as_deref(), &f).await
                }
                Body::Json(v) => post_json(&app, path, cookie.as_deref(), v.clone()).await,
            };
            let status = res.status().as_u16();
            let expected: &[u16] = match (min, role) {
                (None, _) => &[200],
                (Some(_), None) => &[401],
                (Some(min), Some(r)) if r < min => &[403],
                (Some(_), Some(_)) if *name == "change_password" => &[422],
                (Some(_), Some(Role::Viewer | Role::Operator)) if *name == "disable_totp" => &[403],
                _ => &[200],
            };
            table.push(format!("{who:>9} {name:<18} {status}"));
            assert!(
                expected.contains(&status),
                "{who} calling {name}: got {status}, expected {expected:?}\n{}",
                res.text().await.unwrap_or_default()
            );
        }
    }
    // Logging out everywhere: anyone signed in; last, since it ends the sessions.
    for (who, cookie, role) in &sessions {
        let res = post_form(&app, LogoutEverywhere::PATH, cookie.as_deref(), &[]).await;
        let want = if role.is_some() { 200 } else { 401 };
        assert_eq!(res.status(), want, "{who} logout_everywhere");
        let res = post_form(&app, Logout::PATH, cookie.as_deref(), &[]).await;
        assert_eq!(res.status(), 200, "{who} logout");
    }
    // Pages render for everyone (the shell); their data comes through the server functions above.
    for path in [
        "/",
        "/clusters",
        "/restores",
        "/audit",
        "/settings",
        "/login",
        "/users",
        "/account",
    ] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
    println!("{}", table.join("\n"));
    app.stop().await;
}

#[tokio::test]
async fn the_client_ip_comes_from_the_configured_proxy_header() {
    let app = app_with(|c| c.client_ip_header = Some("fly-client-ip".parse().unwrap())).await;
    add_users(&app, &[("max", Role::Viewer)]).await;
    let res = app
        .client
        .post(app.url(Login::PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("fly-client-ip", "203.0.113.9")
        .body(encode_form(&[
            ("name", "max"),
            ("password", "wrong wrong wrong"),
            ("code", ""),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    // Without the header (or with garbage in it), the TCP peer.
    let res = app
        .client
        .post(app.url(Login::PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("fly-client-ip", "not an address")
        .body(encode_form(&[
            ("name", "max"),
            ("password", "wrong wrong wrong"),
            ("code", ""),
        ]))
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

#[tokio::test]
async fn totp_enrolment_then_sign_in_with_a_code() {
    let app = app().await;
    add_users(&app, &[("nia", Role::Operator)]).await;
    let s = login(&app, "nia", PW).await;
    let res = post_form(&app, BeginTotp::PATH, Some(&s), &[]).await;
    assert_eq!(res.status(), 200);
    let setup: serde_json::Value = res.json().await.unwrap();
    let secret = setup["secret_base32"].as_str().unwrap().to_owned();
    assert!(setup["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    let res = post_form(&app, ConfirmTotp::PATH, Some(&s), &[("code", "000000")]).await;
    assert_eq!(res.status(), 422);
    let now = unix_now();
    let res = post_form(
        &app,
        ConfirmTotp::PATH,
        Some(&s),
        &[("code", &code_for(&secret, now - 30))],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // Now the password alone is not enough.
    let res = post_form(
        &app,
        Login::PATH,
        None,
        &[("name", "nia"), ("password", PW), ("code", "")],
    )
    .await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(
        matches!(err, AppError::Validation { ref field, .. } if field == "code"),
        "{err:?}"
    );
    let res = post_form(
        &app,
        Login::PATH,
        None,
        &[
            ("name", "nia"),
            ("password", PW),
            ("code", &code_for(&secret, now + 30)),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn admins_without_totp_are_held_at_enrolment_when_required() {
    let app = app().await;
    add_users(&app, &[("olga", Role::Admin)]).await;
    let s = login(&app, "olga", PW).await;
    let res = post_form(
        &app,
        SetRequireTotpForAdmins::PATH,
        Some(&s),
        &[("enabled", "true")],
    )
    .await;
    assert_eq!(res.status(), 200);
    // The same admin, without TOTP, is now refused everything but enrolment and signing out.
    let res = post_form(&app, ListUsers::PATH, Some(&s), &[]).await;
    let (status, err) = error_of(res).await;
    assert_eq!(status, 422);
    assert!(
        matches!(err, AppError::Validation { ref field, .. } if field == "totp"),
        "{err:?}"
    );
    // A reload (the page asks who is signed in) tells the UI too, not only the login answer.
    let res = post_form(&app, GetCurrentUser::PATH, Some(&s), &[]).await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["name"], "olga");
    assert_eq!(me["must_enrol_totp"], true);
    let res = post_form(
        &app,
        Login::PATH,
        None,
        &[("name", "olga"), ("password", PW), ("code", "")],
    )
    .await;
    assert_eq!(res.status(), 200);
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["must_enrol_totp"], true);
    let res = post_form(&app, BeginTotp::PATH, Some(&s), &[]).await;
    assert_eq!(res.status(), 200);
    let secret = res.json::<serde_json::Value>().await.unwrap()["secret_base32"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = post_form(
        &app,
        ConfirmTotp::PATH,
        Some(&s),
        &[("code", &code_for(&secret, unix_now()))],
    )
    .await;
    assert_eq!(res.status(), 200);
    let res = post_form(&app, ListUsers::PATH, Some(&s), &[]).await;
    assert_eq!(res.status(), 200);
    let res = post_form(&app, GetCurrentUser::PATH, Some(&s), &[]).await;
    let me: serde_json::Value = res.json().await.unwrap();
    assert_eq!(me["must_enrol_totp"], false);
    app.stop().await;
}
