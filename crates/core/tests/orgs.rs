//! Fly organisations (`walden_core::orgs`) against flysim over loopback HTTP and a real SQLite file: tokens
//! validated with the peer and stored sealed, refusals that store nothing but their audit row, Postgres apps
//! by image, tracking, several organisations at once, the environment's organisation, and rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fly::{CreateAppRequest, CreateMachineRequest, FlyClient, MachineConfig};
use flysim::{Sim, Timing, DEMO_APP, DEMO_ORG, DEMO_TOKEN};
use secrecy::SecretString;
use sqlx::SqlitePool;
use tokio_util::sync::CancellationToken;
use walden_core::access::{Actor, RequestMeta, Role};
use walden_core::audit::{self, AuditFilter, AuditRow};
use walden_core::clusters::FlyConnection;
use walden_core::keyring::Keyring;
use walden_core::orgs::{OrgError, OrgSource, PgFlavour};
use walden_core::rotation;
use walden_core::seal::SealKey;
use walden_core::users::HashParams;
use walden_core::{Walden, WaldenOptions};

const ACME_TOKEN: &str = "fm2_flysim_acme_org_token_7c1e";
const DEPLOY_TOKEN: &str = "fm2_flysim_demo_deploy_token_93ab";
const TOKENS: [&str; 3] = [DEMO_TOKEN, ACME_TOKEN, DEPLOY_TOKEN];

/// The emulator: the demo org and cluster, a second org `acme` with a postgres-flex app and a web app, and
/// a deploy token limited to the demo cluster.
struct Peer {
    running: flysim::Running,
    _dir: tempfile::TempDir,
}

impl Peer {
    async fn start() -> Peer {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::builder()
            .seed(7)
            .timing(Timing {
                app_visible_after: Duration::ZERO,
                ..Timing::default()
            })
            .build()
            .unwrap();
        sim.seed_demo(dir.path().join("bucket")).unwrap();
        sim.add_org("acme", "Acme Inc");
        sim.add_token(ACME_TOKEN, &["acme"]);
        sim.add_app_token(DEPLOY_TOKEN, DEMO_ORG, &[DEMO_APP]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = flysim::spawn(listener, sim, CancellationToken::new()).unwrap();
        let acme = client(&running.base_url, ACME_TOKEN);
        for (app, image, region) in [
            ("acme-pg", "flyio/postgres-flex:16.2", "fra"),
            ("acme-web", "nginx:1.27", "fra"),
        ] {
            acme.create_app(&CreateAppRequest {
                name: app.into(),
                org_slug: "acme".into(),
                ..Default::default()
            })
            .await
            .unwrap();
            acme.create_machine(
                app,
                &CreateMachineRequest {
                    config: MachineConfig {
                        image: Some(image.into()),
                        ..Default::default()
                    },
                    region: Some(region.into()),
                    skip_launch: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        Peer { running, _dir: dir }
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

fn meta() -> RequestMeta {
    RequestMeta::default()
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s)
}

/// Walden on a fresh data directory, pointed at `peer`; `environment` makes the demo org the
/// `FLY_API_TOKEN` one.
async fn walden(
    dir: &std::path::Path,
    peer: &Peer,
    keyring: Option<Keyring>,
    environment: bool,
) -> Walden {
    let fly = environment.then(|| FlyConnection {
        client: client(&peer.running.base_url, DEMO_TOKEN),
        org: DEMO_ORG.into(),
    });
    let endpoints = walden_core::orgs::FlyEndpoints {
        machines_base_url: Some(peer.running.base_url.clone()),
        api_base_url: Some(peer.running.base_url.clone()),
    };
    Walden::open(
        dir,
        WaldenOptions {
            hash: HashParams::TEST,
            keyring,
            fly,
            fly_endpoints: Some(endpoints),
            ..WaldenOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn audit_rows(pool: &SqlitePool) -> Vec<AuditRow> {
    audit::query(pool, &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows
}

async fn org_rows(pool: &SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM fly_orgs")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The raw bytes of the database file and its write-ahead log.
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

/// Log output captured at every level, to look for tokens in it.
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

/// Adding several organisations, listing them and their Postgres apps, tracking and untracking, with every
/// token absent from the database file, its WAL, the audit rows, `Debug` output and the logs.
#[tokio::test(flavor = "current_thread")]
async fn adds_several_orgs_lists_their_postgres_apps_and_tracks_clusters() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let peer = Peer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(dir.path(), &peer, Some(Keyring::generate().unwrap()), false).await;
    let orgs = walden.orgs();
    let cli = Actor::cli();

    let demo = orgs
        .add(&cli, &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap();
    assert_eq!(
        (demo.name.as_str(), demo.source),
        ("Demo Org", OrgSource::Added)
    );
    // Surrounding white space from a paste is not part of the token.
    let acme = orgs
        .add(&cli, &meta(), "acme", &secret(&format!("  {ACME_TOKEN}\n")))
        .await
        .unwrap();
    assert_eq!(acme.name, "Acme Inc");
    assert_ne!(demo.fingerprint, acme.fingerprint);

    let listed = orgs.list(&cli).await.unwrap();
    let slugs: Vec<&str> = listed.iter().map(|o| o.slug.as_str()).collect();
    assert_eq!(slugs, ["acme", DEMO_ORG]);

    // The demo org's Stolon cluster: three machines in two regions, one leader, version from the label.
    let demo_apps = orgs.postgres_apps(&cli, DEMO_ORG).await.unwrap();
    assert_eq!(demo_apps.len(), 1, "{demo_apps:?}");
    let pg = &demo_apps[0];
    assert_eq!(pg.app, DEMO_APP);
    assert_eq!(pg.flavour, PgFlavour::Stolon);
    assert_eq!(pg.pg_version.as_deref(), Some("14.6"));
    assert_eq!(pg.regions, ["iad", "ord"]);
    assert_eq!(pg.machines.len(), 3);
    assert_eq!(pg.machines.iter().filter(|m| m.role == "leader").count(), 1);
    assert!(!pg.tracked);

    // Acme's postgres-flex app is listed by its image; its web app is not.
    let acme_apps = orgs.postgres_apps(&cli, "acme").await.unwrap();
    assert_eq!(acme_apps.len(), 1, "{acme_apps:?}");
    assert_eq!(acme_apps[0].app, "acme-pg");
    assert_eq!(acme_apps[0].flavour, PgFlavour::Flex);
    assert_eq!(acme_apps[0].pg_version.as_deref(), Some("16.2"));
    assert_eq!(acme_apps[0].regions, ["fra"]);

    // Tracking: a Postgres app in each org; a web app, an app of another org and a second track refused.
    orgs.track(&cli, &meta(), DEMO_ORG, DEMO_APP).await.unwrap();
    orgs.track(&cli, &meta(), "acme", "acme-pg").await.unwrap();
    let err = orgs
        .track(&cli, &meta(), "acme", "acme-web")
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::NotPostgres(_)), "{err}");
    assert!(err.to_string().contains("not a Postgres cluster"), "{err}");
    let err = orgs
        .track(&cli, &meta(), "acme", "no-such-app")
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::AppNotFound { .. }), "{err}");
    let err = orgs
        .track(&cli, &meta(), "acme", DEMO_APP)
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::AppNotFound { .. }), "{err}");
    let err = orgs
        .track(&cli, &meta(), DEMO_ORG, DEMO_APP)
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::AlreadyTracked(_)), "{err}");
    let tracked: Vec<(String, String)> = orgs
        .tracked(&cli)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.org, t.app))
        .collect();
    assert_eq!(
        tracked,
        [
            ("acme".to_string(), "acme-pg".to_string()),
            (DEMO_ORG.to_string(), DEMO_APP.to_string())
        ]
    );
    assert!(orgs.postgres_apps(&cli, DEMO_ORG).await.unwrap()[0].tracked);

    orgs.untrack(&cli, &meta(), "acme", "acme-pg")
        .await
        .unwrap();
    let err = orgs
        .untrack(&cli, &meta(), "acme", "acme-pg")
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::NotTracked { .. }), "{err}");
    assert_eq!(orgs.tracked(&cli).await.unwrap().len(), 1);

    // Removing an org removes its sealed token and untracks its clusters, in one audited change.
    orgs.remove(&cli, &meta(), DEMO_ORG).await.unwrap();
    assert!(orgs.tracked(&cli).await.unwrap().is_empty());
    assert_eq!(org_rows(walden.pool()).await, 1);
    let err = orgs.postgres_apps(&cli, DEMO_ORG).await.unwrap_err();
    assert!(matches!(err, OrgError::NotFound(_)), "{err}");

    let rows = audit_rows(walden.pool()).await;
    let actions: Vec<(&str, &str)> = rows
        .iter()
        .rev()
        .map(|r| (r.action.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("org.add", "ok"),
            ("org.add", "ok"),
            ("cluster.track", "ok"),
            ("cluster.track", "ok"),
            ("cluster.track", "failed"),
            ("cluster.track", "failed"),
            ("cluster.track", "failed"),
            ("cluster.track", "failed"),
            ("cluster.untrack", "ok"),
            ("cluster.untrack", "failed"),
            ("org.remove", "ok"),
        ]
    );

    // No token in plaintext anywhere.
    walden.close().await;
    let raw = raw_database(dir.path());
    let debug = format!("{walden:?} {:?} {listed:?}", walden.orgs());
    let audit_text = format!("{rows:?}");
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "the spans were logged");
    for token in TOKENS {
        assert!(!contains(&raw, token), "{token} in the database file");
        assert!(!debug.contains(token), "{token} in Debug output");
        assert!(!audit_text.contains(token), "{token} in the audit log");
        assert!(!logs.contains(token), "{token} in the logs");
    }
    peer.running.shutdown().await.unwrap();
}

/// Each bad input is refused with a clear message, stores nothing, and leaves one audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_store_nothing_but_their_audit_row() {
    let peer = Peer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(dir.path(), &peer, Some(Keyring::generate().unwrap()), false).await;
    let orgs = walden.orgs();
    let cli = Actor::cli();

    // A wrong (or expired, or revoked) token: Fly answers 401.
    let err = orgs
        .add(
            &cli,
            &meta(),
            DEMO_ORG,
            &secret("fm2_not_a_token_fly_knows"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::TokenRejected), "{err}");
    assert!(
        err.to_string().contains("wrong, expired or revoked"),
        "{err}"
    );

    // An org that does not exist (or that the token cannot act in).
    let err = orgs
        .add(&cli, &meta(), "no-such-org", &secret(DEMO_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::UnknownOrg { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // The token of another org.
    let err = orgs
        .add(&cli, &meta(), "acme", &secret(DEMO_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::UnknownOrg { .. }), "{err}");

    // The wrong scope: a deploy token limited to one app.
    let err = orgs
        .add(&cli, &meta(), DEMO_ORG, &secret(DEPLOY_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::WrongScope(_)), "{err}");
    assert!(
        err.to_string().contains("not an organisation token"),
        "{err}"
    );

    // Bad input never reaches Fly.
    let err = orgs
        .add(&cli, &meta(), "Bad Slug", &secret(DEMO_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::Invalid(_)), "{err}");
    let err = orgs
        .add(&cli, &meta(), DEMO_ORG, &secret("  \n"))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::Invalid(_)), "{err}");

    // Twice the same org.
    orgs.add(&cli, &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap();
    let err = orgs
        .add(&cli, &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::AlreadyAdded(_)), "{err}");
    assert_eq!(org_rows(walden.pool()).await, 1);

    // Error texts never hold the token, whichever way a refusal goes.
    let refusals = [
        orgs.add(&cli, &meta(), DEMO_ORG, &secret(DEMO_TOKEN)).await,
        orgs.add(&cli, &meta(), "acme", &secret(DEPLOY_TOKEN)).await,
        orgs.add(&cli, &meta(), "nope", &secret(ACME_TOKEN)).await,
    ];
    for refusal in refusals {
        let err = refusal.unwrap_err();
        for token in TOKENS {
            assert!(!err.to_string().contains(token) && !format!("{err:?}").contains(token));
        }
    }

    let rows = audit_rows(walden.pool()).await;
    let refused: Vec<String> = rows
        .iter()
        .rev()
        .filter(|r| r.outcome == "failed")
        .map(|r| r.detail.clone().unwrap_or_default())
        .collect();
    assert_eq!(refused.len(), 10, "{refused:?}");
    for (row, code) in refused.iter().zip([
        "token_rejected",
        "unknown_org",
        "unknown_org",
        "wrong_scope",
        "invalid",
        "invalid",
        "already_added",
    ]) {
        assert!(row.contains(code), "{row} should name {code}");
    }
    walden.close().await;
    peer.running.shutdown().await.unwrap();
}

/// Without a master key nothing is added (a token is never stored in the clear).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keyring_nothing_is_added() {
    let peer = Peer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(dir.path(), &peer, None, false).await;
    let err = walden
        .orgs()
        .add(&Actor::cli(), &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::NoKeyring), "{err}");
    assert!(err.to_string().contains("WALDEN_MASTER_KEY"), "{err}");
    assert_eq!(org_rows(walden.pool()).await, 0);
    let rows = audit_rows(walden.pool()).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].action.as_str(), rows[0].outcome.as_str()),
        ("org.add", "failed")
    );
    walden.close().await;
    peer.running.shutdown().await.unwrap();
}

/// Admins add, remove and track; viewers and operators list; each refusal is one `denied` row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_change_orgs_and_viewers_may_list() {
    let peer = Peer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(dir.path(), &peer, Some(Keyring::generate().unwrap()), false).await;
    let orgs = walden.orgs();
    let cli = Actor::cli();
    orgs.add(&cli, &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap();
    let pw = secret("a perfectly fine passphrase");
    for role in [Role::Viewer, Role::Operator] {
        let user = walden
            .accounts()
            .create_user(
                &cli,
                &meta(),
                if role == Role::Viewer { "vic" } else { "ola" },
                &pw,
                role,
            )
            .await
            .unwrap();
        let actor = user.actor();
        let before = audit_rows(walden.pool()).await.len();
        let err = orgs
            .add(&actor, &meta(), "acme", &secret(ACME_TOKEN))
            .await
            .unwrap_err();
        assert!(matches!(err, OrgError::Forbidden), "{err}");
        let err = orgs.remove(&actor, &meta(), DEMO_ORG).await.unwrap_err();
        assert!(matches!(err, OrgError::Forbidden), "{err}");
        let err = orgs
            .track(&actor, &meta(), DEMO_ORG, DEMO_APP)
            .await
            .unwrap_err();
        assert!(matches!(err, OrgError::Forbidden), "{err}");
        let err = orgs
            .untrack(&actor, &meta(), DEMO_ORG, DEMO_APP)
            .await
            .unwrap_err();
        assert!(matches!(err, OrgError::Forbidden), "{err}");
        let rows = audit_rows(walden.pool()).await;
        assert_eq!(rows.len(), before + 4);
        assert!(rows[..4].iter().all(|r| r.outcome == "denied"));
        // Listing is for every signed-in role.
        assert_eq!(orgs.list(&actor).await.unwrap().len(), 1);
        assert_eq!(orgs.postgres_apps(&actor, DEMO_ORG).await.unwrap().len(), 1);
        assert!(orgs.tracked(&actor).await.unwrap().is_empty());
    }
    assert!(matches!(
        orgs.list(&Actor::Anonymous).await.unwrap_err(),
        OrgError::Forbidden
    ));
    assert_eq!(org_rows(walden.pool()).await, 1);
    walden.close().await;
    peer.running.shutdown().await.unwrap();
}

/// `FLY_API_TOKEN`'s organisation (here the demo's) is listed without a row, works without a keyring,
/// cannot be removed, and its clusters can be tracked; once added, the added token is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_org_is_listed_and_cannot_be_removed() {
    let peer = Peer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let walden = walden(dir.path(), &peer, None, true).await;
    let orgs = walden.orgs();
    let cli = Actor::cli();
    let listed = orgs.list(&cli).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].slug.as_str(), listed[0].source),
        (DEMO_ORG, OrgSource::Environment)
    );
    let apps = orgs.postgres_apps(&cli, DEMO_ORG).await.unwrap();
    assert_eq!(apps[0].app, DEMO_APP);
    orgs.track(&cli, &meta(), DEMO_ORG, DEMO_APP).await.unwrap();
    let err = orgs.remove(&cli, &meta(), DEMO_ORG).await.unwrap_err();
    assert!(matches!(err, OrgError::FromEnvironment(_)), "{err}");
    assert!(err.to_string().contains("FLY_API_TOKEN"), "{err}");
    let err = orgs.validate(&cli, &meta(), DEMO_ORG).await.unwrap_err();
    assert!(matches!(err, OrgError::FromEnvironment(_)), "{err}");
    assert_eq!(orgs.tracked(&cli).await.unwrap().len(), 1);
    // The same walden (no keyring) cannot open another org it does not know.
    let err = orgs.postgres_apps(&cli, "acme").await.unwrap_err();
    assert!(matches!(err, OrgError::NotFound(_)), "{err}");
    walden.close().await;

    // With a keyring the demo org is added too, and then shows once, as added.
    let walden = self::walden(dir.path(), &peer, Some(Keyring::generate().unwrap()), true).await;
    walden
        .orgs()
        .add(&cli, &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap();
    let listed = walden.orgs().list(&cli).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].source, OrgSource::Added);
    walden.close().await;
    peer.running.shutdown().await.unwrap();
}

/// `walden keys rotate` re-seals org tokens under the new key; they still open (bound to their org) after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_org_tokens() {
    let peer = Peer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = SealKey::generate().unwrap();
    let b = SealKey::generate().unwrap();
    let walden = walden(dir.path(), &peer, Some(Keyring::new(a.clone())), false).await;
    walden
        .orgs()
        .add(&Actor::cli(), &meta(), DEMO_ORG, &secret(DEMO_TOKEN))
        .await
        .unwrap();
    walden
        .orgs()
        .add(&Actor::cli(), &meta(), "acme", &secret(ACME_TOKEN))
        .await
        .unwrap();
    walden.close().await;

    let rotated = Keyring::new(b.clone()).with_retired(a);
    let walden = self::walden(dir.path(), &peer, Some(rotated.clone()), false).await;
    let report = rotation::rotate(walden.pool(), &rotated, &Actor::cli(), &meta())
        .await
        .unwrap();
    assert_eq!(report.total(), 2);
    let status = rotation::status(walden.pool(), &rotated, &Actor::cli())
        .await
        .unwrap();
    assert_eq!(status.pending(), 0);
    assert_eq!(
        status.columns["fly_orgs.token_sealed"]
            .values()
            .sum::<u64>(),
        2
    );
    walden.close().await;

    // Under the new key alone, both tokens open and reach their org.
    let walden = self::walden(dir.path(), &peer, Some(Keyring::new(b)), false).await;
    for org in [DEMO_ORG, "acme"] {
        assert_eq!(
            walden
                .orgs()
                .postgres_apps(&Actor::cli(), org)
                .await
                .unwrap()
                .len(),
            1
        );
    }
    // Checking a token again (after the rotation) records when it last passed.
    let before = walden.orgs().list(&Actor::cli()).await.unwrap();
    let at = walden
        .orgs()
        .validate(&Actor::cli(), &meta(), "acme")
        .await
        .unwrap();
    let after = walden.orgs().list(&Actor::cli()).await.unwrap();
    assert_eq!(after[0].slug, "acme");
    assert_eq!(after[0].last_validated_at.as_deref(), Some(at.as_str()));
    assert!(after[0].last_validated_at >= before[0].last_validated_at);
    let err = walden
        .orgs()
        .validate(&Actor::cli(), &meta(), "nope")
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::NotFound(_)), "{err}");
    // A sealed token moved to another org's row does not open there.
    sqlx::query(
        "UPDATE fly_orgs SET token_sealed = (SELECT token_sealed FROM fly_orgs WHERE slug = 'demo') \
         WHERE slug = 'acme'",
    )
    .execute(walden.pool())
    .await
    .unwrap();
    let err = walden
        .orgs()
        .postgres_apps(&Actor::cli(), "acme")
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::Unopenable(_)), "{err}");
    let err = walden
        .orgs()
        .validate(&Actor::cli(), &meta(), "acme")
        .await
        .unwrap_err();
    assert!(matches!(err, OrgError::Unopenable(_)), "{err}");
    walden.close().await;
    peer.running.shutdown().await.unwrap();
}
