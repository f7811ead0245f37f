//! Restoring into an existing empty cluster made with `fly pg create` (issue #13 item 1b, the seed guide's path)
//! against flysim over loopback HTTP (`support::restore`): an empty second Stolon cluster is restored to a time
//! and ends done, one machine running the restored data, the others stopped, nothing created; a non-empty one
//! and one of another Postgres major are refused before any change; cancel and clean-up starts the machines the
//! run stopped and destroys nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use support::restore::*;
use walden_core::access::Actor;
use walden_core::restore::engine::{Advance, Cleanup, Engine, RunState, RunView};
use walden_core::restore::{RestoreError, RestoreRequest};
use walden_core::Walden;

/// Plans `req` and starts its run.
async fn start(walden: &Walden, req: &RestoreRequest) -> RunView {
    let restores = walden.restores();
    let plan = restores.plan(&Actor::cli(), &meta(), req).await.unwrap();
    assert!(plan.plan.destination.existing);
    assert!(
        plan.plan.notes.iter().any(|n| n.contains("REPLACED")),
        "the plan says the passwords are replaced: {:?}",
        plan.plan.notes
    );
    restores
        .start_run(&Actor::cli(), &meta(), &plan.hash, &req.destination.app)
        .await
        .unwrap()
}

/// The refusal's codes for `req`, after checking that nothing on Fly changed.
async fn refused(f: &Fixture, req: &RestoreRequest) -> Vec<String> {
    let before = fly_state(&f.client).await;
    let into = &req.destination.app;
    let machines = machine_states(&f.client, into).await;
    let err = f
        .walden
        .restores()
        .plan(&Actor::cli(), &meta(), req)
        .await
        .unwrap_err();
    assert_eq!(fly_state(&f.client).await, before);
    assert_eq!(machine_states(&f.client, into).await, machines);
    match err {
        RestoreError::Refused(r) => r.codes().into_iter().map(str::to_owned).collect(),
        other => panic!("not a refusal: {other}"),
    }
}

/// An empty cluster restored to a time between the two older backups: the run ends done; the kept machine (the
/// leader) serves the restored data out of recovery, the two others are stopped, no app, volume or machine was
/// created, and the source is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_cluster_is_restored_to_a_time() {
    let f = fixture(30).await;
    let (machines, _storage) = seed_existing(&f, "created-db", None, true);
    let _clock = tick_clock(&f.sim);
    let source_before = source_state(&f.client).await;
    let apps_before = fly_state(&f.client).await;
    let oldest = f.backups.first().unwrap();
    let between = oldest.finish_time.unwrap() + time::Duration::minutes(30);
    let run = start(&f.walden, &request_into(at(between), "created-db")).await;
    let view = match Engine::new(f.walden.restores(), fast_options())
        .advance(&run.id, usize::MAX)
        .await
        .unwrap()
    {
        Advance::Ran(view) => view,
        Advance::Held => panic!("held"),
    };
    assert_eq!(view.state, RunState::Done, "{view:#?}");
    let states = machine_states(&f.client, "created-db").await;
    let kept = &machines[0];
    for (id, state) in &states {
        let want = if id == kept { "started" } else { "stopped" };
        assert_eq!(state, want, "{states:?}");
    }
    assert_eq!(states.len(), machines.len());
    assert_eq!(
        psql(
            &f.client,
            "created-db",
            "postgres",
            "select pg_is_in_recovery()"
        )
        .await,
        Ok("f".into())
    );
    let rows: u64 = psql(
        &f.client,
        "created-db",
        "app",
        "select count(*) from events",
    )
    .await
    .unwrap()
    .parse()
    .unwrap();
    assert!(rows > 0, "the restored data is there");
    // Nothing was created (the volumes and machines listed are the cluster's own) and the source is unchanged.
    assert_eq!(fly_state(&f.client).await.len(), apps_before.len());
    assert_eq!(source_state(&f.client).await, source_before);
}

/// A cluster holding a database is refused before any change, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_data_is_refused() {
    let f = fixture(30).await;
    let (_machines, _storage) = seed_existing(&f, "busy-db", None, false);
    let codes = refused(
        &f,
        &request_into(walden_core::restore::RestoreTarget::Latest, "busy-db"),
    )
    .await;
    assert_eq!(codes, ["not_empty"]);
}

/// A cluster of another Postgres major than the backup is refused before any change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_another_major_is_refused() {
    let f = fixture(30).await;
    let (_machines, _storage) = seed_existing(&f, "pg16-db", Some("flyio/postgres:16.2"), true);
    let codes = refused(
        &f,
        &request_into(walden_core::restore::RestoreTarget::Latest, "pg16-db"),
    )
    .await;
    assert_eq!(codes, ["major_mismatch"]);
}

/// Cancel and clean-up after the machines were stopped starts them again and destroys nothing: the app, its
/// volumes and its machines all remain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_clean_up_starts_the_stopped_machines_and_destroys_nothing() {
    let f = fixture(30).await;
    let (machines, _storage) = seed_existing(&f, "created-db", None, true);
    // Started machines boot on the emulator's clock.
    let _clock = tick_clock(&f.sim);
    let before = fly_state(&f.client).await;
    let run = start(
        &f.walden,
        &request_into(walden_core::restore::RestoreTarget::Latest, "created-db"),
    )
    .await;
    // Secrets, the stops, the kept machine's update: the keeper check is next.
    let view = match Engine::new(f.walden.restores(), fast_options())
        .advance(&run.id, 3)
        .await
        .unwrap()
    {
        Advance::Ran(view) => view,
        Advance::Held => panic!("held"),
    };
    assert_eq!(view.next_step, 3, "{view:#?}");
    let stopped: Vec<(String, String)> = machine_states(&f.client, "created-db")
        .await
        .into_iter()
        .filter(|(_, s)| s == "stopped")
        .collect();
    assert_eq!(stopped.len(), machines.len() - 1, "{stopped:?}");
    f.walden
        .restores()
        .cancel_run(&Actor::cli(), &meta(), &run.id, Cleanup::Destroy)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let states = machine_states(&f.client, "created-db").await;
        if states.iter().all(|(_, s)| s == "started") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{states:?}");
        f.walden.restores().clean_up(&run.id).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        machine_states(&f.client, "created-db").await.len(),
        machines.len()
    );
    assert_eq!(fly_state(&f.client).await, before);
}
