//! Server functions, one file per resource, named verb_noun. Each body is thin: one line says who may call
//! it (`crate::server::Caller`), then one `walden_core` call; errors convert with `?`.
//!
//! Each module exports `POLICY`, who may call each of its functions; [`POLICY`] gathers them. The HTTP tests
//! check every registered server function is listed, and every role against every function.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod clusters;
pub mod escrow;
pub mod orgs;
pub mod restores;
pub mod status;
pub mod timeline;
pub mod totp;
pub mod users;

/// A secret typed or pasted into a form (a Fly token, a password entered by hand) on its way to the server:
/// the same JSON/form string as a `String`, but `Debug` never shows it (server function arguments derive
/// `Debug`), and nothing sends it back. The server moves it into a `SecretString` at once.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct FormSecret(pub String);

impl std::fmt::Debug for FormSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FormSecret([redacted])")
    }
}

impl FormSecret {
    /// Move the value into a `SecretString` (zeroized when dropped).
    #[cfg(feature = "ssr")]
    pub fn into_secret(self) -> secrecy::SecretString {
        secrecy::SecretString::from(self.0)
    }
}

/// A server function's path and the least role that may call it (`None`: anyone, signed in or not).
/// `Some(Role::Viewer)` means any signed-in user.
#[cfg(feature = "ssr")]
pub type Access = (&'static str, Option<walden_core::users::Role>);

/// Every module's policy.
#[cfg(feature = "ssr")]
pub const POLICY: &[&[Access]] = &[
    alerts::POLICY,
    audit::POLICY,
    auth::POLICY,
    clusters::POLICY,
    escrow::POLICY,
    orgs::POLICY,
    restores::POLICY,
    status::POLICY,
    timeline::POLICY,
    totp::POLICY,
    users::POLICY,
];
