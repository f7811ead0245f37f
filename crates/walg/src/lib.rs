//! Read wal-g (PostgreSQL) backup buckets directly: base backups, WAL coverage, timelines, restorable windows
//! and integrity findings, without running wal-g.
//!
//! Start with [`StorageConfig`] (from wal-g's environment variables or a storage URL), build an [`Index`] with a
//! [`Reader`], then compute a [`BucketTimeline`] (old name [`Timeline`]) and ask it
//! [`BucketTimeline::choose_backup`].

pub mod codec;
pub mod config;
pub mod documents;
pub mod index;
pub mod last_commit;
pub mod names;
pub mod plan;
pub mod report;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod timeline;
pub mod xlog;
#[cfg(any(test, feature = "testkit"))]
pub mod xlog_writer;

/// The old name of [`documents`], kept so existing paths (`walg::docs::Sentinel`) still work.
pub use documents as docs;

pub use codec::LibsodiumKey;
pub use config::{parse_env_block, StorageConfig};
pub use index::{Index, ReadError, ReadStats, Reader, FULL_BUILD_MAX_AGE};
pub use index::{PROBE_LOOKAHEAD, PROBE_MAX_GAP_NAMES, PROBE_TIMELINES};
pub use last_commit::{CommitSearch, LastCommit, LAST_COMMIT_SEGMENTS};
pub use names::{Compression, Lsn};
pub use plan::{parse_target_time, pg_time, Plan, PlanOutcome, Refusal, Target};
pub use timeline::{Backup, BucketTimeline, Finding, FindingCode, PgTimeline, Severity, Timeline};
