//! The HTTP core: base URLs, auth, retries with jittered exponential backoff, rate limiting,
//! error mapping.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use secrecy::SecretString;
use serde::de::DeserializeOwned;

use crate::auth::Token;
use crate::error::{Error, TransportKind};
use crate::ratelimit::{Limiter, RateLimits};

/// Default Machines API base (`FLY_FLAPS_BASE_URL`); paths are under `/v1`.
pub const DEFAULT_MACHINES_BASE_URL: &str = "https://api.machines.dev";
/// Default api.fly.io base (`FLY_API_HOSTNAME`), used for the logs endpoint and GraphQL.
pub const DEFAULT_API_BASE_URL: &str = "https://api.fly.io";
/// Header carrying a lease nonce.
pub const LEASE_NONCE_HEADER: &str = "fly-machine-lease-nonce";
/// Response header carrying Fly's request id.
pub const REQUEST_ID_HEADER: &str = "fly-request-id";
/// How long a new app may stay invisible before [`FlyClient::wait_for_app`] gives up (fly-go
/// `flaps/retry.go::Retry`: one minute).
pub const DEFAULT_APP_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);

/// Retry settings: jittered exponential backoff (via `backon`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Close to fly-go/flyctl: a handful of retries between 100 ms and a few seconds.
    fn default() -> Self {
        Self {
            max_retries: 4,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .build()
    }
}

/// Builder for [`FlyClient`].
pub struct FlyClientBuilder {
    token: Option<SecretString>,
    machines_base_url: Option<String>,
    api_base_url: Option<String>,
    retry: RetryPolicy,
    rate_limits: Option<RateLimits>,
    user_agent: Option<String>,
    app_visibility_timeout: Duration,
}

impl Default for FlyClientBuilder {
    fn default() -> Self {
        Self {
            token: None,
            machines_base_url: None,
            api_base_url: None,
            retry: RetryPolicy::default(),
            rate_limits: Some(RateLimits::FLY),
            user_agent: None,
            app_visibility_timeout: DEFAULT_APP_VISIBILITY_TIMEOUT,
        }
    }
}

impl fmt::Debug for FlyClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlyClientBuilder")
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("machines_base_url", &self.machines_base_url)
            .field("api_base_url", &self.api_base_url)
            .field("retry", &self.retry)
            .field("rate_limits", &self.rate_limits)
            .finish()
    }
}

impl FlyClientBuilder {
    /// The API token, with or without a `Bearer `/`FlyV1 ` prefix.
    pub fn token(mut self, token: SecretString) -> Self {
        self.token = Some(token);
        self
    }

    /// Machines API base URL, without `/v1` (a trailing `/v1` is tolerated).
    pub fn machines_base_url(mut self, url: impl Into<String>) -> Self {
        self.machines_base_url = Some(url.into());
        self
    }

    /// api.fly.io base URL (`FLY_API_HOSTNAME`: the logs endpoint and GraphQL).
    pub fn api_base_url(mut self, url: impl Into<String>) -> Self {
        self.api_base_url = Some(url.into());
        self
    }

    pub fn retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Client-side rate limits; `None` disables them. Default: [`RateLimits::FLY`].
    pub fn rate_limits(mut self, limits: Option<RateLimits>) -> Self {
        self.rate_limits = limits;
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = Some(ua.into());
        self
    }

    /// How long to keep polling for a newly created app that Fly does not show yet.
    /// Default: [`DEFAULT_APP_VISIBILITY_TIMEOUT`].
    pub fn app_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.app_visibility_timeout = timeout;
        self
    }

    pub fn build(self) -> Result<FlyClient, Error> {
        let token = self
            .token
            .as_ref()
            .and_then(Token::parse)
            .ok_or_else(|| Error::Config("no Fly API token given (FLY_API_TOKEN)".into()))?;
        let machines = parse_base(
            self.machines_base_url
                .as_deref()
                .unwrap_or(DEFAULT_MACHINES_BASE_URL),
            "FLY_FLAPS_BASE_URL",
        )?;
        let api = parse_base(
            self.api_base_url.as_deref().unwrap_or(DEFAULT_API_BASE_URL),
            "FLY_API_HOSTNAME",
        )?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(
                self.user_agent
                    .unwrap_or_else(|| format!("fly-rs/{}", env!("CARGO_PKG_VERSION"))),
            )
            .build()
            .map_err(|e| Error::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(FlyClient {
            inner: Arc::new(Inner {
                http,
                token,
                machines,
                api,
                retry: self.retry,
                limiter: self.rate_limits.map(Limiter::new),
                app_visibility_timeout: self.app_visibility_timeout,
                secrets_min_versions: Mutex::new(HashMap::new()),
            }),
        })
    }
}

fn parse_base(raw: &str, var: &str) -> Result<Url, Error> {
    let trimmed = raw.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    let url = Url::parse(trimmed)
        .map_err(|e| Error::Config(format!("{var}: invalid URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(Error::Config(format!(
            "{var}: {raw:?} is not an http(s) base URL"
        )));
    }
    Ok(url)
}

/// A Fly Machines API client. Cheap to clone (shared connection pool and rate limiter).
#[derive(Clone)]
pub struct FlyClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    http: reqwest::Client,
    token: Token,
    machines: Url,
    api: Url,
    pub(crate) retry: RetryPolicy,
    limiter: Option<Limiter>,
    pub(crate) app_visibility_timeout: Duration,
    /// Per app, the newest secrets version this client set (flyctl
    /// `internal/appsecrets/minvers.go`, kept in memory instead of a file).
    secrets_min_versions: Mutex<HashMap<String, u64>>,
}

impl Inner {
    pub(crate) fn retry_delays(&self) -> impl Iterator<Item = Duration> {
        self.retry.delays()
    }

    /// Remember that `app`'s secrets reached `version` (never going back to an older one).
    pub(crate) fn note_secrets_version(&self, app: &str, version: u64) {
        let mut versions = self
            .secrets_min_versions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let known = versions.entry(app.to_string()).or_insert(version);
        *known = (*known).max(version);
    }

    /// The newest secrets version this client set for `app`, if any.
    pub(crate) fn secrets_min_version(&self, app: &str) -> Option<u64> {
        self.secrets_min_versions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(app)
            .copied()
    }
}

impl fmt::Debug for FlyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlyClient")
            .field("machines_base_url", &self.inner.machines.as_str())
            .field("api_base_url", &self.inner.api.as_str())
            .field("token", &self.inner.token)
            .finish_non_exhaustive()
    }
}

/// Which host a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// Machines API, under `/v1`.
    Machines,
    /// api.fly.io, path given in full (e.g. `api/v1/apps/x/logs`).
    Api,
}

/// Retry class of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Safe to repeat: retry 408, 429, 5xx and any transport error.
    Idempotent,
    /// Not safe to repeat: retry only 429 and connection failures (the server never saw it).
    NonIdempotent,
    /// Like `Idempotent`, but a 408 is handed back (the wait loop treats it as "not yet").
    Wait,
}

/// One API call.
pub(crate) struct Call {
    pub method: Method,
    pub host: Host,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    /// Serialized JSON body.
    pub body: Option<Vec<u8>>,
    pub nonce: Option<String>,
    pub idempotency: Idempotency,
    /// Rate-limit key: action and machine id (or app name).
    pub action: &'static str,
    pub resource: String,
    pub timeout: Duration,
}

impl Drop for Call {
    fn drop(&mut self) {
        // Bodies may carry secret values (secrets API).
        use zeroize::Zeroize;
        if let Some(b) = self.body.as_mut() {
            b.zeroize();
        }
    }
}

impl Call {
    pub(crate) fn new(
        method: Method,
        segments: &[&str],
        action: &'static str,
        resource: &str,
    ) -> Self {
        let idempotency = if method == Method::POST {
            Idempotency::NonIdempotent
        } else {
            Idempotency::Idempotent
        };
        Self {
            method,
            host: Host::Machines,
            segments: segments.iter().map(|s| (*s).to_string()).collect(),
            query: Vec::new(),
            body: None,
            nonce: None,
            idempotency,
            action,
            resource: resource.to_string(),
            timeout: Duration::from_secs(60),
        }
    }

    pub(crate) fn query(mut self, k: &str, v: impl Into<String>) -> Self {
        self.query.push((k.to_string(), v.into()));
        self
    }

    pub(crate) fn json<T: serde::Serialize>(mut self, body: &T) -> Result<Self, Error> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::Config(format!("cannot encode request body: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }

    pub(crate) fn nonce(mut self, nonce: Option<&str>) -> Self {
        self.nonce = nonce.map(str::to_string);
        self
    }

    pub(crate) fn idempotency(mut self, i: Idempotency) -> Self {
        self.idempotency = i;
        self
    }

    pub(crate) fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub(crate) fn host(mut self, h: Host) -> Self {
        self.host = h;
        self
    }

    fn display_path(&self) -> String {
        let prefix = match self.host {
            Host::Machines => "/v1",
            Host::Api => "",
        };
        format!("{prefix}/{}", self.segments.join("/"))
    }
}

/// A successful response.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub request_id: Option<String>,
    pub body: Vec<u8>,
    method: String,
    path: String,
}

impl Reply {
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T, Error> {
        crate::decode::json(&self.body).map_err(|message| Error::Decode {
            method: self.method.clone(),
            path: self.path.clone(),
            status: self.status.as_u16(),
            message,
            request_id: self.request_id.clone(),
        })
    }
}

impl FlyClient {
    /// A builder with defaults (Fly's public URLs, documented rate limits, default retries).
    pub fn builder() -> FlyClientBuilder {
        FlyClientBuilder::default()
    }

    /// The Machines API base URL this client calls (without `/v1`). With [`Self::api_base_url`], lets a
    /// caller build a client for another token against the same peer (Walden's per-organisation tokens).
    pub fn machines_base_url(&self) -> &str {
        self.inner.machines.as_str()
    }

    /// The api.fly.io base URL this client calls (logs, GraphQL).
    pub fn api_base_url(&self) -> &str {
        self.inner.api.as_str()
    }

    /// Configure from flyctl's environment variables: `FLY_API_TOKEN` (required),
    /// `FLY_FLAPS_BASE_URL` (Machines API) and `FLY_API_HOSTNAME` (api.fly.io).
    pub fn from_env() -> Result<Self, Error> {
        let mut b = Self::builder();
        match std::env::var("FLY_API_TOKEN") {
            Ok(t) if !t.trim().is_empty() => b = b.token(SecretString::from(t)),
            _ => return Err(Error::Config("FLY_API_TOKEN is not set".into())),
        }
        if let Ok(u) = std::env::var("FLY_FLAPS_BASE_URL") {
            if !u.trim().is_empty() {
                b = b.machines_base_url(u);
            }
        }
        if let Ok(u) = std::env::var("FLY_API_HOSTNAME") {
            if !u.trim().is_empty() {
                b = b.api_base_url(u);
            }
        }
        b.build()
    }

    fn url(&self, call: &Call) -> Result<Url, Error> {
        let mut url = match call.host {
            Host::Machines => self.inner.machines.clone(),
            Host::Api => self.inner.api.clone(),
        };
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| Error::Config("base URL cannot take a path".into()))?;
            segs.pop_if_empty();
            if call.host == Host::Machines {
                segs.push("v1");
            }
            // Each segment is percent-encoded: ids and names can never change the path shape.
            segs.extend(call.segments.iter());
        }
        if !call.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &call.query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    fn headers(&self, call: &Call) -> Result<HeaderMap, Error> {
        let mut h = HeaderMap::new();
        let auth = self.inner.token.header_value().ok_or_else(|| {
            Error::Config("the API token contains characters not allowed in a header".into())
        })?;
        h.insert(AUTHORIZATION, auth);
        if call.body.is_some() {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(n) = &call.nonce {
            let v = HeaderValue::from_str(n)
                .map_err(|_| Error::Config("lease nonce is not a valid header value".into()))?;
            h.insert(LEASE_NONCE_HEADER, v);
        }
        Ok(h)
    }

    /// Send one call, retrying as its idempotency class allows.
    pub(crate) async fn send(&self, call: &Call) -> Result<Reply, Error> {
        let url = self.url(call)?;
        let headers = self.headers(call)?;
        let path = call.display_path();
        let method = call.method.to_string();
        let mut delays = self.inner.retry.delays();
        loop {
            let outcome = self.attempt(call, &url, &headers, &method, &path).await;
            let (err, retry_after) = match outcome {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if !retryable(&err, call.idempotency) {
                return Err(err);
            }
            let Some(delay) = delays.next() else {
                return Err(err);
            };
            // Honour Retry-After (seconds) on 429/503, capped at the policy's maximum delay.
            let delay = match retry_after {
                Some(ra) => ra.clamp(delay, self.inner.retry.max_delay.max(delay)),
                None => delay,
            };
            tracing::debug!(%method, %path, error = %err, ?delay, "retrying Fly API call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        url: &Url,
        headers: &HeaderMap,
        method: &str,
        path: &str,
    ) -> Result<Reply, (Error, Option<Duration>)> {
        if let Some(l) = &self.inner.limiter {
            l.acquire(call.action, &call.resource).await;
        }
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), url.clone())
            .headers(headers.clone())
            .timeout(call.timeout);
        if let Some(b) = &call.body {
            req = req.body(b.clone());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Err((transport(method, path, e), None)),
        };
        let status = resp.status();
        let request_id = resp
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match resp.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return Err((transport(method, path, e), None)),
        };
        if status.is_success() {
            return Ok(Reply {
                status,
                request_id,
                body,
                method: method.to_string(),
                path: path.to_string(),
            });
        }
        let (message, code) = crate::decode::error_body(&body);
        Err((
            Error::Api {
                method: method.to_string(),
                path: path.to_string(),
                status: status.as_u16(),
                message,
                code,
                request_id,
            },
            retry_after,
        ))
    }
}

fn transport(method: &str, path: &str, e: reqwest::Error) -> Error {
    let kind = if e.is_connect() {
        TransportKind::Connect
    } else if e.is_timeout() {
        TransportKind::Timeout
    } else {
        TransportKind::Other
    };
    Error::Transport {
        method: method.to_string(),
        path: path.to_string(),
        kind,
        source: e.without_url(),
    }
}

/// Whether an error may be retried for a call of the given class.
pub(crate) fn retryable(err: &Error, idem: Idempotency) -> bool {
    match err {
        Error::Api { status: 429, .. } => true,
        Error::Transport {
            kind: TransportKind::Connect,
            ..
        } => true,
        Error::Api { status: 408, .. } => idem == Idempotency::Idempotent,
        Error::Api { status, .. } if *status >= 500 => idem != Idempotency::NonIdempotent,
        Error::Transport { .. } => idem != Idempotency::NonIdempotent,
        _ => false,
    }
}

/// A create failed in a way that leaves its outcome unknown (408, 5xx, lost connection).
pub(crate) fn ambiguous(err: &Error) -> bool {
    match err {
        Error::Api { status, .. } => *status == 408 || *status >= 500,
        Error::Transport { kind, .. } => *kind != TransportKind::Connect,
        _ => false,
    }
}
