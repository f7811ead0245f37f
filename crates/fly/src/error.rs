//! The client's error type.

use std::fmt;

/// Everything a call can fail with. Display texts never contain tokens or command output.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Fly answered with a non-success status.
    #[error("{method} {path}: HTTP {status}: {}{}", message_or_default(.message), request_id_suffix(.request_id))]
    Api {
        method: String,
        /// Path without query (no secrets are ever sent in paths).
        path: String,
        status: u16,
        /// Fly's `error` (or `message`) text, empty when the body had none.
        message: String,
        /// Fly's `status` code string (`insufficient_capacity`, `name_taken`, …) when present.
        code: Option<String>,
        /// The `fly-request-id` response header, for support.
        request_id: Option<String>,
    },
    /// The request could not be sent or its answer not read (connection refused/reset, timeout).
    #[error("{method} {path}: {kind}: {source}")]
    Transport {
        method: String,
        path: String,
        kind: TransportKind,
        #[source]
        source: reqwest::Error,
    },
    /// A success response whose body is not what the API documents.
    #[error("{method} {path}: HTTP {status}: cannot decode response: {message}{}", request_id_suffix(.request_id))]
    Decode {
        method: String,
        path: String,
        status: u16,
        message: String,
        request_id: Option<String>,
    },
    /// A command run with exec finished with a non-zero exit code or a signal (Fly answers 200).
    #[error("command `{program}` on machine {machine} failed: exit code {exit_code}{}", signal_suffix(*.exit_signal))]
    ExecFailed {
        machine: String,
        /// argv[0] only; arguments may hold secrets.
        program: String,
        exit_code: i64,
        exit_signal: Option<i64>,
        output: Box<crate::types::ExecOutput>,
    },
    /// A create timed out or lost its connection, and looking for the object did not settle
    /// whether it was created; it was not re-sent.
    #[error("create {kind} {name:?} in app {app}: outcome unknown after {cause}; not retried to avoid creating it twice")]
    AmbiguousCreate {
        kind: &'static str,
        app: String,
        name: Option<String>,
        cause: String,
    },
    /// An updated machine settled in the `failed` state (flyctl: "machine … update failed").
    #[error("machine {machine} update failed: the machine entered the failed state")]
    MachineFailed { machine: String },
    /// Waiting for a machine state ran past the caller's deadline.
    #[error("machine {machine} did not reach state {state} before the deadline")]
    WaitTimeout { machine: String, state: String },
    /// api.fly.io answered a GraphQL request with errors (HTTP 200 with `errors`) or without
    /// the expected data.
    #[error("GraphQL {operation}: {message}")]
    GraphQl {
        operation: &'static str,
        message: String,
    },
    /// Bad configuration or arguments (missing token, bad base URL, bad argument).
    #[error("{0}")]
    Config(String),
    /// A helper (Stolon layer) could not make sense of what the machine said.
    #[error("{0}")]
    Protocol(String),
}

/// Which kind of transport failure, for the retry decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// Never connected: the request certainly did not reach the server.
    Connect,
    /// Timed out; the request may have been processed.
    Timeout,
    /// Lost during or after sending; the request may have been processed.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connection failed",
            TransportKind::Timeout => "timed out",
            TransportKind::Other => "connection lost",
        })
    }
}

fn message_or_default(m: &str) -> &str {
    if m.is_empty() {
        "(no error text)"
    } else {
        m
    }
}

fn request_id_suffix(id: &Option<String>) -> String {
    id.as_ref()
        .map(|i| format!(" (fly-request-id {i})"))
        .unwrap_or_default()
}

fn signal_suffix(s: Option<i64>) -> String {
    s.map(|s| format!(", signal {s}")).unwrap_or_default()
}

impl Error {
    /// HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `fly-request-id` of the failed response, if any.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api { request_id, .. } | Error::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 409: a lease is held by someone else.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}
