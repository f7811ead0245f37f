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

/// One machine of a Postgres cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub state: String,
    pub role: String,
    pub image: String,
}

/// A Postgres cluster (a Fly app running Fly's Postgres image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub app: String,
    pub status: String,
    pub machines: Vec<MachineView>,
}

/// The clusters of the watched Fly organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterList {
    pub org: String,
    pub clusters: Vec<ClusterView>,
}

#[cfg(feature = "ssr")]
impl From<walden_core::clusters::ClusterSummary> for ClusterView {
    fn from(c: walden_core::clusters::ClusterSummary) -> Self {
        ClusterView {
            app: c.app,
            status: c.status,
            machines: c.machines.into_iter().map(MachineView::from).collect(),
        }
    }
}

#[cfg(feature = "ssr")]
impl From<walden_core::clusters::MachineSummary> for MachineView {
    fn from(m: walden_core::clusters::MachineSummary) -> Self {
        MachineView {
            id: m.id,
            name: m.name,
            region: m.region,
            state: m.state,
            role: m.role,
            image: m.image,
        }
    }
}
