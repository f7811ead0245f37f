//! Writing checkpoints: read the head of the log, sign, write to the sink, remember it to chain the next.

use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::Mutex;

use super::{Checkpoint, CheckpointBody, CheckpointKey, Reason, Sink, SinkError, FORMAT};
use crate::ts;

/// Why a checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the audit log head could not be read for a checkpoint: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// A checkpoint that was written.
#[derive(Clone, Debug)]
pub struct Written {
    /// Its object name in the sink.
    pub name: String,
    pub checkpoint: Checkpoint,
    /// The log no longer holds the previous checkpoint's head row with its hash: rows were rewritten, cut or
    /// wiped since. The checkpoint is still written (it records what the log holds now); `verify` reports it.
    pub diverged: bool,
}

/// Writes checkpoints of one log to one sink, each chained to the one before. Shared by the worker; the
/// mutex keeps two writes from racing for the same `seq`.
#[derive(Debug)]
pub struct Checkpointer {
    pool: SqlitePool,
    key: CheckpointKey,
    sink: Sink,
    interval: Duration,
    every_rows: u64,
    /// The last checkpoint written or found; `None` until read from the sink.
    last: Mutex<Option<Option<Checkpoint>>>,
}

impl Checkpointer {
    /// `interval`: the heartbeat; `every_rows`: write as soon as this many rows were added since the last.
    pub fn new(
        pool: SqlitePool,
        key: CheckpointKey,
        sink: Sink,
        interval: Duration,
        every_rows: u64,
    ) -> Self {
        Checkpointer {
            pool,
            key,
            sink,
            interval,
            every_rows: every_rows.max(1),
            last: Mutex::new(None),
        }
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    pub fn key(&self) -> &CheckpointKey {
        &self.key
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many new rows make a checkpoint due before the interval ends.
    pub fn every_rows(&self) -> u64 {
        self.every_rows
    }

    /// The newest checkpoint in the sink, read once. Whatever key signed it: after a key rotation the new
    /// key continues the old key's chain, so a verifier that trusts both sees one unbroken chain. (A
    /// checkpoint planted by someone else is chained onto too, and reported by `verify` as an unknown key.)
    async fn last<'a>(
        &self,
        guard: &'a mut Option<Option<Checkpoint>>,
    ) -> Result<&'a Option<Checkpoint>, WriteError> {
        if guard.is_none() {
            *guard = Some(self.sink.latest(|cp| cp.body.format == FORMAT).await?);
        }
        Ok(guard.get_or_insert(None))
    }

    /// Whether [`Checkpointer::every_rows`] rows were added since the last checkpoint (one indexed read).
    pub async fn rows_due(&self) -> Result<bool, WriteError> {
        let mut guard = self.last.lock().await;
        let last_head = self
            .last(&mut guard)
            .await?
            .as_ref()
            .map_or(0, |cp| cp.body.head_id);
        let head: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let added = head.unwrap_or(0).saturating_sub(last_head);
        // A head below the last checkpoint's (rows cut) is due at once: record it while it is fresh.
        Ok(added < 0 || added.unsigned_abs() >= self.every_rows)
    }

    /// Read the head of the log, sign a checkpoint of it and write it to the sink.
    pub async fn write(&self, reason: Reason) -> Result<Written, WriteError> {
        let mut guard = self.last.lock().await;
        let previous = self.last(&mut guard).await?.clone();
        let mut tx = self.pool.begin().await?;
        let head: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&mut *tx)
            .await?;
        let diverged = match previous.as_ref().filter(|p| p.body.head_id > 0) {
            Some(p) => {
                let hash: Option<Vec<u8>> =
                    sqlx::query_scalar("SELECT hash FROM audit_log WHERE id = ?")
                        .bind(p.body.head_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                hash.map(hex::encode) != p.body.head_hash
            }
            None => false,
        };
        tx.rollback().await?;
        let body = CheckpointBody {
            format: FORMAT.into(),
            key_id: self.key.id().into(),
            seq: previous.as_ref().map_or(1, |p| p.body.seq + 1),
            reason,
            written_at: ts::format(ts::now()),
            interval_secs: self.interval.as_secs(),
            head_id: head.as_ref().map_or(0, |h| h.0),
            head_hash: head.as_ref().map(|h| hex::encode(&h.1)),
            rows: u64::try_from(rows).unwrap_or(0),
            previous: previous.as_ref().map(|p| p.signature.clone()),
        };
        let checkpoint = self.key.sign(body);
        let name = self.sink.put(&checkpoint).await?;
        *guard = Some(Some(checkpoint.clone()));
        Ok(Written {
            name,
            checkpoint,
            diverged,
        })
    }
}
