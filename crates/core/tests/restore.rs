//! The restore's pre-flight plan (`core::restore`) against flysim over loopback HTTP: a seeded Stolon cluster
//! (flysim's demo seed: 26 h of WAL, base backups 1 h, 13 h and 25 h in), tracked, its credentials escrowed
//! hours before the history's end (a clock-shifted capture), Walden on a real SQLite file (`support::restore`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

mod support;

use std::collections::BTreeMap;

use fly::{ListMachines, StopRequest, UpdateMachineRequest};
use secrecy::SecretString;
use support::restore::*;
use time::Duration;
use walden_core::access::Actor;
use walden_core::audit::{self, AuditFilter};
use walden_core::restore::{RestoreError, RestoreRequest, RestoreTarget};

async fn refused(f: &Fixture, req: &RestoreRequest) -> Vec<String> {
    match f
        .walden
        .restores()
        .preflight(&Actor::cli(), &meta(), req)
        .await
    {
        Ok(p) => panic!("expected a refusal, got a plan of {}", p.backup.name),
        Err(r) => r.codes().into_iter().map(str::to_owned).collect(),
    }
}

/// Time, before-the-newest, latest, LSN and named targets each pick the right backup; the hash is stable and
/// follows the target; nothing is created on the emulator; the stored plan and its audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_pick_the_backup_and_change_nothing_on_fly() {
    let f = fixture(30).await;
    let before = fly_state(&f.client).await;
    let restores = f.walden.restores();
    let (old, new) = (
        &f.backups[f.backups.len() - 2],
        &f.backups[f.backups.len() - 1],
    );
    let new_finish = new.finish_time.unwrap();
    let plan = |t| {
        let r = restores.clone();
        async move {
            r.preflight(&Actor::cli(), &meta(), &request(t, "prod-db-restored"))
                .await
                .unwrap()
        }
    };

    let p = plan(at(new_finish + Duration::minutes(10))).await;
    assert_eq!(
        p.backup.name, new.name,
        "a time after the newest backup picks it"
    );
    assert!(p.recovery.recovery_target_time.is_some());
    let before_newest = plan(at(new_finish - Duration::minutes(10))).await;
    assert_eq!(
        before_newest.backup.name, old.name,
        "a time before the newest backup picks the older one"
    );
    assert_eq!(plan(RestoreTarget::Latest).await.backup.name, new.name);
    let lsn = walg::Lsn(new.finish_lsn.unwrap() + 1).to_string();
    assert_eq!(plan(RestoreTarget::Lsn { lsn }).await.backup.name, new.name);
    let named = plan(RestoreTarget::Backup {
        name: old.name.clone(),
    })
    .await;
    assert_eq!(named.backup.name, old.name);
    assert_eq!(named.recovery.recovery_target.as_deref(), Some("immediate"));

    // What the plan says.
    assert_eq!(p.destination.region, "iad");
    assert!(p.destination.memory_mb >= 512);
    assert_ne!(p.destination.walg_prefix, "");
    assert!(
        !p.destination.walg_prefix.ends_with(&format!("/{APP}")),
        "never the source's prefix"
    );
    assert!(
        p.pg_parameters.source.contains("clusterdata read"),
        "{}",
        p.pg_parameters.source
    );
    assert!(p.pg_parameters.values["archive_command"].contains("ENABLE_WALG"));
    assert!(p.escrow.version >= 1);
    let text = p.canonical();
    for secret in ["Zq81xKp2", "Lw73Hs0", "Vb55nQe9"] {
        assert!(!text.contains(secret), "no escrowed password in the plan");
    }
    assert!(text.contains("<escrowed SU password"));
    assert!(text.contains(&format!("wal-g backup-fetch %d {}", new.name)));

    // The hash: same inputs, same hash; another target, another hash.
    let again = plan(at(new_finish + Duration::minutes(10))).await;
    assert_eq!(p.hash(), again.hash());
    assert_ne!(p.hash(), before_newest.hash());

    // Stored with its audit row.
    let stored = restores
        .plan(
            &Actor::cli(),
            &meta(),
            &request(at(new_finish + Duration::minutes(10)), "prod-db-restored"),
        )
        .await
        .unwrap();
    assert_eq!(stored.hash, p.hash());
    assert_eq!(
        restores.stored(&stored.hash).await.unwrap().unwrap().plan,
        p
    );
    let rows = audit::query(f.walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    let row = rows
        .iter()
        .find(|r| r.action == "restore.plan")
        .expect("a restore.plan row");
    assert_eq!(row.outcome, "ok");

    assert_eq!(
        fly_state(&f.client).await,
        before,
        "no plan creates or changes anything on Fly"
    );
}

/// A taken name, an unknown region, 256 MB and a target after the last commit: every reason at once, and
/// the refusal audited; a bad name on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reason_together() {
    let f = fixture(30).await;
    f.client
        .create_app(&fly::CreateAppRequest {
            name: "taken-db".into(),
            org_slug: ORG.into(),
            network: None,
            enable_subdomains: None,
            app_role_id: None,
        })
        .await
        .unwrap();
    let before = fly_state(&f.client).await;
    let after_last = f.last_commit.unwrap_or(f.sim.now()) + Duration::seconds(1);
    let mut req = request(at(after_last), "taken-db");
    req.destination.region = Some("xyz".into());
    req.destination.memory_mb = Some(256);
    let codes = refused(&f, &req).await;
    for code in ["name_taken", "unknown_region"] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }
    // flysim's WAL has no records, so its last commit is unknown: past the newest WAL is refused here; the
    // last commit read from real WAL has its own test below.
    assert!(
        codes
            .iter()
            .any(|c| c == "after_last_commit" || c == "after_latest"),
        "{codes:?}"
    );
    // With a good target the size rule shows too.
    let mut small = request(RestoreTarget::Latest, "taken-db");
    small.destination.memory_mb = Some(256);
    small.destination.volume_gb = Some(0);
    let codes = refused(&f, &small).await;
    for code in ["name_taken", "memory_too_small", "volume_too_small"] {
        assert!(codes.iter().any(|c| c == code), "{code} in {codes:?}");
    }
    assert_eq!(
        refused(&f, &request(RestoreTarget::Latest, "Bad_Name")).await,
        vec!["bad_name"]
    );
    let mut untracked = request(RestoreTarget::Latest, "new-db");
    untracked.source.app = "other-db".into();
    assert_eq!(refused(&f, &untracked).await, vec!["not_tracked"]);

    match f.walden.restores().plan(&Actor::cli(), &meta(), &req).await {
        Err(RestoreError::Refused(r)) => assert!(r.to_string().contains("taken-db")),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let rows = audit::query(f.walden.pool(), &AuditFilter::default(), None, 1000)
        .await
        .unwrap()
        .rows;
    assert!(rows
        .iter()
        .any(|r| r.action == "restore.plan" && r.outcome == "failed"));
    assert_eq!(fly_state(&f.client).await, before);
}

/// Credentials escrowed only after the target: refused (latest uses the newest version: planned); with every
/// source machine stopped the plan says which pgParameters it used instead; a source image of another major:
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_escrow_at_target_source_down_and_another_major() {
    let f = fixture(5).await;
    let old = &f.backups[f.backups.len() - 2];
    let t = old.finish_time.unwrap() + Duration::minutes(10);
    let codes = refused(&f, &request(at(t), "new-db")).await;
    assert!(
        codes.contains(&"no_escrow_at_target".to_owned()),
        "{codes:?}"
    );
    let restores = f.walden.restores();
    let latest = request(RestoreTarget::Latest, "new-db");
    let up = restores
        .preflight(&Actor::cli(), &meta(), &latest)
        .await
        .unwrap();
    assert_eq!(
        up.escrow.valid_at,
        "the end of the archived WAL (the newest version)"
    );

    let machines = f
        .client
        .list_machines(APP, &ListMachines::default())
        .await
        .unwrap();
    for m in &machines {
        f.client
            .stop_machine(APP, &m.id, &StopRequest::default(), None)
            .await
            .unwrap();
    }
    let down = restores
        .preflight(&Actor::cli(), &meta(), &latest)
        .await
        .unwrap();
    assert!(
        down.pg_parameters.source.contains("no reachable leader"),
        "{}",
        down.pg_parameters.source
    );
    assert_eq!(down.pg_parameters.values["max_connections"], "300");
    assert_ne!(
        down.hash(),
        up.hash(),
        "the parameters' source is part of the plan"
    );

    for m in machines {
        let mut config = m.config.clone().unwrap();
        config.image = Some("flyio/postgres:15.2".into());
        let update = UpdateMachineRequest {
            config,
            ..Default::default()
        };
        f.client
            .update_machine(APP, &m.id, &update, None)
            .await
            .unwrap();
    }
    let codes = refused(&f, &latest).await;
    assert!(codes.contains(&"major_mismatch".to_owned()), "{codes:?}");
}

/// flysim's WAL segments hold no records, so the last commit is read from a bucket with real WAL
/// (`walg::testkit::real_wal_builder`), named by credentials typed in an hour before its history: a time after
/// the last archived commit is refused (PostgreSQL would never finish), one before it is planned. Then a
/// version whose SU password holds a quote: refused, naming the field, never the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_last_commit_and_passwords_the_image_cannot_survive_are_refused() {
    // walg's testkit writes PostgreSQL 16 backups: the source runs 16 too.
    let f = bare_fixture(Some("flyio/postgres:16.2")).await;
    let bucket = tempfile::tempdir().unwrap();
    let base = f.sim.now().replace_nanosecond(0).unwrap() - Duration::hours(2);
    let (builder, commit) = walg::testkit::real_wal_builder(base);
    builder.write_dir(bucket.path()).unwrap();
    let prefix = bucket.path().display().to_string();
    let values = |su: &str| -> BTreeMap<String, SecretString> {
        [
            ("SU_PASSWORD", su),
            ("REPL_PASSWORD", "ReplPassword4Restore"),
            ("OPERATOR_PASSWORD", "OpPassword4Restore"),
            ("WALG_FILE_PREFIX", prefix.as_str()),
            ("WALG_PG_WAL_SIZE", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), SecretString::from(v.to_owned())))
        .collect()
    };
    escrow_at(&f.walden, base - Duration::hours(1))
        .enter_manually(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            &values("SuPassword4Restore"),
        )
        .await
        .unwrap();

    let codes = refused(&f, &request(at(commit + Duration::minutes(9)), "new-db")).await;
    assert_eq!(codes, vec!["after_last_commit"]);
    let plan = f
        .walden
        .restores()
        .preflight(
            &Actor::cli(),
            &meta(),
            &request(at(commit - Duration::minutes(1)), "new-db"),
        )
        .await
        .unwrap();
    assert_eq!(plan.wal.to, "000000010000000000000005");
    assert_eq!(plan.destination.walg_prefix_variable, "WALG_FILE_PREFIX");
    assert!(!plan.destination.walg_prefix.starts_with("file://"));
    assert_ne!(
        plan.destination.walg_prefix,
        bucket.path().display().to_string()
    );

    escrow_at(&f.walden, base - Duration::minutes(30))
        .enter_manually(
            &Actor::cli(),
            &meta(),
            ORG,
            APP,
            &values("it'sQuoted4Restore"),
        )
        .await
        .unwrap();
    let refusal = f
        .walden
        .restores()
        .preflight(
            &Actor::cli(),
            &meta(),
            &request(at(commit - Duration::minutes(1)), "new-db"),
        )
        .await
        .unwrap_err();
    assert_eq!(refusal.codes(), vec!["password_breaks_image"]);
    let text = refusal.to_string();
    assert!(
        text.contains("SU_PASSWORD") && text.contains("unlock.go"),
        "{text}"
    );
    assert!(!text.contains("it'sQuoted"), "{text}");
}
