//! The `walden` binary's library half: command line, configuration, start-up, router and workers.
//! `main.rs` only calls [`cli::main`]; tests build the real router with [`startup::Application`].

pub mod alerts;
pub mod assets;
pub mod checkpoints;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod jobs;
pub mod metrics;
pub mod security;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
