//! One error type for every server function: what the user may see, apart from the logged cause.

use leptos::prelude::*;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use leptos::server_fn::{Bytes, Encodes};
use serde::{Deserialize, Serialize};

/// Errors a server function returns. The text is for people; causes are logged on the server, never sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("Please sign in.")]
    Unauthorized,
    #[error("Your role does not allow this.")]
    Forbidden,
    #[error("Not found: {0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("Too many attempts. Wait a few minutes and try again.")]
    RateLimited,
    /// The server is at its limit for expensive work (password hashing) and did not start this request.
    #[error("The server is busy. Try again in a few seconds.")]
    Busy,
    /// A service Walden depends on (the Fly API, a bucket) failed; the text says which and why.
    #[error("{0}")]
    Upstream(String),
    /// Something failed on the server; the details are in the server log under this request id.
    #[error("Something went wrong on the server (request {request_id}).")]
    Internal { request_id: String },
    /// The request could not be read: malformed or missing arguments (security review L8: a 400, not a 500
    /// with the deserializer's text).
    #[error(
        "The request could not be read (request {request_id}). Reload the page and try again."
    )]
    BadRequest { request_id: String },
    /// The call itself failed (network, encoding).
    #[error("The console could not be reached: {0}")]
    ServerFn(String),
}

impl AppError {
    /// The HTTP status that goes with the error.
    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest { .. } => 400,
            AppError::Unauthorized => 401,
            AppError::Forbidden => 403,
            AppError::NotFound(_) => 404,
            AppError::Validation { .. } => 422,
            AppError::Conflict(_) => 409,
            AppError::RateLimited => 429,
            AppError::Busy => 503,
            AppError::Upstream(_) => 502,
            AppError::Internal { .. } | AppError::ServerFn(_) => 500,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        // On the server, arguments that do not decode are the caller's fault: a generic 400 (the decoder's text
        // stays in the log).
        #[cfg(feature = "ssr")]
        if let ServerFnErrorErr::Args(_)
        | ServerFnErrorErr::MissingArg(_)
        | ServerFnErrorErr::Deserialization(_) = &value
        {
            return crate::server::errors::bad_request(&value);
        }
        AppError::ServerFn(value.to_string())
    }

    /// server_fn calls this once, when it turns a server function's `Err` into the response: on the server,
    /// that is where the response gets the error's status (otherwise every error would answer 500).
    fn ser(&self) -> Bytes {
        #[cfg(feature = "ssr")]
        crate::server::errors::set_status(self);
        JsonEncoding::encode(self).unwrap_or_else(|_| {
            Bytes::from_static(br#"{"ServerFn":"the error could not be encoded"}"#)
        })
    }
}

/// Shows the errors caught by an `ErrorBoundary`.
#[component]
pub fn ErrorList(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <section class="panel error-panel" role="alert">
            <h2>"Something went wrong"</h2>
            <ul>
                {move || {
                    errors
                        .get()
                        .into_iter()
                        .map(|(_, e)| view! { <li>{e.to_string()}</li> })
                        .collect_view()
                }}
            </ul>
            <p><a href="/">"Back to the clusters"</a></p>
        </section>
    }
}
