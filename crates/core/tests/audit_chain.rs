//! The audit log against a real SQLite file: append, triggers, tampering found by verify, queries, exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test stops loudly

use sqlx::SqlitePool;
use walden_core::audit::{
    self, Actor, AuditFilter, Breakage, Event, ExportFormat, Outcome, RequestMeta, Target,
};
use walden_core::db;
use walden_core::users::Role;

mod support;

async fn open() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = db::open(dir.path()).await.unwrap();
    (dir, pool)
}

fn user(id: i64, name: &str) -> Actor {
    Actor::User {
        id,
        name: name.into(),
        role: Role::Operator,
    }
}

/// Append `n` varied rows.
async fn fill(pool: &SqlitePool, n: i64) {
    for i in 1..=n {
        let actor = if i % 3 == 0 {
            user(1, "alice")
        } else {
            user(2, "bob")
        };
        let mut ev = Event::new(
            if i % 2 == 0 {
                "restore.start"
            } else {
                "user.create"
            },
            Outcome::Ok,
        )
        .target(Target {
            cluster_id: Some(format!("cluster-{}", i % 4)),
            app_name: Some("pg-app".into()),
            run_id: None,
            subject: Some(format!("row-{i}")),
        })
        .detail(serde_json::json!({ "i": i }));
        if i % 5 == 0 {
            ev = ev.reason(format!("ticket OPS-{i}"));
        }
        audit::record(
            pool,
            &actor,
            &RequestMeta {
                request_id: Some(format!("req-{i}")),
                client_ip: Some("198.51.100.1".into()),
            },
            &ev,
        )
        .await
        .unwrap();
    }
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let (_d, pool) = open().await;
    let empty = audit::verify(&pool).await.unwrap();
    assert!(empty.is_intact());
    assert_eq!((empty.rows, empty.verified_through), (0, 0));
    assert_eq!(empty.head_hash, None);

    fill(&pool, 20).await;
    let r = audit::verify(&pool).await.unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.rows, 20);
    assert_eq!(r.verified_through, 20);
    let last: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_log WHERE id = 20")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(r.head_hash, Some(hex::encode(last)));
    // Each row links to the one before.
    let links: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT prev_hash, hash FROM audit_log ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(links[0].0, vec![0u8; 32]);
    for w in links.windows(2) {
        assert_eq!(w[1].0, w[0].1);
    }
}

#[tokio::test]
async fn triggers_refuse_update_and_delete() {
    let (_d, pool) = open().await;
    fill(&pool, 3).await;
    let up = sqlx::query("UPDATE audit_log SET reason = 'x' WHERE id = 2")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(up.to_string().contains("append-only"), "{up}");
    let del = sqlx::query("DELETE FROM audit_log WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(del.to_string().contains("append-only"), "{del}");
    assert!(audit::verify(&pool).await.unwrap().is_intact());
}

#[tokio::test]
async fn a_changed_row_is_found() {
    let (dir, pool) = open().await;
    fill(&pool, 10).await;
    support::tamper(
        dir.path(),
        "UPDATE audit_log SET actor_name = 'mallory' WHERE id = 7",
    )
    .await;
    let r = audit::verify(&pool).await.unwrap();
    let b = r.first_broken.unwrap();
    assert_eq!((b.id, b.breakage), (7, Breakage::Altered));
    assert_eq!(r.verified_through, 6);
}

#[tokio::test]
async fn a_changed_row_with_its_hash_recomputed_breaks_the_next_link() {
    let (dir, pool) = open().await;
    fill(&pool, 10).await;
    // The forger recomputes row 4's own hash after changing it: the chain still catches it at row 5.
    support::tamper(
        dir.path(),
        "UPDATE audit_log SET outcome = 'denied' WHERE id = 4",
    )
    .await;
    let row = audit::query(&pool, &AuditFilter::default(), Some(5), 1)
        .await
        .unwrap()
        .rows
        .remove(0);
    assert_eq!((row.id, row.outcome.as_str()), (4, "denied"));
    let prev: [u8; 32] = hex::decode(&row.prev_hash).unwrap().try_into().unwrap();
    let forged = audit::canonical_hash(
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
    support::tamper(
        dir.path(),
        &format!(
            "UPDATE audit_log SET hash = X'{}' WHERE id = 4",
            hex::encode(forged)
        ),
    )
    .await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!((b.id, b.breakage), (5, Breakage::ChainBroken));
}

#[tokio::test]
async fn a_deleted_row_is_found() {
    let (dir, pool) = open().await;
    fill(&pool, 10).await;
    support::tamper(dir.path(), "DELETE FROM audit_log WHERE id = 5").await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(
        (b.id, b.breakage),
        (
            5,
            Breakage::Missing {
                expected: 5,
                found: 6
            }
        )
    );
}

#[tokio::test]
async fn a_deleted_row_with_ids_closed_up_is_found() {
    let (dir, pool) = open().await;
    fill(&pool, 10).await;
    support::tamper(dir.path(), "DELETE FROM audit_log WHERE id = 5").await;
    for id in 6..=10 {
        support::tamper(
            dir.path(),
            &format!("UPDATE audit_log SET id = {} WHERE id = {id}", id - 1),
        )
        .await;
    }
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(b.id, 5);
    assert_eq!(b.breakage, Breakage::ChainBroken);
}

#[tokio::test]
async fn the_first_and_last_rows_cannot_be_cut() {
    let (dir, pool) = open().await;
    fill(&pool, 10).await;
    support::tamper(dir.path(), "DELETE FROM audit_log WHERE id >= 9").await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(
        (b.id, b.breakage),
        (9, Breakage::Truncated { last_written: 10 })
    );

    support::tamper(dir.path(), "DELETE FROM audit_log WHERE id = 1").await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(
        (b.id, b.breakage),
        (
            1,
            Breakage::Missing {
                expected: 1,
                found: 2
            }
        )
    );

    // Emptying the table is found too, and new rows appended after it do not hide it.
    support::tamper(dir.path(), "DELETE FROM audit_log").await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(
        (b.id, b.breakage),
        (1, Breakage::Truncated { last_written: 10 })
    );
    fill(&pool, 2).await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(b.id, 1);
    assert!(matches!(
        b.breakage,
        Breakage::Missing {
            expected: 1,
            found: 11
        }
    ));
}

#[tokio::test]
async fn reordered_rows_are_found() {
    let (dir, pool) = open().await;
    fill(&pool, 10).await;
    // Swap rows 3 and 4.
    support::tamper(
        dir.path(),
        "UPDATE audit_log SET id = -1 WHERE id = 3; \
         UPDATE audit_log SET id = 3 WHERE id = 4; \
         UPDATE audit_log SET id = 4 WHERE id = -1",
    )
    .await;
    let r = audit::verify(&pool).await.unwrap();
    let b = r.first_broken.unwrap();
    assert_eq!((b.id, b.breakage), (3, Breakage::ChainBroken));
    assert_eq!(r.verified_through, 2);
}

#[tokio::test]
async fn an_overwritten_hash_is_found() {
    let (dir, pool) = open().await;
    fill(&pool, 3).await;
    support::tamper(
        dir.path(),
        "UPDATE audit_log SET hash = zeroblob(32) WHERE id = 2",
    )
    .await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!((b.id, b.breakage), (2, Breakage::Altered));
}

#[tokio::test]
async fn concurrent_appends_keep_one_chain() {
    let (_d, pool) = open().await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                audit::record(
                    &pool,
                    &Actor::cli(),
                    &RequestMeta::default(),
                    &Event::new("test.concurrent", Outcome::Ok).subject(format!("{t}-{i}")),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let r = audit::verify(&pool).await.unwrap();
    assert!(r.is_intact(), "{r:?}");
    assert_eq!(r.rows, 200);
}

#[tokio::test]
async fn a_bad_action_name_is_refused_and_nothing_is_written() {
    let (_d, pool) = open().await;
    let err = audit::record(
        &pool,
        &Actor::cli(),
        &RequestMeta::default(),
        &Event::new("Not A Name", Outcome::Ok),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Not A Name"));
    assert_eq!(
        audit::count(&pool, &AuditFilter::default()).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn queries_filter_and_paginate_newest_first() {
    let (_d, pool) = open().await;
    fill(&pool, 30).await;
    let q = |f: AuditFilter| {
        let pool = pool.clone();
        async move { audit::query(&pool, &f, None, 500).await.unwrap().rows }
    };
    let all = q(AuditFilter::default()).await;
    assert_eq!(all.len(), 30);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));

    let alice = q(AuditFilter {
        actor: Some("ALICE".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(alice.len(), 10);
    assert!(alice.iter().all(|r| r.actor_name == "alice"));

    let restores = q(AuditFilter {
        action: Some("restore.".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(restores.len(), 15);
    let exact = q(AuditFilter {
        action: Some("user.create".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(exact.len(), 15);
    assert!(q(AuditFilter {
        action: Some("user".into()),
        ..Default::default()
    })
    .await
    .is_empty());

    let c1 = q(AuditFilter {
        cluster: Some("cluster-1".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(c1.len(), 8);

    let text = q(AuditFilter {
        text: Some("ops-15".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(text.len(), 1);
    assert_eq!(text[0].reason.as_deref(), Some("ticket OPS-15"));
    // LIKE wildcards in the search text are literal.
    assert!(q(AuditFilter {
        text: Some("%".into()),
        ..Default::default()
    })
    .await
    .is_empty());
    assert!(q(AuditFilter {
        text: Some("row_1".into()),
        ..Default::default()
    })
    .await
    .is_empty());

    // Combined filters narrow.
    let both = q(AuditFilter {
        actor: Some("bob".into()),
        action: Some("user.create".into()),
        cluster: Some("cluster-1".into()),
        ..Default::default()
    })
    .await;
    assert!(both
        .iter()
        .all(|r| r.actor_name == "bob" && r.action == "user.create"));
    assert_eq!(
        both.len() as i64,
        audit::count(
            &pool,
            &AuditFilter {
                actor: Some("bob".into()),
                action: Some("user.create".into()),
                cluster: Some("cluster-1".into()),
                ..Default::default()
            }
        )
        .await
        .unwrap()
    );

    // Time range: everything is from "now"; a window in the past is empty, one around now is full.
    let now = time::OffsetDateTime::now_utc();
    assert!(q(AuditFilter {
        until: Some(now - time::Duration::hours(1)),
        ..Default::default()
    })
    .await
    .is_empty());
    assert_eq!(
        q(AuditFilter {
            since: Some(now - time::Duration::hours(1)),
            until: Some(now + time::Duration::hours(1)),
            ..Default::default()
        })
        .await
        .len(),
        30
    );

    // Pages of 7: 7, 7, 7, 7, 2, with no overlap and nothing lost.
    let mut seen = Vec::new();
    let mut before = None;
    let mut sizes = Vec::new();
    loop {
        let page = audit::query(&pool, &AuditFilter::default(), before, 7)
            .await
            .unwrap();
        sizes.push(page.rows.len());
        seen.extend(page.rows.iter().map(|r| r.id));
        match page.next_before {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(sizes, [7, 7, 7, 7, 2]);
    assert_eq!(seen, (1..=30).rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn exports_jsonl_and_csv_in_chain_order() {
    let (_d, pool) = open().await;
    fill(&pool, 12).await;
    let mut out = Vec::new();
    let n = audit::export(
        &pool,
        &AuditFilter::default(),
        ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n, 12);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
    for w in lines.windows(2) {
        assert_eq!(w[1]["prev_hash"], w[0]["hash"]);
    }
    assert_eq!(lines[4]["reason"], "ticket OPS-5");

    let mut out = Vec::new();
    let f = AuditFilter {
        actor: Some("alice".into()),
        ..Default::default()
    };
    let n = audit::export(&pool, &f, ExportFormat::Csv, &mut out)
        .await
        .unwrap();
    assert_eq!(n, 4);
    let mut r = csv::Reader::from_reader(out.as_slice());
    let headers = r.headers().unwrap().clone();
    assert_eq!(&headers[0], "id");
    assert_eq!(&headers[15], "hash");
    let recs: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(&recs[0][0], "3");
    assert_eq!(&recs[0][3], "alice");
    // JSON detail survives CSV quoting.
    assert_eq!(&recs[0][13], r#"{"i":3}"#);

    // --since in the future: nothing.
    let mut out = Vec::new();
    let n = audit::export(
        &pool,
        &AuditFilter {
            since: Some(time::OffsetDateTime::now_utc() + time::Duration::minutes(5)),
            ..Default::default()
        },
        ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!((n, out.len()), (0, 0));
}

#[tokio::test]
async fn an_in_memory_database_is_verified_through_sqlx() {
    // Not how Walden runs (it always has a file), but verify must still work and still find tampering.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(sqlx::sqlite::SqliteConnectOptions::new().in_memory(true))
        .await
        .unwrap();
    db::MIGRATOR.run(&pool).await.unwrap();
    fill(&pool, 6).await;
    let r = audit::verify(&pool).await.unwrap();
    assert!(r.is_intact() && r.rows == 6, "{r:?}");
    // An in-memory database lives in the pool's one connection: tamper through that connection.
    let edit = "UPDATE audit_log SET reason = 'edited' WHERE id = 4";
    support::behind_the_triggers(&mut pool.acquire().await.unwrap(), edit).await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!((b.id, b.breakage), (4, Breakage::Altered));
    let cut = "DELETE FROM audit_log WHERE id = 2";
    support::behind_the_triggers(&mut pool.acquire().await.unwrap(), cut).await;
    let b = audit::verify(&pool).await.unwrap().first_broken.unwrap();
    assert_eq!(
        (b.id, b.breakage),
        (
            2,
            Breakage::Missing {
                expected: 2,
                found: 3
            }
        )
    );
}

#[tokio::test]
async fn verify_sees_a_consistent_snapshot_while_rows_are_appended() {
    let (_d, pool) = open().await;
    fill(&pool, 50).await;
    let writer = {
        let pool = pool.clone();
        tokio::spawn(async move { fill(&pool, 50).await })
    };
    for _ in 0..5 {
        let r = audit::verify(&pool).await.unwrap();
        assert!(r.is_intact(), "{r:?}");
        assert!(r.rows >= 50);
    }
    writer.await.unwrap();
    assert_eq!(audit::verify(&pool).await.unwrap().rows, 100);
}

/// Security review L1: text a client chose (a request id, a typed name) must not come out of a CSV export as a
/// live spreadsheet formula such as `=HYPERLINK(...)`; JSONL keeps the exact text.
#[tokio::test]
async fn csv_export_cells_never_start_a_spreadsheet_formula() {
    let (_d, pool) = open().await;
    let hostile = [
        r#"=HYPERLINK("https://evil.invalid/?x","open me")"#,
        "+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1:A2)",
        "\tindented",
    ];
    for (i, text) in hostile.iter().enumerate() {
        let ev = Event::new("user.login_failed", Outcome::Failed).subject(format!("s{i}"));
        let meta = RequestMeta {
            request_id: Some((*text).to_owned()),
            client_ip: None,
        };
        audit::record(&pool, &Actor::Anonymous, &meta, &ev)
            .await
            .unwrap();
    }
    let mut out = Vec::new();
    audit::export(&pool, &AuditFilter::default(), ExportFormat::Csv, &mut out)
        .await
        .unwrap();
    let mut r = csv::Reader::from_reader(out.as_slice());
    let ids: Vec<String> = r.records().map(|rec| rec.unwrap()[11].to_owned()).collect();
    assert_eq!(ids.len(), hostile.len());
    for (cell, text) in ids.iter().zip(hostile) {
        assert_eq!(
            cell,
            &format!("'{text}"),
            "neutralised with a leading quote"
        );
    }

    let mut out = Vec::new();
    audit::export(
        &pool,
        &AuditFilter::default(),
        ExportFormat::Jsonl,
        &mut out,
    )
    .await
    .unwrap();
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(
        first["request_id"], hostile[0],
        "JSONL keeps the exact text"
    );
}
