//! What a person asks for ([`RestoreRequest`]) and the rules on its words: the target as typed on the command
//! line or in the wizard, Fly's app-name rule and the known regions. Pure functions, no I/O.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use walg::Lsn;

/// The cluster restored from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRef {
    pub org: String,
    pub app: String,
}

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreTarget {
    /// As far as the archived WAL goes.
    Latest,
    /// A point in time (UTC).
    Time {
        #[serde(with = "time::serde::rfc3339")]
        at: OffsetDateTime,
    },
    /// An LSN, `X/Y`.
    Lsn { lsn: String },
    /// A named base backup, restored to its consistency point.
    Backup { name: String },
}

impl RestoreTarget {
    /// The target as `walg`'s planner takes it; an LSN that does not parse is a [`Reason`](super::Reason)
    /// of the caller's, so this returns `None` for it.
    pub(crate) fn to_walg(&self) -> Option<walg::Target> {
        Some(match self {
            RestoreTarget::Latest => walg::Target::Latest,
            RestoreTarget::Time { at } => walg::Target::Time(*at),
            RestoreTarget::Lsn { lsn } => walg::Target::Lsn(Lsn::parse(lsn)?.0),
            RestoreTarget::Backup { name } => walg::Target::Backup(name.clone()),
        })
    }

    /// Parses the CLI's choice: exactly one of `--latest`, `--target-time`, `--lsn`, `--backup`.
    pub fn from_flags(
        latest: bool,
        time: Option<&str>,
        lsn: Option<&str>,
        backup: Option<&str>,
    ) -> Result<Self, String> {
        let given = usize::from(latest)
            + usize::from(time.is_some())
            + usize::from(lsn.is_some())
            + usize::from(backup.is_some());
        if given != 1 {
            return Err(
                "give exactly one target: --latest, --target-time T, --lsn L or --backup NAME"
                    .into(),
            );
        }
        if latest {
            return Ok(RestoreTarget::Latest);
        }
        if let Some(t) = time {
            return walg::parse_target_time(t).map(|at| RestoreTarget::Time { at });
        }
        if let Some(l) = lsn {
            return match Lsn::parse(l) {
                Some(parsed) => Ok(RestoreTarget::Lsn {
                    lsn: parsed.to_string(),
                }),
                None => Err(format!("'{l}' is not an LSN like 0/3000028")),
            };
        }
        Ok(RestoreTarget::Backup {
            name: backup.unwrap_or_default().to_owned(),
        })
    }
}

/// Whether the restore creates its cluster or restores into one the team made with `fly pg create`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A new app the engine creates (app, Consul, volume, machine).
    #[default]
    New,
    /// An existing, empty Stolon cluster of the org (the seed guide's path): its SU/REPL/OPERATOR secrets are
    /// replaced with the source's escrowed ones and all its machines but one are stopped; nothing in it is
    /// ever destroyed.
    Existing,
}

impl DestinationKind {
    /// Serialised only when not the default, so a plan for a new cluster keeps the hash it always had.
    pub fn is_new(&self) -> bool {
        *self == DestinationKind::New
    }
}

/// Where the restored cluster goes: a new app the engine creates, or an existing empty cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    #[serde(default, skip_serializing_if = "DestinationKind::is_new")]
    pub kind: DestinationKind,
    /// The app's name (Fly's rule: [`check_app_name`]): new, or the existing cluster's.
    pub app: String,
    /// Default: the source's primary region.
    pub region: Option<String>,
    /// Default: the source machine's memory.
    pub memory_mb: Option<i64>,
    /// Default: the larger of the source's volume and what the restore needs ([`super::checks::volume_needed_gb`]).
    pub volume_gb: Option<i64>,
}

/// A restore as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub source: ClusterRef,
    pub target: RestoreTarget,
    /// The Postgres timeline to follow, when the archive has more than one (default: the main one).
    pub timeline: Option<u32>,
    pub destination: Destination,
    /// A read-only query the restored data must satisfy (its first value true or non-empty), run in a read-only
    /// transaction after the recovery; one statement only ([`super::checks::assertion`] says exactly what passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<String>,
    /// The database the assertion runs in (default `postgres`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion_database: Option<String>,
}

/// Fly's rule for an app name, as flyctl checks it (`internal/command/launch/plan_builder.go::validateAppName`:
/// only `[a-z0-9-]`), plus what the name becomes, a DNS label (`<app>.fly.dev`, `<app>.internal`): 1 to 63
/// characters, not starting or ending with a dash.
pub fn check_app_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err(format!(
            "the app name '{name}' must be 1 to 63 characters long"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "the app name '{name}' holds {c:?}: Fly app names consist of only lowercase letters, numbers and dashes"
        ));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(format!(
            "the app name '{name}' starts or ends with a dash, which a host name cannot"
        ));
    }
    Ok(())
}

/// Fly's regions (`GET /v1/platform/regions`; `fly platform regions`), kept here because the Machines client
/// has no call for the list and a wrong region must be refused before any call.
pub const REGIONS: [&str; 35] = [
    "ams", "arn", "atl", "bog", "bom", "bos", "cdg", "den", "dfw", "ewr", "eze", "fra", "gdl",
    "gig", "gru", "hkg", "iad", "jnb", "lax", "lhr", "mad", "mia", "nrt", "ord", "otp", "phx",
    "qro", "scl", "sea", "sin", "sjc", "syd", "waw", "yul", "yyz",
];

/// Whether `region` is one of [`REGIONS`].
pub fn known_region(region: &str) -> bool {
    REGIONS.contains(&region)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for good in ["a", "prod-db-restore", "db2", &"a".repeat(63)] {
            assert!(check_app_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Prod", "prod_db", "-db", "db-", "db.x", &"a".repeat(64)] {
            assert!(check_app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags() {
        assert_eq!(
            RestoreTarget::from_flags(true, None, None, None),
            Ok(RestoreTarget::Latest)
        );
        assert!(RestoreTarget::from_flags(true, Some("2026-03-01 12:00"), None, None).is_err());
        assert!(RestoreTarget::from_flags(false, None, None, None).is_err());
        assert_eq!(
            RestoreTarget::from_flags(false, None, Some("0/3000028"), None),
            Ok(RestoreTarget::Lsn {
                lsn: "0/3000028".into()
            })
        );
        assert!(RestoreTarget::from_flags(false, None, Some("zz"), None).is_err());
    }
}
