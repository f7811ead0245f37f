//! Controlling a restore run (`core::restore::engine::control`) against flysim over loopback HTTP
//! (`support::restore`): the two-person approval (required when the setting is on, never by the plan's author
//! or a viewer, audited); retry after a permanent failure ends with exactly one app, volume and machine; cancel
//! and destroy removes exactly the run's resources (the source and an untagged machine in the new app stay);
//! cancel and leave keeps everything and stops a worker at its next write; a clean-up interrupted by a crash
//! resumes on a restarted console; a run whose app name someone else took is neither retried nor has that app
//! destroyed. Runs are moved on only as far as a started machine (`support::restore::run_to_stop`: the
//! keeper check and the PITR need a moving clock); control works on whatever exists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use std::time::Duration;

use fly::{CreateMachineRequest, FlyClient, ListMachines, MachineConfig};
use flysim::Faults;
use support::restore::*;
use walden_core::access::{Actor, Role};
use walden_core::audit::{self, AuditFilter};
use walden_core::restore::engine::{
    self, Advance, Cleanup, CleanupOutcome, Engine, EngineError, EngineOptions, RunState, RunView,
};
use walden_core::restore::RestoreTarget;
use walden_core::settings::REQUIRE_RESTORE_APPROVAL;
use walden_core::Walden;

fn user(id: i64, name: &str, role: Role) -> Actor {
    Actor::User {
        id,
        name: name.into(),
        role,
    }
}

/// How many audit rows have `action` and `outcome`.
async fn audited(walden: &Walden, action: &str, outcome: &str) -> usize {
    audit::query(walden.pool(), &AuditFilter::default(), None, 5000)
        .await
        .unwrap()
        .rows
        .iter()
        .filter(|r| r.action == action && r.outcome == outcome)
        .count()
}

/// A run moved on as far as its started machine (still running, its next step the keeper check).
fn assert_went_as_far_as_built(view: &RunView) {
    assert!(
        matches!(view.state, RunState::Running) && view.next_step == MACHINE_STEPS,
        "{view:#?}"
    );
    assert!(
        view.steps
            .iter()
            .any(|s| s.kind == "wait" && s.status == "done"),
        "{view:#?}"
    );
}

/// The machines of `app` that are not gone: (id, run tag).
async fn live_machines(client: &FlyClient, app: &str) -> Vec<(String, Option<String>)> {
    client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.is_gone())
        .map(|m| {
            let tag = m
                .config
                .as_ref()
                .and_then(|c| c.metadata.get(engine::RUN_METADATA).cloned());
            (m.id, tag)
        })
        .collect()
}

async fn live_volumes(client: &FlyClient, app: &str) -> Vec<String> {
    client
        .list_volumes(app)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_destroyed())
        .map(|v| v.id)
        .collect()
}

async fn app_exists(client: &FlyClient, app: &str) -> bool {
    client
        .list_apps(ORG)
        .await
        .unwrap()
        .apps
        .iter()
        .any(|a| a.name == app)
}

/// A machine someone else made in the run's app, without the run's tag.
async fn untagged_machine(client: &FlyClient, app: &str) -> String {
    let config = MachineConfig {
        image: Some("flyio/postgres:14.6".into()),
        ..MachineConfig::default()
    };
    let req = CreateMachineRequest {
        config,
        region: Some("ord".into()),
        ..CreateMachineRequest::default()
    };
    client.create_machine(app, &req).await.unwrap().id
}

/// The setting on: a run needs another operator's or admin's approval of its plan hash. The author, a viewer
/// and the one who starts cannot give it; each refusal and the approval are audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_setting_on_a_run_needs_another_persons_approval() {
    let f = fixture(30).await;
    let (alice, bob) = (
        user(1, "alice", Role::Operator),
        user(2, "bob", Role::Admin),
    );
    let viewer = user(3, "vera", Role::Viewer);
    let restores = f.walden.restores();
    let to = "approved-restore";
    let plan = restores
        .plan(&alice, &meta(), &request(RestoreTarget::Latest, to))
        .await
        .unwrap();
    assert!(
        !restores.approval_required().await.unwrap(),
        "off by default"
    );

    // Only an admin turns it on, audited like every setting.
    assert!(f
        .walden
        .settings()
        .set_bool(&alice, &meta(), REQUIRE_RESTORE_APPROVAL, true)
        .await
        .is_err());
    f.walden
        .settings()
        .set_bool(&bob, &meta(), REQUIRE_RESTORE_APPROVAL, true)
        .await
        .unwrap();
    assert!(restores.approval_required().await.unwrap());

    assert!(matches!(
        restores.start_run(&alice, &meta(), &plan.hash, to).await,
        Err(EngineError::NotApproved(h)) if h == plan.hash
    ));
    assert!(matches!(
        restores.approve_plan(&alice, &meta(), &plan.hash).await,
        Err(EngineError::SelfApproval)
    ));
    assert!(matches!(
        restores.approve_plan(&viewer, &meta(), &plan.hash).await,
        Err(EngineError::Forbidden)
    ));
    let approval = restores
        .approve_plan(&bob, &meta(), &plan.hash)
        .await
        .unwrap();
    assert_eq!(approval.approver, "bob");
    assert_eq!(restores.approvals(&plan.hash).await.unwrap().len(), 1);
    // The approver does not start it alone: two people, the author's side and the approver's.
    assert!(matches!(
        restores.start_run(&bob, &meta(), &plan.hash, to).await,
        Err(EngineError::NotApproved(_))
    ));
    let run = restores
        .start_run(&alice, &meta(), &plan.hash, to)
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Pending);

    assert_eq!(audited(&f.walden, "restore.approve", "ok").await, 1);
    assert_eq!(audited(&f.walden, "restore.approve", "denied").await, 2);
    assert_eq!(audited(&f.walden, "restore.run.start", "failed").await, 2);
    assert_eq!(audited(&f.walden, "setting.change", "ok").await, 1);
    assert_eq!(audited(&f.walden, "setting.change", "denied").await, 1);
}

/// Fly answering 503 to everything outlasts the step's deadline: the run fails with the cause. A viewer cannot
/// retry; an operator's retry puts the failed step back and the worker completes the run with exactly one app,
/// volume and machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_a_permanent_failure_makes_one_of_each() {
    let f = fixture(30).await;
    let to = "retried-restore";
    let run = started(&f.walden, to).await;
    let impatient = Engine::new(
        f.walden.restores(),
        EngineOptions {
            step_deadline: Duration::ZERO,
            ..EngineOptions::default()
        },
    );
    impatient.advance(&run.id, 3).await.unwrap();
    f.sim.set_faults(Faults {
        rate_5xx: 1.0,
        ..Faults::default()
    });
    let Advance::Ran(failed) = impatient.advance(&run.id, usize::MAX).await.unwrap() else {
        panic!("held")
    };
    f.sim.set_faults(Faults::default());
    assert_eq!(failed.state, RunState::Failed, "{failed:#?}");
    assert!(failed
        .failure
        .as_deref()
        .unwrap()
        .contains("Fly kept failing"));
    assert_eq!(failed.steps[3].status, "failed");

    let restores = f.walden.restores();
    assert!(matches!(
        restores
            .retry_run(&user(3, "vera", Role::Viewer), &meta(), &run.id)
            .await,
        Err(EngineError::Forbidden)
    ));
    let again = restores
        .retry_run(&Actor::cli(), &meta(), &run.id)
        .await
        .unwrap();
    assert_eq!(again.state, RunState::Pending);
    assert_eq!(again.steps[3].status, "pending");
    assert!(again.failure.is_none());
    assert!(matches!(
        restores.retry_run(&Actor::cli(), &meta(), &run.id).await,
        Err(EngineError::NotFailed { .. })
    ));
    // A worker takes the retried run again (as far as the machine steps go on a clock that stands still).
    let view = run_to_stop(&f.walden, &run.id).await;
    assert_went_as_far_as_built(&view);
    assert_exactly_one_of_each(&f.client, to, &run.id).await;
    assert_eq!(audited(&f.walden, "restore.run.retry", "ok").await, 1);
    assert_eq!(audited(&f.walden, "restore.run.retry", "denied").await, 1);
}

/// Cancel and destroy: the run's tagged machine, its recorded volume and (when nothing else is in it) its app
/// are destroyed; a machine someone else put in the new app, and the app holding it, stay; the source is
/// unchanged. Audited when asked and when done, with what was destroyed. A viewer is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_destroy_removes_exactly_the_runs_resources() {
    let f = fixture(30).await;
    let source_before = source_state(&f.client).await;
    let restores = f.walden.restores();

    let (shared, alone) = ("cancel-shared", "cancel-alone");
    let a = started(&f.walden, shared).await;
    assert_went_as_far_as_built(&run_to_stop(&f.walden, &a.id).await);
    let b = started(&f.walden, alone).await;
    assert_went_as_far_as_built(&run_to_stop(&f.walden, &b.id).await);
    let stranger = untagged_machine(&f.client, shared).await;

    assert!(matches!(
        restores
            .cancel_run(
                &user(3, "vera", Role::Viewer),
                &meta(),
                &a.id,
                Cleanup::Destroy
            )
            .await,
        Err(EngineError::Forbidden)
    ));
    for (run, app) in [(&a.id, shared), (&b.id, alone)] {
        let view = restores
            .cancel_run(&Actor::cli(), &meta(), run, Cleanup::Destroy)
            .await
            .unwrap();
        assert_eq!(view.state, RunState::Cancelled);
        let cleanup = view.cleanup.unwrap();
        assert_eq!(cleanup.state, "done", "{cleanup:?}");
        assert!(
            cleanup.destroyed.iter().any(|d| d.starts_with("machine ")),
            "{cleanup:?}"
        );
        assert!(
            cleanup.destroyed.iter().any(|d| d.starts_with("volume ")),
            "{cleanup:?}"
        );
        assert_eq!(
            cleanup.destroyed.iter().any(|d| *d == format!("app {app}")),
            app == alone,
            "{cleanup:?}"
        );
    }
    assert_eq!(
        live_machines(&f.client, shared).await,
        vec![(stranger, None)],
        "only the untagged machine is left"
    );
    assert!(live_volumes(&f.client, shared).await.is_empty());
    assert!(app_exists(&f.client, shared).await);
    assert!(!app_exists(&f.client, alone).await);
    assert_eq!(source_state(&f.client).await, source_before);

    // Done is done: again changes nothing; a cancelled run is never moved on.
    let again = restores
        .cancel_run(&Actor::cli(), &meta(), &a.id, Cleanup::Destroy)
        .await
        .unwrap();
    assert_eq!(again.cleanup.unwrap().state, "done");
    assert_eq!(engine::tick(&f.walden, &|| false).await.unwrap(), 0);
    assert_eq!(audited(&f.walden, "restore.run.cancel", "ok").await, 4);
    assert_eq!(audited(&f.walden, "restore.run.cancel", "denied").await, 1);
}

/// Cancel and leave: everything stays as it is. Cancelled while a worker is in a step (every Fly answer
/// slowed), the worker records the step in flight and starts no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_leave_keeps_everything_and_stops_the_worker() {
    let f = fixture(30).await;
    let to = "cancel-leave";
    let run = started(&f.walden, to).await;
    f.sim.set_faults(Faults {
        latency: Duration::from_millis(300),
        ..Faults::default()
    });
    let worker = {
        let walden = f.walden.clone();
        let id = run.id.clone();
        tokio::spawn(async move { engine::advance(&walden, &id).await })
    };
    let restores = f.walden.restores();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let view = restores.run(&run.id).await.unwrap();
        if view.steps.iter().any(|s| s.status == "running") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{view:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = restores
        .cancel_run(&Actor::cli(), &meta(), &run.id, Cleanup::Leave)
        .await
        .unwrap();
    assert_eq!(cancelled.state, RunState::Cancelled);
    let in_flight = cancelled
        .steps
        .iter()
        .position(|s| s.status == "running")
        .expect("a step in flight");
    let stopped = tokio::time::timeout(Duration::from_secs(120), worker)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    f.sim.set_faults(Faults::default());
    let Advance::Ran(view) = stopped else {
        panic!("held")
    };
    assert_eq!(view.state, RunState::Cancelled);
    assert!(view.cleanup.is_none());
    assert!(
        view.steps[in_flight + 1..]
            .iter()
            .all(|s| s.status == "pending" && s.started_at.is_none()),
        "no step started after the cancel: {view:#?}"
    );

    // Everything that exists stays; nothing moves the run again.
    let before = fly_state(&f.client).await;
    assert_eq!(engine::tick(&f.walden, &|| false).await.unwrap(), 0);
    assert_eq!(
        run_to_stop(&f.walden, &run.id).await.state,
        RunState::Cancelled
    );
    assert_eq!(fly_state(&f.client).await, before);
    assert!(app_exists(&f.client, to).await);
    assert_eq!(audited(&f.walden, "restore.run.cancel", "ok").await, 1);
}

/// A clean-up waits for the cancelled run's worker to let go; a console that died mid-clean-up (its machine
/// destroyed, its lease still held) is resumed by a restarted console's worker once the lease expires, and
/// ends with everything of the run gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_up_interrupted_by_a_crash_resumes() {
    let mut f = fixture(30).await;
    let to = "cancel-crash";
    let run = started(&f.walden, to).await;
    assert_went_as_far_as_built(&run_to_stop(&f.walden, &run.id).await);
    let before = fly_state(&f.client).await;

    // A worker still holds the run: the clean-up is queued, and waits.
    leave_lease_of_dead_worker(&f.walden, &run.id, false).await;
    let view = f
        .walden
        .restores()
        .cancel_run(&Actor::cli(), &meta(), &run.id, Cleanup::Destroy)
        .await
        .unwrap();
    assert_eq!(view.cleanup.unwrap().state, "pending");
    assert_eq!(fly_state(&f.client).await, before, "nothing destroyed yet");
    leave_lease_of_dead_worker(&f.walden, &run.id, true).await;

    // The clean-up's console dies after destroying the machine, before recording anything more.
    let (machine, _) = live_machines(&f.client, to).await.remove(0);
    f.client
        .destroy_machine(to, &machine, true, None)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE restore_cleanups SET lease_owner = 'dead-cleaner', lease_expires_at = '2999-01-01T00:00:00.000Z', \
         attempts = 1 WHERE run_id = ?",
    )
    .bind(&run.id)
    .execute(f.walden.pool())
    .await
    .unwrap();
    f.walden.close().await;
    f.walden = f.reopen().await;
    assert_eq!(
        f.walden.restores().clean_up(&run.id).await.unwrap(),
        CleanupOutcome::Waiting,
        "the dead cleaner's lease is respected until it expires"
    );
    sqlx::query("UPDATE restore_cleanups SET lease_expires_at = '2000-01-01T00:00:00.000Z' WHERE run_id = ?")
        .bind(&run.id)
        .execute(f.walden.pool())
        .await
        .unwrap();
    engine::tick(&f.walden, &|| false).await.unwrap();
    let cleanup = f
        .walden
        .restores()
        .run(&run.id)
        .await
        .unwrap()
        .cleanup
        .unwrap();
    assert_eq!(cleanup.state, "done", "{cleanup:?}");
    assert_eq!(cleanup.attempts, 2);
    assert!(!app_exists(&f.client, to).await);
    assert_eq!(
        f.walden.restores().clean_up(&run.id).await.unwrap(),
        CleanupOutcome::Nothing
    );
}

/// A run failed because someone else took the new app's name: a retry is refused (it would take their app for
/// the run's), and cancel and destroy leaves their app alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_someone_else_is_never_retried_nor_destroyed() {
    let f = fixture(30).await;
    let to = "taken-by-another";
    let run = started(&f.walden, to).await;
    f.client
        .create_app(&fly::CreateAppRequest {
            name: to.into(),
            org_slug: ORG.into(),
            network: None,
            enable_subdomains: None,
            app_role_id: None,
        })
        .await
        .unwrap();
    let stranger = untagged_machine(&f.client, to).await;
    assert_eq!(
        run_to_stop(&f.walden, &run.id).await.state,
        RunState::Failed
    );
    let restores = f.walden.restores();
    assert!(matches!(
        restores.retry_run(&Actor::cli(), &meta(), &run.id).await,
        Err(EngineError::NameTaken(_))
    ));
    let view = restores
        .cancel_run(&Actor::cli(), &meta(), &run.id, Cleanup::Destroy)
        .await
        .unwrap();
    let cleanup = view.cleanup.unwrap();
    assert_eq!(cleanup.state, "done", "{cleanup:?}");
    assert!(cleanup.destroyed.is_empty(), "{cleanup:?}");
    assert!(app_exists(&f.client, to).await);
    assert_eq!(live_machines(&f.client, to).await, vec![(stranger, None)]);
}
