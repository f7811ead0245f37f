//! The front door (issue #10 items 1, 3, 6 and 9): the setup token, allowed hosts, security headers and the CSP
//! nonce, the session cookie and store, audited refusals, and 400 for malformed input.

use walden_app::api::auth::{GetCurrentUser, GetSetupNeeded, SetupAdmin};
use walden_app::api::users::ListUsers;
use walden_app::error::AppError;
use walden_core::audit::{AuditFilter, AuditRow};
use walden_core::users::Role;

use crate::helpers::{app, app_with, error_of, spawn_app_with, TestApp, PW, SETUP_TOKEN};

/// The audit rows with `action`, oldest first.
async fn rows(app: &TestApp, action: &str) -> Vec<AuditRow> {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let filter = AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    let mut rows = walden_core::audit::query(&pool, &filter, None, 500)
        .await
        .unwrap()
        .rows;
    pool.close().await;
    rows.reverse();
    rows
}

fn setup(token: &str) -> SetupAdmin {
    SetupAdmin {
        token: token.into(),
        name: "root".into(),
        password: PW.into(),
    }
}

#[tokio::test]
async fn setup_needs_the_setup_token_and_each_refusal_is_audited() {
    let app = app().await;
    let browser = app.session();
    for wrong in ["", "not the setup token", &SETUP_TOKEN[1..]] {
        let (status, err) = error_of(browser.call(&setup(wrong)).await).await;
        assert_eq!(status, 422, "{wrong:?}");
        assert!(
            matches!(err, AppError::Validation { ref field, .. } if field == "token"),
            "{err:?}"
        );
    }
    let res = browser.call(&GetSetupNeeded {}).await;
    assert!(res.json::<bool>().await.unwrap(), "nobody was created");
    assert_eq!(browser.whoami().await, None);
    let denied = rows(&app, "setup.first_admin").await;
    assert_eq!(denied.len(), 3);
    assert!(denied.iter().all(|r| r.outcome == "denied"), "{denied:?}");
    assert!(denied.iter().all(|r| r.actor_name == "(anonymous)"));
    for row in &denied {
        let shown = format!("{row:?}");
        assert!(
            !shown.contains(SETUP_TOKEN),
            "the token stays out of the log"
        );
    }

    let res = browser.call(&setup(SETUP_TOKEN)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(browser.whoami().await.as_deref(), Some("root"));
    app.stop().await;
}

#[tokio::test]
async fn a_console_without_a_configured_token_makes_its_own() {
    // No WALDEN_SETUP_TOKEN: the console prints a link with a random token; guessing does not work.
    let app = spawn_app_with(|c| {
        c.secure_cookies = false;
        c.password_hash = walden_core::users::HashParams::TEST;
    })
    .await;
    let browser = app.session();
    for guess in [
        "",
        SETUP_TOKEN,
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let (status, _) = error_of(browser.call(&setup(guess)).await).await;
        assert_eq!(status, 422, "{guess:?}");
    }
    assert_eq!(rows(&app, "setup.first_admin").await.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn the_setup_page_takes_the_token_from_its_link() {
    let app = app().await;
    let res = app
        .client
        .get(app.url("/setup?token=from-the-link"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains("name=\"token\""), "a token field");
    assert!(html.contains("from-the-link"), "filled in from ?token=");
    app.stop().await;
}

#[tokio::test]
async fn another_host_name_is_refused_and_audited_but_probes_answer() {
    let app = app().await;
    let rebind = |path: &str| {
        app.client
            .get(app.url(path))
            .header("host", "rebind.attacker.example:3000")
    };
    for path in ["/", "/api/get_current_user", "/login"] {
        let res = rebind(path).send().await.unwrap();
        assert_eq!(res.status(), 421, "{path}");
        let text = res.text().await.unwrap();
        assert!(text.contains("does not answer to that host name"), "{text}");
        assert!(text.contains("(request "), "with a request id: {text}");
    }
    let res = app
        .client
        .post(app.url("/api/login"))
        .header("host", "rebind.attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("name=x&password=y&code=")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    // Fly's health checks come by the machine's private address.
    for probe in ["/healthz", "/readyz"] {
        let res = rebind(probe).send().await.unwrap();
        assert_eq!(res.status(), 200, "{probe}");
    }
    // The console's own names still work.
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{host}");
        let res = app
            .client
            .get(app.url("/login"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{host}");
    }
    let refused = rows(&app, "request.refused").await;
    assert_eq!(refused.len(), 4);
    let first = &refused[0];
    assert_eq!(first.outcome, "denied");
    assert_eq!(first.actor_name, "(anonymous)");
    assert_eq!(first.client_ip.as_deref(), Some("127.0.0.1"));
    assert!(first.request_id.is_some());
    let detail = first.detail.as_deref().unwrap();
    assert!(detail.contains("host not allowed"), "{detail}");
    assert!(detail.contains("rebind.attacker.example"), "{detail}");
    // No user, no session: nothing but the refusal rows was written.
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM tower_sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    pool.close().await;
    app.stop().await;
}

#[tokio::test]
async fn configured_hosts_replace_the_defaults() {
    let app = app_with(|c| c.allowed_hosts = vec!["walden.example".into()]).await;
    let get = |host: &'static str| {
        app.client
            .get(app.url("/login"))
            .header("host", host)
            .send()
    };
    assert_eq!(get("walden.example").await.unwrap().status(), 200);
    assert_eq!(get("localhost").await.unwrap().status(), 421);
    app.stop().await;
}

#[tokio::test]
async fn anonymous_refusals_are_recorded_within_a_budget() {
    let app = app().await;
    let attempts = 2 * walden_app::server::refusals::ANONYMOUS_REFUSALS_PER_MIN as usize;
    for _ in 0..attempts {
        let res = app
            .client
            .get(app.url("/"))
            .header("host", "rebind.attacker.example")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 421, "refused, recorded or not");
    }
    let recorded = rows(&app, "request.refused").await.len();
    // The budget refills slowly (one row per three seconds); however long the loop took, it cannot have
    // refilled by half.
    let budget = walden_app::server::refusals::ANONYMOUS_REFUSALS_PER_MIN as usize;
    assert!(
        recorded >= budget && recorded < attempts,
        "{recorded} rows for {attempts} refusals"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cross_origin_refusal_is_audited() {
    let app = app().await;
    let res = app
        .session()
        .request(&ListUsers {})
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let text = res.text().await.unwrap();
    assert!(text.contains("Cross-origin request refused"), "{text}");
    let refused = rows(&app, "request.refused").await;
    assert_eq!(refused.len(), 1);
    let detail = refused[0].detail.as_deref().unwrap();
    assert!(detail.contains("/api/list_users"), "{detail}");
    app.stop().await;
}

#[tokio::test]
async fn role_and_sign_in_refusals_leave_access_denied_rows() {
    let app = app().await;
    let viewer = app.signed_in(Role::Viewer).await;
    let (status, _) = error_of(viewer.call(&ListUsers {}).await).await;
    assert_eq!(status, 403);
    let (status, _) = error_of(app.session().call(&ListUsers {}).await).await;
    assert_eq!(status, 401);
    let denied = rows(&app, "access.denied").await;
    assert_eq!(denied.len(), 2, "{denied:?}");
    let (by_viewer, by_anonymous) = (&denied[0], &denied[1]);
    assert_eq!(by_viewer.actor_name, "viewer1");
    assert_eq!(by_viewer.outcome, "denied");
    assert_eq!(
        by_viewer.subject.as_deref(),
        Some("endpoint:/api/list_users")
    );
    let detail = by_viewer.detail.as_deref().unwrap();
    assert!(detail.contains("\"needs\":\"admin\""), "{detail}");
    assert!(by_viewer.request_id.is_some());
    assert_eq!(by_anonymous.actor_name, "(anonymous)");
    // An anonymous visitor's page (the "please sign in" panel) is not a refusal.
    let res = app.client.get(app.url("/users")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(rows(&app, "access.denied").await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn malformed_input_is_a_400_with_a_generic_text() {
    let app = app().await;
    let admin = app.signed_in(Role::Admin).await;
    for (path, content_type, body) in [
        ("/api/list_audit", "application/json", "{not json"),
        (
            "/api/set_user_role",
            "application/x-www-form-urlencoded",
            "user_id=abc&role=viewer",
        ),
        (
            "/api/set_user_role",
            "application/x-www-form-urlencoded",
            "",
        ),
    ] {
        let res = admin
            .client
            .post(app.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, err) = error_of(res).await;
        assert_eq!(status, 400, "{path} {body:?}");
        let AppError::BadRequest { request_id } = &err else {
            panic!("{path} {body:?}: {err:?}");
        };
        assert_ne!(request_id, "-");
        let text = err.to_string();
        assert!(!text.contains("key must"), "no decoder text: {text}");
    }
    app.stop().await;
}

/// The nonce of a response's Content-Security-Policy.
fn csp_nonce(res: &reqwest::Response) -> String {
    let csp = res
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(!csp.contains("'unsafe-inline' 'wasm"), "{csp}");
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap();
    assert!(!script_src.contains("unsafe-inline"), "{script_src}");
    let nonce = script_src
        .split_whitespace()
        .find_map(|s| s.strip_prefix("'nonce-"))
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no nonce in {script_src}"));
    assert!(nonce.len() >= 16, "{nonce}");
    nonce.to_owned()
}

#[tokio::test]
async fn every_script_carries_the_csp_nonce_of_its_response() {
    let app = app().await;
    let mut nonces = Vec::new();
    for path in ["/", "/login", "/setup", "/no-such-page"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        let nonce = csp_nonce(&res);
        let html = res.text().await.unwrap();
        let scripts: Vec<&str> = html
            .match_indices("<script")
            .map(|(at, _)| &html[at..at + html[at..].find('>').unwrap()])
            .collect();
        assert!(!scripts.is_empty(), "{path}: no scripts at all");
        for tag in scripts {
            assert!(
                tag.contains(&format!("nonce=\"{nonce}\"")),
                "{path}: {tag} lacks the nonce {nonce}"
            );
        }
        nonces.push(nonce);
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 4, "a fresh nonce per response");
    app.stop().await;
}

#[tokio::test]
async fn pages_and_server_functions_are_not_stored_and_hsts_follows_secure_cookies() {
    let app = app().await;
    let browser = app.session();
    let pages = ["/", "/account"].map(|path| app.client.get(app.url(path)).send());
    let mut answers = Vec::new();
    for page in pages {
        answers.push(("a page", page.await.unwrap()));
    }
    answers.push(("a call", browser.call(&GetCurrentUser {}).await));
    for (path, res) in answers {
        assert_eq!(res.status(), 200, "{path}");
        let h = res.headers();
        assert_eq!(h.get("cache-control").unwrap(), "no-store", "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "no HSTS over plain HTTP ({path})"
        );
    }
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert!(res.headers().get("cache-control").is_none());
    app.stop().await;

    let secure = app_with(|c| c.secure_cookies = true).await;
    for path in ["/", "/healthz"] {
        let res = secure.client.get(secure.url(path)).send().await.unwrap();
        assert_eq!(
            res.headers().get("strict-transport-security").unwrap(),
            "max-age=63072000; includeSubDomains",
            "{path}"
        );
    }
    secure.stop().await;
}

#[tokio::test]
async fn the_session_store_holds_no_cookie_value() {
    let app = app().await;
    let session = app.signed_in(Role::Viewer).await;
    let cookie = session.id().unwrap();
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM tower_sessions")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], cookie, "the stored key is a hash of the cookie");
    // The cookie still signs its holder in; the stored key does not.
    assert_eq!(session.whoami().await.as_deref(), Some("viewer1"));
    assert_eq!(app.session_with_id(&ids[0]).whoami().await, None);
    app.stop().await;
}
