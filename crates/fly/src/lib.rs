//! A typed async client for the Fly.io Machines API (and the api.fly.io logs endpoint), plus
//! helpers for Fly's Stolon Postgres image.
//!
//! * [`FlyClient::from_env`] reads flyctl's variables: `FLY_API_TOKEN`, `FLY_FLAPS_BASE_URL`
//!   (Machines API, default `https://api.machines.dev`), `FLY_API_HOSTNAME` (default
//!   `https://api.fly.io`). [`FlyClient::builder`] sets them explicitly.
//! * Tokens are [`secrecy::SecretString`]s, sent as `FlyV1` (macaroons) or `Bearer` like flyctl.
//! * Errors ([`Error`]) carry the status, Fly's `error` text and the `fly-request-id`.
//! * Retries: jittered exponential backoff for 429, 5xx, 408 and transport errors on idempotent
//!   calls; non-idempotent calls only retry 429 and connection failures; creates settle an
//!   ambiguous failure by looking before retrying, so nothing is created twice.
//! * Client-side rate limits at Fly's documented rates ([`RateLimits::FLY`]).
//! * [`FlyClient::exec`] checks the exit code (Fly answers 200 when the command fails).
//! * [`stolon`]: roles, leader, `stolonctl` with `/data/.env`, `stolonctl-run`, env as secrets,
//!   role passwords the image survives ([`stolon::password`]).
//! * [`escrow`]: capture a Stolon cluster's role passwords and wal-g settings from its leader
//!   (`printenv -0`), and prove the passwords still open their roles (password on exec stdin).
//! * [`graphql`]: `enablePostgresConsul` on api.fly.io, the Consul URL a Stolon cluster needs.

mod api;
mod auth;
mod client;
pub mod decode;
mod error;
pub mod escrow;
pub mod graphql;
mod ratelimit;
mod rollout;
pub mod stolon;
mod types;

pub use api::{WaitFor, MAX_WAIT_SECONDS};
pub use auth::{AuthScheme, Token};
pub use client::{
    FlyClient, FlyClientBuilder, RetryPolicy, DEFAULT_API_BASE_URL, DEFAULT_APP_VISIBILITY_TIMEOUT,
    DEFAULT_MACHINES_BASE_URL, LEASE_NONCE_HEADER, REQUEST_ID_HEADER,
};
pub use error::{Error, TransportKind};
pub use ratelimit::RateLimits;
pub use rollout::{should_skip_launch, RolloutOptions, RolloutStep};
pub use secrecy::{ExposeSecret, SecretString};
pub use types::*;
