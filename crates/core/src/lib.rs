//! Walden's domain: the database and everything stored in it, and the rules for changing it.
//!
//! This crate knows nothing of Leptos, axum or HTML, so the web console and the CLI share every rule. Open
//! it through [`Walden`], the one façade: its services ([`Walden::accounts`], [`Walden::audit`],
//! [`Walden::settings`], [`Walden::clusters`]) are the only way the console, the CLI and the background
//! workers change state, and each writes its audit row in the same transaction as its change.
//!
//! Module dependencies point one way: `access` (the shared vocabulary) and `ts`, `seal`, `db` are leaves;
//! `audit` uses `access`; `audit_checkpoints` uses `audit`'s table, `keyring` and `walg`'s storage configuration;
//! `settings` uses `audit`; `users` uses `settings`, `audit` and `keyring`; `escrow` (sealed cluster
//! credentials) uses `audit`, `settings` and `keyring`; `orgs` (Fly organisations and tracked clusters) uses
//! `audit`, `keyring` and `clusters`' types; `rotation` (re-sealing under a new master key) uses `audit`,
//! `keyring` and the contexts of `users`, `escrow` and `orgs`; `monitor` (each tracked cluster's backups health)
//! uses `escrow`, `orgs`, `backups` and `clusters`' types; `restore` (the restore's pre-flight plan) uses `escrow`,
//! `orgs`, `backups` and `audit`; the façade uses them all.

pub mod access;
pub mod alerts;
pub mod audit;
pub mod audit_checkpoints;
pub mod backups;
pub mod clusters;
pub mod db;
pub mod escrow;
pub mod keyring;
pub mod monitor;
pub mod orgs;
pub mod restore;
pub mod rotation;
pub mod seal;
pub mod settings;
pub mod ts;
pub mod users;
mod walden;

pub use walden::{Walden, WaldenError, WaldenOptions};
