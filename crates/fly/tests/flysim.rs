//! The client against the emulator (crates/flysim) as a real HTTP peer on 127.0.0.1:0: the demo
//! Stolon cluster, roles, stolonctl, printenv as secrets, leases, secrets rollout, and injected
//! faults (429/5xx, 408 after a successful create).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::BTreeMap;
use std::time::Duration;

use fly::stolon::{Role, Stolon};
use fly::*;
use flysim::{Faults, Sim};
use tokio_util::sync::CancellationToken;

struct Env {
    sim: Sim,
    run: flysim::Running,
    info: flysim::DemoInfo,
    _dir: tempfile::TempDir,
}

async fn demo() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let (sim, info) = Sim::demo(dir.path().join("walg")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();
    Env {
        sim,
        run,
        info,
        _dir: dir,
    }
}

fn client(env: &Env) -> FlyClient {
    FlyClient::builder()
        .token(SecretString::from(env.info.token.clone()))
        .machines_base_url(env.run.base_url.clone())
        .api_base_url(env.run.base_url.clone())
        .retry_policy(RetryPolicy {
            max_retries: 8,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        })
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_cluster_roles_stolonctl_and_env() {
    let env = demo().await;
    let fly = client(&env);
    let app = env.info.app.as_str();

    let apps = fly.list_apps(&env.info.org).await.unwrap();
    assert!(apps.apps.iter().any(|a| a.name == app), "{apps:?}");

    let stolon = Stolon::new(fly.clone(), app);
    let roles = stolon.roles().await.unwrap();
    assert_eq!(
        roles.iter().filter(|(_, r)| *r == Role::Leader).count(),
        1,
        "{roles:?}"
    );
    let leader = stolon.leader().await.unwrap();

    let status = match stolon.stolonctl(&leader.id, &["status"], 30).await {
        Ok(s) => s,
        Err(Error::ExecFailed { output, .. }) => panic!("stolonctl failed: {}", output.stderr),
        Err(e) => panic!("{e}"),
    };
    assert!(!status.trim().is_empty());
    let run = stolon
        .stolonctl_run(&leader.id, &["spec"], 30)
        .await
        .unwrap();
    assert!(run.success);

    // Arguments with spaces, quotes, `$` and `;` reach stolonctl intact (argv, never pasted).
    let archive = r#"if [ $ENABLE_WALG ]; then /usr/local/bin/wal-g wal-push "%p"; fi"#;
    let patch =
        serde_json::json!({"pgParameters": {"archive_command": archive, "archive_timeout": "120"}})
            .to_string();
    stolon
        .stolonctl(&leader.id, &["update", "--patch", patch.as_str()], 30)
        .await
        .unwrap();
    let spec = stolon.stolonctl(&leader.id, &["spec"], 30).await.unwrap();
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec["pgParameters"]["archive_command"], archive);
    assert_eq!(spec["pgParameters"]["archive_timeout"], "120");
    // The same through stolonctl-run (base64 of single-quoted arguments, shlex-split on the machine).
    let patch2 = serde_json::json!({"pgParameters": {"archive_timeout": "it's 60"}}).to_string();
    stolon
        .stolonctl_run(&leader.id, &["update", "--patch", patch2.as_str()], 30)
        .await
        .unwrap();
    let spec = stolon.stolonctl(&leader.id, &["spec"], 30).await.unwrap();
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec["pgParameters"]["archive_timeout"], "it's 60");

    let creds = stolon
        .read_env(&leader.id)
        .await
        .unwrap()
        .credentials()
        .unwrap();
    assert_eq!(creds.su_password.expose_secret(), "demo-su-Zq81xKp2");
    assert_eq!(creds.operator_password.expose_secret(), "demo-op-Vb55nQe9");

    // A failing command: 200 from Fly, error from the client, exit code kept.
    let err = fly
        .exec(app, &leader.id, &ExecRequest::new(["no-such-command"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ExecFailed { exit_code: 127, .. }),
        "{err:?}"
    );

    // Leases: a second acquire conflicts until the first is released.
    let lease = fly
        .acquire_lease(app, &leader.id, 60, Some("test"))
        .await
        .unwrap();
    let nonce = lease.nonce.clone().unwrap();
    let err = fly
        .acquire_lease(app, &leader.id, 60, Some("other"))
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    fly.release_lease(app, &leader.id, &nonce).await.unwrap();
    let again = fly.acquire_lease(app, &leader.id, 60, None).await.unwrap();
    fly.release_lease(app, &leader.id, again.nonce.as_deref().unwrap())
        .await
        .unwrap();

    let events = fly.machine_events(app, &leader.id, Some(10)).await.unwrap();
    assert!(!events.is_empty());
    let logs = fly.logs(app, None, None, None).await.unwrap();
    assert!(!logs.entries.is_empty());
    drop(env.sim);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_machines_only_after_the_rollout() {
    let env = demo().await;
    let fly = client(&env);
    let app = env.info.app.as_str();
    let stolon = Stolon::new(fly.clone(), app);
    let leader = stolon.leader().await.unwrap();

    let values = BTreeMap::from([(
        "WALDEN_TEST_SECRET".to_string(),
        Some(SecretString::from("s3cr3t")),
    )]);
    let version = fly.update_secrets(app, &values).await.unwrap();
    let names: Vec<String> = fly
        .list_secrets(app)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"WALDEN_TEST_SECRET".to_string()));
    let before = stolon.read_env(&leader.id).await.unwrap();
    assert!(
        before.get("WALDEN_TEST_SECRET").is_none(),
        "not on a running machine before an update"
    );

    let steps = fly
        .rollout_secrets(app, version, &RolloutOptions::default())
        .await
        .unwrap();
    assert_eq!(steps.len(), env.info.machines.len());
    assert!(steps.iter().all(|s| s.result.is_ok()), "{steps:?}");
    assert_eq!(
        steps.last().map(|s| s.machine_id.as_str()),
        Some(leader.id.as_str()),
        "leader last"
    );

    let after = stolon.read_env(&leader.id).await.unwrap();
    assert_eq!(
        after
            .get("WALDEN_TEST_SECRET")
            .map(|s| s.expose_secret().to_string()),
        Some("s3cr3t".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_retried_and_creates_are_not_duplicated() {
    let env = demo().await;
    let fly = client(&env);
    let app = env.info.app.as_str();
    let m = fly
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .remove(0);

    env.sim.set_faults(Faults {
        seed: 3,
        rate_429: 0.2,
        rate_5xx: 0.2,
        create_408_after_success: 1.0,
        ..Faults::default()
    });
    // Reads get through 429/503 by retrying.
    for _ in 0..5 {
        fly.get_machine(app, &m.id).await.unwrap();
    }
    // Every create "fails" with 408 after succeeding: each must still be created exactly once.
    let vol = fly
        .create_volume(
            app,
            &CreateVolumeRequest {
                name: "pg_data".into(),
                region: m.region.clone(),
                size_gb: 1,
                ..CreateVolumeRequest::default()
            },
        )
        .await
        .unwrap();
    let mut config = m.config.clone().unwrap();
    config.mounts = vec![MachineMount {
        volume: Some(vol.id.clone()),
        path: Some("/data".into()),
        ..MachineMount::default()
    }];
    let before = fly
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .len();
    let created = fly
        .create_machine(
            app,
            &CreateMachineRequest {
                config,
                name: Some("pg-extra".into()),
                region: Some(m.region.clone()),
                ..CreateMachineRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(created.name, "pg-extra");
    env.sim.set_faults(Faults::default());
    let after = fly
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap();
    assert_eq!(after.len(), before + 1, "exactly one machine created");
    let vols = fly.list_volumes(app).await.unwrap();
    assert_eq!(vols.iter().filter(|v| v.id == vol.id).count(), 1);
    assert_eq!(
        vols.iter()
            .filter(|v| v.attached_machine_id.is_none() && v.name == "pg_data" && !v.is_destroyed())
            .count(),
        0,
        "no stray second volume: {vols:?}"
    );
}
