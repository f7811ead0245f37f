//! Findings: the problems and facts the analysis tells the operator, each with a stable code.
//!
//! Invariants: a [`FindingCode`] serializes to the same snake_case string the JSON has always carried
//! (`wal_gap`, `broken_delta_chain`, ...), and [`Findings::into_sorted`] orders findings by severity (most serious
//! first), then by that string, keeping the order in which the passes found them within one code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// The stable machine-readable code of a finding (see the README's table for what each means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCode {
    // Errors.
    WalGap,
    MissingConsistencyWal,
    BackupIncomplete,
    BrokenDeltaChain,
    UnreadableSentinel,
    MixedSystemIdentifiers,
    NoBackups,
    NothingRestorable,
    NoWal,
    EmptyStorage,
    ArchiveBranched,
    // Warnings.
    GarbageFolder,
    AbandonedSegments,
    Branches,
    LatestNotAChild,
    LatestFollowsBranch,
    MissingHistory,
    UnreadableHistory,
    HistoryInferred,
    HistoryMismatch,
    HistoryOutOfOrder,
    DuplicateCompression,
    ZeroSizeObjects,
    UnknownWalObjects,
    BadBackupName,
    NameLsnMismatch,
    SentinelField,
    MetadataField,
    UnreadableMetadata,
    DeltaFullNameMismatch,
    StaleWal,
    StaleBackup,
    BackupBehindTimeline,
    WalUploading,
    // Information.
    WalGapBeforeBackups,
    StaleSentinelPermanence,
    MissingMetadata,
    LegacyTrailingDot,
    WalMetadataSidecars,
    HistoryWithoutWal,
    HistoryUnreadableLines,
    PermanentEndPointOnly,
    BackupInProgress,
    StrayObjects,
}

impl FindingCode {
    /// Every code, in the README's order.
    pub const ALL: [FindingCode; 44] = [
        FindingCode::WalGap,
        FindingCode::MissingConsistencyWal,
        FindingCode::BackupIncomplete,
        FindingCode::BrokenDeltaChain,
        FindingCode::UnreadableSentinel,
        FindingCode::MixedSystemIdentifiers,
        FindingCode::NoBackups,
        FindingCode::NothingRestorable,
        FindingCode::NoWal,
        FindingCode::EmptyStorage,
        FindingCode::ArchiveBranched,
        FindingCode::GarbageFolder,
        FindingCode::AbandonedSegments,
        FindingCode::Branches,
        FindingCode::LatestNotAChild,
        FindingCode::LatestFollowsBranch,
        FindingCode::MissingHistory,
        FindingCode::UnreadableHistory,
        FindingCode::HistoryInferred,
        FindingCode::HistoryMismatch,
        FindingCode::HistoryOutOfOrder,
        FindingCode::DuplicateCompression,
        FindingCode::ZeroSizeObjects,
        FindingCode::UnknownWalObjects,
        FindingCode::BadBackupName,
        FindingCode::NameLsnMismatch,
        FindingCode::SentinelField,
        FindingCode::MetadataField,
        FindingCode::UnreadableMetadata,
        FindingCode::DeltaFullNameMismatch,
        FindingCode::StaleWal,
        FindingCode::StaleBackup,
        FindingCode::BackupBehindTimeline,
        FindingCode::WalUploading,
        FindingCode::WalGapBeforeBackups,
        FindingCode::StaleSentinelPermanence,
        FindingCode::MissingMetadata,
        FindingCode::LegacyTrailingDot,
        FindingCode::WalMetadataSidecars,
        FindingCode::HistoryWithoutWal,
        FindingCode::HistoryUnreadableLines,
        FindingCode::PermanentEndPointOnly,
        FindingCode::BackupInProgress,
        FindingCode::StrayObjects,
    ];

    /// The code as it appears in JSON and text output (`wal_gap`).
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::WalGap => "wal_gap",
            FindingCode::MissingConsistencyWal => "missing_consistency_wal",
            FindingCode::BackupIncomplete => "backup_incomplete",
            FindingCode::BrokenDeltaChain => "broken_delta_chain",
            FindingCode::UnreadableSentinel => "unreadable_sentinel",
            FindingCode::MixedSystemIdentifiers => "mixed_system_identifiers",
            FindingCode::NoBackups => "no_backups",
            FindingCode::NothingRestorable => "nothing_restorable",
            FindingCode::NoWal => "no_wal",
            FindingCode::EmptyStorage => "empty_storage",
            FindingCode::ArchiveBranched => "archive_branched",
            FindingCode::GarbageFolder => "garbage_folder",
            FindingCode::AbandonedSegments => "abandoned_segments",
            FindingCode::Branches => "branches",
            FindingCode::LatestNotAChild => "latest_not_a_child",
            FindingCode::LatestFollowsBranch => "latest_follows_branch",
            FindingCode::MissingHistory => "missing_history",
            FindingCode::UnreadableHistory => "unreadable_history",
            FindingCode::HistoryInferred => "history_inferred",
            FindingCode::HistoryMismatch => "history_mismatch",
            FindingCode::HistoryOutOfOrder => "history_out_of_order",
            FindingCode::DuplicateCompression => "duplicate_compression",
            FindingCode::ZeroSizeObjects => "zero_size_objects",
            FindingCode::UnknownWalObjects => "unknown_wal_objects",
            FindingCode::BadBackupName => "bad_backup_name",
            FindingCode::NameLsnMismatch => "name_lsn_mismatch",
            FindingCode::SentinelField => "sentinel_field",
            FindingCode::MetadataField => "metadata_field",
            FindingCode::UnreadableMetadata => "unreadable_metadata",
            FindingCode::DeltaFullNameMismatch => "delta_full_name_mismatch",
            FindingCode::StaleWal => "stale_wal",
            FindingCode::StaleBackup => "stale_backup",
            FindingCode::BackupBehindTimeline => "backup_behind_timeline",
            FindingCode::WalGapBeforeBackups => "wal_gap_before_backups",
            FindingCode::WalUploading => "wal_uploading",
            FindingCode::StaleSentinelPermanence => "stale_sentinel_permanence",
            FindingCode::MissingMetadata => "missing_metadata",
            FindingCode::LegacyTrailingDot => "legacy_trailing_dot",
            FindingCode::WalMetadataSidecars => "wal_metadata_sidecars",
            FindingCode::HistoryWithoutWal => "history_without_wal",
            FindingCode::HistoryUnreadableLines => "history_unreadable_lines",
            FindingCode::PermanentEndPointOnly => "permanent_end_point_only",
            FindingCode::BackupInProgress => "backup_in_progress",
            FindingCode::StrayObjects => "stray_objects",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets callers compare with the JSON spelling: `finding.code == "wal_gap"`.
impl PartialEq<str> for FindingCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FindingCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A problem or fact worth telling, in plain language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable machine-readable code (`wal_gap`, `broken_delta_chain`, ...).
    pub code: FindingCode,
    pub message: String,
    /// The object (key or backup name) it is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// The collector every pass writes its findings into.
#[derive(Debug, Default)]
pub(crate) struct Findings(Vec<Finding>);

impl Findings {
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        code: FindingCode,
        message: String,
        object: Option<String>,
    ) {
        self.0.push(Finding {
            severity,
            code,
            message,
            object,
        });
    }

    /// Most serious first, then by code; the order of discovery within one code is kept.
    pub(crate) fn into_sorted(self) -> Vec<Finding> {
        let mut findings = self.0;
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.code.as_str().cmp(b.code.as_str()))
        });
        findings
    }

    /// The codes found so far, in order (for the passes' tests).
    #[cfg(test)]
    pub(crate) fn codes(&self) -> Vec<FindingCode> {
        self.0.iter().map(|f| f.code).collect()
    }

    /// The findings with `code`, in order (for the passes' tests).
    #[cfg(test)]
    pub(crate) fn with_code(&self, code: FindingCode) -> Vec<&Finding> {
        self.0.iter().filter(|f| f.code == code).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_snake_case_names() {
        for code in FindingCode::ALL {
            let json = serde_json::to_string(&code).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(code.to_string(), code.as_str());
            assert!(code == code.as_str());
            let back: FindingCode =
                serde_json::from_str(&json).unwrap_or(FindingCode::StrayObjects);
            assert_eq!(back, code);
        }
        let distinct: std::collections::BTreeSet<&str> =
            FindingCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(distinct.len(), FindingCode::ALL.len());
    }

    #[test]
    fn finding_json_shape_is_unchanged() {
        let finding = Finding {
            severity: Severity::Error,
            code: FindingCode::LatestNotAChild,
            message: "m".into(),
            object: None,
        };
        assert_eq!(
            serde_json::to_string(&finding).unwrap_or_default(),
            r#"{"severity":"error","code":"latest_not_a_child","message":"m"}"#
        );
    }

    #[test]
    fn sorted_by_severity_then_code_keeping_discovery_order() {
        let mut findings = Findings::default();
        findings.push(Severity::Info, FindingCode::StrayObjects, "1".into(), None);
        findings.push(Severity::Error, FindingCode::WalGap, "2".into(), None);
        findings.push(
            Severity::Error,
            FindingCode::BackupIncomplete,
            "3".into(),
            None,
        );
        findings.push(Severity::Error, FindingCode::WalGap, "4".into(), None);
        let messages: Vec<String> = findings
            .into_sorted()
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(messages, ["3", "2", "4", "1"]);
    }
}
