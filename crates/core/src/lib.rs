//! Walden's domain: the database and everything stored in it.
//!
//! This crate knows nothing of Leptos, axum or HTML, so the web console and the CLI share every rule.

pub mod audit;
pub mod backups;
pub mod clusters;
pub mod db;
pub mod seal;
pub mod settings;
pub mod ts;
pub mod users;
