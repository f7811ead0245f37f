//! Background workers. Each loops until its cancellation token fires and stops only between units of work,
//! so a shutdown never interrupts a write half-way.

use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower_sessions::session_store::ExpiredDeletion;
use tower_sessions_sqlx_store::SqliteStore;
use walden_core::access::{Actor, RequestMeta};
use walden_core::audit_checkpoints::{Checkpointer, Reason};
use walden_core::restore::engine::EngineOptions;
use walden_core::Walden;

/// How often failed alert deliveries are tried again.
pub const ALERT_RETRY: Duration = Duration::from_secs(30);

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

    /// Also run the audit checkpoint writer ([`checkpoints`]), woken by `walden`'s audited commits.
    pub fn with_checkpoints(
        mut self,
        writer: Arc<Checkpointer>,
        walden: &Walden,
        token: CancellationToken,
    ) -> Self {
        self.set
            .spawn(checkpoints(writer, walden.audit().commits(), token));
        self
    }

    /// Also run the scheduled escrow capture ([`escrow_capture`]), every `every`.
    pub fn with_escrow(
        mut self,
        walden: Walden,
        every: Duration,
        token: CancellationToken,
    ) -> Self {
        self.set.spawn(escrow_capture(walden, token, every));
        self
    }

    /// Also run the backups monitor ([`monitor`]), refreshing every tracked cluster every `every`.
    pub fn with_monitor(
        mut self,
        walden: Walden,
        every: Duration,
        token: CancellationToken,
    ) -> Self {
        self.set.spawn(monitor(walden, token, every));
        self
    }

    /// Also run the restore engine ([`restores`]), looking for runnable restore runs every `every`.
    pub fn with_restores(
        mut self,
        walden: Walden,
        every: Duration,
        options: EngineOptions,
        token: CancellationToken,
    ) -> Self {
        self.set.spawn(restores(walden, token, every, options));
        self
    }

    /// Also send alerts to the webhook ([`crate::alerts::webhook_worker`]): on each audited commit, and every
    /// [`ALERT_RETRY`] for deliveries that failed.
    pub fn with_alert_webhook(
        mut self,
        walden: Walden,
        webhook: crate::alerts::Webhook,
        token: CancellationToken,
    ) -> Self {
        self.set.spawn(crate::alerts::webhook_worker(
            walden,
            webhook,
            token,
            ALERT_RETRY,
        ));
        self
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

/// The actor the escrow worker acts as in the audit log.
fn escrow_actor() -> Actor {
    Actor::System {
        label: "escrow-worker".into(),
    }
}

/// Captures the credentials of every tracked cluster once per `every` (the first run at start, so a new
/// deployment does not wait a day), proves them after each capture, and expires stale reveal requests.
/// `record_capture` writes a new version only when a value changed, so an unchanged cluster costs one audit
/// row. Failures are logged and counted, never fatal; a shutdown is honoured between clusters.
pub async fn escrow_capture(walden: Walden, token: CancellationToken, every: Duration) {
    every_interval(every, &token, || escrow_tick(&walden, &token)).await;
    tracing::debug!("escrow capture worker stopped");
}

/// Run `unit` at once and then every `every`, until `token` fires (checked first, so a shutdown never starts
/// another unit; a late unit delays the next instead of bunching them).
async fn every_interval<F, Fut>(every: Duration, token: &CancellationToken, mut unit: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            _ = tick.tick() => {
                unit().await;
            }
        }
    }
}

/// What one run of the escrow worker did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EscrowTick {
    /// Clusters captured (a new version or unchanged).
    pub captured: usize,
    /// Of those, how many got a new version.
    pub new_versions: usize,
    /// Clusters whose capture or proof failed, or whose proof found a password that no longer works.
    pub failed: usize,
}

/// One run of the escrow worker over every tracked cluster (see [`escrow_capture`]).
pub async fn escrow_tick(walden: &Walden, token: &CancellationToken) -> EscrowTick {
    let actor = escrow_actor();
    let meta = RequestMeta::default();
    let mut done = EscrowTick::default();
    let tracked = match walden.orgs().tracked(&actor).await {
        Ok(t) => t,
        Err(e) => {
            metrics::counter!("walden_escrow_failures_total", "stage" => "list").increment(1);
            tracing::warn!(error = %e, "escrow worker: cannot list the tracked clusters");
            return done;
        }
    };
    let escrow = walden.escrow();
    for cluster in tracked {
        if token.is_cancelled() {
            return done;
        }
        let (org, app) = (cluster.org.as_str(), cluster.app.as_str());
        match escrow.capture(&actor, &meta, org, app).await {
            Ok(report) => {
                done.captured += 1;
                if report.outcome.created {
                    done.new_versions += 1;
                    tracing::info!(org, app, version = report.outcome.version, changed = ?report.outcome.changed,
                        "escrow worker: new credential version");
                }
                metrics::counter!("walden_escrow_captures_total").increment(1);
            }
            Err(e) => {
                done.failed += 1;
                metrics::counter!("walden_escrow_failures_total", "stage" => "capture")
                    .increment(1);
                tracing::warn!(org, app, error = %e, "escrow worker: capture failed");
                continue;
            }
        }
        match escrow.prove(&actor, &meta, org, app).await {
            Ok(report) if report.failing().is_empty() => {}
            Ok(report) => {
                done.failed += 1;
                metrics::counter!("walden_escrow_failures_total", "stage" => "proof").increment(1);
                tracing::error!(org, app, version = report.version, roles = ?report.failing(),
                    "escrow worker: an escrowed password no longer opens its role; a restore with it would fail");
            }
            Err(e) => {
                done.failed += 1;
                metrics::counter!("walden_escrow_failures_total", "stage" => "proof").increment(1);
                tracing::warn!(org, app, error = %e, "escrow worker: proof failed");
            }
        }
    }
    if let Err(e) = escrow.expire_requests(&actor, &meta).await {
        metrics::counter!("walden_escrow_failures_total", "stage" => "expire").increment(1);
        tracing::warn!(error = %e, "escrow worker: expiring reveal requests failed");
    }
    done
}

/// How often the restore worker looks for runnable runs when nothing woke it: a run a crashed console left is
/// taken over this long after its lease expired (a run started in this process wakes it at once).
pub const RESTORE_TICK: Duration = Duration::from_secs(2);

/// Moves every runnable restore run on, each in a task of its own (`walden_core::restore::engine::drive_run`), so
/// a PITR that takes hours never holds up another run; then the pending clean-ups. It looks every `every`, and at
/// once when an audited commit lands in this process (a run started, retried or cancelled), instead of polling
/// faster. A run already driven here is not taken again (the lease keeps other consoles off it); a shutdown is
/// honoured between steps by every task, and waited for; a failure is logged, never fatal (the run's own row
/// says what went wrong).
pub async fn restores(
    walden: Walden,
    token: CancellationToken,
    every: Duration,
    options: EngineOptions,
) {
    let mut commits = walden.audit().commits();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut driven: std::collections::HashMap<String, tokio::task::JoinHandle<()>> =
        std::collections::HashMap::new();
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            _ = tick.tick() => {}
            Ok(()) = commits.changed() => {}
        }
        driven.retain(|_, task| !task.is_finished());
        match walden_core::restore::engine::runnable_runs(&walden).await {
            Ok(ids) => {
                for id in ids {
                    if driven.contains_key(&id) {
                        continue;
                    }
                    let (walden, token) = (walden.clone(), token.clone());
                    let task = tokio::spawn({
                        let id = id.clone();
                        async move {
                            let stop = || token.is_cancelled();
                            walden_core::restore::engine::drive_run(&walden, options, &id, &stop)
                                .await;
                        }
                    });
                    driven.insert(id, task);
                }
            }
            Err(e) => tracing::warn!(error = %e, "restore worker: the runs could not be read"),
        }
        let stop = || token.is_cancelled();
        if let Err(e) = walden_core::restore::engine::clean_up_pending(&walden, &stop).await {
            tracing::warn!(error = %e, "restore worker: the clean-ups could not be read");
        }
    }
    for (_, task) in driven {
        let _ = task.await;
    }
    tracing::debug!("restore worker stopped");
}

/// Refreshes every tracked cluster's backups health once per `every` (the first run at start), through
/// `walden_core::monitor` (the escrowed storage settings, the incremental index, the last commit), and publishes
/// each cluster's gauges ([`crate::metrics::cluster_health`]). A storage failure is a state of its cluster
/// (recorded beside the last good summary, counted), never fatal; a shutdown is honoured between clusters.
pub async fn monitor(walden: Walden, token: CancellationToken, every: Duration) {
    every_interval(every, &token, || monitor_tick(&walden, &token)).await;
    tracing::debug!("monitor worker stopped");
}

/// What one run of the monitor did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MonitorTick {
    /// Clusters whose storage was read.
    pub refreshed: usize,
    /// Clusters whose storage could not be read (their last good summary stays).
    pub failed: usize,
}

/// One run of the monitor over every tracked cluster (see [`monitor`]).
pub async fn monitor_tick(walden: &Walden, token: &CancellationToken) -> MonitorTick {
    let mut done = MonitorTick::default();
    let refreshed = walden.monitor().refresh_all(|| token.is_cancelled()).await;
    let clusters = match refreshed {
        Ok(clusters) => clusters,
        Err(e) => {
            crate::metrics::monitor_failed();
            tracing::warn!(error = %e, "monitor: the tracked clusters could not be refreshed");
            return done;
        }
    };
    let now = time::OffsetDateTime::now_utc();
    for health in &clusters {
        crate::metrics::cluster_health(health, now);
        if health
            .status
            .as_ref()
            .is_some_and(|s| s.last_error.is_some())
        {
            done.failed += 1;
        } else {
            done.refreshed += 1;
        }
    }
    done
}

/// Writes signed audit checkpoints (security review H1): one at start, one every interval even when no row
/// was added (the heartbeat that makes a missing interval visible), one as soon as enough rows were added,
/// and one at clean shutdown. It does not poll for rows: `commits` (`walden_core::audit::commits`) changes
/// when an audited transaction commits, and only then does the worker read the head (`rows_due`). Rows written
/// by another process wake nothing; the next wake or the heartbeat counts them. A failure is logged loudly
/// and counted (`walden_audit_checkpoint_failures_total`) but never blocks audited writes; the next wake or
/// tick tries again.
pub async fn checkpoints(
    writer: Arc<Checkpointer>,
    mut commits: watch::Receiver<u64>,
    token: CancellationToken,
) {
    write_checkpoint(&writer, Reason::Start).await;
    let mut heartbeat = tokio::time::interval(writer.interval());
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await; // the first tick fires at once; the start checkpoint was just written
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            _ = heartbeat.tick() => write_checkpoint(&writer, Reason::Interval).await,
            // The sender is a process-wide static and never closes, so `changed` only ever says "a row".
            Ok(()) = commits.changed() => match writer.rows_due().await {
                Ok(true) => {
                    write_checkpoint(&writer, Reason::Rows).await;
                    heartbeat.reset();
                }
                Ok(false) => {}
                Err(e) => checkpoint_failed(&e),
            },
        }
    }
    write_checkpoint(&writer, Reason::Shutdown).await;
    tracing::debug!("audit checkpoint worker stopped");
}

async fn write_checkpoint(writer: &Checkpointer, reason: Reason) {
    match writer.write(reason).await {
        Ok(written) => {
            crate::metrics::audit_checkpoint_written(written.diverged);
            if written.diverged {
                tracing::error!(
                    checkpoint = %written.name,
                    "the audit log no longer holds the head row of the previous checkpoint: rows were \
                     rewritten, cut or wiped behind Walden's back; run `walden audit verify`"
                );
            } else {
                tracing::debug!(checkpoint = %written.name, ?reason, "audit checkpoint written");
            }
        }
        Err(e) => checkpoint_failed(&e),
    }
}

fn checkpoint_failed(e: &dyn std::error::Error) {
    crate::metrics::audit_checkpoint_failed();
    tracing::error!(error = %e, "AUDIT CHECKPOINT FAILED: the audit log is not being anchored off the box");
}

#[cfg(test)]
mod tests {
    use super::*;
    use walden_core::audit::{self, Actor, Event, Outcome, RequestMeta};
    use walden_core::audit_checkpoints::{CheckpointKey, Sink};

    async fn writer(every_rows: u64) -> (tempfile::TempDir, SqlitePool, Sink, Arc<Checkpointer>) {
        let dir = tempfile::tempdir().unwrap();
        let pool = walden_core::db::open(&dir.path().join("data"))
            .await
            .unwrap();
        let sink = Sink::directory(&dir.path().join("checkpoints")).unwrap();
        let key = CheckpointKey::from_hex(&CheckpointKey::generate_hex().unwrap()).unwrap();
        let writer = Checkpointer::new(
            pool.clone(),
            key,
            sink.clone(),
            Duration::from_secs(3600),
            every_rows,
        );
        (dir, pool, sink, Arc::new(writer))
    }

    async fn reasons(sink: &Sink) -> Vec<Reason> {
        let mut all: Vec<_> = sink
            .read_all()
            .await
            .unwrap()
            .into_iter()
            .map(|(_, cp)| cp.unwrap().body)
            .collect();
        all.sort_by_key(|b| b.seq);
        all.into_iter().map(|b| b.reason).collect()
    }

    /// Waits (up to a generous deadline, so a slow machine is never a failure) until the sink's checkpoints
    /// satisfy `done`; this asserts what is written, not how fast.
    async fn wait_for(sink: &Sink, what: &str, done: impl Fn(&[Reason]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let now = reasons(sink).await;
            if done(&now) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} checkpoint in 60 s: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_checkpoint_worker_writes_at_start_and_at_shutdown_and_stops_on_cancel() {
        let (_dir, _pool, sink, writer) = writer(100).await;
        let token = CancellationToken::new();
        let task = tokio::spawn(checkpoints(writer, audit::commits(), token.clone()));
        token.cancel();
        task.await.unwrap();
        assert_eq!(reasons(&sink).await, vec![Reason::Start, Reason::Shutdown]);
    }

    /// The rows checkpoint comes from the audited commits waking the worker: the heartbeat is an hour away and
    /// there is no poll to elapse.
    #[tokio::test]
    async fn audited_commits_wake_the_checkpoint_worker_when_enough_rows_were_added() {
        let (_dir, pool, sink, writer) = writer(2).await;
        assert_eq!(writer.interval(), Duration::from_secs(3600));
        let token = CancellationToken::new();
        let task = tokio::spawn(checkpoints(writer, audit::commits(), token.clone()));
        // The rows must come after the start checkpoint, or it would already hold them.
        wait_for(&sink, "start", |r| r == [Reason::Start]).await;
        for i in 0..2 {
            let ev = Event::new("user.create", Outcome::Ok).subject(format!("user:{i}"));
            audit::record(&pool, &Actor::cli(), &RequestMeta::default(), &ev)
                .await
                .unwrap();
        }
        wait_for(&sink, "rows", |r| r.contains(&Reason::Rows)).await;
        token.cancel();
        task.await.unwrap();
        assert_eq!(
            reasons(&sink).await,
            vec![Reason::Start, Reason::Rows, Reason::Shutdown]
        );
    }
}
