//! Set-up the restore tests share (`restore.rs`, `restore_engine.rs`, `restore_control.rs`): flysim over loopback HTTP with its demo
//! seed (a Stolon cluster with 26 h of WAL, base backups 1 h, 13 h and 25 h in), the cluster tracked, its
//! credentials escrowed hours before the history's end (a clock-shifted capture), Walden on a real SQLite file
//! that a test can reopen as a restarted console would.

use fly::{FlyClient, ListMachines};
use flysim::{ClusterSeed, Sim};
use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta};
use walden_core::clusters::FlyConnection;
use walden_core::escrow::Escrow;
use walden_core::keyring::Keyring;
use walden_core::restore::engine::{self, Advance, RunView, RUN_METADATA};
use walden_core::restore::{ClusterRef, Destination, RestoreRequest, RestoreTarget};
use walden_core::users::HashParams;
use walden_core::{Walden, WaldenOptions};
use walg::Backup;

pub const ORG: &str = "acme";
pub const TOKEN: &str = "fm2_restore_acme_token_5c90";
pub const APP: &str = "prod-db";

pub struct Fixture {
    pub sim: Sim,
    pub client: FlyClient,
    pub walden: Walden,
    /// Restorable backups, oldest first.
    pub backups: Vec<Backup>,
    pub last_commit: Option<OffsetDateTime>,
    /// The console's data directory (its SQLite file) and master key, to open it again.
    pub data: tempfile::TempDir,
    pub keyring: Keyring,
    _keep: (flysim::Running, tempfile::TempDir),
}

impl Fixture {
    /// A new Walden on the same SQLite file, as a console restarted after a crash opens it.
    pub async fn reopen(&self) -> Walden {
        open_walden(self.data.path(), &self.client, &self.keyring).await
    }
}

/// The seeded cluster, tracked, escrowed `escrow_age_hours` before the emulator's now.
pub async fn fixture(escrow_age_hours: i64) -> Fixture {
    let mut f = bare_fixture(None).await;
    let at = f.sim.now() - Duration::hours(escrow_age_hours);
    escrow_at(&f.walden, at)
        .capture(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    f.walden.monitor().refresh(ORG, APP).await.unwrap();
    let good = f
        .walden
        .monitor()
        .timeline(&Actor::cli(), ORG, APP)
        .await
        .unwrap()
        .unwrap();
    let mut backups: Vec<Backup> = good
        .timeline
        .backups
        .iter()
        .filter(|b| b.restorable)
        .cloned()
        .collect();
    backups.sort_by_key(|b| b.finish_time);
    assert!(
        backups.len() >= 2,
        "the seed has at least two restorable backups"
    );
    f.backups = backups;
    f.last_commit = good
        .timeline
        .main_lineage
        .and_then(|m| good.timeline.commit_search(m))
        .and_then(|c| c.found())
        .map(|c| c.time);
    f
}

/// The escrow service reading its time from a fixed clock (a capture made `at`).
pub fn escrow_at(walden: &Walden, at: OffsetDateTime) -> Escrow {
    Escrow::new(walden.pool().clone(), walden.keyring().cloned())
        .with_orgs(walden.orgs().clone())
        .with_clock(move || at)
}

/// The seeded cluster (with another image than the seed's `flyio/postgres:14.6` when given), tracked, nothing
/// escrowed yet.
pub async fn bare_fixture(image: Option<&str>) -> Fixture {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Sim::builder()
        .manual_clock(Sim::new().now())
        .seed(7)
        .build()
        .unwrap();
    sim.add_org(ORG, "Acme");
    sim.add_token(TOKEN, &[ORG]);
    let mut seed = ClusterSeed::new(ORG, APP, &sim_dir.path().join("walg"));
    if let Some(image) = image {
        seed.image = image.into();
    }
    sim.seed_cluster(&seed).unwrap();
    let run = flysim::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        sim.clone(),
        CancellationToken::new(),
    )
    .unwrap();
    let client = FlyClient::builder()
        .token(SecretString::from(TOKEN))
        .machines_base_url(&run.base_url)
        .api_base_url(&run.base_url)
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let keyring = Keyring::generate().unwrap();
    let walden = open_walden(data.path(), &client, &keyring).await;
    walden
        .orgs()
        .track(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    Fixture {
        sim,
        client,
        walden,
        backups: Vec::new(),
        last_commit: None,
        data,
        keyring,
        _keep: (run, sim_dir),
    }
}

/// Walden on the SQLite file in `dir`, reaching the emulator through `client`.
async fn open_walden(dir: &std::path::Path, client: &FlyClient, keyring: &Keyring) -> Walden {
    Walden::open(
        dir,
        WaldenOptions {
            hash: HashParams::TEST,
            keyring: Some(keyring.clone()),
            fly: Some(FlyConnection {
                client: client.clone(),
                org: ORG.into(),
            }),
            ..WaldenOptions::default()
        },
    )
    .await
    .unwrap()
}

pub fn meta() -> RequestMeta {
    RequestMeta::default()
}

pub fn request(target: RestoreTarget, to: &str) -> RestoreRequest {
    RestoreRequest {
        source: ClusterRef {
            org: ORG.into(),
            app: APP.into(),
        },
        target,
        timeline: None,
        destination: Destination {
            app: to.into(),
            region: None,
            memory_mb: None,
            volume_gb: None,
        },
    }
}

pub fn at(t: OffsetDateTime) -> RestoreTarget {
    RestoreTarget::Time { at: t }
}

/// Everything on the emulator a plan or a run could have created: apps, and each app's volumes and machines.
pub async fn fly_state(client: &FlyClient) -> Vec<String> {
    let mut out = Vec::new();
    for app in client.list_apps(ORG).await.unwrap().apps {
        out.push(format!("app {}", app.name));
        for v in client.list_volumes(&app.name).await.unwrap() {
            out.push(format!("volume {} {:?}", v.id, v.size_gb));
        }
        for m in client
            .list_machines(&app.name, &ListMachines::default())
            .await
            .unwrap()
        {
            out.push(format!("machine {} {:?} {:?}", m.id, m.state, m.image()));
        }
    }
    out.sort();
    out
}

// Runs (`restore_engine.rs`, `restore_control.rs`).

/// Plans a restore of the seeded cluster (to its latest point) into `to` and starts its run.
pub async fn started(walden: &Walden, to: &str) -> RunView {
    let restores = walden.restores();
    let plan = restores
        .plan(&Actor::cli(), &meta(), &request(RestoreTarget::Latest, to))
        .await
        .unwrap();
    restores
        .start_run(&Actor::cli(), &meta(), &plan.hash, to)
        .await
        .unwrap()
}

/// Moves the run on until it stops; it must not be held by anyone else.
pub async fn run_to_stop(walden: &Walden, id: &str) -> RunView {
    match engine::advance(walden, id).await.unwrap() {
        Advance::Ran(view) => view,
        Advance::Held => panic!("run {id} is held by another worker"),
    }
}

/// Exactly one app, one volume and one started machine of this run, mounting that volume.
pub async fn assert_exactly_one_of_each(client: &FlyClient, app: &str, run: &str) {
    let apps: Vec<String> = client
        .list_apps(ORG)
        .await
        .unwrap()
        .apps
        .into_iter()
        .map(|a| a.name)
        .filter(|n| n == app)
        .collect();
    assert_eq!(apps.len(), 1, "one app {app}");
    let volumes: Vec<_> = client
        .list_volumes(app)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_destroyed())
        .collect();
    assert_eq!(volumes.len(), 1, "one volume in {app}: {volumes:?}");
    let machines: Vec<_> = client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.is_gone())
        .collect();
    assert_eq!(machines.len(), 1, "one machine in {app}");
    let m = &machines[0];
    assert_eq!(m.state, "started");
    let config = m.config.as_ref().unwrap();
    assert_eq!(
        config.metadata.get(RUN_METADATA).map(String::as_str),
        Some(run)
    );
    assert_eq!(
        config.mounts[0].volume.as_deref(),
        Some(volumes[0].id.as_str())
    );
}

/// The source cluster as the emulator holds it: machines (state and full config), volumes, secrets (names
/// and digests).
pub async fn source_state(client: &FlyClient) -> Vec<String> {
    let mut out = Vec::new();
    for m in client
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap()
    {
        out.push(format!(
            "machine {} {} {}",
            m.id,
            m.state,
            serde_json::to_string(&m.config).unwrap()
        ));
    }
    for v in client.list_volumes(APP).await.unwrap() {
        out.push(format!(
            "volume {} {:?} {:?}",
            v.id, v.size_gb, v.attached_machine_id
        ));
    }
    for s in client.list_secrets(APP).await.unwrap() {
        out.push(format!("secret {} {:?}", s.name, s.digest));
    }
    out.sort();
    out
}

/// How a killed console leaves a run: its lease held by a worker that is gone, expired (`expired`) or not yet.
pub async fn leave_lease_of_dead_worker(walden: &Walden, run: &str, expired: bool) {
    let at = if expired {
        "2000-01-01T00:00:00.000Z"
    } else {
        "2999-01-01T00:00:00.000Z"
    };
    sqlx::query(
        "UPDATE restore_runs SET lease_owner = 'dead-worker', lease_expires_at = ? WHERE id = ?",
    )
    .bind(at)
    .bind(run)
    .execute(walden.pool())
    .await
    .unwrap();
}
