//! Background workers. Each loops until its cancellation token fires and stops only between units of work,
//! so a shutdown never interrupts a write half-way.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions_sqlx_store::SqliteStore;
use walden_core::Walden;

/// The running workers.
pub struct Jobs {
    set: JoinSet<()>,
}

impl Jobs {
    /// Start every worker. Each gets the façade: the domain's services (and the pool, for upkeep).
    pub fn spawn(walden: Walden, token: CancellationToken) -> Self {
        let mut set = JoinSet::new();
        set.spawn(maintenance(walden, token, Duration::from_secs(15 * 60)));
        Jobs { set }
    }

    /// Wait for every worker to reach its stopping point.
    pub async fn join(mut self) {
        while let Some(result) = self.set.join_next().await {
            if let Err(e) = result {
                tracing::error!(error = %e, "a background worker failed");
            }
        }
    }
}

/// Keeps the SQLite file healthy: deletes expired sessions and credential-throttling rows no limit looks at any
/// more, folds the WAL back into the database and refreshes the planner statistics.
async fn maintenance(walden: Walden, token: CancellationToken, every: Duration) {
    let pool = walden.pool();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick fires at once; start-up has just migrated
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = tick.tick() => {
                if let Err(e) = delete_expired_sessions(pool).await {
                    tracing::warn!(error = %e, "deleting expired sessions failed");
                }
                if let Err(e) = walden.accounts().prune_throttle().await {
                    tracing::warn!(error = %e, "pruning old credential failures failed");
                }
                for statement in ["PRAGMA wal_checkpoint(PASSIVE)", "PRAGMA optimize"] {
                    if let Err(e) = sqlx::query(statement).execute(pool).await {
                        tracing::warn!(error = %e, statement, "database maintenance failed");
                    }
                }
            }
        }
    }
    tracing::debug!("maintenance worker stopped");
}

/// Sessions past their expiry are refused when presented, but their rows stay until deleted here.
pub async fn delete_expired_sessions(pool: &SqlitePool) -> anyhow::Result<()> {
    SqliteStore::new(pool.clone()).delete_expired().await?;
    Ok(())
}
