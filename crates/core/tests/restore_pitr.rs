//! The restore engine's second half (`core::restore::engine`: keeper check, detached PITR init, progress,
//! verification, post-restore, report) against flysim over loopback HTTP, its manual clock moved on by a ticker
//! (`support::restore`): restores to latest, a time, an LSN and a named backup each end `done`, out of recovery
//! on a new timeline with the target's data, the new prefix holding a base backup and the source unchanged; the
//! detached init is launched once even after a crash between its launch and its record; a boot loop, a keeper
//! that never gets healthy, an out-of-memory kill, a restore restarted from scratch and roles refused after the
//! recovery each end in a clear failure; a false assertion fails verification, a bad one is refused at plan time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use fly::{FlyClient, ListMachines};
use flysim::Faults;
use support::restore::*;
use walden_core::access::Actor;
use walden_core::restore::engine::{Advance, Engine, RunState, RunView};
use walden_core::restore::{RestoreError, RestoreRequest, RestoreTarget};
use walden_core::Walden;

/// Index of the steps in a plan (see `restore::steps::steps`).
const CREATE_MACHINE: usize = 4;
const KEEPER_CHECK: usize = 6;
const PITR_INIT: usize = 7;

/// Plans `target` into `to` and starts its run.
async fn start(walden: &Walden, target: RestoreTarget, to: &str) -> RunView {
    start_request(walden, &request(target, to)).await
}

/// Plans `req` and starts its run.
async fn start_request(walden: &Walden, req: &RestoreRequest) -> RunView {
    let restores = walden.restores();
    let to = req.destination.app.as_str();
    let plan = restores.plan(&Actor::cli(), &meta(), req).await.unwrap();
    restores
        .start_run(&Actor::cli(), &meta(), &plan.hash, to)
        .await
        .unwrap()
}

/// Runs at most `steps` steps of the run with the fast options.
async fn advance(walden: &Walden, run: &str, steps: usize) -> RunView {
    match Engine::new(walden.restores(), fast_options())
        .advance(run, steps)
        .await
        .unwrap()
    {
        Advance::Ran(view) => view,
        Advance::Held => panic!("run {run} is held by another worker"),
    }
}

/// The run's new machine.
async fn run_machine(client: &FlyClient, app: &str) -> String {
    client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .find(|m| !m.is_gone())
        .unwrap()
        .id
}

/// A done run: every step done, progress at 100 %, a report with an RTO; the new cluster out of recovery on a
/// timeline after the backup's, its escrowed roles opening, its own prefix holding a base backup.
async fn assert_restored(f: &Fixture, view: &RunView, to: &str) -> u64 {
    assert_eq!(view.state, RunState::Done, "{view:#?}");
    assert!(view.steps.iter().all(|s| s.status == "done"), "{view:#?}");
    let progress = view
        .steps
        .iter()
        .find(|s| s.kind == "pitr_progress")
        .map(|s| s.progress.clone())
        .unwrap();
    assert_eq!(progress["phase"], "converged", "{progress}");
    assert_eq!(progress["percent"], 100.0);
    let report = view.report.as_ref().unwrap();
    assert!(report.rto_seconds.is_some(), "{report:?}");
    assert_eq!(report.steps.len(), view.steps.len());
    assert_eq!(
        psql(&f.client, to, "postgres", "select pg_is_in_recovery()").await,
        Ok("f".into())
    );
    let timeline: u32 = psql(
        &f.client,
        to,
        "postgres",
        "select timeline_id from pg_control_checkpoint()",
    )
    .await
    .unwrap()
    .parse()
    .unwrap();
    let verify = view.steps.iter().find(|s| s.kind == "verify").unwrap();
    assert_eq!(verify.produced["timeline"], timeline);
    let backup = view.steps.iter().find(|s| s.kind == "backup_push").unwrap();
    assert!(backup.produced["backup"]
        .as_str()
        .is_some_and(|b| b.starts_with("base_")));
    psql(&f.client, to, "app", "select count(*) from events")
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// Latest, the newest backup by name, a time between the two older backups, and the LSN of the oldest backup's
/// end: each run ends done; the older the target's backup, the fewer rows the restored data holds; the source is
/// unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_to_each_kind_of_target_end_done() {
    let f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    let source_before = source_state(&f.client).await;
    let oldest = f.backups.first().unwrap().clone();
    let newest = f.backups.last().unwrap().clone();
    let between = oldest.finish_time.unwrap() + time::Duration::minutes(30);
    let targets = [
        ("to-latest", RestoreTarget::Latest),
        (
            "to-backup",
            RestoreTarget::Backup {
                name: newest.name.clone(),
            },
        ),
        ("to-time", at(between)),
        (
            "to-lsn",
            RestoreTarget::Lsn {
                lsn: walg::Lsn(oldest.finish_lsn.unwrap()).to_string(),
            },
        ),
    ];
    let mut rows = Vec::new();
    for (to, target) in targets {
        // Each run also checks the user's assertion that the restored data has rows.
        let run = start_request(
            &f.walden,
            &asserting(target, to, "select count(*) >= 1 from events"),
        )
        .await;
        let view = advance(&f.walden, &run.id, usize::MAX).await;
        rows.push(assert_restored(&f, &view, to).await);
    }
    assert!(rows.iter().all(|r| *r > 0), "{rows:?}");
    assert!(
        rows[3] < rows[0],
        "an older target holds fewer rows: {rows:?}"
    );
    assert_eq!(source_state(&f.client).await, source_before);
}

/// The console dies after launching the init but before recording it: the step runs again on a new Walden and
/// finds the launch (the marker on the volume), so the keeper's log shows one restore, and the run ends done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detached_init_is_launched_once_across_a_crash() {
    let mut f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    let to = "init-once";
    let run = start(&f.walden, RestoreTarget::Latest, to).await;
    let view = advance(&f.walden, &run.id, PITR_INIT + 1).await;
    assert_eq!(view.next_step, PITR_INIT + 1, "{view:#?}");
    sqlx::query(
        "UPDATE restore_run_steps SET status = 'running', finished_at = NULL, produced = NULL \
         WHERE run_id = ? AND idx = ?",
    )
    .bind(&run.id)
    .bind(PITR_INIT as i64)
    .execute(f.walden.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE restore_runs SET next_step = ? WHERE id = ?")
        .bind(PITR_INIT as i64)
        .bind(&run.id)
        .execute(f.walden.pool())
        .await
        .unwrap();
    f.walden.close().await;
    f.walden = f.reopen().await;
    let view = advance(&f.walden, &run.id, usize::MAX).await;
    assert_restored(&f, &view, to).await;
    let machine = run_machine(&f.client, to).await;
    let logs = f
        .client
        .logs(to, Some("0"), Some(&machine), None)
        .await
        .unwrap();
    let launches = logs
        .entries
        .iter()
        .filter(|e| e.message.contains("executing DataRestoreCommand"))
        .count();
    assert_eq!(launches, 1, "the restore ran once");
}

/// A fresh plan of `to` run through step `last` (its machine exists); the run and the machine.
async fn run_through(f: &Fixture, to: &str, last: usize) -> (String, String) {
    let run = start(&f.walden, RestoreTarget::Latest, to).await;
    let view = advance(&f.walden, &run.id, last + 1).await;
    assert_eq!(view.next_step, last + 1, "{view:#?}");
    (run.id, run_machine(&f.client, to).await)
}

/// The run, moved on, fails (rather than waits) with a cause containing `expected`; the cause.
async fn fails_with(f: &Fixture, run: &str, expected: &str) -> String {
    let view = advance(&f.walden, run, usize::MAX).await;
    assert_eq!(view.state, RunState::Failed, "{view:#?}");
    let why = view.failure.clone().unwrap();
    assert!(why.contains(expected), "{why}");
    let failed = view.steps.iter().find(|s| s.status == "failed").unwrap();
    assert_eq!(failed.error.as_deref(), Some(why.as_str()));
    why
}

/// A keeper whose Postgres never gets ready fails the keeper check at its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keeper_that_never_gets_healthy_fails_clearly() {
    let f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    let to = "never-healthy";
    f.sim.set_faults(Faults {
        never_healthy: [to.to_owned()].into(),
        ..Faults::default()
    });
    let (run, _) = run_through(&f, to, CREATE_MACHINE).await;
    fails_with(&f, &run, "never got healthy").await;
}

/// The machine loses FLY_CONSUL_URL and is updated: the image panics at every boot and Fly restarts it (exit
/// events nested under `MonitorEvent`): a boot loop, named as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_loop_fails_clearly() {
    let f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    f.sim.set_faults(Faults {
        monitor_exit_events: true,
        ..Faults::default()
    });
    let to = "boot-loop";
    let (run, machine) = run_through(&f, to, CREATE_MACHINE).await;
    let unset = std::collections::BTreeMap::from([(
        "FLY_CONSUL_URL".to_owned(),
        None::<secrecy::SecretString>,
    )]);
    let version = f.client.update_secrets(to, &unset).await.unwrap();
    let config = f
        .client
        .get_machine(to, &machine)
        .await
        .unwrap()
        .config
        .unwrap();
    f.client
        .update_machine(
            to,
            &machine,
            &fly::UpdateMachineRequest {
                config,
                name: None,
                region: None,
                min_secrets_version: Some(version),
                skip_launch: None,
                skip_secrets: None,
                current_version: None,
            },
            None,
        )
        .await
        .unwrap();
    fails_with(&f, &run, "boot loop").await;
}

/// An out-of-memory kill while the PITR runs fails the progress step, naming a larger size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oom_kill_fails_clearly_with_the_size_to_pick() {
    let f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    let to = "oom";
    let (run, machine) = run_through(&f, to, PITR_INIT).await;
    f.sim.inject_oom(to, &machine).unwrap();
    let why = fails_with(&f, &run, "out of memory").await;
    assert!(
        why.contains("at least 1024 MB") || why.contains("at least"),
        "{why}"
    );
}

/// The machine restarts while the base backup is being fetched: the keeper starts the restore again from
/// scratch, which the progress step recognises (two fetch starts in the log) and fails, rather than watching it
/// loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_restarted_from_scratch_fails_clearly() {
    let f = fixture(30).await;
    let clock = tick_clock(&f.sim);
    let to = "from-scratch";
    let (run, machine) = run_through(&f, to, KEEPER_CHECK).await;
    clock.hold();
    let view = advance(&f.walden, &run, 1).await;
    assert_eq!(view.next_step, PITR_INIT + 1, "{view:#?}");
    f.sim.inject_exit(to, &machine, 1, false).unwrap();
    clock.release();
    fails_with(&f, &run, "restarted from scratch").await;
}

/// A request of the latest point into `to` with the assertion `sql` on database `app`.
fn asserting(target: RestoreTarget, to: &str, sql: &str) -> RestoreRequest {
    RestoreRequest {
        assertion: Some(sql.into()),
        assertion_database: Some("app".into()),
        ..request(target, to)
    }
}

/// An assertion that does not hold on the restored data fails the verification step with its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_assertion_fails_verification() {
    let f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    let to = "assert-false";
    let req = asserting(
        RestoreTarget::Latest,
        to,
        "select count(*) >= 1000000000 from events",
    );
    let run = start_request(&f.walden, &req).await;
    let why = fails_with(&f, &run.id, "did not hold").await;
    assert!(why.contains("'f'"), "{why}");
    let view = f.walden.restores().run(&run.id).await.unwrap();
    assert_eq!(
        view.steps
            .iter()
            .find(|s| s.status == "failed")
            .unwrap()
            .kind,
        "verify"
    );
}

/// An assertion that is not one read-only statement is refused at plan time, before any Fly call: nothing is
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_assertion_is_refused_at_plan_time() {
    let f = fixture(30).await;
    let before = fly_state(&f.client).await;
    for sql in [
        "delete from events",
        "select 1; drop table events",
        "select * from events for update",
        "select nextval('s')",
    ] {
        let req = asserting(RestoreTarget::Latest, "assert-bad", sql);
        match f.walden.restores().plan(&Actor::cli(), &meta(), &req).await {
            Err(RestoreError::Refused(r)) => {
                assert!(r.codes().contains(&"bad_assertion"), "{sql}: {r:?}")
            }
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(fly_state(&f.client).await, before);
}

/// The source's repluser password changed after the escrow capture and a backup holds the new one: after the
/// recovery Postgres refuses the (escrowed) REPL_PASSWORD the new cluster has, and the run fails naming the
/// role instead of waiting for a cluster that never converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rejected_after_recovery_name_the_role() {
    let f = fixture(30).await;
    let _clock = tick_clock(&f.sim);
    psql(
        &f.client,
        APP,
        "postgres",
        "ALTER ROLE repluser PASSWORD 'Changed123x'",
    )
    .await
    .unwrap();
    push_source_backup(&f, f.backups.len()).await;
    let run = start(&f.walden, RestoreTarget::Latest, "rejected").await;
    let why = fails_with(&f, &run.id, "rejects the new cluster's credentials").await;
    assert!(why.contains("repluser"), "{why}");
}
