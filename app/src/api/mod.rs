//! Server functions, one file per resource, named verb_noun. Each body is thin: get the caller, check the
//! role, call one `walden_core` service, map the error.

pub mod audit;
pub mod auth;
pub mod clusters;
pub mod status;
pub mod totp;
pub mod users;
