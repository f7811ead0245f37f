pub mod cli;
pub mod cmd;
