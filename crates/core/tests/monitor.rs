//! The monitor end to end (`core::monitor`): a tracked Stolon cluster seeded in flysim (over loopback HTTP),
//! its credentials escrowed (captured from the cluster, or typed in), its wal-g storage read through the
//! escrowed settings (flysim's local bucket, or a real S3-protocol server, moto), the status row in a real
//! SQLite file, the health rules against the machines' states.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fly::{FlyClient, ListMachines, StopRequest};
use flysim::{ClusterSeed, Sim};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta, Role};
use walden_core::audit::{self, AuditFilter};
use walden_core::clusters::FlyConnection;
use walden_core::keyring::Keyring;
use walden_core::monitor::{ClusterHealth, Health, Monitor, MonitorError};
use walden_core::users::HashParams;
use walden_core::{Walden, WaldenOptions};
use walg::testkit::{sample_builder, MotoServer};
use walg::StorageConfig;

const ORG: &str = "acme";
const TOKEN: &str = "fm2_monitor_acme_token_7e21";
const APP: &str = "prod-db";

/// A manual-clock emulator with a seeded Stolon cluster `acme/prod-db` (wal-g storage in a local directory),
/// and Walden on a SQLite file with `acme` as the environment's organisation; the cluster tracked.
struct Fixture {
    sim: Sim,
    run: flysim::Running,
    walden: Walden,
    storage: std::path::PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn fixture(history_hours: i64) -> Fixture {
    let sim_dir = tempfile::tempdir().unwrap();
    let sim = Sim::builder()
        .manual_clock(Sim::new().now())
        .seed(7)
        .build()
        .unwrap();
    sim.add_org(ORG, "Acme");
    sim.add_token(TOKEN, &[ORG]);
    let mut seed = ClusterSeed::new(ORG, APP, &sim_dir.path().join("walg"));
    seed.history_hours = history_hours;
    let info = sim.seed_cluster(&seed).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let walden = Walden::open(
        data.path(),
        WaldenOptions {
            hash: HashParams::TEST,
            keyring: Some(Keyring::generate().unwrap()),
            fly: Some(FlyConnection {
                client: client(&run.base_url),
                org: ORG.into(),
            }),
            fly_endpoints: Some(walden_core::orgs::FlyEndpoints {
                machines_base_url: Some(run.base_url.clone()),
                api_base_url: Some(run.base_url.clone()),
            }),
            ..WaldenOptions::default()
        },
    )
    .await
    .unwrap();
    walden
        .orgs()
        .track(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    Fixture {
        sim,
        run,
        walden,
        storage: info.storage,
        _dirs: (sim_dir, data),
    }
}

fn client(base_url: &str) -> FlyClient {
    FlyClient::builder()
        .token(SecretString::from(TOKEN))
        .machines_base_url(base_url)
        .api_base_url(base_url)
        .build()
        .unwrap()
}

fn meta() -> RequestMeta {
    RequestMeta::default()
}

fn user(id: i64, name: &str, role: Role) -> Actor {
    Actor::User {
        id,
        name: name.into(),
        role,
    }
}

async fn actions(walden: &Walden) -> Vec<(String, String)> {
    audit::query(walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows
        .into_iter()
        .map(|r| (r.action, r.outcome))
        .collect()
}

/// The seeded cluster's bucket, found through the escrowed `WALG_FILE_PREFIX` of a capture from the cluster:
/// a good refresh with its summary and status row, the overview with machines and leader, the last good
/// timeline, "Refresh now" for operators only (audited), and the idle rule once every machine is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_the_clusters_bucket_through_its_escrowed_settings() {
    let f = fixture(26).await;
    let monitor = f.walden.monitor();
    let viewer = user(3, "vera", Role::Viewer);

    // The cluster's own archive_timeout (5 min here) is read from its Stolon spec for the WAL rule.
    let stolon = fly::stolon::Stolon::new(client(&f.run.base_url), APP);
    let leader = stolon.leader().await.unwrap().id;
    let patch = r#"{"pgParameters":{"archive_timeout":"5min"}}"#;
    stolon
        .stolonctl(&leader, &["update", "--patch", patch], 30)
        .await
        .unwrap();

    // Tracked but never captured: the first refresh captures the credentials as the escrow worker would
    // (audited as the monitor), then reads the bucket they name.
    let health = monitor.refresh(ORG, APP).await.unwrap();
    assert_eq!(
        health.status.as_ref().unwrap().archive_timeout_secs,
        Some(300)
    );
    let versions = f
        .walden
        .escrow()
        .versions(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].captured_by, "(system:monitor)");
    let status = health.status.clone().unwrap();
    assert_eq!(status.last_error, None, "{health:?}");
    let storage = status.storage.unwrap();
    let canonical = f.storage.canonicalize().unwrap();
    assert!(
        storage.contains(canonical.to_str().unwrap()),
        "{storage} is the seeded bucket"
    );
    assert!(status.finished_at.unwrap() >= status.started_at);
    let summary = health.summary.clone().unwrap();
    let (earliest, latest) = (
        summary.earliest_restorable.unwrap(),
        summary.latest_restorable.unwrap(),
    );
    assert!(earliest < latest, "{summary:?}");
    assert!(summary.newest_wal.is_some() && summary.newest_base_backup.is_some());
    assert_eq!(summary.findings.error, 0, "{summary:?}");

    // The overview: one row, with the machines and the leader from Fly, not red.
    let overview = monitor.overview(&viewer).await.unwrap();
    assert_eq!(overview.len(), 1);
    let row = &overview[0];
    assert_eq!((row.org.as_str(), row.app.as_str()), (ORG, APP));
    assert_eq!(row.machines_up(), Some((3, 3)), "{row:?}");
    assert!(row.leader().is_some(), "{row:?}");
    assert_ne!(row.verdict.health, Health::Red, "{:?}", row.verdict);
    assert_eq!(row.summary.as_ref(), Some(&summary));

    // The cluster page's timeline is the last good one.
    let good = monitor.timeline(&viewer, ORG, APP).await.unwrap().unwrap();
    assert!(!good.timeline.backups.is_empty());
    assert_eq!(good.timeline.earliest_restorable, Some(earliest));

    // Refresh now: viewers refused (audited), operators refresh (audited).
    let err = monitor
        .refresh_now(&viewer, &meta(), ORG, APP)
        .await
        .unwrap_err();
    assert!(matches!(err, MonitorError::Forbidden), "{err:?}");
    let op = user(2, "olga", Role::Operator);
    let again = monitor.refresh_now(&op, &meta(), ORG, APP).await.unwrap();
    assert_eq!(again.status.unwrap().last_error, None);
    let err = monitor
        .refresh_now(&op, &meta(), ORG, "other-db")
        .await
        .unwrap_err();
    assert!(matches!(err, MonitorError::NotTracked { .. }), "{err:?}");
    let rows = actions(&f.walden).await;
    assert!(
        rows.contains(&("cluster.refresh".into(), "denied".into())),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("cluster.refresh".into(), "ok".into())),
        "{rows:?}"
    );

    // Every machine stopped on purpose: idle, not failing.
    let fly = client(&f.run.base_url);
    for m in fly
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap()
    {
        fly.stop_machine(APP, &m.id, &StopRequest::default(), None)
            .await
            .unwrap();
    }
    f.sim.advance(Duration::from_secs(10));
    let idle = monitor.overview(&viewer).await.unwrap();
    assert_eq!(idle[0].machines_up(), Some((0, 3)));
    assert_eq!(
        idle[0].verdict.health,
        Health::Idle,
        "{:?}",
        idle[0].verdict
    );
    assert!(idle[0].verdict.reason.contains("stopped on purpose"));
    // The worker's refresh sees the machines too: idle raises nothing, and resolves what was open.
    let refreshed = monitor.refresh(ORG, APP).await.unwrap();
    assert_eq!(refreshed.verdict.health, Health::Idle);
    let open = f.walden.alerts().open().await.unwrap();
    assert!(open.is_empty(), "{open:?}");
}

/// A bucket on a real S3-protocol server (moto), the settings typed in by an operator: the sample bucket's WAL
/// gap makes the cluster red with the gap's message; then the server goes away: the error is recorded beside
/// the last good summary, which stays, and the last good timeline stays for the cluster page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_bucket_that_becomes_unreachable_keeps_its_last_good_summary() {
    let f = fixture(1).await;
    let moto = MotoServer::start("monitor-test");
    let env = moto.walg_env("pg/prod");
    let map: std::collections::HashMap<String, String> = env.iter().cloned().collect();
    let cfg = StorageConfig::from_env_map(&map).unwrap();
    let store: Arc<dyn object_store::ObjectStore> = cfg.build_store().unwrap();
    sample_builder(time::OffsetDateTime::now_utc())
        .write_store(store.as_ref(), &cfg.root)
        .await
        .unwrap();
    let mut values: BTreeMap<String, SecretString> = [
        ("SU_PASSWORD", "typed-su-1"),
        ("REPL_PASSWORD", "typed-repl-2"),
        ("OPERATOR_PASSWORD", "typed-op-3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
    .collect();
    for (k, v) in env {
        values.insert(k, SecretString::from(v));
    }
    f.walden
        .escrow()
        .enter_manually(&Actor::cli(), &meta(), ORG, APP, &values)
        .await
        .unwrap();

    let monitor = f.walden.monitor();
    let good = monitor.refresh(ORG, APP).await.unwrap();
    let status = good.status.clone().unwrap();
    assert_eq!(status.last_error, None, "{good:?}");
    assert_eq!(status.storage.as_deref(), Some("s3://monitor-test/pg/prod"));
    let summary = good.summary.clone().unwrap();
    assert!(
        summary.findings.error >= 1,
        "the sample has a WAL gap: {summary:?}"
    );
    assert_eq!(good.verdict.health, Health::Red);
    assert!(
        good.verdict.reason.to_lowercase().contains("gap"),
        "{:?}",
        good.verdict
    );

    // Red is an alert (critical), raised once: the refresh after it does not raise it again.
    let open = f.walden.alerts().open().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].kind.as_str(), open[0].severity.as_str()),
        ("backups_failing", "critical")
    );
    assert!(
        open[0].message.to_lowercase().contains("gap"),
        "{}",
        open[0].message
    );

    drop(moto);
    let failed = monitor.refresh(ORG, APP).await.unwrap();
    let open = f.walden.alerts().open().await.unwrap();
    assert_eq!(open.len(), 1, "still one alert: {open:?}");
    let status = failed.status.clone().unwrap();
    let error = status.last_error.clone().unwrap();
    assert!(
        error.contains("monitor-test"),
        "the error names the storage: {error}"
    );
    assert!(!error.contains("test-secret"), "{error}");
    assert_eq!(
        failed.summary.as_ref(),
        Some(&summary),
        "the last good summary stays"
    );
    assert_eq!(failed.verdict.health, Health::Red);
    assert!(
        failed.verdict.reason.starts_with("storage unreachable: "),
        "{:?}",
        failed.verdict
    );
    assert!(failed
        .verdict
        .reason
        .contains("showing the last good refresh of"));
    let viewer = user(3, "vera", Role::Viewer);
    let kept = monitor.timeline(&viewer, ORG, APP).await.unwrap().unwrap();
    assert_eq!(kept.status.last_error.as_deref(), Some(error.as_str()));
    assert!(!kept.timeline.backups.is_empty());
    // The status row is in the database file.
    let stored: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT last_error, good_at FROM cluster_health WHERE org = ? AND app = ?")
            .bind(ORG)
            .bind(APP)
            .fetch_one(f.walden.pool())
            .await
            .unwrap();
    assert_eq!(stored.0.as_deref(), Some(error.as_str()));
    assert!(stored.1.is_some());
}

/// Writes go on for `minutes` emulated minutes (a row each minute, so each archive_timeout switches a
/// segment), the monitor refreshing every five; returns the last refresh's health.
async fn write_for(f: &Fixture, monitor: &Monitor, minutes: u64) -> ClusterHealth {
    let mut last = None;
    for minute in 1..=minutes {
        f.sim.pg_insert(APP, "shop", "orders", 10).unwrap();
        f.sim.advance(Duration::from_secs(60));
        if minute % 5 == 0 {
            last = Some(monitor.refresh(ORG, APP).await.unwrap());
        }
    }
    last.expect("at least five minutes")
}

/// The open `volume_filling` alert, if any.
async fn filling_alert(walden: &Walden) -> Option<walden_core::alerts::Alert> {
    walden
        .alerts()
        .open()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.kind == "volume_filling")
}

/// The bucket refuses uploads while writes go on: WAL is not archived and the leader's volume keeps a segment
/// per switch (flysim models PostgreSQL's `.ready` files), so `volume_filling` is raised with the forecast of
/// when it is full, escalated to critical above 90 % (the leader then answers `readonly`); archiving back
/// resolves it with a recovery message; with every machine stopped on purpose
/// the cluster is idle and nothing is alerted, the unread volume only noted. The monitor runs on the
/// emulator's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_volume_filling_with_unarchived_wal_is_alerted_with_its_forecast() {
    let f = fixture(26).await;
    let sim = f.sim.clone();
    let monitor = f.walden.monitor().clone().with_clock(move || sim.now());

    // Archiving works: the volume is read, growth is the database's own, nothing fires.
    let healthy = write_for(&f, &monitor, 15).await;
    assert_eq!(healthy.volume_filling, None, "{:?}", healthy.verdict);
    assert_ne!(healthy.verdict.health, Health::Red, "{:?}", healthy.verdict);
    let volume = healthy.volume.clone().unwrap();
    assert_eq!(volume.error, None, "{volume:?}");
    let before = volume.latest.unwrap();
    let leader = healthy.leader().unwrap().id.clone();
    assert_eq!(Some(before.used), f.sim.disk_used_bytes(APP, &leader));
    assert!(filling_alert(&f.walden).await.is_none());

    // The bucket refuses uploads: each switch leaves its segment in pg_wal.
    f.sim.set_wal_push_refused(APP, true).unwrap();
    let filling = write_for(&f, &monitor, 30).await;
    let latest = filling.volume.as_ref().unwrap().latest.unwrap();
    assert!(latest.used > before.used, "{latest:?} after {before:?}");
    let full_at = filling.volume.as_ref().unwrap().forecast.full_at();
    assert!(full_at.is_some(), "{:?}", filling.volume);
    let rule = filling
        .volume_filling
        .clone()
        .expect("volume_filling fires");
    assert_eq!(rule.health, Health::Amber, "{rule:?}");
    assert!(
        rule.reason.starts_with("WAL not archived for ")
            && rule.reason.contains("the leader's volume is")
            && rule.reason.contains("fills in about"),
        "{rule:?}"
    );
    assert!(filling.verdict.reason.starts_with("WAL not archived"));
    let alert = filling_alert(&f.walden).await.expect("raised");
    assert_eq!(alert.severity.as_str(), "warning");
    assert!(
        alert.message.contains("fills in about"),
        "{}",
        alert.message
    );

    // Above 90 %: the leader's role check answers `readonly` (its volume is still the one read), the rule turns
    // red and the warning is escalated to a critical alert.
    f.sim.set_disk_used(APP, &leader, 91).unwrap();
    let over = write_for(&f, &monitor, 5).await;
    assert!(over.leader().is_none(), "the leader answers readonly");
    let rule = over.volume_filling.clone().expect("still filling");
    assert_eq!(rule.health, Health::Red, "{rule:?}");
    assert!(rule.reason.contains("above 90 %"), "{rule:?}");
    let critical = filling_alert(&f.walden).await.expect("raised again");
    assert_eq!(critical.severity.as_str(), "critical");
    assert_ne!(
        critical.id, alert.id,
        "the warning was resolved as escalated"
    );
    f.sim.set_disk_used(APP, &leader, 10).unwrap();

    // Archiving back: the archiver catches up, the volume shrinks back, the alert is resolved.
    f.sim.set_wal_push_refused(APP, false).unwrap();
    let recovered = write_for(&f, &monitor, 5).await;
    assert_eq!(recovered.volume_filling, None, "{:?}", recovered.verdict);
    assert!(filling_alert(&f.walden).await.is_none());
    let resolved = f
        .walden
        .alerts()
        .recent()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id == critical.id)
        .unwrap();
    let escalated = f.walden.alerts().recent().await.unwrap();
    let warning = escalated.iter().find(|a| a.id == alert.id).unwrap();
    assert!(
        warning
            .resolution
            .as_deref()
            .is_some_and(|r| r.starts_with("Now critical: ")),
        "{warning:?}"
    );
    assert!(
        resolved
            .resolution
            .as_deref()
            .is_some_and(|r| r.contains("no longer filling")),
        "{resolved:?}"
    );

    // Refused again, then every machine stopped on purpose: idle, nothing alerted, the volume not read.
    f.sim.set_wal_push_refused(APP, true).unwrap();
    let again = write_for(&f, &monitor, 20).await;
    assert!(again.volume_filling.is_some(), "{:?}", again.verdict);
    let fly = client(&f.run.base_url);
    for m in fly
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap()
    {
        fly.stop_machine(APP, &m.id, &StopRequest::default(), None)
            .await
            .unwrap();
    }
    f.sim.advance(Duration::from_secs(10));
    let idle = monitor.refresh(ORG, APP).await.unwrap();
    assert_eq!(idle.verdict.health, Health::Idle, "{:?}", idle.verdict);
    assert_eq!(idle.volume_filling, None);
    let open = f.walden.alerts().open().await.unwrap();
    assert!(open.is_empty(), "{open:?}");
    let unread = idle.volume.unwrap().error.unwrap();
    assert!(unread.contains("leader"), "{unread}");
}
