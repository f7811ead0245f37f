//! One module per command group. Each exposes its clap arguments and an async `run` returning an exit code.

pub mod assets;
pub mod audit;
pub mod cutover;
pub mod escrow;
pub mod fly;
pub mod flysim;
pub mod keys;
pub mod migrate;
pub mod org;
pub mod restore;
pub mod serve;
pub mod timeline;
pub mod user;
