//! The test harness: a console on 127.0.0.1:0 with its own SQLite file, and browser-like sessions that call
//! server functions by their types.
//!
//! ```ignore
//! let app = app().await;
//! let admin = app.signed_in(Role::Admin).await;
//! let res = admin.call(&SetUserRole { user_id, role: "viewer".into() }).await;
//! assert_eq!(res.status(), 200);
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use leptos::server_fn::{ContentType, Http, ServerFn};
use reqwest::cookie::{CookieStore, Jar};
use reqwest::{Response, StatusCode};
use secrecy::SecretString;
use serde::Serialize;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// No request of these tests should take more than a few seconds; one that hangs fails with its URL in the
/// message instead of stalling the suite without a word.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
use walden::config::ServeArgs;
use walden::startup::Application;
use walden_app::api::auth::{GetCurrentUser, Login};
use walden_app::api::orgs::TrackCluster;
use walden_app::error::AppError;
use walden_core::audit::{Actor, RequestMeta};
use walden_core::escrow::{CaptureHow, Escrow};
use walden_core::users::{Accounts, HashParams, Hasher, Role};

/// Every test user's password.
pub const PW: &str = "a perfectly fine passphrase";
/// The session cookie's name (over plain HTTP, as the account tests run).
pub const SESSION_COOKIE: &str = walden::security::SESSION_COOKIE;
/// The setup token of every [`app_with`] console.
pub const SETUP_TOKEN: &str = "the test console's setup token";

/// A console running in this test process.
pub struct TestApp {
    pub base: String,
    /// A plain client: no cookies kept, redirects not followed.
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub metrics_base: String,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<anyhow::Result<()>>,
    /// How many users [`TestApp::signed_in`] has made (their names are unique).
    users_made: AtomicUsize,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Stop the console the way a signal would, and wait until it has finished.
    pub async fn stop(self) -> TempDir {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("server task panicked")
            .expect("server failed");
        self.dir
    }

    /// Add users (password [`PW`]) straight through walden_core, on the console's own database file.
    pub async fn add_users(&self, users: &[(&str, Role)]) -> Vec<i64> {
        let pool = walden_core::db::open(&self.data_dir()).await.unwrap();
        let accounts = Accounts::new(pool.clone(), Hasher::new(HashParams::TEST).unwrap());
        let mut ids = Vec::new();
        for (name, role) in users {
            let user = accounts
                .create_user(&Actor::cli(), &Default::default(), name, &PW.into(), *role)
                .await
                .unwrap();
            ids.push(user.id);
        }
        pool.close().await;
        ids
    }

    /// A visitor with an empty cookie jar of their own.
    pub fn session(&self) -> Session {
        Session::at(&self.base, reqwest::header::HeaderMap::new())
    }

    /// A visitor presenting `id` as their session id (a stale or planted one, say).
    pub fn session_with_id(&self, id: &str) -> Session {
        let session = self.session();
        let url = self.base.parse().unwrap();
        session
            .jar
            .add_cookie_str(&format!("{SESSION_COOKIE}={id}; Path=/"), &url);
        session
    }

    /// A new session signed in as `name` (asserts that the login works).
    pub async fn login(&self, name: &str, password: &str) -> Session {
        let session = self.session();
        let res = session.login(name, password).await;
        assert_eq!(res.status(), 200, "login {name}");
        assert!(session.id().is_some(), "login sets the session cookie");
        session
    }

    /// A new user with `role` (named after it: `admin1`, `viewer2`, ...), signed in.
    pub async fn signed_in(&self, role: Role) -> Session {
        let n = self.users_made.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{}{n}", role.as_str());
        self.add_users(&[(&name, role)]).await;
        self.login(&name, PW).await
    }
}

/// One browser: a cookie jar and a client that sends its cookies.
pub struct Session {
    base: String,
    pub client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Session {
    /// A visitor of the console at `base` (also one this process did not start, such as a `walden serve`
    /// child) with an empty cookie jar, sending `headers` with every request (a browser's `Origin`, say).
    pub fn at(base: &str, headers: reqwest::header::HeaderMap) -> Session {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .cookie_provider(jar.clone())
            .default_headers(headers)
            .build()
            .expect("client");
        Session {
            base: base.to_owned(),
            client,
            jar,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Call a server function with `args`, encoded as that function expects (URL-encoded by default, JSON
    /// for `input = Json`).
    pub async fn call<F>(&self, args: &F) -> Response
    where
        F: ServerFn + Serialize,
        F::Protocol: InputEncoding,
    {
        self.request(args).send().await.unwrap()
    }

    /// The request [`Session::call`] sends, to add headers to first.
    pub fn request<F>(&self, args: &F) -> reqwest::RequestBuilder
    where
        F: ServerFn + Serialize,
        F::Protocol: InputEncoding,
    {
        let content_type = <F::Protocol as InputEncoding>::CONTENT_TYPE;
        let body = match content_type {
            "application/x-www-form-urlencoded" => serde_qs::to_string(args).unwrap().into_bytes(),
            "application/json" => serde_json::to_vec(args).unwrap(),
            other => panic!("the harness cannot encode {other} for {}", F::PATH),
        };
        self.client
            .post(self.url(F::PATH))
            .header("content-type", content_type)
            .body(body)
    }

    /// A page as this browser gets it (asserting a 200), without Leptos's hydration markers (`<!>`: where it
    /// puts text boundaries is its business, not the page's).
    pub async fn page(&self, path: &str) -> String {
        let res = self.client.get(self.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.text().await.unwrap().replace("<!>", "")
    }

    /// Sign in on this session (whatever the outcome).
    pub async fn login(&self, name: &str, password: &str) -> Response {
        self.call(&Login {
            name: name.into(),
            password: password.into(),
            code: String::new(),
        })
        .await
    }

    /// The name of the signed-in user, if any.
    pub async fn whoami(&self) -> Option<String> {
        let res = self.call(&GetCurrentUser {}).await;
        assert_eq!(res.status(), 200);
        let user: serde_json::Value = res.json().await.unwrap();
        user.get("name").and_then(|n| n.as_str()).map(str::to_owned)
    }

    /// The session id this browser holds, if any.
    pub fn id(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        let cookies = self.jar.cookies(&url)?;
        cookies
            .to_str()
            .unwrap()
            .split("; ")
            .find_map(|pair| pair.strip_prefix(&format!("{SESSION_COOKIE}=")))
            .map(str::to_owned)
    }
}

/// The input encoding of a server function's protocol (`Http<PostUrl, Json>` → URL-encoded).
pub trait InputEncoding {
    const CONTENT_TYPE: &'static str;
}

impl<Input: ContentType, Output> InputEncoding for Http<Input, Output> {
    const CONTENT_TYPE: &'static str = Input::CONTENT_TYPE;
}

/// The session cookie a response sets (the whole `Set-Cookie` value, attributes included), if it sets one.
pub fn set_cookie(res: &Response) -> Option<String> {
    set_cookie_named(res, SESSION_COOKIE)
}

/// The cookie `name` a response sets (the whole `Set-Cookie` value), if it sets one.
pub fn set_cookie_named(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// A server function's error answer: status and decoded error.
pub async fn error_of(res: Response) -> (StatusCode, AppError) {
    let status = res.status();
    let text = res.text().await.unwrap();
    let err: AppError =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status} {text}: {e}"));
    (status, err)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted by `tweak` before the build.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut ServeArgs)) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("temp dir"), tweak).await
}

/// Like [`spawn_app_with`], on the data of an earlier console (`TestApp::stop` hands its directory back): a
/// restart.
pub async fn spawn_app_in(dir: TempDir, tweak: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut config = ServeArgs::new(dir.path().join("data"), addr);
    config.shutdown_grace_secs = 5;
    config.metrics_bind = Some("127.0.0.1:0".parse().expect("addr"));
    tweak(&mut config);
    let app = Application::build_on(config, listener)
        .await
        .expect("build app");
    let metrics_addr = app.metrics_addr().expect("metrics listener");
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        base: format!("http://{addr}"),
        metrics_base: format!("http://{metrics_addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("client"),
        dir,
        shutdown,
        handle,
        users_made: AtomicUsize::new(0),
    }
}

/// The console as the account tests use it: cookies over plain HTTP, cheap password hashes, a master key
/// (TOTP needs one) and a known setup token ([`SETUP_TOKEN`]).
pub async fn app_with(tweak: impl FnOnce(&mut ServeArgs)) -> TestApp {
    spawn_app_with(|c| {
        c.secure_cookies = false;
        c.setup_token = Some(SETUP_TOKEN.into());
        c.password_hash = HashParams::TEST;
        c.master_key = Some("ab".repeat(32).into());
        tweak(c);
    })
    .await
}

pub async fn app() -> TestApp {
    app_with(|_| {}).await
}

/// Stops an [`app`] console and starts a new one on its data directory, configured the same way: a restart.
pub async fn restart(app: TestApp) -> TestApp {
    let dir = app.stop().await;
    spawn_app_in(dir, |c| {
        c.secure_cookies = false;
        c.password_hash = HashParams::TEST;
        c.master_key = Some("ab".repeat(32).into());
    })
    .await
}

/// An admin tracks the demo cluster.
pub async fn track_demo(app: &TestApp) {
    let admin = app.signed_in(Role::Admin).await;
    let track = TrackCluster {
        org: flysim::DEMO_ORG.into(),
        app: flysim::DEMO_APP.into(),
    };
    assert_eq!(admin.call(&track).await.status(), 200);
}

/// Escrows `storage` as the demo cluster's storage settings (a version as a capture would make it), straight
/// through walden_core with the console's master key (see `helpers::app_with`).
pub async fn escrow_storage(app: &TestApp, storage: &[(&str, &str)]) {
    let pool = walden_core::db::open(&app.data_dir()).await.unwrap();
    let master: SecretString = "ab".repeat(32).into();
    let ring = walden::config::keyring(Some(&master), &[]).unwrap();
    let values: BTreeMap<String, SecretString> = [
        ("SU_PASSWORD", "su pw"),
        ("REPL_PASSWORD", "repl pw"),
        ("OPERATOR_PASSWORD", "op pw"),
    ]
    .iter()
    .chain(storage)
    .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
    .collect();
    Escrow::new(pool.clone(), ring)
        .record_capture(
            &Actor::cli(),
            &RequestMeta::default(),
            flysim::DEMO_ORG,
            flysim::DEMO_APP,
            CaptureHow::Manual,
            &values,
        )
        .await
        .unwrap();
    pool.close().await;
}
