//! The web console's guard layers: the allowed-Host check (DNS rebinding), the cross-origin check for
//! state-changing requests (CSRF), sessions (tower-sessions over SQLite, ids stored hashed), and security
//! headers (a per-request CSP nonce, HSTS, `Cache-Control: no-store`).
//!
//! Refused requests get a short generic text with the request id, and an audit row (`request.refused`,
//! within the per-client budget of `walden_app::server::refusals`); nothing else is written for them.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use leptos::nonce::Nonce;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;
use walden_app::server::{refusals, RefusalBudget, SessionPolicy};
use walden_core::audit::{actions, Actor, Event, Outcome, RequestMeta};
use walden_core::Walden;

use crate::config::ServeArgs;

/// The session cookie's name over plain HTTP (local use with `WALDEN_SECURE_COOKIES=false`).
pub const SESSION_COOKIE: &str = "walden_session";
/// The session cookie's name when cookies are `Secure`: the `__Host-` prefix makes browsers refuse it unless it
/// is Secure, has `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-walden_session";

/// `Strict-Transport-Security`, sent only when cookies are `Secure` (that is, when the console is served over
/// HTTPS): two years, subdomains included.
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The session cookie's name for this configuration.
pub fn session_cookie(secure: bool) -> &'static str {
    if secure {
        SECURE_SESSION_COOKIE
    } else {
        SESSION_COOKIE
    }
}

/// Content-Security-Policy for a response whose scripts carry `nonce`. Scripts run only from this origin or
/// with this request's nonce (Leptos puts it on its hydration loader and its streamed chunks; no
/// `'unsafe-inline'`), the bundle is wasm (`'wasm-unsafe-eval'`), everything else is same-origin only,
/// frames are refused, and forms may post only here.
pub fn csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
         object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Session lifetimes from the configuration.
pub fn session_policy(config: &ServeArgs) -> SessionPolicy {
    SessionPolicy {
        idle: time::Duration::seconds(config.session_idle_secs.min(i64::MAX as u64) as i64),
        absolute: time::Duration::seconds(config.session_max_secs.min(i64::MAX as u64) as i64),
    }
}

/// The session store (creates its table on first use) and the layer that loads and saves sessions.
///
/// The cookie has no `Max-Age`: it is a browser-session cookie, and the idle lifetime is enforced on the
/// server, by the expiry the store keeps ([`HashedIdStore`] sets it to now + idle on every save; signed-in
/// sessions are saved on every authenticated call, see `walden_app::server::session::current_user`).
pub async fn session_layer(
    pool: &SqlitePool,
    config: &ServeArgs,
) -> anyhow::Result<SessionManagerLayer<HashedIdStore<SqliteStore>>> {
    let store = SqliteStore::new(pool.clone());
    store.migrate().await?;
    let policy = session_policy(config);
    let store = HashedIdStore {
        inner: store,
        idle: policy.idle,
    };
    Ok(SessionManagerLayer::new(store)
        .with_name(session_cookie(config.secure_cookies))
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(config.secure_cookies)
        .with_path("/")
        .with_expiry(Expiry::OnSessionEnd))
}

/// A session store that keeps SHA-256 of each session id instead of the id (security review L6), so a read of
/// the database or of a backup yields no cookie that signs anyone in. It also sets each record's expiry to
/// now + the idle lifetime whenever the record is saved.
///
/// Sessions stored before this (under their plain ids) no longer match anything: their users sign in again,
/// and the rows expire and are deleted by the maintenance worker.
#[derive(Clone, Debug)]
pub struct HashedIdStore<S> {
    inner: S,
    idle: time::Duration,
}

impl<S> HashedIdStore<S> {
    /// The key a session is stored under: the first 128 bits of SHA-256 of the cookie's id.
    fn stored_id(id: &Id) -> Id {
        let digest = Sha256::digest(id.0.to_le_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        Id(i128::from_le_bytes(first))
    }

    fn stored(&self, record: &Record) -> Record {
        Record {
            id: Self::stored_id(&record.id),
            data: record.data.clone(),
            expiry_date: time::OffsetDateTime::now_utc() + self.idle,
        }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore + Clone> SessionStore for HashedIdStore<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A fresh random id whose hash is not taken (a collision is astronomically unlikely; check anyway,
        // as tower-sessions' own stores do).
        while self
            .inner
            .load(&Self::stored_id(&record.id))
            .await?
            .is_some()
        {
            record.id = Id::default();
        }
        self.inner.save(&self.stored(record)).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.inner.save(&self.stored(record)).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let record = self.inner.load(&Self::stored_id(id)).await?;
        Ok(record.map(|mut r| {
            r.id = *id;
            r
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.inner.delete(&Self::stored_id(id)).await
    }
}

/// The host names the console answers to (security review L4): a DNS-rebinding page reaches the console
/// under the attacker's name, which is not on the list.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// Lower-case host (IPv6 in brackets) and, when given, the only port it is allowed with.
    entries: Vec<(String, Option<u16>)>,
}

impl AllowedHosts {
    /// `WALDEN_ALLOWED_HOSTS` when set; else the bind address (unless it is 0.0.0.0 or ::), `localhost`,
    /// `127.0.0.1` and `[::1]`, on any port (tests and the browser tests bind port 0).
    pub fn from_config(config: &ServeArgs) -> anyhow::Result<Self> {
        let configured: Vec<&str> = config
            .allowed_hosts
            .iter()
            .map(|h| h.trim())
            .filter(|h| !h.is_empty())
            .collect();
        let mut entries = Vec::new();
        if configured.is_empty() {
            for host in ["localhost", "127.0.0.1", "[::1]"] {
                entries.push((host.to_owned(), None));
            }
            match config.bind.ip() {
                ip if ip.is_unspecified() => {}
                IpAddr::V4(v4) => entries.push((v4.to_string(), None)),
                IpAddr::V6(v6) => entries.push((format!("[{v6}]"), None)),
            }
        } else {
            for text in configured {
                let entry = split_authority(text).ok_or_else(|| {
                    anyhow::anyhow!(
                        "WALDEN_ALLOWED_HOSTS: {text:?} is not a host name or host:port"
                    )
                })?;
                entries.push(entry);
            }
        }
        Ok(AllowedHosts { entries })
    }

    /// Whether a request's `Host` (its authority: `host[:port]`) is allowed.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = split_authority(authority) else {
            return false;
        };
        self.entries
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port))
    }
}

/// `host[:port]` → lower-case host without a trailing dot, and the port. IPv6 stays in brackets.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim().to_ascii_lowercase();
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, rest) = authority.split_at(end + 1);
        match rest {
            "" => (host.to_owned(), None),
            _ => (host.to_owned(), Some(rest.strip_prefix(':')?.parse().ok()?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port.parse().ok()?)),
            None => (authority.clone(), None),
        }
    };
    let host = host.trim_end_matches('.').to_owned();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'));
    valid.then_some((host, port))
}

/// What the guard middleware needs: the allowed hosts, and where to record refusals.
#[derive(Clone)]
pub struct Guard {
    pub hosts: Arc<AllowedHosts>,
    pub walden: Walden,
    pub refusals: Arc<RefusalBudget>,
    pub client_ip_header: Option<HeaderName>,
}

/// The guard layers, innermost first: sessions, then the Host and cross-origin checks. The request id and the
/// trace span are set outside them (in `startup::router`), so refusals carry a request id.
pub fn guard(
    router: Router,
    sessions: SessionManagerLayer<HashedIdStore<SqliteStore>>,
    guard: Guard,
) -> Router {
    router
        .layer(sessions)
        .layer(axum::middleware::from_fn_with_state(
            guard,
            host_and_origin_check,
        ))
}

/// The security headers, outermost: on every response, a fresh CSP nonce for the page being rendered (handed
/// to Leptos through the request's extensions, see `startup::router`), and `no-store` for pages and server
/// functions.
pub fn headers(router: Router, secure_cookies: bool) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state(
            secure_cookies,
            nonce_and_caching,
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// The CSP nonce of a request, in its extensions (read by the Leptos context in `startup::router`).
#[derive(Clone, Debug)]
pub struct CspNonce(pub Nonce);

async fn nonce_and_caching(
    State(secure_cookies): State<bool>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    let nonce = Nonce::new();
    request.extensions_mut().insert(CspNonce(nonce.clone()));
    let is_call = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp(&nonce)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if secure_cookies {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    // Pages and server-function answers may carry secrets (a TOTP seed, an invite link) or a user's data:
    // never stored by a browser or a proxy. Static assets under /pkg stay cacheable.
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_call || is_html {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuse, before anything else runs: a request whose `Host` is not allowed (421), and a state-changing
/// request (anything but GET, HEAD, OPTIONS) that a browser says came from another site (403). Each refusal is
/// recorded as `request.refused`.
///
/// The probes are exempt from the Host check: Fly's health checks reach the machine by its private address,
/// with whatever `Host` that gives, and `/healthz` and `/readyz` reveal nothing and change nothing.
///
/// The cross-origin check's order of evidence follows Go 1.25's `CrossOriginProtection`: `Sec-Fetch-Site`
/// when present (`same-origin` or `none` pass), else `Origin` (must name this host, which the Host check has
/// just found allowed), else `Referer` (same). A request with none of them is not from a browser page (curl,
/// the CLI, tests) and passes: CSRF needs a browser, and browsers send `Origin` on every cross-origin POST. The
/// session cookie is also `SameSite=Strict`.
pub async fn host_and_origin_check(
    State(guard): State<Guard>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let probe = matches!(path.as_str(), "/healthz" | "/readyz")
        && matches!(*request.method(), Method::GET | Method::HEAD);
    if !probe {
        let host = authority(&request);
        if !host.as_deref().is_some_and(|h| guard.hosts.allows(h)) {
            let shown: Option<String> = host.map(|h| h.chars().take(100).collect());
            let detail =
                serde_json::json!({ "why": "host not allowed", "host": shown, "path": path });
            let from = origin_of(&request, &guard);
            return refuse(
                &guard,
                from,
                StatusCode::MISDIRECTED_REQUEST,
                "This console does not answer to that host name",
                detail,
            )
            .await;
        }
    }
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match cross_origin_verdict(&request) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            let detail = serde_json::json!({ "why": why, "path": path });
            let from = origin_of(&request, &guard);
            refuse(
                &guard,
                from,
                StatusCode::FORBIDDEN,
                "Cross-origin request refused: reload the console and try again",
                detail,
            )
            .await
        }
    }
}

/// The request's authority: the URI's (HTTP/2) or the `Host` header's (HTTP/1.1).
fn authority(request: &Request<Body>) -> Option<String> {
    if let Some(authority) = request.uri().authority() {
        return Some(authority.as_str().to_owned());
    }
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
}

/// Log, record (within the client's budget) and answer a refusal with `status` and a generic `text`.
async fn refuse(
    guard: &Guard,
    (request_id, client): (Option<String>, Option<IpAddr>),
    status: StatusCode,
    text: &str,
    detail: serde_json::Value,
) -> Response {
    tracing::warn!(%detail, "request refused");
    let meta = RequestMeta {
        request_id: request_id.clone(),
        client_ip: client.map(|ip| ip.to_string()),
    };
    let event = Event::new(actions::REQUEST_REFUSED, Outcome::Denied).detail(detail);
    refusals::record(
        &guard.walden,
        &guard.refusals,
        client,
        &Actor::Anonymous,
        &meta,
        &event,
    )
    .await;
    let shown = request_id.as_deref().unwrap_or("-");
    (status, format!("{text} (request {shown}).")).into_response()
}

/// Who sent the request, for a refusal's audit row: its request id and the client's address.
fn origin_of(request: &Request<Body>, guard: &Guard) -> (Option<String>, Option<IpAddr>) {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        request_id,
        client_ip(request, guard.client_ip_header.as_ref()),
    )
}

/// The client's address: the configured proxy header when present and parsable, else the TCP peer (the same
/// rule as `walden_app::server::limits::client_ip`).
fn client_ip(request: &Request<Body>, header: Option<&HeaderName>) -> Option<IpAddr> {
    let from_header = header.and_then(|name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
    });
    from_header.or_else(|| {
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })
}

fn cross_origin_verdict(request: &Request<Body>) -> Result<(), &'static str> {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err("Sec-Fetch-Site is not same-origin"),
        };
    }
    // The request's own authority (HTTP/2 has no Host header), already checked against the allowed hosts.
    let host = authority(request).map(|h| h.to_ascii_lowercase());
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    let Some(claimed) = claimed else {
        return Ok(());
    };
    let claimed = claimed.to_str().map_err(|_| "Origin/Referer is not text")?;
    let Some(host) = host else {
        return Err("no Host header to compare Origin with");
    };
    match authority_of(claimed) {
        Some(a) if a == host => Ok(()),
        _ => Err("Origin/Referer names another site"),
    }
}

/// `scheme://host[:port]/…` → `host[:port]`, lower-case. `None` for `null` and anything unparsable.
fn authority_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    // Drop any userinfo.
    let authority = authority.rsplit('@').next()?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, headers: &[(&str, &str)]) -> Request<Body> {
        let mut b = Request::builder().method(method).uri("/api/login");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    }

    fn hosts(configured: &[&str], bind: &str) -> AllowedHosts {
        let mut config = ServeArgs::new("d".into(), bind.parse().unwrap());
        config.allowed_hosts = configured.iter().map(|s| s.to_string()).collect();
        AllowedHosts::from_config(&config).unwrap()
    }

    #[test]
    fn allowed_hosts_default_to_the_bind_address_and_localhost() {
        let local = hosts(&[], "127.0.0.1:3000");
        for ok in [
            "localhost:3000",
            "LOCALHOST",
            "127.0.0.1:41234",
            "[::1]:3000",
            "localhost.",
        ] {
            assert!(local.allows(ok), "{ok}");
        }
        for refused in [
            "rebind.attacker.example:3000",
            "127.0.0.2:3000",
            "",
            "localhost:x",
            "a b",
        ] {
            assert!(!local.allows(refused), "{refused}");
        }
        let lan = hosts(&[], "192.0.2.10:3000");
        assert!(lan.allows("192.0.2.10:3000"));
        let v6 = hosts(&[], "[2001:db8::1]:3000");
        assert!(v6.allows("[2001:db8::1]:3000"));
        let everywhere = hosts(&[], "0.0.0.0:8080");
        assert!(!everywhere.allows("0.0.0.0:8080"));
        assert!(everywhere.allows("localhost:8080"));
    }

    #[test]
    fn configured_hosts_replace_the_defaults() {
        let fly = hosts(
            &["walden.fly.dev", " console.example.com:8443 "],
            "0.0.0.0:8080",
        );
        assert!(fly.allows("walden.fly.dev"));
        assert!(fly.allows("Walden.Fly.Dev:443"));
        assert!(fly.allows("console.example.com:8443"));
        assert!(!fly.allows("console.example.com"));
        assert!(!fly.allows("localhost:8080"));
        let mut bad = ServeArgs::new("d".into(), "0.0.0.0:8080".parse().unwrap());
        bad.allowed_hosts = vec!["https://walden.fly.dev/".into()];
        assert!(AllowedHosts::from_config(&bad).is_err());
    }

    #[test]
    fn session_ids_are_stored_hashed() {
        let id = Id(42);
        let stored = HashedIdStore::<()>::stored_id(&id);
        assert_ne!(stored, id);
        assert_eq!(stored, HashedIdStore::<()>::stored_id(&Id(42)));
        assert_ne!(stored, HashedIdStore::<()>::stored_id(&Id(43)));
    }

    #[test]
    fn verdicts() {
        let host = ("host", "walden.example:3000");
        let ok = |h: &[(&str, &str)]| cross_origin_verdict(&req(Method::POST, h)).is_ok();
        assert!(ok(&[host]));
        assert!(ok(&[host, ("origin", "https://walden.example:3000")]));
        assert!(ok(&[host, ("origin", "http://WALDEN.example:3000")]));
        assert!(!ok(&[host, ("origin", "https://evil.example")]));
        assert!(!ok(&[host, ("origin", "https://walden.example:3001")]));
        assert!(!ok(&[host, ("origin", "null")]));
        assert!(ok(&[
            host,
            ("referer", "https://walden.example:3000/audit?x=1")
        ]));
        assert!(!ok(&[
            host,
            ("referer", "https://evil.example/walden.example:3000")
        ]));
        assert!(!ok(&[
            host,
            ("referer", "https://walden.example:3000@evil.example/")
        ]));
        assert!(ok(&[
            host,
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://evil.example")
        ]));
        assert!(!ok(&[host, ("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[host, ("sec-fetch-site", "same-site")]));
        assert!(ok(&[host, ("sec-fetch-site", "none")]));
    }
}
