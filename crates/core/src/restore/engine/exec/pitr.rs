//! The PITR half of a run on the new machine: exactly one keeper before the init, the init launched detached
//! once, and the restore followed to the end with its phase, percentage, time left and last log lines stored on
//! the step. The image's failure modes are recognised here and end the step with the cause and what to do:
//! an out-of-memory kill, a boot loop, a keeper that never gets healthy, a restore that started again from
//! scratch, and restored data that rejects the new cluster's credentials. Nothing is waited on forever.
//!
//! Sources of the behaviour recognised: stolon `cmd/keeper/cmd/keeper.go` (a keeper whose local state says
//! `Initializing` logs `db failed to initialize or resync`, wipes the data dir and runs `dataRestoreCommand`
//! again), fly-apps/postgres-ha `cmd/start/main.go` (a panic exits the machine; restart policy `always`
//! boots it again), Fly machine events (`exit_event.oom_killed`, also nested under `MonitorEvent`, fly-go
//! `machine_types.go`), PostgreSQL's recovery log lines (`starting archive recovery`, `selected new timeline
//! ID`, `archive recovery complete`) and wal-g's `Backup extraction complete`.

use std::collections::BTreeSet;

use fly::{ExecRequest, StopRequest};
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{StepCtx, StepError};
use crate::restore::steps;

/// Exits of the new machine that make a boot loop (the image's supervisor gives up and the machine restarts).
const BOOT_LOOP_EXITS: usize = 3;
/// Log lines kept on the step for the progress page.
const LOG_TAIL: usize = 12;
/// Seconds an exec of `stolonctl` may take.
const EXEC_SECS: u64 = 30;

/// The new machine's id, from the machine step.
pub(super) fn machine_of(ctx: &StepCtx<'_>) -> Result<String, StepError> {
    ctx.earlier_str("machine")
        .ok_or_else(|| StepError::Permanent("the machine step produced no machine id".into()))
}

/// One exec on the run's machine (`stdin` wiped after the call); a non-zero exit is the caller's to judge.
pub(super) async fn exec(
    ctx: &StepCtx<'_>,
    app: &str,
    machine: &str,
    argv: &[String],
    stdin: Option<String>,
) -> Result<fly::ExecOutput, StepError> {
    let mut req = ExecRequest::new(argv.to_vec()).timeout(EXEC_SECS);
    req.stdin = stdin;
    let answer = ctx.client.exec_unchecked(app, machine, &req).await;
    // A password given on stdin does not outlive the call.
    if let Some(stdin) = req.stdin.as_mut() {
        zeroize::Zeroize::zeroize(stdin);
    }
    Ok(answer?)
}

/// `stolonctl clusterdata read` as JSON, or `None` while the keeper or the store cannot answer yet (a booting
/// machine, a cluster not initialised).
async fn clusterdata(
    ctx: &StepCtx<'_>,
    app: &str,
    machine: &str,
    argv: &[String],
) -> Result<Option<Value>, StepError> {
    let out = match exec(ctx, app, machine, argv, None).await {
        Ok(out) => out,
        Err(StepError::Engine(e)) => return Err(StepError::Engine(e)),
        Err(_) => return Ok(None),
    };
    if !out.success() {
        return Ok(None);
    }
    Ok(serde_json::from_str(out.stdout.trim()).ok())
}

/// Whether the cluster data already holds this plan's PITR spec (the init was launched, by this run).
fn init_is_ours(doc: &Value, ctx: &StepCtx<'_>) -> bool {
    let spec = doc.pointer("/cluster/spec");
    spec.and_then(|s| s.get("initMode")).and_then(Value::as_str) == Some("pitr")
        && spec.and_then(|s| s.get("pitrConfig")) == plan_spec(ctx).get("pitrConfig")
}

/// The init spec the plan carries (the PitrInit step's `$1`).
fn plan_spec(ctx: &StepCtx<'_>) -> Value {
    ctx.plan
        .steps
        .iter()
        .find_map(|s| match s {
            crate::restore::Step::PitrInit { argv, .. } => argv.get(4),
            _ => None,
        })
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null)
}

/// The keepers that report healthy, and whether the database of one of them is healthy.
fn healthy_keepers(doc: &Value) -> (Vec<String>, bool) {
    let keepers: Vec<String> = doc
        .get("keepers")
        .and_then(Value::as_object)
        .map(|k| {
            k.iter()
                .filter(|(_, v)| v.pointer("/status/healthy") == Some(&Value::Bool(true)))
                .map(|(uid, _)| uid.clone())
                .collect()
        })
        .unwrap_or_default();
    let db_healthy = doc
        .get("dbs")
        .and_then(Value::as_object)
        .is_some_and(|dbs| {
            dbs.values().any(|db| {
                db.pointer("/status/healthy") == Some(&Value::Bool(true))
                    && db
                        .pointer("/spec/keeperUID")
                        .and_then(Value::as_str)
                        .is_some_and(|k| keepers.iter().any(|h| h == k))
            })
        });
    (keepers, db_healthy)
}

/// Stops every started machine of the app but the run's: the sentinel gives the PITR to a random registered
/// keeper (stolon `findInitialKeeper`), so the run's must be the only one. Returns the ids stopped.
async fn stop_others(
    ctx: &StepCtx<'_>,
    app: &str,
    machine: &str,
) -> Result<Vec<String>, StepError> {
    let machines = ctx
        .client
        .list_machines(app, &fly::ListMachines::default())
        .await?;
    let mut stopped = Vec::new();
    for m in machines
        .iter()
        .filter(|m| m.id != machine && !m.is_gone() && m.state != "stopped")
    {
        ctx.client
            .stop_machine(app, &m.id, &StopRequest::default(), None)
            .await?;
        stopped.push(m.id.clone());
    }
    Ok(stopped)
}

/// Exactly one keeper registered and healthy (its database too) before the init; machines other than the run's
/// are stopped; none yet → wait with the lease refreshed, up to the keeper deadline. A run whose init is already
/// in the cluster data has passed this step.
pub(super) async fn keeper_check(
    ctx: &StepCtx<'_>,
    app: &str,
    argv: &[String],
) -> Result<Value, StepError> {
    let machine = machine_of(ctx)?;
    let start = tokio::time::Instant::now();
    let mut stopped: BTreeSet<String> = BTreeSet::new();
    loop {
        stopped.extend(stop_others(ctx, app, &machine).await?);
        let doc = clusterdata(ctx, app, &machine, argv).await?;
        if doc.as_ref().is_some_and(|d| init_is_ours(d, ctx)) {
            return Ok(json!({ "keeper": "registered", "init": "found" }));
        }
        machine_trouble(ctx, app, &machine).await?;
        let (keepers, db_healthy) = doc.as_ref().map(healthy_keepers).unwrap_or_default();
        if keepers.len() == 1 && db_healthy {
            return Ok(json!({ "keeper": keepers[0], "stopped": stopped }));
        }
        if start.elapsed() >= ctx.options.keeper_deadline {
            let seen = match keepers.len() {
                0 => "no keeper registered".to_owned(),
                1 => "one keeper registered, its Postgres never healthy".to_owned(),
                n => format!("{n} keepers healthy at once"),
            };
            return Err(StepError::Permanent(format!(
                "The keeper on the new machine {machine} never got healthy within {} s ({seen}). Look at its logs \
                 (fly logs -a {app} -i {machine}): a wrong image, missing secrets or too little memory are the \
                 usual causes. Retry the step once fixed, or cancel to remove what the run created.",
                ctx.options.keeper_deadline.as_secs()
            )));
        }
        ctx.pause().await?;
    }
}

/// The init, launched detached once: the cluster data already holding this plan's spec, or the launch marker on
/// the volume, means it was launched (by this run: the volume is the run's own); the launch's Unix time is kept.
pub(super) async fn pitr_init(
    ctx: &StepCtx<'_>,
    app: &str,
    argv: &[String],
) -> Result<Value, StepError> {
    let machine = machine_of(ctx)?;
    let read = fly::stolon::stolonctl_argv(&["clusterdata", "read"]);
    let found = clusterdata(ctx, app, &machine, &read)
        .await?
        .is_some_and(|d| init_is_ours(&d, ctx));
    // The script prints the marker (the launch time) whether it launched now or before.
    let out = exec(ctx, app, &machine, argv, None).await?;
    if !out.success() {
        return Err(StepError::Transient(format!(
            "the init could not be launched on {machine} (exit {}): {}",
            out.exit_code,
            first_line(&out.stderr)
        )));
    }
    let launched_at: i64 = out
        .stdout
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .ok_or_else(|| {
            StepError::Transient(format!(
                "the init launch on {machine} printed no launch time"
            ))
        })?;
    Ok(json!({
        "machine": machine,
        "launched_at": launched_at,
        "found_running": found,
        "log": steps::PITR_LOG,
    }))
}

/// Why the machine cannot go on, read from its events: an out-of-memory kill, or a boot loop.
async fn machine_trouble(ctx: &StepCtx<'_>, app: &str, machine: &str) -> Result<(), StepError> {
    let events = ctx.client.machine_events(app, machine, Some(50)).await?;
    let exits: Vec<fly::ExitEvent> = events.iter().filter_map(|e| e.exit_event()).collect();
    if exits.iter().any(|e| e.oom_killed == Some(true)) {
        let now = ctx.plan.destination.memory_mb;
        let pick = bigger_memory(now);
        return Err(StepError::Permanent(format!(
            "The new machine {machine} was killed for lack of memory (out of memory, {now} MB) and restarted; a \
             restore restarted like this begins again from scratch. Cancel this run and plan again with a \
             larger machine: at least {pick} MB (walden restore plan … --memory {pick})."
        )));
    }
    let crashes = exits
        .iter()
        .filter(|e| e.requested_stop != Some(true))
        .count();
    if crashes >= BOOT_LOOP_EXITS {
        return Err(StepError::Permanent(format!(
            "The new machine {machine} is in a boot loop: it exited {crashes} times on its own and Fly restarted it \
             each time. Its logs say why (fly logs -a {app} -i {machine}); the image panics on missing or \
             unusable secrets (FLY_CONSUL_URL, SU_PASSWORD, REPL_PASSWORD, passwords with ' : or \\) and when \
             the data does not fit the image's Postgres. Cancel to remove what the run created."
        )));
    }
    Ok(())
}

/// The memory to suggest after an OOM kill: twice the current size, at least 1 GB, a power of two.
pub(super) fn bigger_memory(now_mb: i64) -> i64 {
    let mut pick = 1024;
    while pick < now_mb.saturating_mul(2) {
        pick *= 2;
    }
    pick
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

/// Where the restore is, from the keeper's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Starting,
    Fetching,
    Replaying,
    Promoting,
    Converged,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Fetching => "fetching the base backup",
            Phase::Replaying => "replaying WAL",
            Phase::Promoting => "promoting",
            Phase::Converged => "converged",
        }
    }
}

/// What the logs told so far (kept across polls; rebuilt from the launch time after a console restart).
#[derive(Debug, Default)]
struct LogState {
    next_token: Option<String>,
    /// `executing DataRestoreCommand` lines since the launch: more than one is a restart from scratch.
    restore_starts: usize,
    phase: Option<Phase>,
    fetch_started: Option<OffsetDateTime>,
    replay_started: Option<OffsetDateTime>,
    newest: Option<OffsetDateTime>,
    /// Roles Postgres refused with `password authentication failed` after recovery.
    rejected: BTreeSet<String>,
    tail: Vec<String>,
}

impl LogState {
    fn read(&mut self, entry: &fly::LogEntry) {
        let at = entry.timestamp.as_deref().and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        if let Some(at) = at {
            self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        }
        let line = entry.message.as_str();
        if line.contains("executing DataRestoreCommand") {
            self.restore_starts += 1;
            self.phase = Some(Phase::Fetching);
            self.fetch_started = at;
            self.replay_started = None;
        } else if line.contains("Backup extraction complete")
            || line.contains("starting archive recovery")
        {
            if self.phase < Some(Phase::Replaying) {
                self.replay_started = at;
            }
            self.phase = self.phase.max(Some(Phase::Replaying));
        } else if line.contains("selected new timeline ID")
            || line.contains("archive recovery complete")
        {
            self.phase = self.phase.max(Some(Phase::Promoting));
        }
        if let Some(user) = rejected_user(line) {
            if self.phase >= Some(Phase::Promoting) {
                self.rejected.insert(user);
            }
        }
        if let Some(shown) = shown_line(line) {
            self.tail.push(shown);
            let over = self.tail.len().saturating_sub(LOG_TAIL);
            self.tail.drain(..over);
        }
    }
}

/// The role in `password authentication failed for user "x"`.
fn rejected_user(line: &str) -> Option<String> {
    let rest = line
        .split("password authentication failed for user \"")
        .nth(1)?;
    rest.split('"').next().map(str::to_owned)
}

/// A log line as the progress page may show it: lines that could carry a secret (a password, a token, a key)
/// are left out, except Postgres' own refusal, which names only the role.
pub(super) fn shown_line(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let risky = [
        "password",
        "secret",
        "token",
        "key=",
        "passwd",
        "credential",
    ]
    .iter()
    .any(|w| lower.contains(w));
    if risky && !lower.contains("password authentication failed for user") {
        return None;
    }
    Some(line.chars().take(300).collect())
}

/// Reads the machine's new log lines (pages until caught up).
async fn read_logs(
    ctx: &StepCtx<'_>,
    app: &str,
    machine: &str,
    logs: &mut LogState,
) -> Result<(), StepError> {
    for _ in 0..20 {
        let page = match ctx
            .client
            .logs(app, logs.next_token.as_deref(), Some(machine), None)
            .await
        {
            Ok(page) => page,
            // Logs are a help, not the source of truth: a failed read is tried at the next poll.
            Err(_) => return Ok(()),
        };
        let empty = page.entries.is_empty();
        for entry in &page.entries {
            logs.read(entry);
        }
        if page.next_token.is_some() {
            logs.next_token = page.next_token;
        }
        if empty {
            break;
        }
    }
    Ok(())
}

/// The plan's expected seconds of fetching and replaying (the rates the plan's estimate states).
fn expected_secs(ctx: &StepCtx<'_>) -> (f64, f64) {
    let stored = ctx.plan.backup.stored_bytes.unwrap_or(0).max(0) as f64;
    let fetch = stored / steps::FETCH_BYTES_PER_SEC as f64;
    let replay = ctx.plan.wal.replay_bytes as f64 / steps::REPLAY_BYTES_PER_SEC as f64;
    (fetch.max(1.0), replay.max(1.0))
}

/// Percentage and seconds left from the plan's bytes and what was measured: the fetch's own duration, once
/// known, rescales the replay's estimate (a slow fetch means a slow machine or bucket).
fn progress_numbers(ctx: &StepCtx<'_>, logs: &LogState, now: OffsetDateTime) -> (f64, f64) {
    let (fetch, replay) = expected_secs(ctx);
    let total = fetch + replay;
    let secs = |from: Option<OffsetDateTime>, to: OffsetDateTime| {
        from.map_or(0.0, |f| (to - f).as_seconds_f64().max(0.0))
    };
    match logs.phase.unwrap_or(Phase::Starting) {
        Phase::Starting => (0.0, total),
        Phase::Fetching => {
            let done = secs(logs.fetch_started, now).min(fetch * 0.99);
            (100.0 * done / total, total - done)
        }
        Phase::Replaying => {
            let measured_fetch = match (logs.fetch_started, logs.replay_started) {
                (Some(a), Some(b)) => (b - a).as_seconds_f64().max(1.0),
                _ => fetch,
            };
            let fetch_share = fetch / total;
            let replay = replay * (measured_fetch / fetch);
            let done = secs(logs.replay_started, now).min(replay * 0.99);
            let share = fetch_share + (done / replay) * (1.0 - fetch_share);
            (100.0 * share.min(0.99), replay - done)
        }
        Phase::Promoting => (99.0, 0.0),
        Phase::Converged => (100.0, 0.0),
    }
}

/// The PITR followed to the end: each poll reads the cluster data, the machine's events and its new log lines,
/// stores the progress on the step and keeps the lease; it ends when the cluster converged (phase normal, its
/// master healthy), or with the recognised failure, or at the PITR deadline.
pub(super) async fn pitr_progress(
    ctx: &StepCtx<'_>,
    app: &str,
    argv: &[String],
) -> Result<Value, StepError> {
    let machine = machine_of(ctx)?;
    let launched_at = ctx
        .earlier
        .iter()
        .rev()
        .find_map(|v| v.get("launched_at").and_then(Value::as_i64))
        .ok_or_else(|| StepError::Permanent("the init step recorded no launch time".into()))?;
    let mut logs = LogState {
        // Lines from one second before the launch on (the token is Unix nanoseconds).
        next_token: Some(((i128::from(launched_at) - 1) * 1_000_000_000).to_string()),
        ..LogState::default()
    };
    let start = tokio::time::Instant::now();
    loop {
        machine_trouble(ctx, app, &machine).await?;
        read_logs(ctx, app, &machine, &mut logs).await?;
        let doc = clusterdata(ctx, app, &machine, argv).await?;
        let converged = doc.as_ref().is_some_and(|d| {
            init_is_ours(d, ctx)
                && d.pointer("/cluster/status/phase").and_then(Value::as_str) == Some("normal")
                && healthy_keepers(d).1
        });
        if converged {
            // The lines written since this poll's read (the end of the replay, a refusal) count too.
            read_logs(ctx, app, &machine, &mut logs).await?;
            logs.phase = Some(Phase::Converged);
        }
        let now = logs.newest.map_or_else(OffsetDateTime::now_utc, |n| {
            n.max(OffsetDateTime::now_utc())
        });
        let (percent, left) = progress_numbers(ctx, &logs, now);
        let phase = logs.phase.unwrap_or(Phase::Starting);
        let progress = json!({
            "phase": phase.as_str(),
            "percent": (percent * 10.0).round() / 10.0,
            "seconds_left": left.round() as i64,
            "restore_starts": logs.restore_starts,
            "log_tail": logs.tail,
            "updated_at": crate::ts::format(crate::ts::now()),
        });
        ctx.held.progress(ctx.index, &progress).await?;
        if !logs.rejected.is_empty() {
            let roles: Vec<&str> = logs.rejected.iter().map(String::as_str).collect();
            return Err(StepError::Permanent(format!(
                "The restored database rejects the new cluster's credentials for {}: the escrowed passwords \
                 (version {}) are not the ones those roles had at the target time. Plan again with the escrow \
                 version valid at the target (or escrow the passwords the source had then), and cancel this run.",
                roles.join(", "),
                ctx.plan.escrow.version
            )));
        }
        if logs.restore_starts > 1 {
            return Err(StepError::Permanent(format!(
                "The restore restarted from scratch on {machine} ({} starts of the base backup fetch): the keeper \
                 was interrupted (a restart, a crash or a failed fetch) and began downloading the backup again, \
                 which can repeat forever. Last lines: {}. Fix the cause (fly logs -a {app} -i {machine}), then \
                 retry the step, or cancel to remove what the run created.",
                logs.restore_starts,
                logs.tail.iter().rev().take(3).cloned().collect::<Vec<_>>().join(" | ")
            )));
        }
        if converged {
            return Ok(json!({ "machine": machine, "phase": "converged" }));
        }
        if start.elapsed() >= ctx.options.pitr_deadline {
            return Err(StepError::Permanent(format!(
                "The restore on {machine} did not finish within {} minutes (last phase: {}). PostgreSQL may wait \
                 for WAL that never comes; look at fly logs -a {app} -i {machine}, then retry the step or cancel.",
                ctx.options.pitr_deadline.as_secs() / 60,
                phase.as_str()
            )));
        }
        ctx.pause().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str) -> fly::LogEntry {
        fly::LogEntry {
            id: None,
            timestamp: Some("2026-11-29T14:00:00Z".into()),
            message: message.into(),
            level: None,
            instance: None,
            region: None,
            meta: None,
        }
    }

    /// The keeper's log read in order: the phases, a second fetch start (a restart from scratch), and a role
    /// refused after the recovery (flysim `stolon/pitr.rs::reject_credentials` writes these lines).
    #[test]
    fn the_log_tells_the_phase_a_restart_and_refused_roles() {
        let mut logs = LogState::default();
        logs.read(&entry(
            "keeper   | executing DataRestoreCommand: wal-g backup-fetch /data/postgres base_1",
        ));
        assert_eq!(logs.phase, Some(Phase::Fetching));
        logs.read(&entry(
            "FATAL:  password authentication failed for user \"repluser\"",
        ));
        assert!(
            logs.rejected.is_empty(),
            "a refusal before the recovery ends is not the restore's"
        );
        logs.read(&entry("keeper   | INFO: Backup extraction complete."));
        assert_eq!(logs.phase, Some(Phase::Replaying));
        logs.read(&entry("LOG:  selected new timeline ID: 2"));
        assert_eq!(logs.phase, Some(Phase::Promoting));
        logs.read(&entry(
            "FATAL:  password authentication failed for user \"repluser\"",
        ));
        assert_eq!(logs.rejected.iter().collect::<Vec<_>>(), ["repluser"]);
        logs.read(&entry(
            "keeper   | executing DataRestoreCommand: wal-g backup-fetch /data/postgres base_1",
        ));
        assert_eq!(logs.restore_starts, 2);
        assert_eq!(logs.phase, Some(Phase::Fetching));
    }

    #[test]
    fn memory_suggestion_doubles_to_a_power_of_two() {
        assert_eq!(bigger_memory(256), 1024);
        assert_eq!(bigger_memory(1024), 2048);
        assert_eq!(bigger_memory(3000), 8192);
    }

    #[test]
    fn lines_that_may_carry_secrets_are_not_shown() {
        assert!(shown_line("ALTER USER x PASSWORD 'abc'").is_none());
        assert!(
            shown_line("FATAL: password authentication failed for user \"repluser\"").is_some()
        );
        assert_eq!(
            rejected_user("FATAL:  password authentication failed for user \"repluser\""),
            Some("repluser".into())
        );
    }
}
