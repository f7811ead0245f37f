//! The web console's guard layers: sessions (tower-sessions, SQLite store), the cross-origin check for
//! state-changing requests (CSRF), and security headers. Applied outermost, around the whole router.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use sqlx::SqlitePool;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use tower_sessions_sqlx_store::SqliteStore;
use walden_app::server::SessionPolicy;

use crate::config::ServeArgs;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "walden_session";

/// Content-Security-Policy. Leptos' hydration loader is an inline module script and the bundle is wasm, so
/// scripts need `'unsafe-inline'` and `'wasm-unsafe-eval'`; everything else is same-origin only, frames are
/// refused, and forms may post only here.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; \
                       style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
                       font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
                       frame-ancestors 'none'";

/// Session lifetimes from the configuration.
pub fn session_policy(config: &ServeArgs) -> SessionPolicy {
    SessionPolicy {
        idle: time::Duration::seconds(config.session_idle_secs.min(i64::MAX as u64) as i64),
        absolute: time::Duration::seconds(config.session_max_secs.min(i64::MAX as u64) as i64),
    }
}

/// The session store (creates its table on first use) and the layer that loads and saves sessions.
pub async fn session_layer(
    pool: &SqlitePool,
    config: &ServeArgs,
) -> anyhow::Result<SessionManagerLayer<SqliteStore>> {
    let store = SqliteStore::new(pool.clone());
    store.migrate().await?;
    let policy = session_policy(config);
    Ok(SessionManagerLayer::new(store)
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(config.secure_cookies)
        .with_path("/")
        // Signed-in sessions are touched on every authenticated call
        // (walden_app::server::session::current_user), so "idle" means "since the last request"; anonymous
        // visits write nothing.
        .with_expiry(Expiry::OnInactivity(policy.idle)))
}

/// Wrap the router: sessions inside, then the CSRF check, then the security headers outermost.
pub fn apply(router: Router, sessions: SessionManagerLayer<SqliteStore>) -> Router {
    router
        .layer(sessions)
        .layer(axum::middleware::from_fn(same_origin_only))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
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

/// Refuse state-changing requests (anything but GET, HEAD, OPTIONS) that a browser says came from another
/// site. The order of evidence follows Go 1.25's `CrossOriginProtection`: `Sec-Fetch-Site` when present
/// (`same-origin` or `none` pass), else `Origin` (must name this host), else `Referer` (same). A request with
/// none of them is not from a browser page (curl, the CLI, tests) and passes: CSRF needs a browser, and
/// browsers send `Origin` on every cross-origin POST. The session cookie is also `SameSite=Strict`.
pub async fn same_origin_only(request: Request<Body>, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match cross_origin_verdict(&request) {
        Ok(()) => next.run(request).await,
        Err(why) => {
            tracing::warn!(path = %request.uri().path(), why, "cross-origin request refused");
            (
                StatusCode::FORBIDDEN,
                "Cross-origin request refused: reload the console and try again.",
            )
                .into_response()
        }
    }
}

fn cross_origin_verdict(request: &Request<Body>) -> Result<(), &'static str> {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err("Sec-Fetch-Site is not same-origin"),
        };
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
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
