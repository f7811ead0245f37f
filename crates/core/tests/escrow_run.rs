//! Escrow end to end (`Escrow::capture`, `prove`, `enter_manually`) against flysim over loopback HTTP and a
//! real SQLite file: a seeded Stolon cluster captured through an added organisation's sealed token or the
//! environment's, an unchanged capture, stopped Machines (the secrets-API fallback, manual entry), a cluster
//! without a leader, a token without access, proofs that pass and one that fails after `ALTER ROLE`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fly::{ExecOutput, ExecRequest, FlyClient, ListMachines, StopRequest};
use flysim::{ClusterSeed, Sim};
use secrecy::SecretString;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta, Role};
use walden_core::audit::{self, AuditFilter, AuditRow};
use walden_core::clusters::FlyConnection;
use walden_core::escrow::{CaptureHow, EscrowError};
use walden_core::keyring::Keyring;
use walden_core::users::HashParams;
use walden_core::{Walden, WaldenOptions};

const ORG: &str = "acme";
const TOKEN: &str = "fm2_escrow_run_acme_token_51c0";
const OTHER_TOKEN: &str = "fm2_escrow_run_other_token_0d3e";
const APP: &str = "prod-db";
const SU: &str = "RunSu7Qw2LmTq";
const REPL: &str = "RunRepl4Kd9Zp";
const OPERATOR: &str = "RunOp3Xv8TnWc";
/// One run of the Machines' `role` check (flysim runs health checks every 15 s).
const CHECK_RUN: Duration = Duration::from_secs(15);

struct Peer {
    sim: Sim,
    run: flysim::Running,
    _dir: tempfile::TempDir,
}

/// A manual-clock emulator with a seeded 3-Machine Stolon cluster `acme/prod-db`, and a second org whose
/// token cannot reach it.
async fn peer() -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::builder()
        .manual_clock(Sim::new().now())
        .seed(5)
        .build()
        .unwrap();
    sim.add_org(ORG, "Acme");
    sim.add_token(TOKEN, &[ORG]);
    sim.add_org("other", "Other");
    sim.add_token(OTHER_TOKEN, &["other"]);
    let mut seed = ClusterSeed::new(ORG, APP, &dir.path().join("walg"));
    seed.su_password = SU.into();
    seed.repl_password = REPL.into();
    seed.operator_password = OPERATOR.into();
    seed.history_hours = 1;
    sim.seed_cluster(&seed).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let run = flysim::spawn(listener, sim.clone(), CancellationToken::new()).unwrap();
    Peer {
        sim,
        run,
        _dir: dir,
    }
}

fn client(base_url: &str, token: &str) -> FlyClient {
    FlyClient::builder()
        .token(SecretString::from(token))
        .machines_base_url(base_url)
        .api_base_url(base_url)
        .build()
        .unwrap()
}

/// Walden on `dir`; with `env_token`, `acme` is the environment's organisation reached with that token.
async fn walden(
    dir: &std::path::Path,
    peer: &Peer,
    keyring: &Keyring,
    env_token: Option<&str>,
) -> Walden {
    let fly = env_token.map(|token| FlyConnection {
        client: client(&peer.run.base_url, token),
        org: ORG.into(),
    });
    Walden::open(
        dir,
        WaldenOptions {
            hash: HashParams::TEST,
            keyring: Some(keyring.clone()),
            fly,
            fly_endpoints: Some(walden_core::orgs::FlyEndpoints {
                machines_base_url: Some(peer.run.base_url.clone()),
                api_base_url: Some(peer.run.base_url.clone()),
            }),
            ..WaldenOptions::default()
        },
    )
    .await
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

async fn audit_rows(pool: &SqlitePool) -> Vec<AuditRow> {
    audit::query(pool, &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows
}

async fn leader_id(peer: &Peer) -> String {
    fly::stolon::Stolon::new(client(&peer.run.base_url, TOKEN), APP)
        .leader()
        .await
        .unwrap()
        .id
}

/// Run `sql` as flypgadmin on `machine` (the test's own hands, the password on stdin).
async fn psql_as_superuser(peer: &Peer, machine: &str, sql: &str) -> ExecOutput {
    let script = "IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql -h localhost -p 5433 -U flypgadmin -d postgres -t -A -c \"$1\"";
    let mut request = ExecRequest::new(["sh", "-c", script, "sh", sql]).timeout(30);
    request.stdin = Some(format!("{SU}\n"));
    client(&peer.run.base_url, TOKEN)
        .exec(APP, machine, &request)
        .await
        .unwrap()
}

fn raw_database(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join(walden_core::db::DB_FILE)).unwrap();
    if let Ok(wal) = std::fs::read(dir.join(format!("{}-wal", walden_core::db::DB_FILE))) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Through an added organisation's sealed token: untracked refused, captured, unchanged on a second capture,
/// proven, then a password changed behind Walden's back is a failed proof; viewers are refused; no password in
/// the database files or the logs at trace level.
#[tokio::test(flavor = "current_thread")]
async fn captures_a_tracked_cluster_proves_it_and_catches_a_changed_password() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let peer = peer().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(dir.path(), &peer, &Keyring::generate().unwrap(), None).await;
    let cli = Actor::cli();
    let op = user(2, "olga", Role::Operator);
    walden
        .orgs()
        .add(&cli, &meta(), ORG, &SecretString::from(TOKEN))
        .await
        .unwrap();
    let escrow = walden.escrow();

    // Not tracked yet: refused, audited, nothing stored.
    let err = escrow.capture(&op, &meta(), ORG, APP).await.unwrap_err();
    assert!(matches!(err, EscrowError::NotTracked { .. }), "{err:?}");
    assert!(err.to_string().contains("walden org track"), "{err}");
    let rows = audit_rows(walden.pool()).await;
    assert!(rows
        .iter()
        .any(|r| r.action == "escrow.capture" && r.outcome == "failed"));

    walden.orgs().track(&cli, &meta(), ORG, APP).await.unwrap();

    // A viewer may not capture or prove.
    let viewer = user(3, "vera", Role::Viewer);
    let err = escrow
        .capture(&viewer, &meta(), ORG, APP)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Forbidden), "{err:?}");
    let err = escrow.prove(&viewer, &meta(), ORG, APP).await.unwrap_err();
    assert!(matches!(err, EscrowError::Forbidden), "{err:?}");

    // Proving before any capture says so.
    let err = escrow.prove(&op, &meta(), ORG, APP).await.unwrap_err();
    assert!(err.to_string().contains("capture it first"), "{err}");

    let first = escrow.capture(&op, &meta(), ORG, APP).await.unwrap();
    assert_eq!(first.how, CaptureHow::Exec);
    assert!(first.outcome.created);
    assert_eq!(first.outcome.version, 1);
    let again = escrow.capture(&op, &meta(), ORG, APP).await.unwrap();
    assert!(!again.outcome.created, "{again:?}");
    assert_eq!(again.outcome.version, 1);
    let versions = escrow.versions(&op, &meta(), ORG, APP).await.unwrap();
    assert_eq!(versions.len(), 1);
    let fields: Vec<&str> = versions[0]
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    for f in ["SU_PASSWORD", "REPL_PASSWORD", "OPERATOR_PASSWORD"] {
        assert!(fields.contains(&f), "{fields:?}");
    }
    assert!(fields.iter().any(|f| f.starts_with("WALG_")), "{fields:?}");

    let report = escrow.prove(&op, &meta(), ORG, APP).await.unwrap();
    assert!(report.all_open(), "{report:?}");
    assert_eq!(report.version, 1);
    let proofs = escrow.latest_proofs(&op, &meta(), ORG, APP).await.unwrap();
    assert_eq!(proofs.len(), 3);
    assert!(proofs.iter().all(|p| p.ok), "{proofs:?}");

    // Someone changes postgres's password behind Walden's back: the next proof fails for that role only.
    let leader = leader_id(&peer).await;
    let altered = psql_as_superuser(&peer, &leader, "ALTER ROLE postgres PASSWORD 'x'").await;
    assert_eq!(altered.stdout.trim(), "ALTER ROLE");
    let report = escrow.prove(&op, &meta(), ORG, APP).await.unwrap();
    assert_eq!(report.failing(), ["postgres"], "{report:?}");
    let proofs = escrow.latest_proofs(&op, &meta(), ORG, APP).await.unwrap();
    let postgres = proofs.iter().find(|p| p.role == "postgres").unwrap();
    assert!(!postgres.ok);
    assert!(postgres
        .message
        .as_deref()
        .unwrap()
        .contains("no longer opens"));

    // A failed proof is an alert (critical, naming the role), raised once however often it fails again.
    let report = escrow.prove(&op, &meta(), ORG, APP).await.unwrap();
    assert_eq!(report.failing(), ["postgres"], "{report:?}");
    let open = walden.alerts().open().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].kind, "escrow_proof_failed");
    assert_eq!(open[0].severity, "critical");
    assert_eq!(open[0].app.as_deref(), Some(APP));
    assert!(open[0].message.contains("postgres"), "{}", open[0].message);

    // The team types in the password now in use (the machines' secret was not changed): the next proof
    // opens every role and resolves the alert with a recovery message.
    let mut typed: std::collections::BTreeMap<String, SecretString> = [
        ("SU_PASSWORD", SU),
        ("REPL_PASSWORD", REPL),
        ("OPERATOR_PASSWORD", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
    .collect();
    let entered = escrow
        .enter_manually(&op, &meta(), ORG, APP, &typed)
        .await
        .unwrap();
    assert_eq!(entered.version, 2);
    typed.clear();
    let report = escrow.prove(&op, &meta(), ORG, APP).await.unwrap();
    assert!(report.all_open(), "{report:?}");
    assert!(walden.alerts().open().await.unwrap().is_empty());
    let recent = walden.alerts().recent().await.unwrap();
    assert!(
        recent[0]
            .resolution
            .as_deref()
            .unwrap()
            .contains("opens again"),
        "{recent:?}"
    );

    // The opening of the passwords for a proof is audited as a proof.
    let rows = audit_rows(walden.pool()).await;
    assert!(rows.iter().any(|r| r.action == "escrow.proof"
        && r.detail
            .as_deref()
            .unwrap_or_default()
            .contains("login proof")));
    assert!(!rows.iter().any(|r| r.action == "escrow.reveal"));
    let raised = rows.iter().filter(|r| r.action == "alert.raise").count();
    let resolved = rows.iter().filter(|r| r.action == "alert.resolve").count();
    assert_eq!((raised, resolved), (1, 1), "one raise, one recovery");

    let raw = raw_database(dir.path());
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty());
    let audit_text = format!("{rows:?}");
    for secret in [SU, REPL, OPERATOR, TOKEN] {
        assert!(!contains(&raw, secret), "{secret} in the database files");
        assert!(!logs.contains(secret), "{secret} in the logs");
        assert!(!audit_text.contains(secret), "{secret} in the audit rows");
    }
}

/// With every Machine stopped the capture falls back to the secrets API (marked as such); the proof says the
/// cluster is down; manual entry records a `manual_machines_down` version.
#[tokio::test(flavor = "current_thread")]
async fn a_stopped_cluster_falls_back_to_the_secrets_api_and_takes_manual_entry() {
    let peer = peer().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(
        dir.path(),
        &peer,
        &Keyring::generate().unwrap(),
        Some(TOKEN),
    )
    .await;
    let cli = Actor::cli();
    walden.orgs().track(&cli, &meta(), ORG, APP).await.unwrap();
    let fly = client(&peer.run.base_url, TOKEN);
    for m in fly
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap()
    {
        fly.stop_machine(APP, &m.id, &StopRequest::default(), None)
            .await
            .unwrap();
    }
    peer.sim.advance(Duration::from_secs(10));

    let escrow = walden.escrow();
    let report = escrow.capture(&cli, &meta(), ORG, APP).await.unwrap();
    assert_eq!(report.how, CaptureHow::SecretsApi);
    assert!(report.outcome.created);
    let err = escrow.prove(&cli, &meta(), ORG, APP).await.unwrap_err();
    assert!(err.to_string().contains("is stopped"), "{err}");

    let values: BTreeMap<String, SecretString> = [
        ("SU_PASSWORD", "typed-su-1"),
        ("REPL_PASSWORD", "typed-repl-2"),
        ("OPERATOR_PASSWORD", "typed-op-3"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
    .collect();
    let outcome = escrow
        .enter_manually(&cli, &meta(), ORG, APP, &values)
        .await
        .unwrap();
    assert_eq!(outcome.version, 2);
    let versions = escrow.versions(&cli, &meta(), ORG, APP).await.unwrap();
    assert_eq!(versions[0].how, CaptureHow::SecretsApi);
    assert_eq!(versions[1].how, CaptureHow::ManualMachinesDown);

    // Manual entry for an untracked cluster is refused too.
    let err = escrow
        .enter_manually(&cli, &meta(), ORG, "other-db", &values)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::NotTracked { .. }), "{err:?}");
}

/// No Machine reports leader: refused with Fly's words and the hint to enter by hand, audited, nothing stored.
#[tokio::test(flavor = "current_thread")]
async fn a_cluster_without_a_leader_is_refused() {
    let peer = peer().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(
        dir.path(),
        &peer,
        &Keyring::generate().unwrap(),
        Some(TOKEN),
    )
    .await;
    let cli = Actor::cli();
    walden.orgs().track(&cli, &meta(), ORG, APP).await.unwrap();
    let leader = leader_id(&peer).await;
    peer.sim.set_disk_used(APP, &leader, 95).unwrap();
    peer.sim.advance(CHECK_RUN);
    let err = walden
        .escrow()
        .capture(&cli, &meta(), ORG, APP)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("reports role leader")
            && err.to_string().contains("enter the credentials by hand"),
        "{err}"
    );
    let versions = walden
        .escrow()
        .versions(&cli, &meta(), ORG, APP)
        .await
        .unwrap();
    assert!(versions.is_empty());
    let rows = audit_rows(walden.pool()).await;
    assert!(rows.iter().any(|r| r.action == "escrow.capture"
        && r.outcome == "failed"
        && r.detail
            .as_deref()
            .unwrap_or_default()
            .contains("fly_no_leader")));
}

/// The environment's token cannot reach the app: a clear refusal, nothing stored.
#[tokio::test(flavor = "current_thread")]
async fn a_token_without_access_is_refused() {
    let peer = peer().await;
    let dir = tempfile::tempdir().unwrap();
    let keyring = Keyring::generate().unwrap();
    {
        let walden = walden(dir.path(), &peer, &keyring, Some(TOKEN)).await;
        walden
            .orgs()
            .track(&Actor::cli(), &meta(), ORG, APP)
            .await
            .unwrap();
        walden.close().await;
    }
    let walden = walden(dir.path(), &peer, &keyring, Some(OTHER_TOKEN)).await;
    let err = walden
        .escrow()
        .capture(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("may not reach app prod-db") || text.contains("was not found"),
        "{text}"
    );
    assert!(!text.contains(OTHER_TOKEN));
    let versions = walden
        .escrow()
        .versions(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    assert!(versions.is_empty());
}
