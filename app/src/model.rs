//! Data shared by the server and the browser (serde only; no server types).

use serde::{Deserialize, Serialize};

/// What the console says about itself: shown in the header and on the status panel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleStatus {
    /// Walden's version.
    pub version: String,
    /// True when no Fly token is configured: the console runs against the built-in Fly emulator.
    pub demo_mode: bool,
    /// True when the database answered.
    pub database_ok: bool,
    /// How many schema migrations are applied.
    pub migrations: i64,
    /// Server time of the check (RFC 3339, UTC).
    pub checked_at: String,
}
