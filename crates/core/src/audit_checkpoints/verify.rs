//! Checking a log against its checkpoints.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use time::OffsetDateTime;

use super::{Checkpoint, PublicKey, Reason, Sink, SinkError, FORMAT};
use crate::ts;

/// One thing the checkpoints show to be wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The log has rows but no trusted checkpoint covers any of them.
    NoCheckpoints { rows: u64 },
    /// An object in the sink is not a checkpoint this version can read.
    Unreadable { name: String, why: String },
    /// A checkpoint is signed by a key the verifier does not trust (or claims one and carries another's
    /// signature).
    UnknownKey { name: String, key_id: String },
    /// A checkpoint names a trusted key but its signature does not verify: it was changed or forged.
    BadSignature { name: String, key_id: String },
    /// Rows `last_matching + 1 ..= head_id` were rewritten: the log's row `head_id` has another hash than
    /// the checkpoint recorded (or is gone), while row `last_matching` still matches an earlier checkpoint.
    Rewritten {
        name: String,
        head_id: i64,
        last_matching: i64,
    },
    /// Rows were cut from the end: the checkpoint saw row `head_id`, the log now ends at `log_ends_at`.
    Cut {
        name: String,
        head_id: i64,
        log_ends_at: i64,
    },
    /// The log is empty, but the checkpoint saw `head_id` rows.
    Wiped { name: String, head_id: i64 },
    /// A checkpoint does not follow the one before it: checkpoints between them were removed or replaced.
    Unchained { name: String, after: String },
    /// No checkpoint was written from `from` to `to`, longer than two heartbeat intervals, without a clean
    /// shutdown in between. `restarted`: the next checkpoint is a start, so the server stopped uncleanly (a
    /// crash, a kill) or checkpoints of that time were removed; either way nothing vouches for that time.
    MissingInterval {
        from: String,
        to: String,
        restarted: bool,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NoCheckpoints { rows } => write!(
                f,
                "the log has {rows} rows but the sink holds no checkpoint signed by a trusted key"
            ),
            Finding::Unreadable { name, why } => {
                write!(f, "checkpoint {name} cannot be read: {why}")
            }
            Finding::UnknownKey { name, key_id } => write!(
                f,
                "checkpoint {name} is signed by an unknown key {key_id} (not one of the trusted keys)"
            ),
            Finding::BadSignature { name, key_id } => write!(
                f,
                "checkpoint {name} has a signature that does not verify with its key {key_id} (it was changed or forged)"
            ),
            Finding::Rewritten {
                name,
                head_id,
                last_matching,
            } => write!(
                f,
                "rows were REWRITTEN: row {head_id} differs from checkpoint {name}; the first changed row is in \
                 rows {}..{head_id} (row {last_matching} still matches an earlier checkpoint)",
                last_matching + 1
            ),
            Finding::Cut {
                name,
                head_id,
                log_ends_at,
            } => write!(
                f,
                "rows were CUT from the end: checkpoint {name} saw row {head_id}, the log ends at row {log_ends_at} \
                 ({} rows missing)",
                head_id - log_ends_at
            ),
            Finding::Wiped { name, head_id } => write!(
                f,
                "the log was WIPED: it is empty, but checkpoint {name} saw {head_id} rows"
            ),
            Finding::Unchained { name, after } => write!(
                f,
                "checkpoint {name} does not follow {after}: checkpoints between them were removed or replaced"
            ),
            Finding::MissingInterval {
                from,
                to,
                restarted,
            } => write!(
                f,
                "missing checkpoint interval from {from} to {to} (no checkpoint and no clean shutdown{})",
                if *restarted {
                    "; the server started again after it"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointReport {
    /// The sink, without credentials.
    pub sink: String,
    /// Objects read.
    pub checkpoints: u64,
    /// Checkpoints whose signature a trusted key verified.
    pub trusted: u64,
    /// The highest row a trusted checkpoint confirms (0 when none).
    pub confirmed_through: i64,
    /// When the newest trusted checkpoint was written.
    pub latest_at: Option<String>,
    pub findings: Vec<Finding>,
}

impl CheckpointReport {
    pub fn is_intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why the check could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the audit log could not be read: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Check the log in `pool` against every checkpoint in `sink`, trusting the keys in `trusted`.
///
/// Run it after [`crate::audit::verify`] (which checks the chain from row to row): a chain that is consistent
/// with itself can still have been recomputed, cut or wiped, and only the checkpoints show it. With `now`,
/// an overdue newest checkpoint (more than two intervals old, not a shutdown) is a missing interval too.
pub async fn verify(
    pool: &SqlitePool,
    sink: &Sink,
    trusted: &[PublicKey],
    now: Option<OffsetDateTime>,
) -> Result<CheckpointReport, VerifyError> {
    let objects = sink.read_all().await?;
    let mut report = CheckpointReport {
        sink: sink.display().to_owned(),
        checkpoints: objects.len() as u64,
        trusted: 0,
        confirmed_through: 0,
        latest_at: None,
        findings: Vec::new(),
    };

    // 1. Signatures.
    let mut good: Vec<(String, Checkpoint)> = Vec::new();
    for (name, parsed) in objects {
        let cp = match parsed {
            Ok(cp) if cp.body.format == FORMAT => cp,
            Ok(cp) => {
                let why = format!("unknown format {:?}", cp.body.format);
                report.findings.push(Finding::Unreadable { name, why });
                continue;
            }
            Err(why) => {
                report.findings.push(Finding::Unreadable { name, why });
                continue;
            }
        };
        let key_id = cp.body.key_id.clone();
        match trusted.iter().find(|k| super::key_id(k) == key_id) {
            Some(key) if cp.signed_by(key) => good.push((name, cp)),
            Some(_) => report.findings.push(Finding::BadSignature { name, key_id }),
            None => report.findings.push(Finding::UnknownKey { name, key_id }),
        }
    }
    report.trusted = good.len() as u64;
    good.sort_by(|a, b| {
        (a.1.body.seq, &a.1.body.written_at).cmp(&(b.1.body.seq, &b.1.body.written_at))
    });

    // 2. The chain of checkpoints, and the heartbeat.
    for pair in good.windows(2) {
        let ((a_name, a), (b_name, b)) = (&pair[0], &pair[1]);
        if b.body.previous.as_deref() != Some(a.signature.as_str()) || b.body.seq != a.body.seq + 1
        {
            report.findings.push(Finding::Unchained {
                name: b_name.clone(),
                after: a_name.clone(),
            });
        }
        if overdue(a, &b.body.written_at) {
            report.findings.push(Finding::MissingInterval {
                from: a.body.written_at.clone(),
                to: b.body.written_at.clone(),
                restarted: b.body.reason == Reason::Start,
            });
        }
    }
    if let Some((_, last)) = good.last() {
        report.latest_at = Some(last.body.written_at.clone());
        if let Some(now) = now {
            let now = ts::format(now);
            if overdue(last, &now) {
                report.findings.push(Finding::MissingInterval {
                    from: last.body.written_at.clone(),
                    to: now,
                    restarted: false,
                });
            }
        }
    }

    // 3. The log against each checkpoint's head.
    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let (log_head, log_rows): (Option<i64>, i64) =
        sqlx::query_as("SELECT MAX(id), COUNT(*) FROM audit_log")
            .fetch_one(&mut *tx)
            .await?;
    let log_head = log_head.unwrap_or(0);
    let mut matched: Vec<i64> = Vec::new();
    let mut rewritten: Option<(String, i64)> = None;
    let mut cut: Option<(String, i64)> = None;
    for (name, cp) in &good {
        let (head_id, Some(expected)) = (cp.body.head_id, cp.body.head_hash.as_deref()) else {
            continue; // an empty log was checkpointed: nothing to hold it to
        };
        let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM audit_log WHERE id = ?")
            .bind(head_id)
            .fetch_optional(&mut *tx)
            .await?;
        match stored {
            Some(h) if hex::encode(&h) == expected => matched.push(head_id),
            None if head_id > log_head => {
                if cut.as_ref().is_none_or(|(_, h)| head_id > *h) {
                    cut = Some((name.clone(), head_id));
                }
            }
            _ => {
                if rewritten.as_ref().is_none_or(|(_, h)| head_id < *h) {
                    rewritten = Some((name.clone(), head_id));
                }
            }
        }
    }
    tx.rollback().await?;
    report.confirmed_through = matched.iter().copied().max().unwrap_or(0);
    if let Some((name, head_id)) = rewritten {
        let last_matching = matched
            .iter()
            .copied()
            .filter(|m| *m < head_id)
            .max()
            .unwrap_or(0);
        report.findings.push(Finding::Rewritten {
            name,
            head_id,
            last_matching,
        });
    }
    if let Some((name, head_id)) = cut {
        report.findings.push(if log_rows == 0 {
            Finding::Wiped { name, head_id }
        } else {
            Finding::Cut {
                name,
                head_id,
                log_ends_at: log_head,
            }
        });
    }
    if good.is_empty() && log_rows > 0 {
        report.findings.push(Finding::NoCheckpoints {
            rows: u64::try_from(log_rows).unwrap_or(0),
        });
    }
    Ok(report)
}

/// Whether the checkpoint after `a` (written at `next_at`) came later than two of `a`'s intervals, when `a`
/// was not a clean shutdown.
fn overdue(a: &Checkpoint, next_at: &str) -> bool {
    if a.body.reason == Reason::Shutdown {
        return false;
    }
    let (Some(from), Some(to)) = (ts::parse(&a.body.written_at), ts::parse(next_at)) else {
        return false;
    };
    let allowed = time::Duration::seconds(
        i64::try_from(a.body.interval_secs.max(1)).unwrap_or(i64::MAX / 4) * 2,
    );
    to - from > allowed
}
