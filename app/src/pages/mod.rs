//! One module per route.

pub mod account;
pub mod audit;
pub mod cluster;
pub mod clusters;
pub mod credentials;
pub mod invite;
pub mod login;
pub mod not_found;
pub mod orgs;
pub mod restore_wizard;
pub mod restores;
pub mod settings;
pub mod setup;
pub mod users;
