//! Server functions, one file per resource, named verb_noun. Each body is thin: one line says who may call
//! it (`crate::server::Caller`), then one `walden_core` call; errors convert with `?`.
//!
//! Each module exports `POLICY`, who may call each of its functions; [`POLICY`] gathers them. The HTTP tests
//! check every registered server function is listed, and every role against every function.

pub mod audit;
pub mod auth;
pub mod clusters;
pub mod escrow;
pub mod orgs;
pub mod status;
pub mod totp;
pub mod users;

/// A server function's path and the least role that may call it (`None`: anyone, signed in or not).
/// `Some(Role::Viewer)` means any signed-in user.
#[cfg(feature = "ssr")]
pub type Access = (&'static str, Option<walden_core::users::Role>);

/// Every module's policy.
#[cfg(feature = "ssr")]
pub const POLICY: &[&[Access]] = &[
    audit::POLICY,
    auth::POLICY,
    clusters::POLICY,
    escrow::POLICY,
    orgs::POLICY,
    status::POLICY,
    totp::POLICY,
    users::POLICY,
];
