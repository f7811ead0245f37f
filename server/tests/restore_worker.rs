//! The restore worker (`walden::jobs::restores`): over flysim's demo cluster (loopback HTTP) with a real SQLite
//! file, a run started through core is picked up by the running worker and moved on past its started machine
//! (into the keeper check, which waits for the emulator's clock); the worker stops on cancel, even in the middle
//! of that long step. The whole restore is `crates/core/tests/restore_pitr.rs`'s.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::time::Duration;

mod support;

use flysim::{DEMO_APP, DEMO_ORG};
use support::fleet::Fleet;
use tokio_util::sync::CancellationToken;
use walden::jobs::restores;
use walden_core::access::{Actor, RequestMeta};
use walden_core::restore::engine::{EngineOptions, RunState};
use walden_core::restore::{ClusterRef, Destination, RestoreRequest, RestoreTarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_moves_a_started_run_on() {
    let dir = tempfile::tempdir().unwrap();
    let Fleet {
        walden, run: _run, ..
    } = Fleet::start(dir.path(), 5).await;
    let (actor, meta) = (Actor::cli(), RequestMeta::default());
    walden
        .escrow()
        .capture(&actor, &meta, DEMO_ORG, DEMO_APP)
        .await
        .unwrap();
    let to = "demo-restored";
    let request = RestoreRequest {
        source: ClusterRef {
            org: DEMO_ORG.into(),
            app: DEMO_APP.into(),
        },
        target: RestoreTarget::Latest,
        timeline: None,
        destination: Destination {
            kind: walden_core::restore::DestinationKind::New,
            app: to.into(),
            region: None,
            memory_mb: None,
            volume_gb: None,
        },
        assertion: None,
        assertion_database: None,
    };
    let plan = walden
        .restores()
        .plan(&actor, &meta, &request)
        .await
        .unwrap();
    let started = walden
        .restores()
        .start_run(&actor, &meta, &plan.hash, to)
        .await
        .unwrap();

    let token = CancellationToken::new();
    let worker = tokio::spawn(restores(
        walden.clone(),
        token.clone(),
        Duration::from_millis(50),
        EngineOptions::default(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let view = loop {
        let view = walden.restores().run(&started.id).await.unwrap();
        let waited = view
            .steps
            .iter()
            .any(|s| s.kind == "wait" && s.status == "done");
        if waited || !view.state.runnable() {
            break view;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never moved the run on: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(view.state, RunState::Running, "{view:?}");
    assert!(view
        .steps
        .iter()
        .any(|s| s.kind == "wait" && s.status == "done"));
    token.cancel();
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker stops on cancel")
        .unwrap();
}
