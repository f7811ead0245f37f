//! The real router on 127.0.0.1:0 with a real SQLite file, driven over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod accounts;
mod alerts;
mod assets;
mod authorization;
mod checkpoints;
mod cluster_page;
mod credentials;
mod door;
mod escrow;
mod helpers;
mod home;
mod invites;
mod keys;
mod orgs;
mod pages;
mod probes;
mod restores;
mod server_fns;
mod shutdown;
