//! Signed checkpoints against real SQLite files and a real directory sink: the security review's three tamper
//! cases that the chain alone cannot see (H1), an unknown key, a missing interval, a removed checkpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use std::collections::HashMap;
use std::time::Duration;

use sqlx::SqlitePool;
use walden_core::audit::{self, Actor, AuditFilter, Event, Outcome, RequestMeta};
use walden_core::audit_checkpoints::{
    self as checkpoints, CheckpointBody, CheckpointKey, CheckpointReport, Checkpointer, Finding,
    Reason, Sink, FORMAT,
};
use walden_core::db;

mod support;

struct Fixture {
    _dir: tempfile::TempDir,
    /// The data directory (the database file is `db::DB_FILE` in it).
    data: std::path::PathBuf,
    pool: SqlitePool,
    sink: Sink,
    key: CheckpointKey,
    writer: Checkpointer,
}

fn new_key() -> CheckpointKey {
    CheckpointKey::from_hex(&CheckpointKey::generate_hex().unwrap()).unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pool = db::open(&data).await.unwrap();
    let sink = Sink::directory(&dir.path().join("checkpoints")).unwrap();
    let key = new_key();
    let writer = Checkpointer::new(
        pool.clone(),
        key.clone(),
        sink.clone(),
        Duration::from_secs(300),
        5,
    );
    Fixture {
        _dir: dir,
        data,
        pool,
        sink,
        key,
        writer,
    }
}

async fn fill(pool: &SqlitePool, n: usize) {
    for i in 0..n {
        let ev = Event::new("user.totp_disable", Outcome::Denied).subject(format!("user:{i}"));
        audit::record(pool, &Actor::cli(), &RequestMeta::default(), &ev)
            .await
            .unwrap();
    }
}

async fn check(f: &Fixture) -> CheckpointReport {
    checkpoints::verify(&f.pool, &f.sink, &[f.key.public_key()], None)
        .await
        .unwrap()
}

/// A log of 70 rows with checkpoints at 20, 40 and 70 rows.
async fn seventy_rows() -> Fixture {
    let f = fixture().await;
    fill(&f.pool, 20).await;
    f.writer.write(Reason::Rows).await.unwrap();
    fill(&f.pool, 20).await;
    f.writer.write(Reason::Rows).await.unwrap();
    fill(&f.pool, 30).await;
    f.writer.write(Reason::Interval).await.unwrap();
    f
}

#[tokio::test]
async fn an_intact_log_passes() {
    let f = seventy_rows().await;
    assert!(audit::verify(&f.pool).await.unwrap().is_intact());
    let r = check(&f).await;
    assert!(r.is_intact(), "{r:?}");
    assert_eq!((r.checkpoints, r.trusted, r.confirmed_through), (3, 3, 70));
    // More rows after the last checkpoint are fine: they are simply not confirmed yet.
    fill(&f.pool, 2).await;
    assert!(check(&f).await.is_intact());
}

/// Review H1, case 1: delete the last 3 rows AND set sqlite_sequence back. The chain alone says intact.
#[tokio::test]
async fn a_tail_cut_with_the_sequence_edited_is_found() {
    let f = seventy_rows().await;
    support::tamper(&f.data,
        "DELETE FROM audit_log WHERE id > 67; UPDATE sqlite_sequence SET seq = 67 WHERE name = 'audit_log';",
    )
    .await;
    let chain = audit::verify(&f.pool).await.unwrap();
    assert!(chain.is_intact(), "the chain cannot see this: {chain:?}");
    let r = check(&f).await;
    assert_eq!(r.findings.len(), 1, "{r:?}");
    let Finding::Cut {
        head_id,
        log_ends_at,
        ..
    } = &r.findings[0]
    else {
        panic!("{r:?}")
    };
    assert_eq!((*head_id, *log_ends_at), (70, 67));
    assert!(r.findings[0].to_string().contains("3 rows missing"));
}

/// Review H1, case 2: rewrite an early row and recompute every later hash with the chain's own function.
#[tokio::test]
async fn a_recomputed_rewrite_is_found_with_the_rows_it_touched() {
    let f = seventy_rows().await;
    let mut conn = support::attacker(&f.data).await;
    sqlx::raw_sql(&format!(
        "{} UPDATE audit_log SET actor_name = '(system:cli)', outcome = 'ok' WHERE id = 25;",
        support::DROP_TRIGGERS
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let rows = audit::query(&f.pool, &AuditFilter::default(), None, 500)
        .await
        .unwrap()
        .rows;
    let mut prev: [u8; 32] = hex::decode(&rows.iter().find(|r| r.id == 24).unwrap().hash)
        .unwrap()
        .try_into()
        .unwrap();
    for row in rows.iter().rev().filter(|r| r.id >= 25) {
        let hash = audit::canonical_hash(
            &prev,
            &audit::RowRef {
                id: row.id,
                at: &row.at,
                actor_id: row.actor_id,
                actor_name: &row.actor_name,
                action: &row.action,
                cluster_id: row.cluster_id.as_deref(),
                app_name: row.app_name.as_deref(),
                run_id: row.run_id.as_deref(),
                subject: row.subject.as_deref(),
                reason: row.reason.as_deref(),
                outcome: &row.outcome,
                request_id: row.request_id.as_deref(),
                client_ip: row.client_ip.as_deref(),
                detail: row.detail.as_deref(),
            },
        );
        sqlx::query("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE id = ?")
            .bind(&prev[..])
            .bind(&hash[..])
            .bind(row.id)
            .execute(&mut conn)
            .await
            .unwrap();
        prev = hash;
    }
    sqlx::raw_sql(support::TRIGGERS)
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let chain = audit::verify(&f.pool).await.unwrap();
    assert!(chain.is_intact(), "the chain cannot see this: {chain:?}");

    let r = check(&f).await;
    assert_eq!(r.findings.len(), 1, "{r:?}");
    let Finding::Rewritten {
        head_id,
        last_matching,
        ..
    } = &r.findings[0]
    else {
        panic!("{r:?}")
    };
    // Row 25 lies between the checkpoint at 20 (still matching) and the one at 40 (no longer).
    assert_eq!((*last_matching, *head_id), (20, 40));
    assert!(r.findings[0].to_string().contains("rows 21..40"));
    assert_eq!(r.confirmed_through, 20);
}

/// Review H1, case 3: delete every row and the sqlite_sequence row. The chain alone says "empty".
#[tokio::test]
async fn a_wiped_log_is_found() {
    let f = seventy_rows().await;
    support::tamper(
        &f.data,
        "DELETE FROM audit_log; DELETE FROM sqlite_sequence WHERE name = 'audit_log';",
    )
    .await;
    let chain = audit::verify(&f.pool).await.unwrap();
    assert!(chain.is_intact() && chain.rows == 0, "{chain:?}");
    let r = check(&f).await;
    assert_eq!(r.findings.len(), 1, "{r:?}");
    assert!(
        matches!(&r.findings[0], Finding::Wiped { head_id: 70, .. }),
        "{r:?}"
    );
    assert!(r.findings[0].to_string().contains("WIPED"));
}

#[tokio::test]
async fn a_checkpoint_signed_by_an_unknown_key_is_reported() {
    let f = seventy_rows().await;
    let stranger = Checkpointer::new(
        f.pool.clone(),
        new_key(),
        f.sink.clone(),
        Duration::from_secs(300),
        5,
    );
    let planted = stranger.write(Reason::Manual).await.unwrap();
    let r = check(&f).await;
    assert_eq!(
        r.findings,
        vec![Finding::UnknownKey {
            name: planted.name,
            key_id: stranger.key().id().to_owned(),
        }]
    );
    assert!(r.findings[0].to_string().contains("unknown key"));
    // A checkpoint that claims our key but was changed does not verify.
    let mut forged = planted.checkpoint.clone();
    forged.body.key_id = f.key.id().to_owned();
    forged.body.seq = 99;
    let name = f.sink.put(&forged).await.unwrap();
    let r = check(&f).await;
    assert!(
        r.findings.contains(&Finding::BadSignature {
            name,
            key_id: f.key.id().to_owned()
        }),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_rotated_key_continues_the_chain_and_old_checkpoints_need_the_old_key() {
    let f = seventy_rows().await;
    let new = new_key();
    let rotated = Checkpointer::new(
        f.pool.clone(),
        new.clone(),
        f.sink.clone(),
        Duration::from_secs(300),
        5,
    );
    let first = rotated.write(Reason::Start).await.unwrap();
    assert_eq!(first.checkpoint.body.seq, 4);
    let both = [f.key.public_key(), new.public_key()];
    let r = checkpoints::verify(&f.pool, &f.sink, &both, None)
        .await
        .unwrap();
    assert!(r.is_intact(), "{r:?}");
    let r = checkpoints::verify(&f.pool, &f.sink, &[new.public_key()], None)
        .await
        .unwrap();
    assert_eq!(r.findings.len(), 3, "the old key's three: {r:?}");
    assert!(r
        .findings
        .iter()
        .all(|x| matches!(x, Finding::UnknownKey { key_id, .. } if key_id == f.key.id())));
}

/// Checkpoints written by hand at chosen times, chained as the writer chains them.
async fn chain_at(f: &Fixture, plan: &[(&str, Reason)]) -> Vec<String> {
    let mut previous: Option<String> = None;
    let mut names = Vec::new();
    for (i, (at, reason)) in plan.iter().enumerate() {
        let cp = f.key.sign(CheckpointBody {
            format: FORMAT.into(),
            key_id: f.key.id().into(),
            seq: i as u64 + 1,
            reason: *reason,
            written_at: (*at).into(),
            interval_secs: 300,
            head_id: 0,
            head_hash: None,
            rows: 0,
            previous: previous.clone(),
        });
        previous = Some(cp.signature.clone());
        names.push(f.sink.put(&cp).await.unwrap());
    }
    names
}

#[tokio::test]
async fn a_missing_interval_is_reported_but_not_a_clean_shutdown() {
    let f = fixture().await;
    chain_at(
        &f,
        &[
            ("2026-11-30T10:00:00.000Z", Reason::Start),
            ("2026-11-30T10:05:00.000Z", Reason::Interval),
            // 10:10 and 10:15 never came.
            ("2026-11-30T10:20:00.000Z", Reason::Interval),
            ("2026-11-30T10:21:00.000Z", Reason::Shutdown),
            // Stopped cleanly overnight: not a missing interval.
            ("2026-12-01T08:00:00.000Z", Reason::Start),
            ("2026-12-01T08:05:00.000Z", Reason::Interval),
            // Killed without a shutdown checkpoint, started again an hour later: a missing interval.
            ("2026-12-01T09:05:00.000Z", Reason::Start),
        ],
    )
    .await;
    let r = check(&f).await;
    assert_eq!(
        r.findings,
        vec![
            Finding::MissingInterval {
                from: "2026-11-30T10:05:00.000Z".into(),
                to: "2026-11-30T10:20:00.000Z".into(),
                restarted: false,
            },
            Finding::MissingInterval {
                from: "2026-12-01T08:05:00.000Z".into(),
                to: "2026-12-01T09:05:00.000Z".into(),
                restarted: true,
            }
        ]
    );
    assert!(r.findings[0].to_string().contains(
        "missing checkpoint interval from 2026-11-30T10:05:00.000Z to 2026-11-30T10:20:00.000Z"
    ));
    // Checked against the clock, an overdue newest checkpoint is a missing interval too.
    let later = time::macros::datetime!(2026-12-01 10:00 UTC);
    let r = checkpoints::verify(&f.pool, &f.sink, &[f.key.public_key()], Some(later))
        .await
        .unwrap();
    assert_eq!(r.findings.len(), 3, "{r:?}");
}

#[tokio::test]
async fn a_removed_checkpoint_breaks_the_chain_of_checkpoints() {
    let f = fixture().await;
    let names = chain_at(
        &f,
        &[
            ("2026-11-30T10:00:00.000Z", Reason::Start),
            ("2026-11-30T10:05:00.000Z", Reason::Interval),
            ("2026-11-30T10:09:00.000Z", Reason::Interval),
        ],
    )
    .await;
    let dir = f.sink.local_dir().unwrap().to_owned();
    std::fs::remove_file(dir.join(&names[1])).unwrap();
    let r = check(&f).await;
    assert_eq!(
        r.findings,
        vec![Finding::Unchained {
            name: names[2].clone(),
            after: names[0].clone(),
        }]
    );
}

#[tokio::test]
async fn checkpoints_are_due_after_n_rows_and_chain_across_restarts() {
    let f = fixture().await;
    assert!(!f.writer.rows_due().await.unwrap());
    let first = f.writer.write(Reason::Start).await.unwrap();
    assert_eq!(
        (first.checkpoint.body.seq, first.checkpoint.body.head_id),
        (1, 0)
    );
    fill(&f.pool, 4).await;
    assert!(!f.writer.rows_due().await.unwrap());
    fill(&f.pool, 1).await;
    assert!(f.writer.rows_due().await.unwrap());
    f.writer.write(Reason::Rows).await.unwrap();
    assert!(!f.writer.rows_due().await.unwrap());

    // A new writer (a restart) continues the sequence from the sink.
    let again = Checkpointer::new(
        f.pool.clone(),
        f.key.clone(),
        f.sink.clone(),
        Duration::from_secs(300),
        5,
    );
    let third = again.write(Reason::Start).await.unwrap();
    assert_eq!(third.checkpoint.body.seq, 3);
    assert_eq!(
        (third.checkpoint.body.head_id, third.checkpoint.body.rows),
        (5, 5)
    );
    assert!(!third.diverged);
    assert!(check(&f).await.is_intact());

    // The writer notices at once when the log no longer holds the last checkpoint's head.
    support::tamper(&f.data, "DELETE FROM audit_log WHERE id = 5;").await;
    assert!(again.write(Reason::Interval).await.unwrap().diverged);
}

#[tokio::test]
async fn an_empty_log_without_checkpoints_passes_and_rows_without_any_do_not() {
    let f = fixture().await;
    assert!(check(&f).await.is_intact());
    fill(&f.pool, 1).await;
    assert_eq!(
        check(&f).await.findings,
        vec![Finding::NoCheckpoints { rows: 1 }]
    );
}

#[tokio::test]
async fn a_sink_opens_from_a_path_or_a_file_url_and_never_overwrites() {
    let f = fixture().await;
    let dir = f.sink.local_dir().unwrap().to_owned();
    let by_url = Sink::open(&format!("file://{}", dir.display()), &HashMap::new())
        .await
        .unwrap();
    let written = f.writer.write(Reason::Manual).await.unwrap();
    assert_eq!(by_url.names().await.unwrap(), vec![written.name.clone()]);
    assert!(by_url.put(&written.checkpoint).await.is_err());
    assert!(Sink::open("ftp://example/x", &HashMap::new())
        .await
        .is_err());
}

/// The object-storage sink, configured as the wal-g reader is, against a real S3-protocol server (moto).
#[tokio::test]
async fn an_s3_sink_holds_checkpoints_that_find_a_cut() {
    let moto = walg::testkit::MotoServer::start("walden-audit");
    let env: HashMap<String, String> = moto.walg_env("unused").into_iter().collect();
    let f = fixture().await;
    let sink = Sink::open("s3://walden-audit/console/audit", &env)
        .await
        .unwrap();
    assert_eq!(sink.display(), "s3://walden-audit/console/audit");
    let writer = Checkpointer::new(
        f.pool.clone(),
        f.key.clone(),
        sink.clone(),
        Duration::from_secs(300),
        5,
    );
    writer.write(Reason::Start).await.unwrap();
    fill(&f.pool, 6).await;
    writer.write(Reason::Rows).await.unwrap();
    let trusted = [f.key.public_key()];
    let r = checkpoints::verify(&f.pool, &sink, &trusted, None)
        .await
        .unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!((r.checkpoints, r.confirmed_through), (2, 6));

    support::tamper(&f.data,
        "DELETE FROM audit_log WHERE id > 4; UPDATE sqlite_sequence SET seq = 4 WHERE name = 'audit_log';",
    )
    .await;
    let r = checkpoints::verify(&f.pool, &sink, &trusted, None)
        .await
        .unwrap();
    assert!(
        matches!(
            r.findings.as_slice(),
            [Finding::Cut {
                head_id: 6,
                log_ends_at: 4,
                ..
            }]
        ),
        "{r:?}"
    );
}
