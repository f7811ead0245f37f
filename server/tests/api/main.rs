//! The real router on 127.0.0.1:0 with a real SQLite file, driven over HTTP.

mod accounts;
mod authorization;
mod helpers;
mod pages;
mod probes;
mod server_fns;
mod shutdown;
