//! Credential escrow (`walden_core::escrow`) against real SQLite files: sealing round trip, tampered and
//! swapped ciphertexts, wrong and unknown keys, unchanged captures, "the version valid at T", reveals with a
//! reason and fail-closed audit, two-person approval, master-key rotation, and a raw scan of the database
//! files for the test passwords.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;
use time::{Duration, OffsetDateTime};
use walden_core::access::{Actor, RequestMeta, Role};
use walden_core::db;
use walden_core::escrow::{unchanged_since, CaptureHow, Escrow, EscrowError};
use walden_core::keyring::Keyring;
use walden_core::rotation;
use walden_core::seal::SealKey;
use walden_core::settings::{self, REQUIRE_REVEAL_APPROVAL};

const ORG: &str = "acme";
const APP: &str = "pg-main";
const SU: &str = "su-Tr0ub4dor-alpha-7c1e";
const REPL: &str = "repl-c0rrect-horse-9f2a";
const OPER: &str = "oper-battery-staple-3b8d";
const SU_2: &str = "su-second-generation-5e0f";
const AWS_KEY: &str = "aws-s3cr3t-access-key-41aa";
/// Every value a test stores: none may appear in the database files.
const ALL: [&str; 5] = [SU, REPL, OPER, SU_2, AWS_KEY];

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

fn values(su: &str, extra: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    let mut map: BTreeMap<String, SecretString> = [
        ("SU_PASSWORD", su),
        ("REPL_PASSWORD", REPL),
        ("OPERATOR_PASSWORD", OPER),
    ]
    .into_iter()
    .chain(extra.iter().copied())
    .map(|(k, v)| (k.to_owned(), SecretString::from(v)))
    .collect();
    map.retain(|_, v| !v.expose_secret().is_empty());
    map
}

/// A settable clock shared with the service.
#[derive(Clone)]
struct Clock(Arc<Mutex<OffsetDateTime>>);

impl Clock {
    fn new() -> Self {
        Clock(Arc::new(Mutex::new(
            time::macros::datetime!(2026-12-01 10:00:00 UTC),
        )))
    }
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

struct Env {
    dir: tempfile::TempDir,
    pool: SqlitePool,
    key: SealKey,
    ring: Keyring,
    clock: Clock,
    escrow: Escrow,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    let key = SealKey::generate().unwrap();
    let ring = Keyring::new(key.clone());
    let clock = Clock::new();
    let escrow = with_clock(Escrow::new(pool.clone(), Some(ring.clone())), &clock);
    Env {
        dir,
        pool,
        key,
        ring,
        clock,
        escrow,
    }
}

fn with_clock(escrow: Escrow, clock: &Clock) -> Escrow {
    let c = clock.clone();
    escrow.with_clock(move || c.now())
}

/// `(action, outcome, reason, detail)` of every escrow audit row, oldest first.
async fn escrow_rows(pool: &SqlitePool) -> Vec<(String, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT action, outcome, reason, detail FROM audit_log WHERE action LIKE 'escrow.%' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn count(pool: &SqlitePool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Read the database file and its -wal and -shm (those present): the first test value found in plaintext,
/// with the file it is in.
fn plaintext_in(dir: &Path) -> Option<(&'static str, &'static str)> {
    let mut scanned = 0;
    for name in ["walden.db", "walden.db-wal", "walden.db-shm"] {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            continue;
        };
        scanned += 1;
        for secret in ALL {
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                return Some((secret, name));
            }
        }
    }
    assert!(scanned >= 1, "no database file to scan");
    None
}

fn assert_no_plaintext(dir: &Path) {
    if let Some((secret, file)) = plaintext_in(dir) {
        panic!("{secret} found in plaintext in {file}");
    }
}

async fn capture(e: &Env, su: &str, extra: &[(&str, &str)]) -> walden_core::escrow::CaptureOutcome {
    e.escrow
        .record_capture(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            CaptureHow::Exec,
            &values(su, extra),
        )
        .await
        .unwrap()
}

async fn reveal(e: &Escrow, version: i64, field: &str) -> Result<SecretString, EscrowError> {
    let op = user(2, "olga", Role::Operator);
    e.reveal(&op, &meta(), ORG, APP, version, field, "restore drill")
        .await
}

#[tokio::test]
async fn capture_seals_round_trips_and_an_unchanged_capture_makes_no_version() {
    let e = env().await;
    let first = capture(&e, SU, &[("AWS_SECRET_ACCESS_KEY", AWS_KEY)]).await;
    assert_eq!((first.version, first.created), (1, true));
    assert_eq!(first.changed.len(), 4);
    for (field, want) in [
        ("SU_PASSWORD", SU),
        ("REPL_PASSWORD", REPL),
        ("OPERATOR_PASSWORD", OPER),
        ("AWS_SECRET_ACCESS_KEY", AWS_KEY),
    ] {
        assert_eq!(
            reveal(&e.escrow, 1, field).await.unwrap().expose_secret(),
            want
        );
    }

    // The same values again: no version, and an audit row saying so.
    e.clock.advance(Duration::hours(1));
    let again = capture(&e, SU, &[("AWS_SECRET_ACCESS_KEY", AWS_KEY)]).await;
    assert_eq!((again.version, again.created), (1, false));
    assert!(again.changed.is_empty() && again.removed.is_empty());
    assert_eq!(count(&e.pool, "escrow_versions").await, 1);
    let rows = escrow_rows(&e.pool).await;
    let unchanged = rows.last().unwrap();
    assert_eq!(
        (unchanged.0.as_str(), unchanged.1.as_str()),
        ("escrow.capture", "ok")
    );
    assert!(unchanged
        .3
        .as_deref()
        .unwrap()
        .contains("\"unchanged\":true"));

    // One password changed and a storage setting dropped: version 2 names exactly those.
    e.clock.advance(Duration::hours(1));
    let second = capture(&e, SU_2, &[]).await;
    assert_eq!((second.version, second.created), (2, true));
    assert_eq!(second.changed, ["SU_PASSWORD"]);
    assert_eq!(second.removed, ["AWS_SECRET_ACCESS_KEY"]);

    let viewer = user(3, "vera", Role::Viewer);
    let versions = e.escrow.versions(&viewer, &meta(), ORG, APP).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].how, CaptureHow::Exec);
    assert_eq!(versions[0].captured_by, "(system:cli)");
    assert_eq!(versions[1].changed_fields(), ["SU_PASSWORD"]);
    assert_eq!(versions[1].removed, ["AWS_SECRET_ACCESS_KEY"]);
    let fp = |v: usize, f: &str| {
        versions[v]
            .fields
            .iter()
            .find(|x| x.field == f)
            .unwrap()
            .fingerprint
            .clone()
    };
    assert_eq!(
        fp(0, "REPL_PASSWORD"),
        fp(1, "REPL_PASSWORD"),
        "unchanged since v1"
    );
    assert_ne!(fp(0, "SU_PASSWORD"), fp(1, "SU_PASSWORD"));
    assert_eq!(
        unchanged_since(&versions, "REPL_PASSWORD"),
        Some(versions[0].captured_at.as_str())
    );
    assert_eq!(
        unchanged_since(&versions, "SU_PASSWORD"),
        Some(versions[1].captured_at.as_str())
    );
    assert_eq!(unchanged_since(&versions, "AWS_SECRET_ACCESS_KEY"), None);
    assert_eq!(
        reveal(&e.escrow, 2, "SU_PASSWORD")
            .await
            .unwrap()
            .expose_secret(),
        SU_2
    );
    assert_eq!(
        reveal(&e.escrow, 1, "SU_PASSWORD")
            .await
            .unwrap()
            .expose_secret(),
        SU
    );

    // Listing output carries no value.
    let listed = format!("{versions:?}");
    for secret in ALL {
        assert!(!listed.contains(secret));
    }
    assert_no_plaintext(e.dir.path());
    e.pool.close().await;
    assert_no_plaintext(e.dir.path());
}

#[tokio::test]
async fn bad_captures_are_refused_and_store_nothing() {
    let e = env().await;
    let op = user(2, "olga", Role::Operator);
    let viewer = user(3, "vera", Role::Viewer);
    let capture_as = |actor: Actor, org: &'static str, vals: BTreeMap<String, SecretString>| {
        let escrow = e.escrow.clone();
        async move {
            escrow
                .record_capture(&actor, &meta(), org, APP, CaptureHow::Manual, &vals)
                .await
                .unwrap_err()
        }
    };
    let missing = capture_as(op.clone(), ORG, values("", &[])).await;
    assert!(
        missing
            .to_string()
            .contains("SU_PASSWORD is missing or empty"),
        "{missing}"
    );
    let blank = capture_as(op.clone(), ORG, values("   ", &[])).await;
    assert!(matches!(blank, EscrowError::Invalid(_)), "{blank}");
    let unknown = capture_as(op.clone(), ORG, values(SU, &[("PATH", "/bin")])).await;
    assert!(
        unknown.to_string().contains("not a field escrow keeps"),
        "{unknown}"
    );
    let bad_org = capture_as(op.clone(), "Acme/x", values(SU, &[])).await;
    assert!(
        bad_org.to_string().contains("organization slug"),
        "{bad_org}"
    );
    let denied = capture_as(viewer.clone(), ORG, values(SU, &[])).await;
    assert!(matches!(denied, EscrowError::Forbidden));
    assert_eq!(count(&e.pool, "escrow_versions").await, 0);
    assert_eq!(count(&e.pool, "escrow_values").await, 0);
    let rows = escrow_rows(&e.pool).await;
    assert_eq!(rows.len(), 1, "only the refusal of the viewer: {rows:?}");
    assert_eq!(
        (rows[0].0.as_str(), rows[0].1.as_str()),
        ("escrow.capture", "denied")
    );

    // Without a key nothing is captured.
    let keyless = Escrow::new(e.pool.clone(), None);
    let err = keyless
        .record_capture(&op, &meta(), ORG, APP, CaptureHow::Manual, &values(SU, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::NoKey), "{err}");
    assert_eq!(count(&e.pool, "escrow_versions").await, 0);
}

/// Flip, move or re-label a ciphertext by SQL: each reveal fails with an error naming the row, and is
/// audited as failed.
#[tokio::test]
async fn tampered_swapped_and_foreign_ciphertexts_fail_clearly() {
    let e = env().await;
    capture(&e, SU, &[]).await;
    e.clock.advance(Duration::minutes(1));
    capture(&e, SU_2, &[]).await;
    // A second cluster, to copy across apps.
    e.escrow
        .record_capture(
            &Actor::cli(),
            &meta(),
            ORG,
            "pg-other",
            CaptureHow::Manual,
            &values(SU, &[]),
        )
        .await
        .unwrap();
    let sealed = |app: &'static str, version: i64, field: &'static str| {
        let pool = e.pool.clone();
        async move {
            sqlx::query_as::<_, (i64, Vec<u8>)>(
                "SELECT id, sealed FROM escrow_values WHERE org = ? AND app = ? AND version = ? AND field = ?",
            )
            .bind(ORG)
            .bind(app)
            .bind(version)
            .bind(field)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let set = |id: i64, blob: Vec<u8>| {
        let pool = e.pool.clone();
        async move {
            sqlx::query("UPDATE escrow_values SET sealed = ? WHERE id = ?")
                .bind(blob)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    };

    // Tampered: one bit of the ciphertext.
    let (id, mut blob) = sealed(APP, 1, "REPL_PASSWORD").await;
    let last = blob.len() - 1;
    blob[last] ^= 1;
    set(id, blob).await;
    let err = reveal(&e.escrow, 1, "REPL_PASSWORD").await.unwrap_err();
    assert!(matches!(err, EscrowError::Unopenable { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!(
            "REPL_PASSWORD of acme/pg-main version 1 (escrow_values row {id})"
        )),
        "{err}"
    );

    // Swapped to another version (same field), another field (same version), another app.
    let (_, v1_su) = sealed(APP, 1, "SU_PASSWORD").await;
    let (v2_su_id, _) = sealed(APP, 2, "SU_PASSWORD").await;
    set(v2_su_id, v1_su.clone()).await;
    let err = reveal(&e.escrow, 2, "SU_PASSWORD").await.unwrap_err();
    assert!(matches!(err, EscrowError::Unopenable { .. }), "{err}");
    let (v1_oper_id, _) = sealed(APP, 1, "OPERATOR_PASSWORD").await;
    set(v1_oper_id, v1_su.clone()).await;
    let err = reveal(&e.escrow, 1, "OPERATOR_PASSWORD").await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("row {v1_oper_id}")),
        "{err}"
    );
    let (other_id, _) = sealed("pg-other", 1, "SU_PASSWORD").await;
    set(other_id, v1_su.clone()).await;
    let op = user(2, "olga", Role::Operator);
    let err = e
        .escrow
        .reveal(&op, &meta(), ORG, "pg-other", 1, "SU_PASSWORD", "drill")
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Unopenable { .. }), "{err}");
    // The original still opens where it belongs.
    assert_eq!(
        reveal(&e.escrow, 1, "SU_PASSWORD")
            .await
            .unwrap()
            .expose_secret(),
        SU
    );

    // A wrong key: the value names a key this keyring does not hold.
    let stranger = with_clock(
        Escrow::new(e.pool.clone(), Some(Keyring::generate().unwrap())),
        &e.clock,
    );
    let err = reveal(&stranger, 1, "SU_PASSWORD").await.unwrap_err();
    let EscrowError::UnknownKey { ref key, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(key, &e.ring.primary_id().to_string());
    assert!(
        err.to_string()
            .contains("SU_PASSWORD of acme/pg-main version 1"),
        "{err}"
    );

    // An unknown key id written into the value.
    let (id, mut blob) = sealed(APP, 2, "REPL_PASSWORD").await;
    blob[1..9].copy_from_slice(&[0xAB; 8]);
    set(id, blob).await;
    let err = reveal(&e.escrow, 2, "REPL_PASSWORD").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("sealed by key abababababababab, which is not configured"),
        "{err}"
    );

    // Each failure was audited as failed, and no value was returned for it.
    let failed = escrow_rows(&e.pool)
        .await
        .into_iter()
        .filter(|r| r.0 == "escrow.reveal" && r.1 == "failed")
        .count();
    assert_eq!(failed, 6);
    assert_no_plaintext(e.dir.path());
}

#[tokio::test]
async fn version_at_answers_the_version_valid_at_a_time() {
    let e = env().await;
    let viewer = user(3, "vera", Role::Viewer);
    let t0 = e.clock.now();
    capture(&e, SU, &[]).await;
    e.clock.advance(Duration::days(1));
    let t1 = e.clock.now();
    capture(&e, SU_2, &[]).await;
    let at = |t: OffsetDateTime| {
        let escrow = e.escrow.clone();
        let viewer = viewer.clone();
        async move {
            escrow
                .version_at(&viewer, &meta(), ORG, APP, t)
                .await
                .unwrap()
                .map(|v| v.version)
        }
    };
    assert_eq!(at(t0 - Duration::seconds(1)).await, None);
    assert_eq!(at(t0).await, Some(1));
    assert_eq!(at(t1 - Duration::milliseconds(1)).await, Some(1));
    assert_eq!(at(t1).await, Some(2));
    assert_eq!(at(t1 + Duration::days(30)).await, Some(2));
    // A version cannot be slipped in before the last one.
    let back = sqlx::query(
        "INSERT INTO escrow_versions (org, app, version, captured_at, captured_by, how) \
         VALUES ('acme', 'pg-main', 3, '2026-01-01T00:00:00.000Z', 'x', 'manual')",
    )
    .execute(&e.pool)
    .await
    .unwrap_err();
    assert!(
        back.to_string().contains("must follow the last one"),
        "{back}"
    );
    let edit = sqlx::query("UPDATE escrow_versions SET captured_by = 'y'")
        .execute(&e.pool)
        .await
        .unwrap_err();
    assert!(edit.to_string().contains("append-only"), "{edit}");
    let edit = sqlx::query("UPDATE escrow_values SET fingerprint = zeroblob(32)")
        .execute(&e.pool)
        .await
        .unwrap_err();
    assert!(edit.to_string().contains("append-only"), "{edit}");
}

#[tokio::test]
async fn reveal_needs_a_reason_and_a_role_and_fails_closed_without_its_audit_row() {
    let e = env().await;
    capture(&e, SU, &[]).await;
    let op = user(2, "olga", Role::Operator);
    let viewer = user(3, "vera", Role::Viewer);
    for reason in ["", "   \n\t"] {
        let err = e
            .escrow
            .reveal(&op, &meta(), ORG, APP, 1, "SU_PASSWORD", reason)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("give a reason"), "{err}");
    }
    let err = e
        .escrow
        .reveal(&viewer, &meta(), ORG, APP, 1, "SU_PASSWORD", "curious")
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Forbidden));
    let err = e
        .escrow
        .reveal(&op, &meta(), ORG, APP, 9, "SU_PASSWORD", "drill")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("no escrowed SU_PASSWORD in version 9"),
        "{err}"
    );

    let secret = e
        .escrow
        .reveal(
            &op,
            &meta(),
            ORG,
            APP,
            1,
            "SU_PASSWORD",
            "  restore drill #12  ",
        )
        .await
        .unwrap();
    assert_eq!(secret.expose_secret(), SU);
    let rows = escrow_rows(&e.pool).await;
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.0 == "escrow.reveal")
        .map(|r| (r.1.as_str(), r.2.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("denied", ""),
            ("denied", ""),
            ("denied", ""),
            ("ok", "restore drill #12")
        ]
    );

    // No audit row, no value.
    sqlx::query(
        "CREATE TRIGGER audit_broken BEFORE INSERT ON audit_log \
         BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END",
    )
    .execute(&e.pool)
    .await
    .unwrap();
    let err = e
        .escrow
        .reveal(&op, &meta(), ORG, APP, 1, "SU_PASSWORD", "drill")
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Audit(_)), "{err}");
    let err = e
        .escrow
        .record_capture(
            &op,
            &meta(),
            ORG,
            APP,
            CaptureHow::Manual,
            &values(SU_2, &[]),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Audit(_)), "{err}");
    assert_eq!(
        count(&e.pool, "escrow_versions").await,
        1,
        "no version without its row"
    );
    sqlx::query("DROP TRIGGER audit_broken")
        .execute(&e.pool)
        .await
        .unwrap();
    assert_eq!(escrow_rows(&e.pool).await.len(), rows.len());
    assert_no_plaintext(e.dir.path());
}

#[tokio::test]
async fn two_person_reveal_is_single_use_within_its_window() {
    let e = env().await;
    capture(&e, SU, &[]).await;
    settings::set_bool(
        &e.pool,
        &Actor::cli(),
        &meta(),
        REQUIRE_REVEAL_APPROVAL,
        true,
    )
    .await
    .unwrap();
    let olga = user(2, "olga", Role::Operator);
    let ada = user(4, "ada", Role::Admin);
    let vera = user(3, "vera", Role::Viewer);

    let err = reveal(&e.escrow, 1, "SU_PASSWORD").await.unwrap_err();
    assert!(matches!(err, EscrowError::ApprovalRequired), "{err}");
    let err = e
        .escrow
        .request_reveal(&olga, &meta(), ORG, APP, 1, "SU_PASSWORD", " ")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("give a reason"), "{err}");

    let req = e
        .escrow
        .request_reveal(
            &olga,
            &meta(),
            ORG,
            APP,
            1,
            "SU_PASSWORD",
            "restore after incident 7",
        )
        .await
        .unwrap();
    let err = e
        .escrow
        .reveal_approved(&olga, &meta(), req.id)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::NotApproved), "{err}");
    let err = e.escrow.approve(&olga, &meta(), req.id).await.unwrap_err();
    assert!(matches!(err, EscrowError::SelfApproval), "{err}");
    let err = e.escrow.approve(&vera, &meta(), req.id).await.unwrap_err();
    assert!(matches!(err, EscrowError::Forbidden), "{err}");
    // The database refuses a self-approval too, whatever the code does.
    let raw = sqlx::query(
        "UPDATE escrow_reveal_requests SET approver_id = 2, approver_name = 'olga', \
         approved_at = '2026-12-01T10:00:00.000Z', expires_at = '2026-12-01T10:15:00.000Z' WHERE id = ?",
    )
    .bind(req.id)
    .execute(&e.pool)
    .await;
    assert!(raw.is_err());

    let open = e.escrow.open_requests(&ada, &meta()).await.unwrap();
    assert_eq!(open.iter().map(|r| r.id).collect::<Vec<_>>(), [req.id]);
    assert_eq!(open[0].reason, "restore after incident 7");
    let approved = e.escrow.approve(&ada, &meta(), req.id).await.unwrap();
    assert_eq!(approved.approver.as_deref(), Some("ada"));
    let err = e.escrow.approve(&ada, &meta(), req.id).await.unwrap_err();
    assert!(matches!(err, EscrowError::AlreadyApproved), "{err}");
    let err = e
        .escrow
        .reveal_approved(&ada, &meta(), req.id)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::NotYourRequest), "{err}");
    e.clock.advance(Duration::minutes(14));
    let secret = e
        .escrow
        .reveal_approved(&olga, &meta(), req.id)
        .await
        .unwrap();
    assert_eq!(secret.expose_secret(), SU);
    let err = e
        .escrow
        .reveal_approved(&olga, &meta(), req.id)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::RequestUsed), "{err}");

    // Approved but not used within 15 minutes.
    let late = e
        .escrow
        .request_reveal(
            &olga,
            &meta(),
            ORG,
            APP,
            1,
            "REPL_PASSWORD",
            "replica rebuild",
        )
        .await
        .unwrap();
    e.escrow.approve(&ada, &meta(), late.id).await.unwrap();
    e.clock.advance(Duration::minutes(16));
    let err = e
        .escrow
        .reveal_approved(&olga, &meta(), late.id)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::RequestExpired), "{err}");
    assert!(e
        .escrow
        .request(late.id)
        .await
        .unwrap()
        .expired_at
        .is_some());

    // Never approved: ages out; the sweep records it, an approval afterwards is refused.
    let stale = e
        .escrow
        .request_reveal(&olga, &meta(), ORG, APP, 1, "OPERATOR_PASSWORD", "audit")
        .await
        .unwrap();
    e.clock.advance(Duration::hours(25));
    assert_eq!(
        e.escrow
            .expire_requests(&Actor::cli(), &meta())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        e.escrow
            .expire_requests(&Actor::cli(), &meta())
            .await
            .unwrap(),
        0
    );
    let err = e.escrow.approve(&ada, &meta(), stale.id).await.unwrap_err();
    assert!(matches!(err, EscrowError::RequestExpired), "{err}");

    let rows: Vec<(String, String, Option<String>)> = escrow_rows(&e.pool)
        .await
        .into_iter()
        .filter(|r| r.0 != "escrow.capture")
        .map(|r| {
            let refused = r.3.and_then(|d| {
                serde_json::from_str::<serde_json::Value>(&d).ok()?["refused"]
                    .as_str()
                    .map(str::to_owned)
            });
            (r.0, r.1, refused)
        })
        .collect();
    let expect =
        |a: &str, o: &str, r: Option<&str>| (a.to_owned(), o.to_owned(), r.map(str::to_owned));
    assert_eq!(
        rows,
        [
            expect("escrow.reveal", "denied", Some("approval required")),
            expect("escrow.reveal_request", "ok", None),
            expect("escrow.reveal", "denied", Some("not approved")),
            expect("escrow.reveal_approve", "denied", Some("self-approval")),
            expect("escrow.reveal_approve", "denied", None), // the viewer's role
            expect("escrow.reveal_approve", "ok", None),
            expect("escrow.reveal_approve", "denied", Some("already approved")),
            expect("escrow.reveal", "denied", Some("not the requester")),
            expect("escrow.reveal", "ok", None),
            expect("escrow.reveal", "denied", Some("already used")),
            expect("escrow.reveal_request", "ok", None),
            expect("escrow.reveal_approve", "ok", None),
            expect("escrow.reveal", "denied", Some("expired")),
            expect("escrow.reveal_request", "ok", None),
            expect("escrow.reveal_expire", "ok", None),
            expect("escrow.reveal_approve", "denied", Some("expired")),
        ]
    );
    // The reason travels with every row of the request.
    let reasons: Vec<Option<String>> = escrow_rows(&e.pool)
        .await
        .into_iter()
        .filter(|r| r.0 == "escrow.reveal" && r.1 == "ok")
        .map(|r| r.2)
        .collect();
    assert_eq!(reasons, [Some("restore after incident 7".to_owned())]);
    assert_no_plaintext(e.dir.path());
}

#[tokio::test]
async fn keys_rotate_reseals_escrow_and_captures_still_compare() {
    let e = env().await;
    capture(&e, SU, &[("AWS_SECRET_ACCESS_KEY", AWS_KEY)]).await;
    let before: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM escrow_values ORDER BY id")
        .fetch_all(&e.pool)
        .await
        .unwrap();

    let new_key = SealKey::generate().unwrap();
    let rotated = Keyring::new(new_key.clone()).with_retired(e.key.clone());
    let status = rotation::status(&e.pool, &rotated, &Actor::cli())
        .await
        .unwrap();
    assert_eq!(
        status.columns["escrow_values.sealed"].values().sum::<u64>(),
        4
    );
    let report = rotation::rotate(&e.pool, &rotated, &Actor::cli(), &meta())
        .await
        .unwrap();
    assert_eq!(report.total(), 4);
    let after: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM escrow_values ORDER BY id")
        .fetch_all(&e.pool)
        .await
        .unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a);
        assert_eq!(Keyring::key_id_of(a), Some(new_key.id()));
    }

    // The new key alone opens everything.
    let only_new = with_clock(
        Escrow::new(e.pool.clone(), Some(Keyring::new(new_key.clone()))),
        &e.clock,
    );
    assert_eq!(
        reveal(&only_new, 1, "SU_PASSWORD")
            .await
            .unwrap()
            .expose_secret(),
        SU
    );
    assert_eq!(
        reveal(&only_new, 1, "AWS_SECRET_ACCESS_KEY")
            .await
            .unwrap()
            .expose_secret(),
        AWS_KEY
    );
    // The fingerprints were made by the old key; an unchanged capture under the new key is still unchanged.
    e.clock.advance(Duration::hours(1));
    let same = only_new
        .record_capture(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            CaptureHow::Exec,
            &values(SU, &[("AWS_SECRET_ACCESS_KEY", AWS_KEY)]),
        )
        .await
        .unwrap();
    assert!(!same.created, "{same:?}");
    let changed = only_new
        .record_capture(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            CaptureHow::Exec,
            &values(SU_2, &[]),
        )
        .await
        .unwrap();
    assert_eq!(changed.changed, ["SU_PASSWORD"]);
    assert!(
        rotation::rotate(&e.pool, &Keyring::new(new_key), &Actor::cli(), &meta())
            .await
            .unwrap()
            .audit_id
            .is_none()
    );
    assert_no_plaintext(e.dir.path());
    e.pool.close().await;
    assert_no_plaintext(e.dir.path());
}

/// The scan finds a value that is stored in plaintext (so its silence elsewhere means something).
#[tokio::test]
async fn the_plaintext_scan_finds_what_is_there() {
    let e = env().await;
    capture(&e, SU, &[]).await;
    assert_no_plaintext(e.dir.path());
    sqlx::query("INSERT INTO settings (key, value, updated_at) VALUES ('scan_probe', ?, '2026-12-01T00:00:00.000Z')")
        .bind(OPER)
        .execute(&e.pool)
        .await
        .unwrap();
    assert_eq!(plaintext_in(e.dir.path()).map(|f| f.0), Some(OPER));
}

/// Viewers list versions and proofs; anonymous callers are refused and the refusal is audited; proofs are
/// recorded with their audit row, and the latest per role is what the cluster page shows.
#[tokio::test]
async fn proofs_are_recorded_and_listing_needs_a_role() {
    let e = env().await;
    capture(&e, SU, &[]).await;
    let viewer = user(3, "vera", Role::Viewer);
    let err = e
        .escrow
        .versions(&Actor::Anonymous, &meta(), ORG, APP)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Forbidden));
    let err = e
        .escrow
        .record_proof(&viewer, &meta(), ORG, APP, 1, "postgres", true, None)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::Forbidden));
    let err = e
        .escrow
        .record_proof(&Actor::cli(), &meta(), ORG, APP, 1, "root", true, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("flypgadmin, repluser or postgres"),
        "{err}"
    );
    let err = e
        .escrow
        .record_proof(&Actor::cli(), &meta(), ORG, APP, 5, "postgres", true, None)
        .await
        .unwrap_err();
    assert!(matches!(err, EscrowError::NotFound { .. }), "{err}");

    for role in ["flypgadmin", "repluser", "postgres"] {
        e.escrow
            .record_proof(&Actor::cli(), &meta(), ORG, APP, 1, role, true, None)
            .await
            .unwrap();
    }
    e.clock.advance(Duration::hours(1));
    e.escrow
        .record_proof(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            1,
            "repluser",
            false,
            Some("password authentication failed for user \"repluser\""),
        )
        .await
        .unwrap();
    let proofs = e
        .escrow
        .latest_proofs(&viewer, &meta(), ORG, APP)
        .await
        .unwrap();
    let summary: Vec<(&str, bool)> = proofs.iter().map(|p| (p.role.as_str(), p.ok)).collect();
    assert_eq!(
        summary,
        [
            ("flypgadmin", true),
            ("postgres", true),
            ("repluser", false)
        ]
    );
    let rows = escrow_rows(&e.pool).await;
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.0 != "escrow.capture")
        .map(|r| (r.0.as_str(), r.1.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("escrow.list", "denied"),
            ("escrow.proof", "denied"),
            ("escrow.proof", "ok"),
            ("escrow.proof", "ok"),
            ("escrow.proof", "ok"),
            ("escrow.proof", "failed"),
        ]
    );
}

/// The façade hands out the service, sealing with its keyring.
#[tokio::test]
async fn walden_escrow_is_the_service_with_the_facades_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let walden = walden_core::Walden::open(
        dir.path(),
        walden_core::WaldenOptions {
            hash: walden_core::users::HashParams::TEST,
            keyring: Some(Keyring::generate().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let out = walden
        .escrow()
        .record_capture(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            CaptureHow::ManualMachinesDown,
            &values(SU, &[]),
        )
        .await
        .unwrap();
    assert_eq!(out.version, 1);
    let listed = walden
        .escrow()
        .versions(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    assert_eq!(listed[0].how, CaptureHow::ManualMachinesDown);
    let secret = walden
        .escrow()
        .reveal(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            1,
            "OPERATOR_PASSWORD",
            "drill",
        )
        .await
        .unwrap();
    assert_eq!(secret.expose_secret(), OPER);
    walden.close().await;
    assert_no_plaintext(dir.path());
}

/// Captures running while `keys rotate` runs lose nothing: versions stay gap-free, and afterwards every value
/// of every version opens under the new key alone.
#[tokio::test]
async fn captures_during_a_rotation_lose_nothing() {
    let e = env().await;
    capture(&e, SU, &[]).await;
    let new_key = SealKey::generate().unwrap();
    let ring = Keyring::new(new_key.clone()).with_retired(e.key.clone());
    let during = with_clock(Escrow::new(e.pool.clone(), Some(ring.clone())), &e.clock);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let escrow = if i % 2 == 0 {
            e.escrow.clone()
        } else {
            during.clone()
        };
        tasks.push(tokio::spawn(async move {
            let su = if i % 2 == 0 { SU_2 } else { SU };
            escrow
                .record_capture(
                    &Actor::cli(),
                    &meta(),
                    ORG,
                    APP,
                    CaptureHow::Exec,
                    &values(su, &[]),
                )
                .await
                .unwrap()
        }));
    }
    let pool = e.pool.clone();
    let rotate_ring = ring.clone();
    let rotation = tokio::spawn(async move {
        rotation::rotate(&pool, &rotate_ring, &Actor::cli(), &meta())
            .await
            .unwrap()
    });
    for t in tasks {
        t.await.unwrap();
    }
    rotation.await.unwrap();
    // Values sealed by the old key after the rotation's transaction are re-sealed by a second run.
    rotation::rotate(&e.pool, &ring, &Actor::cli(), &meta())
        .await
        .unwrap();
    let status = rotation::status(&e.pool, &ring, &Actor::cli())
        .await
        .unwrap();
    assert_eq!(status.pending(), 0);

    let only_new = with_clock(
        Escrow::new(e.pool.clone(), Some(Keyring::new(new_key))),
        &e.clock,
    );
    let versions = only_new
        .versions(&Actor::cli(), &meta(), ORG, APP)
        .await
        .unwrap();
    let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>());
    for v in &versions {
        for f in &v.fields {
            let secret = reveal(&only_new, v.version, &f.field).await.unwrap();
            assert!(ALL.contains(&secret.expose_secret()), "{}", f.field);
        }
    }
    assert_no_plaintext(e.dir.path());
}
