//! The domain façade: one handle on everything Walden keeps and does, shared by the console, the CLI and
//! the background workers.
//!
//! [`Walden`] owns the database pool, the [`Keyring`] and the Fly connection, and hands out one service per
//! concern. Every service follows the same shape: a cheap-to-clone struct with methods, its own error enum
//! with texts for people, authorisation inside the method (refusals audited), state changes written with
//! their audit row in one transaction ([`crate::audit::AuditedTx`]), and a `tracing` span per call with no
//! secret in its fields.
//!
//! # Where the next services go
//!
//! Each becomes a module of this crate and a method here, built in [`Walden::from_pool`]:
//!
//! - `restores()`: planned and running restores, with their steps (`core::restores`).

use std::path::Path;

use sqlx::SqlitePool;

use crate::alerts::Alerts;
use crate::audit::AuditLog;
use crate::backups::Backups;
use crate::clusters::{Clusters, FlyConnection};
use crate::db;
use crate::escrow::Escrow;
use crate::keyring::Keyring;
use crate::monitor::Monitor;
use crate::orgs::{FlyEndpoints, Orgs};
use crate::settings::Settings;
use crate::users::{Accounts, HashLimits, HashParams, Hasher, UserError};

/// How to open Walden.
#[derive(Clone, Debug, Default)]
pub struct WaldenOptions {
    /// Password hashing cost ([`HashParams::OWASP`] by default; tests use cheaper ones).
    pub hash: HashParams,
    /// How many hashes run at once (each takes `hash.m_cost` KiB) and how long a sign-in waits for its turn.
    pub hash_limits: HashLimits,
    /// The keys that seal secrets at rest (from `WALDEN_MASTER_KEY`). Without one, TOTP is unavailable.
    pub keyring: Option<Keyring>,
    /// The Fly API and organisation. Without one, cluster listing is unavailable (CLI account commands).
    pub fly: Option<FlyConnection>,
    /// Where added organisations' tokens are sent; the `fly` connection's peer when `None` (demo mode's
    /// emulator), else Fly's public API. The CLI sets it from `FLY_FLAPS_BASE_URL`/`FLY_API_HOSTNAME`.
    pub fly_endpoints: Option<FlyEndpoints>,
}

/// Why Walden could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum WaldenError {
    #[error(transparent)]
    Database(#[from] db::OpenError),
    #[error("the password hashing settings cannot be used: {0}")]
    Hashing(#[source] UserError),
}

/// The domain façade. Cheap to clone: every part is shared.
#[derive(Clone, Debug)]
pub struct Walden {
    pool: SqlitePool,
    keyring: Option<Keyring>,
    accounts: Accounts,
    audit: AuditLog,
    settings: Settings,
    clusters: Clusters,
    orgs: Orgs,
    backups: Backups,
    escrow: Escrow,
    monitor: Monitor,
    alerts: Alerts,
}

impl Walden {
    /// Open (creating and migrating if needed) the database in `data_dir`, then build the services.
    pub async fn open(data_dir: &Path, options: WaldenOptions) -> Result<Self, WaldenError> {
        let pool = db::open(data_dir).await?;
        Self::from_pool(pool, options)
    }

    /// Build the services on a pool that is already open and migrated.
    pub fn from_pool(pool: SqlitePool, options: WaldenOptions) -> Result<Self, WaldenError> {
        let hasher =
            Hasher::with_limits(options.hash, options.hash_limits).map_err(WaldenError::Hashing)?;
        let mut accounts = Accounts::new(pool.clone(), hasher);
        if let Some(keyring) = &options.keyring {
            accounts = accounts.with_keyring(keyring.clone());
        }
        let orgs = Orgs::new(
            pool.clone(),
            options.keyring.clone(),
            options.fly.clone(),
            options.fly_endpoints,
        );
        let escrow = Escrow::new(pool.clone(), options.keyring.clone()).with_orgs(orgs.clone());
        let backups = Backups::new(pool.clone());
        Ok(Walden {
            audit: AuditLog::new(pool.clone()),
            alerts: Alerts::new(pool.clone()),
            settings: Settings::new(pool.clone()),
            monitor: Monitor::new(pool.clone(), escrow.clone(), orgs.clone(), backups.clone()),
            escrow,
            orgs,
            clusters: Clusters::new(options.fly),
            backups,
            keyring: options.keyring,
            accounts,
            pool,
        })
    }

    /// Users, passwords, invitations, two-factor sign-in.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The tamper-evident audit log: record, verify, query, export.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Console-wide settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The Postgres clusters of the watched Fly organisation.
    pub fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// Fly organisations added with their own token (and the environment's), their Postgres apps, and the
    /// clusters Walden tracks.
    pub fn orgs(&self) -> &Orgs {
        &self.orgs
    }

    /// The wal-g index of each storage, kept in the database and refreshed incrementally, and the timeline
    /// computed from it.
    pub fn backups(&self) -> &Backups {
        &self.backups
    }

    /// Conditions that need a person, raised once while they last and resolved with a recovery message.
    pub fn alerts(&self) -> &Alerts {
        &self.alerts
    }

    /// The cluster credentials kept for restores, sealed with [`Walden::keyring`]: capture, versions,
    /// proofs, reveals.
    pub fn escrow(&self) -> &Escrow {
        &self.escrow
    }

    /// Each tracked cluster's backups health: refreshed by the worker and on demand, the rules, the last good
    /// timeline.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The restore planner (`core::restore`), built on the same escrow, orgs and backups.
    pub fn restores(&self) -> crate::restore::Restores {
        crate::restore::Restores::new(
            self.pool.clone(),
            self.escrow.clone(),
            self.orgs.clone(),
            self.backups.clone(),
        )
    }

    /// The keys that seal secrets at rest, when configured.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The database pool (migrations, health checks, the session store, maintenance).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Close the database; waits for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
