//! The cutover and its rollback (`core::restore::cutover`) against flysim over loopback HTTP
//! (`support::cutover`: a stored plan, the restored cluster seeded on the emulator, its `done` run written as
//! set-up). Asserted on the emulator's state: the old cluster's `ENABLE_WALG` unset and its machines stopped,
//! not destroyed; replicas cloned with their own volumes; each selected app's `DATABASE_URL` on the new host
//! and its machines updated; the unselected app untouched; a console stopped at every step boundary (and one
//! killed holding its lease) resumes without doing anything twice; the rollback puts everything back; no
//! plaintext URL or password in the SQLite files or the audit log; viewers and wrong confirmations refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use support::cutover::*;
use support::restore::*;
use walden_core::access::{Actor, Role};
use walden_core::audit::{self, AuditFilter};
use walden_core::restore::cutover::{
    CutoverError, CutoverOptions, CutoverState, CutoverView, Phase,
};
use walden_core::Walden;

/// The options of a test: waits end after a minute (the emulator's clock runs fast; a wait this long means
/// something is wrong, said at once rather than after the default ten minutes).
fn options() -> CutoverOptions {
    CutoverOptions {
        wait_deadline: std::time::Duration::from_secs(60),
        step_deadline: std::time::Duration::from_secs(60),
        ..CutoverOptions::default()
    }
}

/// Steps of a cutover of two apps: archiving, replicas, two apps, stop, verify.
const CUTOVER_STEPS: usize = 6;
/// Steps of its rollback: archiving, old machines, two apps, verify.
const ROLLBACK_STEPS: usize = 5;

async fn cut_over(walden: &Walden, c: &CutoverFixture, options: &CutoverOptions) -> CutoverView {
    with_clock(
        &c.f.sim,
        walden
            .restores()
            .cutover_with(&Actor::cli(), &meta(), &c.run, &c.selected(), APP, options),
    )
    .await
    .unwrap()
}

async fn roll_back(walden: &Walden, c: &CutoverFixture, options: &CutoverOptions) -> CutoverView {
    with_clock(
        &c.f.sim,
        walden
            .restores()
            .rollback_with(&Actor::cli(), &meta(), &c.run, APP, options),
    )
    .await
    .unwrap()
}

/// The cutover done with every checklist line holding.
fn assert_done(view: &CutoverView, phase: Phase) {
    assert_eq!(view.phase, phase, "{view:#?}");
    assert_eq!(view.state, CutoverState::Done, "{view:#?}");
    assert!(!view.checklist.is_empty());
    assert!(view.checklist.iter().all(|c| c.ok), "{:#?}", view.checklist);
}

/// What the emulator holds after a cutover: the old cluster's archiving off and its machines stopped (all
/// there), the new cluster with two cloned replicas on their own new volumes, each selected app on the new
/// host (user, password and database kept) with its machines updated to that secrets version, the unselected
/// app untouched. Returns the selected apps' states.
async fn assert_cut_over(c: &CutoverFixture, old_before: &AppState, reports_before: &AppState) {
    let f = &c.f;
    let old = app_state(f, APP).await;
    assert!(!old.secrets.contains(&"ENABLE_WALG".to_owned()));
    assert_eq!(
        old.secrets_version,
        old_before.secrets_version + 1,
        "ENABLE_WALG unset once"
    );
    assert_eq!(
        old.machines.len(),
        old_before.machines.len(),
        "no old machine destroyed"
    );
    for m in &old.machines {
        assert_eq!(m.state, "stopped", "{m:?}");
        assert_eq!(
            m.booted_with, old.secrets_version,
            "{m:?} got the secrets without ENABLE_WALG"
        );
    }

    let new = app_state(f, NEW_APP).await;
    assert_eq!(new.machines.len(), old.machines.len());
    assert!(new.machines.iter().all(|m| m.state == "started"), "{new:?}");
    let replicas: Vec<&MachineState> = new
        .machines
        .iter()
        .filter(|m| m.metadata.get("walden_cutover") == Some(&c.run))
        .collect();
    assert_eq!(replicas.len(), old.machines.len() - 1);
    let volumes = f.client.list_volumes(NEW_APP).await.unwrap();
    let live: Vec<_> = volumes.iter().filter(|v| !v.is_destroyed()).collect();
    assert_eq!(
        live.len(),
        new.machines.len(),
        "one volume per member: {live:?}"
    );
    for r in &replicas {
        let vol = r.volume.as_deref().unwrap();
        let v = live.iter().find(|v| v.id == vol).unwrap();
        assert_eq!(v.attached_machine_id.as_deref(), Some(r.id.as_str()));
    }

    for (app, suffix) in SELECTED {
        let s = app_state(f, app).await;
        assert_eq!(
            s.database_url.as_deref(),
            Some(database_url(&format!("{NEW_APP}{suffix}")).as_str()),
            "{app}"
        );
        for m in &s.machines {
            assert_eq!(
                m.booted_with, s.secrets_version,
                "{app}'s {m:?} runs the new URL"
            );
        }
    }
    assert_eq!(&app_state(f, UNSELECTED).await, reports_before);
}

/// A cutover of a verified restore, then its rollback: everything on the emulator as described, back again
/// after the rollback; every step audited; nothing secret in the files or the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_moves_the_selected_apps_and_a_rollback_puts_everything_back() {
    let c = cutover_fixture().await;
    let f = &c.f;
    let old_before = app_state(f, APP).await;
    assert!(old_before.enable_walg.is_some());
    let reports_before = app_state(f, UNSELECTED).await;
    let mut apps_before = Vec::new();
    for (app, _) in SELECTED {
        apps_before.push(app_state(f, app).await);
    }

    let view = cut_over(&f.walden, &c, &options()).await;
    assert_done(&view, Phase::Cutover);
    assert_eq!(view.cutover.len(), CUTOVER_STEPS);
    assert_cut_over(&c, &old_before, &reports_before).await;

    // Asked again: nothing more is done.
    let old_cut = app_state(f, APP).await;
    let again = cut_over(&f.walden, &c, &options()).await;
    assert_eq!(again.state, CutoverState::Done);
    assert_eq!(app_state(f, APP).await, old_cut);

    let view = roll_back(&f.walden, &c, &options()).await;
    assert_done(&view, Phase::Rollback);
    assert_eq!(view.rollback.len(), ROLLBACK_STEPS);
    let old = app_state(f, APP).await;
    assert_eq!(
        old.enable_walg, old_before.enable_walg,
        "ENABLE_WALG set again"
    );
    assert_eq!(old.machines.len(), old_before.machines.len());
    for m in &old.machines {
        assert_eq!(m.state, "started", "{m:?}");
        assert_eq!(m.booted_with, old.secrets_version, "{m:?} archives again");
    }
    for ((app, _), before) in SELECTED.iter().zip(&apps_before) {
        let s = app_state(f, app).await;
        assert_eq!(s.database_url, before.database_url, "{app} has its old URL");
        for m in &s.machines {
            assert_eq!(m.booted_with, s.secrets_version, "{app}'s {m:?}");
        }
    }
    assert_eq!(app_state(f, UNSELECTED).await, reports_before);
    let new = app_state(f, NEW_APP).await;
    assert_eq!(
        new.machines.len(),
        old.machines.len(),
        "the new cluster is left as it is"
    );
    assert!(new.machines.iter().all(|m| m.state == "started"));

    let rows = audit::query(f.walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    let count = |action: &str| rows.iter().filter(|r| r.action == action).count();
    assert_eq!(count("restore.cutover.start"), 1);
    assert_eq!(count("restore.cutover.step.start"), CUTOVER_STEPS);
    assert_eq!(count("restore.cutover.step.done"), CUTOVER_STEPS);
    assert_eq!(count("restore.cutover.done"), 1);
    assert_eq!(count("restore.rollback.start"), 1);
    assert_eq!(count("restore.rollback.step.done"), ROLLBACK_STEPS);
    assert_eq!(count("restore.rollback.done"), 1);
    assert!(rows
        .iter()
        .filter(|r| r.action.starts_with("restore.cutover.")
            || r.action.starts_with("restore.rollback."))
        .all(|r| r.run_id.as_deref() == Some(c.run.as_str())));

    assert_no_plaintext(&c).await;
}

/// No URL, password or host-with-credentials in the SQLite files (database and WAL) or the audit log.
async fn assert_no_plaintext(c: &CutoverFixture) {
    let bytes = data_files(&c.f);
    let text = String::from_utf8_lossy(&bytes);
    for needle in [OP_PASSWORD, "postgres://postgres:", "sslmode=disable"] {
        assert!(!text.contains(needle), "{needle} is stored in plaintext");
    }
    let details: Vec<String> = sqlx::query_scalar("SELECT COALESCE(detail, '') FROM audit_log")
        .fetch_all(c.f.walden.pool())
        .await
        .unwrap();
    assert!(details
        .iter()
        .all(|d| !d.contains(OP_PASSWORD) && !d.contains("postgres://")));
}

/// A console stopped after every step (a new Walden on the same SQLite file each time, as a restarted console)
/// and one killed while holding the lease: the cutover and the rollback resume and end as in one go, with
/// every secret set once, two replicas and volumes, nothing done twice. A live lease held elsewhere is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_stopped_between_steps_resumes_without_doing_anything_twice() {
    let c = cutover_fixture().await;
    let f = &c.f;
    let old_before = app_state(f, APP).await;
    let reports_before = app_state(f, UNSELECTED).await;
    let mut versions_before = Vec::new();
    for (app, _) in SELECTED {
        versions_before.push(app_state(f, app).await.secrets_version);
    }
    let one_step = CutoverOptions {
        max_steps: 1,
        ..options()
    };

    let mut view = cut_over(&f.walden, &c, &one_step).await;
    assert_eq!(view.state, CutoverState::Running);
    // While another console holds the cutover's lease, a rollback cannot take its place.
    sqlx::query(
        "UPDATE restore_cutovers SET lease_owner = 'other-console', lease_expires_at = '2999-01-01T00:00:00.000Z' \
         WHERE run_id = ?",
    )
    .bind(&c.run)
    .execute(f.walden.pool())
    .await
    .unwrap();
    let busy = f
        .walden
        .restores()
        .rollback_with(&Actor::cli(), &meta(), &c.run, APP, &one_step)
        .await;
    assert!(matches!(busy, Err(CutoverError::Busy(_))), "{busy:?}");
    let still = f
        .walden
        .restores()
        .cutover_view(&c.run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((still.phase, still.rollback.len()), (Phase::Cutover, 0));
    // The console dies holding its lease (expired now): the next one takes over.
    sqlx::query(
        "UPDATE restore_cutovers SET lease_owner = 'dead-console', lease_expires_at = '2000-01-01T00:00:00.000Z' \
         WHERE run_id = ?",
    )
    .bind(&c.run)
    .execute(f.walden.pool())
    .await
    .unwrap();
    let mut restarts = 0;
    while view.state == CutoverState::Running {
        let walden = f.reopen().await;
        view = cut_over(&walden, &c, &one_step).await;
        restarts += 1;
        assert!(restarts <= CUTOVER_STEPS, "{view:#?}");
    }
    assert_done(&view, Phase::Cutover);
    assert!(
        view.cutover.iter().all(|s| s.attempts == 1),
        "{:#?}",
        view.cutover
    );
    assert_cut_over(&c, &old_before, &reports_before).await;
    for ((app, _), before) in SELECTED.iter().zip(&versions_before) {
        assert_eq!(
            app_state(f, app).await.secrets_version,
            before + 1,
            "{app}'s URL set once"
        );
    }

    // The rollback's first step, then a lease another console holds (not expired): refused, nothing done.
    let mut view = roll_back(&f.walden, &c, &one_step).await;
    sqlx::query(
        "UPDATE restore_cutovers SET lease_owner = 'other-console', lease_expires_at = '2999-01-01T00:00:00.000Z' \
         WHERE run_id = ?",
    )
    .bind(&c.run)
    .execute(f.walden.pool())
    .await
    .unwrap();
    let busy = f
        .walden
        .restores()
        .rollback_with(&Actor::cli(), &meta(), &c.run, APP, &one_step)
        .await;
    assert!(matches!(busy, Err(CutoverError::Busy(_))), "{busy:?}");
    sqlx::query(
        "UPDATE restore_cutovers SET lease_owner = NULL, lease_expires_at = NULL WHERE run_id = ?",
    )
    .bind(&c.run)
    .execute(f.walden.pool())
    .await
    .unwrap();
    let mut restarts = 0;
    while view.state == CutoverState::Running {
        let walden = f.reopen().await;
        view = roll_back(&walden, &c, &one_step).await;
        restarts += 1;
        assert!(restarts <= ROLLBACK_STEPS, "{view:#?}");
    }
    assert_done(&view, Phase::Rollback);
    assert!(
        view.rollback.iter().all(|s| s.attempts == 1),
        "{:#?}",
        view.rollback
    );
    let old = app_state(f, APP).await;
    assert_eq!(old.enable_walg, old_before.enable_walg);
    assert_eq!(
        old.secrets_version,
        old_before.secrets_version + 2,
        "unset once, set once"
    );
    assert!(old.machines.iter().all(|m| m.state == "started"));
    for ((app, _), before) in SELECTED.iter().zip(&versions_before) {
        let s = app_state(f, app).await;
        assert_eq!(
            s.secrets_version,
            before + 2,
            "{app}: pointed once, put back once"
        );
        assert_eq!(
            s.database_url,
            Some(database_url(&format!("{APP}{}", suffix_of(app))))
        );
    }
    assert_no_plaintext(&c).await;
}

fn suffix_of(app: &str) -> &'static str {
    SELECTED.iter().find(|(a, _)| *a == app).unwrap().1
}

/// Refused before anything changes on Fly, each refusal audited: a viewer, a wrong confirmation (the NEW
/// cluster's name), a run that is not verified, an app that does not use the old cluster, an unknown region
/// for the replicas, a rollback without a cutover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing() {
    let c = cutover_fixture().await;
    let f = &c.f;
    user_app(&f.client, "elsewhere", &database_url("other-db.flycast")).await;
    let before = fly_state(&f.client).await;
    let old_before = app_state(f, APP).await;
    let restores = f.walden.restores();
    let apps = c.selected();

    let viewer = Actor::User {
        id: 42,
        name: "vera".into(),
        role: Role::Viewer,
    };
    let r = restores.cutover(&viewer, &meta(), &c.run, &apps, APP).await;
    assert!(matches!(r, Err(CutoverError::Forbidden)), "{r:?}");
    let r = restores.rollback(&viewer, &meta(), &c.run, APP).await;
    assert!(matches!(r, Err(CutoverError::Forbidden)), "{r:?}");

    let r = restores
        .cutover(&Actor::cli(), &meta(), &c.run, &apps, NEW_APP)
        .await;
    match r {
        Err(CutoverError::ConfirmMismatch { expected }) => assert_eq!(expected, APP),
        other => panic!("{other:?}"),
    }

    let mut bad = apps.clone();
    bad.push("no-such-app".into());
    bad.push(NEW_APP.into());
    let r = restores
        .cutover(&Actor::cli(), &meta(), &c.run, &bad, APP)
        .await;
    match r {
        Err(CutoverError::Refused(reasons)) => {
            assert_eq!(reasons.len(), 2, "{reasons:?}");
            assert!(reasons[0].contains("no-such-app"), "{reasons:?}");
        }
        other => panic!("{other:?}"),
    }
    let r = restores
        .cutover(
            &Actor::cli(),
            &meta(),
            &c.run,
            &["elsewhere".to_owned()],
            APP,
        )
        .await;
    assert!(matches!(r, Err(CutoverError::Refused(_))), "{r:?}");

    let nowhere = CutoverOptions {
        replica_region: Some("xx9".into()),
        ..options()
    };
    let r = restores
        .cutover_with(&Actor::cli(), &meta(), &c.run, &apps, APP, &nowhere)
        .await;
    match r {
        Err(CutoverError::Refused(reasons)) => assert!(reasons[0].contains("xx9"), "{reasons:?}"),
        other => panic!("{other:?}"),
    }

    let r = restores.rollback(&Actor::cli(), &meta(), &c.run, APP).await;
    assert!(matches!(r, Err(CutoverError::NoCutover(_))), "{r:?}");

    sqlx::query("UPDATE restore_runs SET state = 'failed', failure = 'set-up' WHERE id = ?")
        .bind(&c.run)
        .execute(f.walden.pool())
        .await
        .unwrap();
    let r = restores
        .cutover(&Actor::cli(), &meta(), &c.run, &apps, APP)
        .await;
    assert!(matches!(r, Err(CutoverError::NotDone { .. })), "{r:?}");

    assert_eq!(
        fly_state(&f.client).await,
        before,
        "nothing created or destroyed"
    );
    assert_eq!(
        app_state(f, APP).await,
        old_before,
        "the old cluster untouched"
    );
    assert!(restores.cutover_view(&c.run).await.unwrap().is_none());

    let rows = audit::query(f.walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    let count = |action: &str, outcome: &str| {
        rows.iter()
            .filter(|r| r.action == action && r.outcome == outcome)
            .count()
    };
    assert_eq!(count("restore.cutover.start", "denied"), 1);
    assert_eq!(count("restore.rollback.start", "denied"), 1);
    assert_eq!(count("restore.cutover.start", "failed"), 4);
    assert_eq!(count("restore.rollback.start", "failed"), 1);
    assert_eq!(count("restore.cutover.start", "ok"), 0);
}

/// A console killed inside steps, after their Fly calls but before their end was recorded: the replicas'
/// step with nothing of its progress kept (it finds its replicas by their tags), an app's step with its
/// progress kept (its secrets version). Run again, neither clones, sets nor rolls out anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_interrupted_after_its_fly_calls_is_not_done_twice() {
    let c = cutover_fixture().await;
    let f = &c.f;
    let old_before = app_state(f, APP).await;
    let reports_before = app_state(f, UNSELECTED).await;
    let web_before = app_state(f, SELECTED[0].0).await;
    let three_steps = CutoverOptions {
        max_steps: 3,
        ..options()
    };
    let view = cut_over(&f.walden, &c, &three_steps).await;
    assert_eq!(view.cutover[2].status, "done", "{view:#?}");
    let web_cut = app_state(f, SELECTED[0].0).await;

    sqlx::query(
        "UPDATE restore_cutover_steps SET status = 'running', finished_at = NULL, \
         produced = CASE idx WHEN 1 THEN '{}' ELSE produced END \
         WHERE run_id = ? AND phase = 'cutover' AND idx IN (1, 2)",
    )
    .bind(&c.run)
    .execute(f.walden.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE restore_cutovers SET next_step = 1, lease_owner = 'killed', \
         lease_expires_at = '2000-01-01T00:00:00.000Z' WHERE run_id = ?",
    )
    .bind(&c.run)
    .execute(f.walden.pool())
    .await
    .unwrap();

    let walden = f.reopen().await;
    let view = cut_over(&walden, &c, &options()).await;
    assert_done(&view, Phase::Cutover);
    assert_eq!(view.cutover[1].attempts, 2);
    assert_cut_over(&c, &old_before, &reports_before).await;
    let web = app_state(f, SELECTED[0].0).await;
    assert_eq!(
        web.secrets_version,
        web_before.secrets_version + 1,
        "set once"
    );
    assert_eq!(web.machines, web_cut.machines, "not rolled out again");
}

/// The replaced values are part of a master-key rotation (`rotation::SEALED_COLUMNS`): a value sealed under
/// the old key is re-sealed under the new one, for the same context, and opens with the new key alone. (Rows
/// written by hand, on a bare database: the fixture's key cannot be given as a retired one.)
#[tokio::test]
async fn replaced_values_are_resealed_by_a_key_rotation() {
    use walden_core::keyring::Keyring;
    use walden_core::restore::cutover::secret_context;
    use walden_core::rotation;
    use walden_core::seal::SealKey;

    let dir = tempfile::tempdir().unwrap();
    let pool = walden_core::db::open(dir.path()).await.unwrap();
    let (run, hash) = ("0123456789abcdef", "a".repeat(64));
    let now = walden_core::ts::format(walden_core::ts::now());
    for (sql, binds) in [
        (
            "INSERT INTO restore_plans (hash, source_org, source_app, target_app, request, plan, created_by, \
             created_at) VALUES (?, 'acme', 'prod-db', 'prod-db-restored', '{}', '{}', 'set-up', ?)",
            vec![hash.clone(), now.clone()],
        ),
        (
            "INSERT INTO restore_runs (id, plan_hash, state, next_step, created_by, created_at, finished_at) \
             VALUES (?, ?, 'done', 0, 'set-up', ?, ?)",
            vec![run.into(), hash.clone(), now.clone(), now.clone()],
        ),
        (
            "INSERT INTO restore_cutovers (run_id, org, old_app, new_app, apps, phase, state, next_step, \
             created_by, created_at, updated_at) VALUES (?, 'acme', 'prod-db', 'prod-db-restored', '[\"web\"]', \
             'cutover', 'done', 0, 'set-up', ?, ?)",
            vec![run.into(), now.clone(), now.clone()],
        ),
    ] {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(b);
        }
        q.execute(&pool).await.unwrap();
    }
    let a = SealKey::generate().unwrap();
    let context = secret_context(run, "web", "DATABASE_URL");
    let value = database_url("prod-db.flycast");
    let sealed = Keyring::new(a.clone())
        .seal(value.as_bytes(), &context)
        .unwrap();
    sqlx::query(
        "INSERT INTO restore_cutover_secrets (run_id, app, name, sealed) VALUES (?, 'web', 'DATABASE_URL', ?)",
    )
    .bind(run)
    .bind(sealed)
    .execute(&pool)
    .await
    .unwrap();

    let b = SealKey::generate().unwrap();
    let ring = Keyring::new(b.clone()).with_retired(a);
    let report = rotation::rotate(&pool, &ring, &Actor::cli(), &meta())
        .await
        .unwrap();
    assert_eq!(report.total(), 1);
    let resealed: Vec<u8> = sqlx::query_scalar("SELECT sealed FROM restore_cutover_secrets")
        .fetch_one(&pool)
        .await
        .unwrap();
    let opened = Keyring::new(b).open(&resealed, &context).unwrap();
    assert_eq!(opened.as_slice(), value.as_bytes());
}
