//! The last commit of a lineage, read from its newest archived WAL: the true end of what a time target can reach.
//!
//! PostgreSQL stops a `recovery_target_time` recovery before the first commit or abort whose time is after the
//! target (`recoveryStopsBefore`, xlogrecovery.c); with none after it, recovery fails. Segment upload times only
//! bound the window from above (an idle server, or one writing only checkpoints, keeps archiving without
//! commits), so the planner asks this module for the last transaction end instead.

use crate::index::Reader;
use crate::names::{wal_file_name, Compression};
use crate::timeline::BucketTimeline;
use crate::xlog::{self, XactKind};
use time::OffsetDateTime;

/// How many of the newest segments [`Reader::last_commit`] reads at most, newest first, looking for a commit.
pub const LAST_COMMIT_SEGMENTS: usize = 4;

/// The last transaction end (commit or abort) archived on a lineage.
#[derive(Debug, Clone, PartialEq)]
pub struct LastCommit {
    /// The lineage (its leaf timeline).
    pub timeline: u32,
    /// `xact_time` of the record: the latest in the segment it was found in.
    pub time: OffsetDateTime,
    pub lsn: u64,
    pub kind: XactKind,
    /// The 24-hex WAL file holding it.
    pub segment: String,
    /// Upload time of the lineage's newest segment: how far the archive reaches.
    pub archived_until: Option<OffsetDateTime>,
}

/// What [`Reader::last_commit`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitSearch {
    Found(LastCommit),
    /// No commit or abort in the newest `segments` segments of the lineage (all read without error).
    NotFound {
        timeline: u32,
        segments: usize,
        archived_until: Option<OffsetDateTime>,
    },
    /// A segment could not be read or decoded: nothing is known.
    Failed {
        timeline: u32,
        reason: String,
    },
}

impl CommitSearch {
    pub fn timeline(&self) -> u32 {
        match self {
            CommitSearch::Found(c) => c.timeline,
            CommitSearch::NotFound { timeline, .. } | CommitSearch::Failed { timeline, .. } => {
                *timeline
            }
        }
    }

    pub fn found(&self) -> Option<&LastCommit> {
        match self {
            CommitSearch::Found(c) => Some(c),
            _ => None,
        }
    }
}

impl Reader {
    /// Finds the last commit (or abort) on the lineage ending at `leaf`: reads its newest archived segment, then
    /// older ones, up to `max_segments`, until one holds a transaction end. A segment is decoded together with
    /// the newer one already read, so a commit record that continues into it is read whole. Stops at a missing
    /// segment (a gap). Never fails: a read or decode problem is a [`CommitSearch::Failed`].
    pub async fn last_commit(
        &self,
        timeline: &BucketTimeline,
        leaf: u32,
        max_segments: usize,
    ) -> CommitSearch {
        let failed = |reason: String| CommitSearch::Failed {
            timeline: leaf,
            reason,
        };
        let Some(lin) = timeline.lineage(leaf) else {
            return failed(format!("timeline {leaf} is not in this storage"));
        };
        let segsize = timeline.segment_size;
        let newest = lin.newest_segment();
        let archived_until = newest
            .and_then(|n| timeline.segment(lin.owner(n)?, n))
            .map(|(_, modified)| modified);
        let mut later: Option<Vec<u8>> = None;
        let mut compression: Option<Compression> = None;
        let mut read = 0;
        for n in newest
            .into_iter()
            .flat_map(|n| (0..=n).rev())
            .take(max_segments)
        {
            let Some(owner) = lin.owner(n).filter(|&o| timeline.segment(o, n).is_some()) else {
                break;
            };
            let name = wal_file_name(owner, n, segsize);
            let bytes = match self.wal_segment(owner, n, compression).await {
                Ok(Some((bytes, c))) => {
                    compression = Some(c);
                    bytes
                }
                Ok(None) => return failed(format!("{name} disappeared while reading")),
                Err(e) => return failed(e),
            };
            if bytes.len() as u64 != segsize {
                return failed(format!(
                    "{name} holds {} bytes, not a {segsize}-byte segment",
                    bytes.len()
                ));
            }
            read += 1;
            let start = n.saturating_mul(segsize);
            let mut input = bytes;
            let own_len = input.len();
            if let Some(next) = later.take() {
                input.extend_from_slice(&next);
            }
            let (scan, input) = match tokio::task::spawn_blocking(move || {
                (xlog::scan(&input, segsize, start), input)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => return failed(format!("{name}: decoding stopped: {e}")),
            };
            if scan.records == 0 {
                return failed(format!("{name}: no readable WAL record ({})", scan.stop));
            }
            let end = start.saturating_add(segsize);
            let last = scan
                .xacts
                .iter()
                .filter(|x| x.lsn < end)
                .max_by_key(|x| (x.xact_time_us, x.lsn));
            if let Some(x) = last {
                let Some(time) = x.time() else {
                    return failed(format!("{name}: a commit time out of range"));
                };
                return CommitSearch::Found(LastCommit {
                    timeline: leaf,
                    time,
                    lsn: x.lsn,
                    kind: x.kind,
                    segment: name,
                    archived_until,
                });
            }
            let mut own = input;
            own.truncate(own_len);
            later = Some(own);
        }
        CommitSearch::NotFound {
            timeline: leaf,
            segments: read,
            archived_until,
        }
    }

    /// Finds the last commit of the lineage of `timeline` (default: the main one) and keeps it in `t`, where
    /// planning and the report use it.
    pub async fn attach_last_commit(
        &self,
        t: &mut BucketTimeline,
        timeline: Option<u32>,
        max_segments: usize,
    ) {
        let Some(leaf) = timeline.or(t.main_lineage) else {
            return;
        };
        let search = self.last_commit(t, leaf, max_segments).await;
        t.set_commit_search(search);
    }
}

impl BucketTimeline {
    /// Keeps what a search for the last commit found (replacing an earlier one for the same lineage).
    pub fn set_commit_search(&mut self, search: CommitSearch) {
        self.commit_searches
            .retain(|s| s.timeline() != search.timeline());
        self.commit_searches.push(search);
    }

    /// What is known about the last commit on the lineage ending at `leaf`.
    pub fn commit_search(&self, leaf: u32) -> Option<&CommitSearch> {
        self.commit_searches.iter().find(|s| s.timeline() == leaf)
    }
}
