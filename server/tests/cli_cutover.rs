//! `walden cutover` as an operator runs it: the real binary on a real data directory, pointed at an in-process
//! flysim (the demo org and cluster, tracked, escrowed and planned through the CLI; the restored cluster seeded
//! beside it and the plan's `done` run written into the SQLite file as SET-UP ONLY, because the engine cannot
//! finish a restore yet). A wrong confirmation exits 3 and changes nothing; `run` moves the selected app, clones
//! the replicas in the region asked for and prints the checklist; `status --json` shows it done; `rollback` puts the app's URL back. The trace-level
//! logs and the output never show the password.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use fly::{
    CreateAppRequest, CreateMachineRequest, ExposeSecret, FlyClient, MachineConfig, SecretString,
};
use flysim::{ClusterSeed, Sim, Timing, DEMO_APP, DEMO_ORG, DEMO_TOKEN};
use support::{run_off_runtime, walden};
use tokio_util::sync::CancellationToken;

const NEW_APP: &str = "demo-db-restored";
const PASSWORD: &str = "demo-op-Vb55nQe9";

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The app `web` using the demo cluster through `DATABASE_URL`, one started machine.
async fn web_app(client: &FlyClient) -> String {
    let url = format!("postgres://postgres:{PASSWORD}@{DEMO_APP}.flycast:5432/app");
    client
        .create_app(&CreateAppRequest {
            name: "web".into(),
            org_slug: DEMO_ORG.into(),
            network: None,
            enable_subdomains: None,
            app_role_id: None,
        })
        .await
        .unwrap();
    client.wait_for_app("web").await.unwrap();
    let values = BTreeMap::from([(
        "DATABASE_URL".to_owned(),
        Some(SecretString::from(url.clone())),
    )]);
    let version = client.update_secrets("web", &values).await.unwrap();
    let m = client
        .create_machine(
            "web",
            &CreateMachineRequest {
                config: MachineConfig {
                    image: Some("registry-1.docker.io/acme/web:1".into()),
                    ..MachineConfig::default()
                },
                name: None,
                region: Some("iad".into()),
                lease_ttl: None,
                min_secrets_version: Some(version),
                skip_launch: None,
                skip_secrets: None,
                skip_service_registration: None,
            },
        )
        .await
        .unwrap();
    client
        .wait(
            "web",
            &m.id,
            &fly::WaitFor::state("started"),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    url
}

async fn database_url(client: &FlyClient) -> String {
    client
        .list_secrets_with_values("web")
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == "DATABASE_URL")
        .and_then(|s| s.value)
        .map(|v| v.expose_secret().to_owned())
        .unwrap()
}

/// SET-UP ONLY: the plan's restore run, `done`, as the engine would leave it once it can finish a restore.
async fn done_run(data: &std::path::Path, plan_hash: &str) -> String {
    let options =
        sqlx::sqlite::SqliteConnectOptions::new().filename(data.join(walden_core::db::DB_FILE));
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let now = walden_core::ts::format(walden_core::ts::now());
    let id = "d0e5c0de00000002";
    sqlx::query(
        "INSERT INTO restore_runs (id, plan_hash, state, next_step, created_by, created_at, finished_at) \
         VALUES (?, ?, 'done', 0, 'test set-up', ?, ?)",
    )
    .bind(id)
    .bind(plan_hash)
    .bind(&now)
    .bind(&now)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    id.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_run_status_and_rollback_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    // A real clock, quick machines: the CLI waits for them as it would on Fly.
    let timing = Timing {
        start: Duration::from_millis(200),
        stop: Duration::from_millis(200),
        boot: Duration::from_millis(300),
        app_visible_after: Duration::from_millis(100),
        ..Timing::default()
    };
    let sim = Sim::builder().seed(42).timing(timing).build().unwrap();
    sim.seed_demo(dir.path().join("bucket")).unwrap();
    let running = flysim::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        sim.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let client = FlyClient::builder()
        .token(SecretString::from(DEMO_TOKEN))
        .machines_base_url(&running.base_url)
        .api_base_url(&running.base_url)
        .build()
        .unwrap();
    let data = dir.path().join("data");
    let url = running.base_url.clone();
    let cmd = |args: &[&str]| {
        let mut cmd = walden(&data, &url);
        cmd.args(args);
        cmd
    };
    for setup in [
        vec!["org", "track", DEMO_ORG, DEMO_APP],
        vec!["escrow", "capture", DEMO_APP],
    ] {
        let out = run_off_runtime(cmd(&setup)).await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let out = run_off_runtime(cmd(&[
        "restore", "plan", DEMO_APP, "--latest", "--to", NEW_APP,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let hash = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("hash: "))
        .expect("a hash line")
        .to_owned();
    let mut seed = ClusterSeed::new(DEMO_ORG, NEW_APP, &dir.path().join("new-bucket"));
    seed.regions = vec!["iad".into()];
    seed.history_hours = 2;
    sim.seed_cluster(&seed).unwrap();
    let old_url = web_app(&client).await;
    let run = done_run(&data, &hash).await;

    let out = run_off_runtime(cmd(&[
        "cutover",
        "run",
        &run,
        "--apps",
        "web",
        "--confirm",
        NEW_APP,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains(DEMO_APP), "{}", text(&out));
    assert_eq!(database_url(&client).await, old_url);

    let out = run_off_runtime(cmd(&[
        "cutover",
        "run",
        &run,
        "--apps",
        "web",
        "--confirm",
        DEMO_APP,
        "--region",
        "ord",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let replicas: Vec<String> = client
        .list_machines(NEW_APP, &fly::ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.config
                .as_ref()
                .is_some_and(|c| c.metadata.contains_key("walden_cutover"))
        })
        .map(|m| m.region)
        .collect();
    assert_eq!(
        replicas,
        ["ord", "ord"],
        "the replicas in the chosen region"
    );
    let printed = text(&out);
    assert!(printed.contains("checklist:"), "{printed}");
    assert!(!printed.contains("[NOT]"), "{printed}");
    assert!(
        !printed.contains(PASSWORD),
        "no password in the output or logs"
    );
    assert_eq!(
        database_url(&client).await,
        old_url.replace(&format!("@{DEMO_APP}."), &format!("@{NEW_APP}."))
    );

    let out = run_off_runtime(cmd(&["cutover", "status", &run, "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["phase"], "cutover");
    assert_eq!(view["state"], "done");

    let out = run_off_runtime(cmd(&["cutover", "rollback", &run, "--confirm", DEMO_APP])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD));
    assert!(!text(&out).contains("[NOT]"), "{}", text(&out));
    assert_eq!(database_url(&client).await, old_url);
}
