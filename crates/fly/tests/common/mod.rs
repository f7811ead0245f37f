//! A capture server for tests: real HTTP on 127.0.0.1:0 (axum), recording every request and
//! answering through a test-provided responder.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use fly::{FlyClient, RetryPolicy, SecretString};
use serde_json::Value;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, e.g. `/v1/apps/a/machines?region=ams`.
    pub uri: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Option<Value>,
    /// Raw body bytes (for non-JSON checks).
    pub raw: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    pub fn query(&self) -> Vec<(String, String)> {
        let q = self.uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        url_pairs(q)
    }
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.replace("%2C", ",").replace("%2c", ","))
        })
        .collect()
}

/// What to answer.
pub enum Reply {
    Json(u16, Value),
    JsonWithHeaders(u16, Value, Vec<(&'static str, String)>),
    Empty(u16),
    /// Close the connection without answering (a lost connection).
    Drop,
    /// Answer with the inner reply after a delay, without holding a runtime thread (a slow Fly call).
    After(std::time::Duration, Box<Reply>),
}

pub type Responder = dyn Fn(&Recorded, &[Recorded]) -> Reply + Send + Sync;

#[derive(Clone)]
struct AppState {
    log: Arc<Mutex<Vec<Recorded>>>,
    responder: Arc<Responder>,
}

pub struct CaptureServer {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CaptureServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CaptureServer {
    /// Start a server; `responder` gets the request and all earlier ones (for call counting).
    pub async fn start(
        responder: impl Fn(&Recorded, &[Recorded]) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = AppState {
            log: log.clone(),
            responder: Arc::new(responder),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, log, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    /// A client pointed at this server for both hosts, with fast retries.
    pub fn client(&self, token: &str) -> FlyClient {
        FlyClient::builder()
            .token(SecretString::from(token.to_string()))
            .machines_base_url(self.url())
            .api_base_url(self.url())
            .retry_policy(RetryPolicy {
                max_retries: 4,
                min_delay: std::time::Duration::from_millis(1),
                max_delay: std::time::Duration::from_millis(5),
            })
            .build()
            .expect("client builds")
    }
}

async fn handle(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = Recorded {
        method: method.to_string(),
        uri: uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        path: uri.path().to_string(),
        headers,
        body: if body.is_empty() {
            None
        } else {
            serde_json::from_slice(&body).ok()
        },
        raw: body.to_vec(),
    };
    let earlier = {
        let mut log = match state.log.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let earlier = log.clone();
        log.push(rec.clone());
        earlier
    };
    let mut reply = (state.responder)(&rec, &earlier);
    while let Reply::After(delay, inner) = reply {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    match reply {
        Reply::Json(s, v) => (status(s), axum::Json(v)).into_response(),
        Reply::JsonWithHeaders(s, v, hs) => {
            let mut r = (status(s), axum::Json(v)).into_response();
            for (k, v) in hs {
                if let Ok(v) = v.parse() {
                    r.headers_mut().insert(k, v);
                }
            }
            r
        }
        Reply::Empty(s) => status(s).into_response(),
        // Unwinding out of the handler makes hyper drop the connection without a response.
        // `resume_unwind` skips the panic hook, so nothing is printed.
        Reply::Drop => std::panic::resume_unwind(Box::new("drop connection")),
        Reply::After(..) => status(500).into_response(), // unwrapped above
    }
}

fn status(s: u16) -> StatusCode {
    StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
