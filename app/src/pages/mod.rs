//! One module per route.

pub mod audit;
pub mod clusters;
pub mod not_found;
pub mod restores;
pub mod settings;
