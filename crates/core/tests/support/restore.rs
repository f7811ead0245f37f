//! Set-up the restore tests share (`restore.rs`, `restore_engine.rs`, `restore_control.rs`, `restore_pitr.rs`): flysim over loopback HTTP with its demo
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
use walden_core::restore::engine::{Advance, Engine, EngineOptions, RunView, RUN_METADATA};
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

    /// The same fixture with a Fly client without its own rate limits (Fly's documented rates, about 1 req/s
    /// per action and app in real time, which would pace a test's many restores rather than the engine's
    /// work), and that polls a new app's visibility for 2 s instead of Fly's minute (the emulator shows it
    /// after 2 simulated seconds; an app create answered 503 would otherwise look for the app a real minute
    /// before sending the create again), Walden reopened over it: for tests that run many restores or time one.
    pub async fn unthrottled(mut self) -> Fixture {
        self.client = FlyClient::builder()
            .token(SecretString::from(TOKEN))
            .machines_base_url(&self._keep.0.base_url)
            .api_base_url(&self._keep.0.base_url)
            .rate_limits(None)
            .app_visibility_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        self.walden.close().await;
        self.walden = self.reopen().await;
        self
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
            kind: walden_core::restore::DestinationKind::New,
            app: to.into(),
            region: None,
            memory_mb: None,
            volume_gb: None,
        },
        assertion: None,
        assertion_database: None,
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

/// Moves the emulator's manual clock on in the background (5 simulated seconds every 10 ms) so the keeper boots
/// and the PITR runs while the engine polls; a test can hold it still for a moment; stops when dropped.
pub struct ClockTicker {
    task: tokio::task::JoinHandle<()>,
    held: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ClockTicker {
    /// Holds the clock still (a PITR stays where it is) until [`ClockTicker::release`].
    pub fn hold(&self) {
        self.held.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn release(&self) {
        self.held.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for ClockTicker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn tick_clock(sim: &Sim) -> ClockTicker {
    tick_clock_by(
        sim,
        std::time::Duration::from_secs(5),
        std::time::Duration::from_millis(10),
    )
}

/// [`tick_clock`] moving `step` simulated time every `every` real time (the restore bench moves it fast, so
/// the emulator's simulated waits cost next to nothing).
pub fn tick_clock_by(
    sim: &Sim,
    step: std::time::Duration,
    every: std::time::Duration,
) -> ClockTicker {
    let sim = sim.clone();
    let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = held.clone();
    let task = tokio::spawn(async move {
        loop {
            if !flag.load(std::sync::atomic::Ordering::SeqCst) {
                sim.advance(step);
            }
            tokio::time::sleep(every).await;
        }
    });
    ClockTicker { task, held }
}

/// Engine options for runs over a ticking emulator: polls every 20 ms, short backoff, and deadlines that end a
/// stuck step within seconds (real time) instead of minutes.
pub fn fast_options() -> walden_core::restore::engine::EngineOptions {
    walden_core::restore::engine::EngineOptions {
        backoff: std::time::Duration::from_millis(10),
        max_backoff: std::time::Duration::from_millis(100),
        keeper_deadline: std::time::Duration::from_secs(8),
        pitr_deadline: std::time::Duration::from_secs(60),
        poll_interval: std::time::Duration::from_millis(20),
        ..walden_core::restore::engine::EngineOptions::default()
    }
}

/// One statement over `psql` on `app`'s leader (else its first started machine) as `postgres` (the seed's
/// operator password on stdin) in database `db`: the first line it prints, or its error.
pub async fn psql(client: &FlyClient, app: &str, db: &str, sql: &str) -> Result<String, String> {
    let machines: Vec<fly::Machine> = client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.state == "started")
        .collect();
    let machine = fly::stolon::find_leader(&machines)
        .ok()
        .or_else(|| machines.first())
        .expect("a started machine")
        .clone();
    let mut req = fly::ExecRequest::new(vec![
        "sh".to_string(),
        "-c".into(),
        "IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql -X -w -h localhost -p 5433 -U postgres -d \"$1\" -t -A -c \"$2\"".into(),
        "sh".into(),
        db.into(),
        sql.into(),
    ])
    .timeout(30);
    req.stdin = Some("demo-op-Vb55nQe9\n".into());
    let out = client.exec_unchecked(app, &machine.id, &req).await.unwrap();
    if out.success() {
        Ok(out.stdout.trim().to_owned())
    } else {
        Err(out.stderr.trim().to_owned())
    }
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

/// A base backup of the source pushed now from its leader (`wal-g backup-push`, its own environment), waited for
/// until the monitor sees more restorable backups than `before`.
pub async fn push_source_backup(f: &Fixture, before: usize) {
    let machines: Vec<fly::Machine> = f
        .client
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap();
    let leader = fly::stolon::find_leader(&machines).unwrap().id.clone();
    let req = fly::ExecRequest::new(vec![
        "bash".to_string(),
        "-c".into(),
        "PGHOST=localhost PGPORT=5433 PGUSER=postgres PGPASSWORD=\"$OPERATOR_PASSWORD\" wal-g backup-push /data/postgres".into(),
    ])
    .timeout(30);
    let _ = f.client.exec_unchecked(APP, &leader, &req).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        f.walden.monitor().refresh(ORG, APP).await.unwrap();
        let now = f
            .walden
            .monitor()
            .timeline(&Actor::cli(), ORG, APP)
            .await
            .unwrap()
            .unwrap()
            .timeline
            .backups
            .iter()
            .filter(|b| b.restorable)
            .count();
        if now > before {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pushed backup never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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

/// The steps up to a started machine (app, Consul, secrets, volume, machine, the wait for it): what runs without
/// the emulator's clock moving on (see `restore::steps::steps`).
pub const MACHINE_STEPS: usize = 6;

/// Moves the run on through the wait for its machine (or until it stops before that); it must not be held by
/// anyone else. The keeper check and the PITR need a moving clock ([`tick_clock`], [`fast_options`]).
pub async fn run_to_stop(walden: &Walden, id: &str) -> RunView {
    let next = walden.restores().run(id).await.unwrap().next_step;
    match Engine::new(walden.restores(), EngineOptions::default())
        .advance(id, MACHINE_STEPS.saturating_sub(next))
        .await
        .unwrap()
    {
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

/// A second Stolon cluster `app` in the org, as `fly pg create` leaves it (3 machines, its own passwords and
/// wal-g storage): `empty` (only the image's `postgres` database) or holding the seed's `app` database; `image`
/// instead of the seed's. Returns its machine ids (the first leads) and its storage, to keep.
pub fn seed_existing(
    f: &Fixture,
    app: &str,
    image: Option<&str>,
    empty: bool,
) -> (Vec<String>, tempfile::TempDir) {
    let storage = tempfile::tempdir().unwrap();
    let mut seed = ClusterSeed::new(ORG, app, &storage.path().join("walg"));
    seed.empty = empty;
    seed.su_password = "created-su-Hh41".into();
    seed.repl_password = "created-repl-Kk29".into();
    seed.operator_password = "created-op-Pp63".into();
    if let Some(image) = image {
        seed.image = image.into();
    }
    let info = f.sim.seed_cluster(&seed).unwrap();
    (info.machines, storage)
}

/// A restore request of the seeded cluster into the existing cluster `into`.
pub fn request_into(target: RestoreTarget, into: &str) -> RestoreRequest {
    let mut req = request(target, into);
    req.destination.kind = walden_core::restore::DestinationKind::Existing;
    req
}

/// `app`'s machines that are not gone: (id, state), by id.
pub async fn machine_states(client: &FlyClient, app: &str) -> Vec<(String, String)> {
    let mut states: Vec<(String, String)> = client
        .list_machines(app, &ListMachines::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.is_gone())
        .map(|m| (m.id, m.state))
        .collect();
    states.sort();
    states
}
