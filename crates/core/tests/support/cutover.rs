//! Set-up of the cutover tests (`cutover.rs`): the seeded source cluster (`support::restore`), a stored plan
//! restoring it to `prod-db-restored`, and the "restored" side built honestly without the engine (which cannot
//! finish a restore yet): a second Stolon cluster of that name seeded in flysim (one machine, the source's
//! escrowed passwords, its own wal-g storage) and a `done` run row for the plan, written in the real SQLite
//! file by [`done_run`]. Three apps use the source through `DATABASE_URL`: `web` (`.flycast`) and `worker`
//! (`.internal`) are selected for the cutover, `reports` is not.

use std::future::Future;
use std::time::Duration;

use fly::{
    CreateAppRequest, CreateMachineRequest, ExposeSecret, FlyClient, ListMachines, MachineConfig,
    SecretString,
};
use flysim::{ClusterSeed, Sim};
use walden_core::access::Actor;
use walden_core::restore::RestoreTarget;
use walden_core::{ts, Walden};

use super::restore::*;

pub const NEW_APP: &str = "prod-db-restored";
/// The seed's operator password (flysim `demo.rs`): in the apps' URLs, never in Walden's files.
pub const OP_PASSWORD: &str = "demo-op-Vb55nQe9";
/// The apps pointed at the new cluster, and the host each one's URL uses.
pub const SELECTED: [(&str, &str); 2] = [("web", ".flycast"), ("worker", ".internal")];
/// An app that uses the source too but is not selected: never touched.
pub const UNSELECTED: &str = "reports";

pub struct CutoverFixture {
    pub f: Fixture,
    /// The `done` restore run of the plan.
    pub run: String,
    _new_storage: tempfile::TempDir,
}

impl CutoverFixture {
    pub fn selected(&self) -> Vec<String> {
        SELECTED.iter().map(|(a, _)| a.to_string()).collect()
    }
}

/// An app's `DATABASE_URL` reaching `host` as the seed's operator.
pub fn database_url(host: &str) -> String {
    format!("postgres://postgres:{OP_PASSWORD}@{host}:5432/app?sslmode=disable")
}

/// The source, a plan restoring it to [`NEW_APP`], the new cluster on the emulator, its `done` run, the apps.
pub async fn cutover_fixture() -> CutoverFixture {
    let f = fixture(2).await;
    let plan = f
        .walden
        .restores()
        .plan(
            &Actor::cli(),
            &meta(),
            &request(RestoreTarget::Latest, NEW_APP),
        )
        .await
        .unwrap();
    let storage = tempfile::tempdir().unwrap();
    let mut seed = ClusterSeed::new(ORG, NEW_APP, &storage.path().join("walg"));
    seed.regions = vec!["iad".into()];
    seed.history_hours = 2;
    f.sim.seed_cluster(&seed).unwrap();
    let run = done_run(&f.walden, &plan.hash, "done").await;
    for (app, suffix) in SELECTED {
        user_app(&f.client, app, &database_url(&format!("{APP}{suffix}"))).await;
    }
    user_app(
        &f.client,
        UNSELECTED,
        &database_url(&format!("{APP}.flycast")),
    )
    .await;
    CutoverFixture {
        f,
        run,
        _new_storage: storage,
    }
}

/// SET-UP ONLY: a restore run of `plan_hash` in `state` (`done`: verified), written straight into the SQLite
/// file as the engine would leave it, because the engine cannot finish a restore yet. Nothing in Walden writes
/// runs this way; the cutover reads this row exactly as it would read one the engine wrote.
pub async fn done_run(walden: &Walden, plan_hash: &str, state: &str) -> String {
    let id = "d0e5c0de00000001".to_owned();
    let now = ts::format(ts::now());
    let finished = matches!(state, "done" | "failed" | "cancelled").then(|| now.clone());
    let failure = matches!(state, "failed" | "paused").then_some("set-up");
    sqlx::query(
        "INSERT INTO restore_runs (id, plan_hash, state, next_step, created_by, created_at, finished_at, failure) \
         VALUES (?, ?, ?, 0, 'test set-up', ?, ?, ?)",
    )
    .bind(&id)
    .bind(plan_hash)
    .bind(state)
    .bind(&now)
    .bind(finished)
    .bind(failure)
    .execute(walden.pool())
    .await
    .unwrap();
    id
}

/// An app (one started machine) whose `DATABASE_URL` is `url`, made through the Machines API.
pub async fn user_app(client: &FlyClient, app: &str, url: &str) {
    client
        .create_app(&CreateAppRequest {
            name: app.into(),
            org_slug: ORG.into(),
            network: None,
            enable_subdomains: None,
            app_role_id: None,
        })
        .await
        .unwrap();
    client.wait_for_app(app).await.unwrap();
    let values = std::collections::BTreeMap::from([(
        "DATABASE_URL".to_owned(),
        Some(SecretString::from(url.to_owned())),
    )]);
    let version = client.update_secrets(app, &values).await.unwrap();
    let machine = client
        .create_machine(
            app,
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
            app,
            &machine.id,
            &fly::WaitFor::state("started"),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
}

/// Runs `fut` while the emulator's manual clock moves on (half a simulated second every few real
/// milliseconds), as time passes for a console waiting on machines to boot and pass their checks.
pub async fn with_clock<T>(sim: &Sim, fut: impl Future<Output = T>) -> T {
    let ticking = sim.clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let stopped = stop.clone();
    let ticker = tokio::spawn(async move {
        while !stopped.is_cancelled() {
            ticking.advance(Duration::from_millis(500));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let out = fut.await;
    stop.cancel();
    ticker.await.unwrap();
    out
}

/// An app as the emulator holds it: its secrets' names, its `DATABASE_URL`, and per machine its state, the
/// instance it runs and the secrets version it booted with.
#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    pub secrets: Vec<String>,
    pub database_url: Option<String>,
    pub enable_walg: Option<String>,
    pub secrets_version: u64,
    pub machines: Vec<MachineState>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachineState {
    pub id: String,
    pub state: String,
    pub instance: String,
    pub booted_with: u64,
    pub volume: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

pub async fn app_state(f: &Fixture, app: &str) -> AppState {
    let secrets = f.client.list_secrets_with_values(app).await.unwrap();
    let value = |name: &str| {
        secrets
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.value.as_ref())
            .map(|v| v.expose_secret().to_owned())
    };
    let mut app_version = 0;
    let machines = f
        .client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.is_gone())
        .map(|m| {
            let (booted_with, current) = f.sim.secrets_versions(app, &m.id).unwrap();
            app_version = current;
            let config = m.config.clone().unwrap_or_default();
            MachineState {
                id: m.id.clone(),
                state: m.state.clone(),
                instance: m.instance_id.clone().unwrap_or_default(),
                booted_with,
                volume: config.mounts.first().and_then(|v| v.volume.clone()),
                metadata: config.metadata,
            }
        })
        .collect();
    AppState {
        secrets: secrets.iter().map(|s| s.name.clone()).collect(),
        database_url: value("DATABASE_URL"),
        enable_walg: value("ENABLE_WALG"),
        secrets_version: app_version,
        machines,
    }
}

/// Every file in the console's data directory (the database, its WAL), as bytes.
pub fn data_files(f: &Fixture) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(f.data.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            out.extend(std::fs::read(path).unwrap());
        }
    }
    out
}
