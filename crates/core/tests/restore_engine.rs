//! The restore engine (`core::restore::engine`) against flysim over loopback HTTP (`support::restore`): a run of
//! a fresh plan reaches a started machine with exactly one app, volume and machine; a console killed at every
//! step boundary, or after a step's Fly call but before its record, resumes on a new Walden over the same
//! SQLite file and still makes exactly one of each; 20 seeded runs under injected 429/5xx and ambiguous 408
//! creates duplicate nothing and leave the source unchanged; the confirmation and the role are enforced; every
//! step is audited; no secret is stored in the runs' rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use flysim::Faults;
use support::restore::*;
use walden_core::access::{Actor, Role};
use walden_core::audit::{self, AuditFilter};
use walden_core::restore::engine::{
    self, Advance, Engine, EngineError, EngineOptions, RunState, RunView,
};
use walden_core::restore::RestoreTarget;
use walden_core::Walden;

/// The steps up to a started machine (app, consul, secrets, volume, machine, wait): what this file covers; the
/// keeper check, PITR, verification and post-restore are `restore_pitr.rs`'s, over a ticking emulator clock.
const BUILT_STEPS: usize = MACHINE_STEPS;
/// The seed's escrowed passwords (flysim `demo.rs`): never in a run's rows or audit detail.
const SEED_PASSWORDS: [&str; 3] = ["Zq81xKp2", "Lw73Hs0", "Vb55nQe9"];

/// The run stopped where it was told to: running, at the keeper check, every step before it done.
fn assert_stopped_after_built_steps(view: &RunView) {
    assert_eq!(view.state, RunState::Running, "{view:#?}");
    assert_eq!(view.next_step, BUILT_STEPS);
    assert!(view.failure.is_none(), "{view:#?}");
    for step in &view.steps[..BUILT_STEPS] {
        assert_eq!(step.status, "done", "{step:?}");
    }
    assert!(view.steps[BUILT_STEPS..]
        .iter()
        .all(|s| s.status == "pending"));
}

/// Every row of the runs' tables and the audit log, as text.
async fn stored_text(walden: &Walden) -> String {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT json_group_array(json_object('r', r)) FROM (\
           SELECT id || plan_hash || state || COALESCE(failure, '') AS r FROM restore_runs \
           UNION ALL SELECT kind || status || COALESCE(produced, '') || COALESCE(error, '') FROM restore_run_steps \
           UNION ALL SELECT action || COALESCE(detail, '') FROM audit_log)",
    )
    .fetch_all(walden.pool())
    .await
    .unwrap();
    rows.concat()
}

/// A fresh plan's run: refused to a viewer and to a wrong confirmation, started once (a second start of the
/// same plan is refused while it lives), then moved on to a started machine with exactly one app, volume and
/// machine, the secrets the image needs, the source untouched; every step audited, no secret stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reaches_a_started_machine_with_one_of_each() {
    let f = fixture(30).await;
    let source_before = source_state(&f.client).await;
    let restores = f.walden.restores();
    let to = "prod-db-restored";
    let plan = restores
        .plan(&Actor::cli(), &meta(), &request(RestoreTarget::Latest, to))
        .await
        .unwrap();

    let viewer = Actor::User {
        id: 42,
        name: "vera".into(),
        role: Role::Viewer,
    };
    assert!(matches!(
        restores.start_run(&viewer, &meta(), &plan.hash, to).await,
        Err(EngineError::Forbidden)
    ));
    match restores
        .start_run(&Actor::cli(), &meta(), &plan.hash, "prod-db")
        .await
    {
        Err(EngineError::ConfirmMismatch { expected }) => assert_eq!(expected, to),
        other => panic!("expected a confirmation mismatch, got {other:?}"),
    }
    let run = restores
        .start_run(&Actor::cli(), &meta(), &plan.hash, to)
        .await
        .unwrap();
    assert_eq!(run.state, RunState::Pending);
    assert_eq!(run.steps.len(), plan.plan.steps.len());
    assert!(matches!(
        restores.start_run(&Actor::cli(), &meta(), &plan.hash, to).await,
        Err(EngineError::LiveRun(id)) if id == run.id
    ));

    let view = run_to_stop(&f.walden, &run.id).await;
    assert_stopped_after_built_steps(&view);
    assert_exactly_one_of_each(&f.client, to, &run.id).await;
    let names: Vec<String> = f
        .client
        .list_secrets(to)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    for needed in [
        "FLY_CONSUL_URL",
        "SU_PASSWORD",
        "REPL_PASSWORD",
        "OPERATOR_PASSWORD",
        "FLY_RESTORED_FROM",
    ] {
        assert!(names.iter().any(|n| n == needed), "{needed} in {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "ENABLE_WALG"),
        "the restored cluster must not archive yet"
    );
    assert_eq!(source_state(&f.client).await, source_before);

    let rows = audit::query(f.walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    let count = |action: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r.action == action && r.outcome == outcome)
            .count()
    };
    assert_eq!(count("restore.run.start", "denied"), 1);
    assert_eq!(count("restore.run.start", "failed"), 1);
    assert_eq!(count("restore.run.start", "ok"), 1);
    assert_eq!(count("restore.step.start", "ok"), BUILT_STEPS);
    assert_eq!(count("restore.step.done", "ok"), BUILT_STEPS);
    assert_eq!(count("restore.step.fail", "failed"), 0);
    assert_eq!(count("restore.run.pause", "ok"), 0);
    assert!(rows
        .iter()
        .filter(|r| r.action.starts_with("restore.step."))
        .all(|r| r.run_id.as_deref() == Some(run.id.as_str())));
    let text = stored_text(&f.walden).await;
    for secret in SEED_PASSWORDS {
        assert!(!text.contains(secret), "no escrowed password is stored");
    }
}

/// Another app of the plan's name, made after the plan: the run fails at its first step with the reason and
/// creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_since_the_plan_fails_the_run() {
    let f = fixture(30).await;
    let run = started(&f.walden, "late-taken").await;
    f.client
        .create_app(&fly::CreateAppRequest {
            name: "late-taken".into(),
            org_slug: ORG.into(),
            network: None,
            enable_subdomains: None,
            app_role_id: None,
        })
        .await
        .unwrap();
    let view = run_to_stop(&f.walden, &run.id).await;
    assert_eq!(view.state, RunState::Failed);
    assert!(
        view.failure
            .as_deref()
            .unwrap()
            .contains("taken since the plan"),
        "{view:?}"
    );
    assert_eq!(view.steps[0].status, "failed");
    assert!(f
        .client
        .list_volumes("late-taken")
        .await
        .unwrap()
        .is_empty());
    let rows = audit::query(f.walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    assert!(rows
        .iter()
        .any(|r| r.action == "restore.step.fail" && r.outcome == "failed"));
}

/// As if the console died after step `idx`'s Fly call but before recording it: the step back to running
/// (one attempt made), the run back at it.
async fn lose_record_of_step(walden: &Walden, run: &str, idx: usize) {
    let idx = idx as i64;
    sqlx::query(
        "UPDATE restore_run_steps SET status = 'running', finished_at = NULL, produced = NULL \
         WHERE run_id = ? AND idx = ?",
    )
    .bind(run)
    .bind(idx)
    .execute(walden.pool())
    .await
    .unwrap();
    sqlx::query("UPDATE restore_runs SET next_step = ? WHERE id = ?")
        .bind(idx)
        .bind(run)
        .execute(walden.pool())
        .await
        .unwrap();
}

/// Kill the console after each step k (at the boundary, and after step k's Fly call but before its record),
/// open a new Walden on the same SQLite file, and move the run on: it still ends with exactly one app, volume
/// and machine. A lease the dead worker still holds is respected until it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_boundary_still_makes_one_of_each() {
    let mut f = fixture(30).await;
    let source_before = source_state(&f.client).await;
    for k in 0..BUILT_STEPS {
        for record_lost in [false, true] {
            let to = format!("crash-{k}-{}", if record_lost { "mid" } else { "edge" });
            let run = started(&f.walden, &to).await;
            let steps = if record_lost { k + 1 } else { k };
            let engine = Engine::new(f.walden.restores(), EngineOptions::default());
            let stopped = engine.advance(&run.id, steps).await.unwrap();
            assert!(matches!(stopped, Advance::Ran(ref v) if v.next_step == steps));
            if record_lost {
                lose_record_of_step(&f.walden, &run.id, k).await;
            }
            leave_lease_of_dead_worker(&f.walden, &run.id, false).await;
            f.walden.close().await;

            f.walden = f.reopen().await;
            assert_eq!(
                engine::advance(&f.walden, &run.id).await.unwrap(),
                Advance::Held,
                "the dead worker's lease is respected until it expires"
            );
            leave_lease_of_dead_worker(&f.walden, &run.id, true).await;
            let view = run_to_stop(&f.walden, &run.id).await;
            assert_stopped_after_built_steps(&view);
            assert_exactly_one_of_each(&f.client, &to, &run.id).await;
        }
    }
    assert_eq!(source_state(&f.client).await, source_before);
}

/// 20 seeded runs with 10 % 429 and 10 % 503 on every call and half the creates answered 408 after they
/// succeeded: each reaches its started machine with exactly one app, volume and machine; the source cluster
/// is unchanged on the emulator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_duplicate_nothing_and_leave_the_source_alone() {
    let f = fixture(30).await;
    let source_before = source_state(&f.client).await;
    for seed in 0..20u64 {
        let to = format!("faulty-{seed}");
        let run = started(&f.walden, &to).await;
        f.sim.set_faults(Faults {
            seed,
            rate_429: 0.1,
            rate_5xx: 0.1,
            create_408_after_success: 0.5,
            ..Faults::default()
        });
        let view = run_to_stop(&f.walden, &run.id).await;
        f.sim.set_faults(Faults::default());
        assert_stopped_after_built_steps(&view);
        assert_exactly_one_of_each(&f.client, &to, &run.id).await;
    }
    assert_eq!(source_state(&f.client).await, source_before);
}
