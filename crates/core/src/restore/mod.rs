//! The restore's pre-flight plan (issue #13 items 1a–1c): [`Restores::preflight`] reads the source cluster on
//! Fly, its wal-g archive, the escrow and the destination's name, and either returns a [`Plan`] or refuses with
//! EVERY reason at once. It only reads: no call that changes anything on Fly (the wal-g index it refreshes is
//! Walden's own cache). [`Restores::plan`] stores the plan under its hash (`restore_plans`) with its
//! `restore.plan` audit row; the engine (later) runs a stored plan's [`Step`]s by hash.
//!
//! One place per concern: [`request`] (what is asked and the rules on its words), [`checks`] (each refusal
//! rule), [`steps`] (the Fly calls, exec argv, init spec, pgParameters, estimate), [`hash`] (canonical JSON and
//! SHA-256), [`store`] (the table), [`engine`] (running a stored plan: the runs, the worker's unit, the steps'
//! executors), [`cutover`] (after a verified restore: the cutover, its checklist and the rollback).

pub mod checks;
pub mod cutover;
pub mod engine;
mod existing;
pub mod hash;
pub mod request;
pub mod steps;
mod store;

use std::collections::BTreeMap;

use fly::{FlyClient, ListMachines, Machine};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use walg::{BucketTimeline, PlanOutcome, Reader};

use crate::access::{Actor, RequestMeta, Role};
use crate::audit::{self, AuditError, Event, Outcome};
use crate::backups::Backups;
use crate::escrow::{Escrow, STORAGE_PREFIXES};
use crate::orgs::Orgs;
use crate::ts;

pub use existing::IMAGE_DATABASES;
pub use request::{ClusterRef, Destination, DestinationKind, RestoreRequest, RestoreTarget};
pub use steps::Step;

/// Audit actions of this module.
pub mod actions {
    /// A restore plan computed and stored (`ok`, with its hash) or refused (`failed`, with the reasons' codes).
    pub const RESTORE_PLAN: &str = "restore.plan";
}

/// One reason a restore cannot go ahead: what is wrong and what to do, in plain words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable, for tests and the UI (`name_taken`, `after_last_commit`, …).
    pub code: String,
    pub what: String,
    pub fix: String,
}

impl Reason {
    pub fn new(code: &str, what: String, fix: String) -> Self {
        Reason {
            code: code.to_owned(),
            what,
            fix,
        }
    }
}

/// Every reason the restore is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub reasons: Vec<Reason>,
}

impl Refused {
    pub fn codes(&self) -> Vec<&str> {
        self.reasons.iter().map(|r| r.code.as_str()).collect()
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "The restore is refused:")?;
        for r in &self.reasons {
            writeln!(f, "- {} {}", r.what, r.fix)?;
        }
        Ok(())
    }
}

/// Why planning did not produce a stored plan.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Refused(Refused),
    #[error("planning a restore needs the operator or admin role")]
    Forbidden,
    #[error("the restore plans could not be read or written: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a restore plan could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The base backup and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupChoice {
    pub name: String,
    pub why: String,
    pub timeline: u32,
    /// Delta ancestors `backup-fetch` restores first.
    pub delta_chain: Vec<String>,
    pub pg_version: Option<i64>,
    pub stored_bytes: Option<i64>,
    pub uncompressed_bytes: Option<i64>,
}

/// The WAL to replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalRange {
    pub from: String,
    pub to: String,
    pub segments: u64,
    /// As stored (compressed).
    pub stored_bytes: u64,
    /// Full segments, as replayed.
    pub replay_bytes: u64,
}

/// The escrowed credential version the restored cluster gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowChoice {
    pub version: i64,
    pub captured_at: String,
    pub captured_by: String,
    /// The time the version was chosen for (it is the last captured at or before it).
    pub valid_at: String,
    /// The latest proof of each role for this version: `role: ok|failed at …`, or none yet.
    pub last_proofs: Vec<String>,
}

/// The destination cluster: new, or an existing empty one ([`NewCluster::existing`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCluster {
    /// An existing cluster made with `fly pg create`, restored into (its machines' image, size and volume are
    /// its own); not serialised when false, so a new cluster's plan keeps its hash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    pub org: String,
    pub app: String,
    pub region: String,
    /// The source's image (by digest when Fly gave one).
    pub image: String,
    pub pg_version: Option<String>,
    pub memory_mb: i64,
    pub cpus: i64,
    pub cpu_kind: String,
    pub volume_gb: i64,
    /// The rule the volume was checked against.
    pub volume_rule: String,
    /// The new cluster's own wal-g prefix (never the source's), and the variable it goes in.
    pub walg_prefix: String,
    pub walg_prefix_variable: String,
}

/// The pgParameters and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    pub values: BTreeMap<String, String>,
    pub source: String,
}

/// The estimated duration and the rates it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    pub seconds: u64,
    pub how: String,
}

/// A pre-flight plan. Holds no secret; [`Plan::hash`] identifies it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Format of this document.
    pub format: u32,
    pub source: ClusterRef,
    pub target: RestoreTarget,
    pub backup: BackupChoice,
    /// The recovery settings PostgreSQL gets (walg's plan).
    pub recovery: walg::Plan,
    pub wal: WalRange,
    pub escrow: EscrowChoice,
    pub destination: NewCluster,
    pub pg_parameters: Parameters,
    pub estimate: Estimate,
    /// In order; the engine runs these.
    pub steps: Vec<Step>,
    pub never_touched: Vec<String>,
    pub notes: Vec<String>,
}

impl Plan {
    /// SHA-256 of the canonical JSON.
    pub fn hash(&self) -> String {
        hash::hash(&serde_json::to_value(self).unwrap_or_default())
    }

    /// The canonical JSON text that is hashed.
    pub fn canonical(&self) -> String {
        hash::canonical(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// A plan as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPlan {
    pub hash: String,
    pub plan: Plan,
    pub created_by: String,
    pub created_at: String,
}

/// The restore planner as a service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Restores {
    pool: SqlitePool,
    escrow: Escrow,
    orgs: Orgs,
    backups: Backups,
}

/// What was read of the source cluster (or an existing destination) on Fly.
#[derive(Clone)]
struct SourceFacts {
    image: String,
    pg_label: Option<String>,
    memory_mb: Option<i64>,
    cpus: i64,
    cpu_kind: String,
    region: String,
    volume_gb: Option<i64>,
    leader: Option<String>,
}

impl Restores {
    pub fn new(pool: SqlitePool, escrow: Escrow, orgs: Orgs, backups: Backups) -> Self {
        Restores {
            pool,
            escrow,
            orgs,
            backups,
        }
    }

    /// Plans and stores: [`Restores::preflight`], then the plan under its hash with a `restore.plan` row (a
    /// refusal writes a `failed` row with the reasons' codes). Operators and admins.
    #[tracing::instrument(skip_all, fields(org = %req.source.org, app = %req.source.app), err(level = "debug"))]
    pub async fn plan(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        req: &RestoreRequest,
    ) -> Result<StoredPlan, RestoreError> {
        let subject = format!("org:{}/app:{}", req.source.org, req.source.app);
        if !actor.has_role(Role::Operator) {
            let denied = Event::new(actions::RESTORE_PLAN, Outcome::Denied).subject(&subject);
            audit::record(&self.pool, actor, meta, &denied).await?;
            return Err(RestoreError::Forbidden);
        }
        match self.preflight(actor, meta, req).await {
            Ok(plan) => {
                let hash = plan.hash();
                store::save(&self.pool, actor, meta, req, &plan, &hash).await
            }
            Err(refused) => {
                let failed = Event::new(actions::RESTORE_PLAN, Outcome::Failed)
                    .subject(&subject)
                    .detail(serde_json::json!({ "refused": refused.codes(), "to": req.destination.app }));
                audit::record(&self.pool, actor, meta, &failed).await?;
                Err(RestoreError::Refused(refused))
            }
        }
    }

    /// A stored plan by hash.
    pub async fn stored(&self, hash: &str) -> Result<Option<StoredPlan>, RestoreError> {
        store::load(&self.pool, hash).await
    }

    /// The pre-flight: every check, every refusal reason, or the plan. Reads only.
    pub async fn preflight(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        req: &RestoreRequest,
    ) -> Result<Plan, Refused> {
        let (org, app) = (req.source.org.as_str(), req.source.app.as_str());
        let dest = &req.destination;
        let mut reasons = checks::request_words(req);
        if reasons.iter().any(|r| r.code == "bad_assertion") {
            // Refused before any Fly call: nothing is read or created for a query Walden will not run.
            return Err(Refused { reasons });
        }
        match self.orgs.tracked(actor).await {
            Ok(t) if t.iter().any(|c| c.org == org && c.app == app) => {}
            Ok(_) => {
                reasons.push(Reason::new(
                    "not_tracked",
                    format!("{org}/{app} is not a tracked cluster."),
                    "An admin tracks it in Settings → Fly organizations; then plan again.".into(),
                ));
                return Err(Refused { reasons });
            }
            Err(e) => {
                reasons.push(Reason::new(
                    "not_tracked",
                    format!("The tracked clusters cannot be read: {e}."),
                    "Sign in with a role that may see them.".into(),
                ));
                return Err(Refused { reasons });
            }
        }
        let client = match self.orgs.client_for(org).await {
            Ok(c) => Some(c),
            Err(e) => {
                reasons.push(Reason::new(
                    "fly_unreachable",
                    format!("Fly cannot be asked about {org}: {e}."),
                    "Check the organisation's token in Settings → Fly organizations.".into(),
                ));
                None
            }
        };
        let facts = match &client {
            Some(c) => match source_facts(c, app).await {
                Ok(f) => Some(f),
                Err(why) => {
                    reasons.push(Reason::new(
                        "source_unreadable",
                        format!("The source's machines could not be read: {why}."),
                        "Check that the app exists and the token can read it.".into(),
                    ));
                    None
                }
            },
            None => None,
        };
        let into_existing = dest.kind == DestinationKind::Existing;
        let mut existing_facts = None;
        if let (Some(c), Ok(())) = (&client, request::check_app_name(&dest.app)) {
            if !into_existing {
                reasons.extend(name_taken(c, &dest.app).await);
            } else if dest.app == app {
                reasons.push(Reason::new(
                    "into_source",
                    format!("{app} is the source: a restore never writes into the cluster it restores from."),
                    "Restore into another cluster.".into(),
                ));
            } else {
                existing::app_checks(c, org, &dest.app, &mut reasons).await;
                existing_facts = self.existing_facts(c, &dest.app, &mut reasons).await;
            }
        }
        let timeline = match self.read_archive(org, app).await {
            Ok(t) => Some(t),
            Err(r) => {
                reasons.push(r);
                None
            }
        };
        let chosen = timeline
            .as_ref()
            .and_then(|t| choose(t, req).map_err(|r| reasons.push(r)).ok());
        let (Some(timeline), Some(recovery), Some(facts)) = (timeline, chosen, facts) else {
            return Err(Refused { reasons });
        };
        let Some(backup) = timeline.backups.iter().find(|b| b.name == recovery.backup) else {
            reasons.push(Reason::new(
                "internal",
                "The chosen backup vanished from the timeline.".into(),
                "Plan again.".into(),
            ));
            return Err(Refused { reasons });
        };
        if let Some(existing) = &existing_facts {
            reasons.extend(existing::same_major(
                &backup.name,
                backup.pg_version,
                &dest.app,
                existing.pg_label.as_deref(),
            ));
        } else if into_existing {
            return Err(Refused { reasons });
        } else if let Some(r) = checks::same_major(
            &backup.name,
            backup.pg_version,
            &facts.image,
            facts.pg_label.as_deref(),
        ) {
            reasons.push(r);
        }
        // What the restored cluster runs on: the source's image and sizes for a new one, the existing
        // cluster's own machines and volume otherwise (checked by the same rules).
        let own = existing_facts.clone().unwrap_or_else(|| facts.clone());
        let valid_at = credentials_time(&req.target, backup);
        let escrow = self
            .escrow_choice(actor, meta, org, app, valid_at, &mut reasons)
            .await;
        let memory = match &existing_facts {
            Some(e) => e.memory_mb.unwrap_or(0),
            None => dest.memory_mb.unwrap_or(
                facts
                    .memory_mb
                    .unwrap_or(checks::MIN_MEMORY_MB)
                    .max(checks::MIN_MEMORY_MB),
            ),
        };
        if let Some(r) = checks::memory(memory, facts.memory_mb) {
            reasons.push(r);
        }
        let segment_size = timeline.segment_size;
        let replay_bytes = recovery.wal_segments.saturating_mul(segment_size);
        let (stored, uncompressed) = chain_sizes(&timeline, backup);
        let needed = checks::volume_needed_gb(uncompressed, recovery.wal_segments, segment_size);
        let volume_gb = match &existing_facts {
            Some(e) => e.volume_gb.unwrap_or(0),
            None => dest
                .volume_gb
                .unwrap_or(needed.max(facts.volume_gb.unwrap_or(0))),
        };
        if let Some(r) = checks::volume(volume_gb, needed) {
            reasons.push(r);
        }
        let storage = self.storage_facts(org, app, &dest.app).await;
        let Some(escrow) = escrow else {
            return Err(Refused { reasons });
        };
        if !reasons.is_empty() {
            return Err(Refused { reasons });
        }
        let (params_read, params_note) = match (&client, &facts.leader) {
            (Some(c), Some(leader)) => read_parameters(c, app, leader).await,
            _ => (None, "the source has no reachable leader".to_owned()),
        };
        let pg_parameters = Parameters {
            values: steps::pg_parameters(params_read.as_ref()),
            source: params_note,
        };
        let region = match &existing_facts {
            Some(e) => e.region.clone(),
            None => dest.region.clone().unwrap_or_else(|| facts.region.clone()),
        };
        let spec = steps::init_spec(&recovery, &pg_parameters.values);
        let (prefix_variable, new_prefix, storage_names) = storage;
        let steps_of = if into_existing {
            steps::steps_existing
        } else {
            steps::steps
        };
        let plan_steps = steps_of(&steps::StepsInput {
            org,
            source_app: app,
            app: &dest.app,
            region: &region,
            image: &own.image,
            memory_mb: memory,
            cpus: own.cpus,
            cpu_kind: &own.cpu_kind,
            volume_gb,
            escrow_version: escrow.version,
            storage_names: &storage_names,
            prefix_variable: &prefix_variable,
            new_prefix: &new_prefix,
            spec: &spec,
            assertion: req.assertion.as_deref(),
            assertion_database: req.assertion_database.as_deref(),
        });
        let volume_rule = format!(
            "at least {needed} GB: the backup uncompressed + {} WAL segments × {} MiB + {} % + 1 GB",
            recovery.wal_segments,
            segment_size / (1024 * 1024),
            checks::VOLUME_HEADROOM_PERCENT
        );
        let seconds = steps::estimate_secs(stored, replay_bytes);
        Ok(Plan {
            format: 1,
            source: req.source.clone(),
            target: req.target.clone(),
            backup: BackupChoice {
                name: backup.name.clone(),
                why: why_backup(&req.target, &recovery),
                timeline: backup.timeline,
                delta_chain: backup.delta_chain.clone(),
                pg_version: backup.pg_version,
                stored_bytes: backup.compressed_size,
                uncompressed_bytes: backup.uncompressed_size,
            },
            wal: WalRange {
                from: recovery.wal_from.clone(),
                to: recovery.wal_to.clone(),
                segments: recovery.wal_segments,
                stored_bytes: recovery.wal_bytes,
                replay_bytes,
            },
            notes: {
                let mut notes = recovery.notes.clone();
                if into_existing {
                    notes.push(format!(
                        "{}: its SU_PASSWORD, REPL_PASSWORD and OPERATOR_PASSWORD secrets are REPLACED with the \
                         source's escrowed ones (version {}); all its machines but one are stopped (started again \
                         by cancel and clean-up); nothing in it is destroyed",
                        dest.app, escrow.version
                    ));
                }
                notes
            },
            recovery,
            escrow,
            destination: NewCluster {
                existing: into_existing,
                org: org.to_owned(),
                app: dest.app.clone(),
                region,
                image: own.image,
                pg_version: own.pg_label,
                memory_mb: memory,
                cpus: own.cpus,
                cpu_kind: own.cpu_kind,
                volume_gb,
                volume_rule,
                walg_prefix: new_prefix,
                walg_prefix_variable: prefix_variable,
            },
            pg_parameters,
            estimate: Estimate {
                seconds,
                how: format!(
                    "{} s fixed (app, volume, machine, boot) + stored backup bytes at {} MiB/s + replayed WAL at {} MiB/s",
                    steps::FIXED_SECS,
                    steps::FETCH_BYTES_PER_SEC / (1024 * 1024),
                    steps::REPLAY_BYTES_PER_SEC / (1024 * 1024)
                ),
            },
            steps: plan_steps,
            never_touched: vec![
                format!("{org}/{app}: its machines, volumes and secrets are never changed (only read)"),
                "the source's wal-g prefix: only read (wal-fetch, backup-fetch), never written".to_owned(),
            ],
        })
    }

    /// The existing destination's machines (Fly's Stolon image), sizes and emptiness; `None` (with the reasons)
    /// when it cannot be restored into. Reads only.
    async fn existing_facts(
        &self,
        client: &FlyClient,
        app: &str,
        reasons: &mut Vec<Reason>,
    ) -> Option<SourceFacts> {
        if reasons.iter().any(|r| r.code == "no_such_app") {
            return None;
        }
        let machines = existing::stolon_machines(client, app, reasons).await;
        if reasons.iter().any(|r| r.code == "not_stolon") {
            return None;
        }
        let facts = match source_facts(client, app).await {
            Ok(f) => f,
            Err(why) => {
                reasons.push(Reason::new(
                    "destination_unreadable",
                    format!("The machines of {app} could not be read: {why}."),
                    "Check that the token can read the app.".into(),
                ));
                return None;
            }
        };
        let asked = facts.leader.clone().or_else(|| {
            machines
                .iter()
                .find(|m| m.state == "started")
                .map(|m| m.id.clone())
        });
        match asked {
            Some(machine) => reasons.extend(existing::emptiness(client, app, &machine).await),
            None => reasons.push(Reason::new(
                "emptiness_unknown",
                format!("{app} has no started machine to check that it is empty."),
                "Start one (fly machine start -a APP) and plan again.".into(),
            )),
        }
        Some(facts)
    }

    /// The source's archive, read now through the newest escrowed storage settings (as the monitor does).
    async fn read_archive(&self, org: &str, app: &str) -> Result<BucketTimeline, Reason> {
        let unreadable = |what: String| {
            Reason::new(
                "bucket_unreadable",
                what,
                "Check the escrowed wal-g settings (capture them again) and the bucket's permissions.".into(),
            )
        };
        let settings = match self.escrow.storage_settings(org, app).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(Reason::new(
                    "no_escrow",
                    format!(
                        "No credentials of {org}/{app} are escrowed, so its archive is unknown."
                    ),
                    "Capture them: walden escrow capture.".into(),
                ))
            }
            Err(e) => {
                return Err(unreadable(format!(
                    "The escrowed storage settings cannot be opened: {e}."
                )))
            }
        };
        let config = settings.config().map_err(|e| {
            unreadable(format!(
                "The escrowed storage settings are not usable: {e}."
            ))
        })?;
        drop(settings);
        let reader = Reader::connect(&config)
            .await
            .map_err(|e| unreadable(format!("The archive cannot be read: {e}.")))?;
        let refreshed = self
            .backups
            .refresh(&reader)
            .await
            .map_err(|e| unreadable(format!("The archive cannot be read: {e}.")))?;
        let mut timeline = refreshed.timeline(ts::now());
        reader
            .attach_last_commit(&mut timeline, None, walg::LAST_COMMIT_SEGMENTS)
            .await;
        Ok(timeline)
    }

    /// The escrow version valid at `at`, with its proofs; pushes a reason when there is none, it lacks a
    /// password or a password would break the image.
    async fn escrow_choice(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        at: Option<time::OffsetDateTime>,
        reasons: &mut Vec<Reason>,
    ) -> Option<EscrowChoice> {
        let valid_at = match at {
            Some(t) => walg::plan::exact_time(t),
            None => "the end of the archived WAL (the newest version)".to_owned(),
        };
        let when = at.unwrap_or_else(ts::now);
        let version = match self.escrow.version_at(actor, meta, org, app, when).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                reasons.push(Reason::new(
                    "no_escrow_at_target",
                    format!(
                        "No escrowed credentials of {org}/{app} were captured at or before {valid_at}: the restored \
                         roles' passwords are unknown."
                    ),
                    "Choose a later target, or enter the passwords of that time by hand (walden escrow enter).".into(),
                ));
                return None;
            }
            Err(e) => {
                reasons.push(Reason::new(
                    "escrow_unreadable",
                    format!("The escrow cannot be read: {e}."),
                    "Check the master key.".into(),
                ));
                return None;
            }
        };
        match self
            .escrow
            .password_verdicts(org, app, version.version, checks::password_breaks)
            .await
        {
            Ok(verdicts) => {
                for (field, why) in verdicts {
                    if let Some(why) = why {
                        reasons.push(Reason::new(
                            "password_breaks_image",
                            format!("The escrowed {field} (version {}) cannot be used: {why}.", version.version),
                            "Change the password on the source to letters and digits only, capture again, and restore to a later time.".into(),
                        ));
                    }
                }
            }
            Err(e) => reasons.push(Reason::new(
                "escrow_unreadable",
                format!("The escrowed passwords cannot be opened: {e}."),
                "Check the master key.".into(),
            )),
        }
        let proofs = self
            .escrow
            .latest_proofs(actor, meta, org, app)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p.version == version.version)
            .map(|p| {
                format!(
                    "{}: {} at {}",
                    p.role,
                    if p.ok { "opens" } else { "failed" },
                    p.proven_at
                )
            })
            .collect();
        Some(EscrowChoice {
            version: version.version,
            captured_at: version.captured_at,
            captured_by: version.captured_by,
            valid_at,
            last_proofs: proofs,
        })
    }

    /// The wal-g prefix variable, the new cluster's own prefix and the storage settings' names (never values).
    async fn storage_facts(
        &self,
        org: &str,
        app: &str,
        new_app: &str,
    ) -> (String, String, Vec<String>) {
        let Ok(Some(settings)) = self.escrow.storage_settings(org, app).await else {
            return (String::new(), String::new(), Vec::new());
        };
        let names: Vec<String> = settings
            .names()
            .into_iter()
            .filter(|n| STORAGE_PREFIXES.iter().any(|p| n.starts_with(p)))
            .map(str::to_owned)
            .collect();
        let variable = names
            .iter()
            .find(|n| n.starts_with("WALG_") && n.ends_with("_PREFIX"))
            .cloned()
            .unwrap_or_else(|| "WALG_S3_PREFIX".into());
        let url = settings
            .config()
            .map(|c| c.display_url())
            .unwrap_or_default();
        let prefix = new_prefix(&url, new_app);
        // WALG_FILE_PREFIX is a path; the other prefixes are URLs (s3://, gs://, azure://).
        let prefix = match (variable.as_str(), prefix.strip_prefix("file://")) {
            ("WALG_FILE_PREFIX", Some(path)) => path.to_owned(),
            _ => prefix,
        };
        (variable, prefix, names)
    }
}

/// What `backup-fetch` downloads (the stored sizes of the backup and its delta ancestors) and the largest
/// uncompressed size along the chain (a delta's own size is only its changes; the full one below it is the
/// database's).
fn chain_sizes(timeline: &BucketTimeline, backup: &walg::Backup) -> (u64, u64) {
    let size = |v: Option<i64>| v.and_then(|b| u64::try_from(b).ok()).unwrap_or(0);
    let chain = std::iter::once(backup).chain(
        backup
            .delta_chain
            .iter()
            .filter_map(|name| timeline.backups.iter().find(|b| &b.name == name)),
    );
    chain.fold((0, 0), |(stored, largest), b| {
        (
            stored + size(b.compressed_size),
            largest.max(size(b.uncompressed_size)),
        )
    })
}

/// `name_taken` when an app of that name exists (look with `GET /v1/apps/{name}`: 404 means free), or
/// `name_unchecked` when Fly could not say.
async fn name_taken(client: &FlyClient, name: &str) -> Option<Reason> {
    match client.get_app(name).await {
        Ok(_) => Some(Reason::new(
            "name_taken",
            format!("An app named {name} exists already."),
            "Choose another name: the restore always creates a new app.".into(),
        )),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => Some(Reason::new(
            "name_unchecked",
            format!("Fly could not say whether {name} is free: {e}."),
            "Try again in a moment.".into(),
        )),
    }
}

/// walg's choice of backup and recovery settings for the request's target, or its refusal as a reason.
fn choose(timeline: &BucketTimeline, req: &RestoreRequest) -> Result<walg::Plan, Reason> {
    let Some(target) = req.target.to_walg() else {
        return Err(Reason::new(
            "bad_lsn",
            "The LSN does not parse.".into(),
            "Give an LSN like 0/3000028.".into(),
        ));
    };
    match timeline.choose_backup(&target, req.timeline) {
        PlanOutcome::Plan(p) => Ok(*p),
        PlanOutcome::Refusal(r) => Err(Reason::new(&r.code, r.reason, fix_for(&r.code))),
    }
}

/// A prefix beside the source's, named after the new app (never the source's own).
pub fn new_prefix(source_url: &str, new_app: &str) -> String {
    let trimmed = source_url.trim_end_matches('/');
    let parent = trimmed.rsplit_once('/').map(|(p, _)| p).unwrap_or(trimmed);
    let candidate = format!("{parent}/{new_app}");
    if candidate == trimmed {
        format!("{trimmed}-restored")
    } else {
        candidate
    }
}

/// The image, its Postgres version, machine size, region, volume and leader of the source.
async fn source_facts(client: &FlyClient, app: &str) -> Result<SourceFacts, String> {
    let machines = client
        .list_machines(app, &ListMachines::default())
        .await
        .map_err(|e| e.to_string())?;
    let machines: Vec<Machine> = machines.into_iter().filter(|m| !m.is_gone()).collect();
    let leader = fly::stolon::find_leader(&machines)
        .ok()
        .map(|m| m.id.clone());
    let first = leader
        .as_ref()
        .and_then(|l| machines.iter().find(|m| &m.id == l))
        .or_else(|| machines.first())
        .ok_or_else(|| format!("{app} has no machines"))?;
    let image_ref = first.image_ref.as_ref();
    let image = match (
        image_ref.and_then(|r| r.repository.clone()),
        image_ref.and_then(|r| r.digest.clone()),
    ) {
        (Some(repo), Some(digest)) if !digest.is_empty() => format!("{repo}@{digest}"),
        _ => first.image().unwrap_or_default(),
    };
    let pg_label = image_ref
        .and_then(|r| {
            r.labels
                .get("fly.pg-version")
                .cloned()
                .or_else(|| r.tag.clone())
        })
        .filter(|v| !v.is_empty());
    let guest = first.config.as_ref().and_then(|c| c.guest.clone());
    let region = first
        .config
        .as_ref()
        .and_then(|c| c.env.get("PRIMARY_REGION").cloned())
        .or_else(|| Some(first.region.clone()).filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "iad".into());
    let volume_gb = client
        .list_volumes(app)
        .await
        .ok()
        .and_then(|v| v.iter().filter_map(|v| v.size_gb).max());
    Ok(SourceFacts {
        image,
        pg_label,
        memory_mb: guest.as_ref().and_then(|g| g.memory_mb),
        cpus: guest.as_ref().and_then(|g| g.cpus).unwrap_or(1),
        cpu_kind: guest
            .and_then(|g| g.cpu_kind)
            .unwrap_or_else(|| "shared".into()),
        region,
        volume_gb,
        leader,
    })
}

/// The source's pgParameters from `stolonctl clusterdata read` on its leader (an argv array, no shell
/// string of ours), and a line saying where they came from.
async fn read_parameters(
    client: &FlyClient,
    app: &str,
    leader: &str,
) -> (Option<BTreeMap<String, String>>, String) {
    let stolon = fly::stolon::Stolon::new(client.clone(), app);
    match stolon.stolonctl(leader, &["clusterdata", "read"], 30).await {
        Ok(doc) => match steps::parameters_of_clusterdata(&doc) {
            Some(p) => (Some(p), format!("read from the source's leader {leader} (stolonctl clusterdata read)")),
            None => (None, "the source's cluster data holds no pgParameters; the image's and PostgreSQL's defaults were used".into()),
        },
        Err(e) => (None, format!("the source could not be read ({e}); the image's and PostgreSQL's defaults were used for the max_* settings")),
    }
}

/// The time whose escrowed credentials the restore uses: those valid at the point restored to. A time target
/// is that time; a named backup or an LSN, the backup's end (the LSN's own time is not known before replay).
/// Latest uses now: the restore runs to the end of the archived WAL, which is as late as anything captured, so
/// the newest version is the one nearest to it (and `FLY_RESTORED_FROM` sets the three roles to its passwords).
/// `None` stands for now (the plan then says "the newest version", so its hash does not change by the second).
fn credentials_time(target: &RestoreTarget, backup: &walg::Backup) -> Option<time::OffsetDateTime> {
    match target {
        RestoreTarget::Time { at } => Some(*at),
        RestoreTarget::Latest => None,
        RestoreTarget::Lsn { .. } | RestoreTarget::Backup { .. } => {
            Some(backup.finish_time.unwrap_or(backup.sentinel_modified))
        }
    }
}

/// Why this backup, in words.
fn why_backup(target: &RestoreTarget, p: &walg::Plan) -> String {
    match target {
        RestoreTarget::Latest => format!(
            "the newest backup whose WAL reaches the end of timeline {}",
            p.recovery_target_timeline
        ),
        RestoreTarget::Time { .. } => format!(
            "the newest backup finished by {} with unbroken WAL up to it",
            p.recovery_target_time.as_deref().unwrap_or("the target")
        ),
        RestoreTarget::Lsn { lsn } => {
            format!("the newest backup finished by {lsn} with unbroken WAL up to it")
        }
        RestoreTarget::Backup { name } => {
            format!("{name}, as asked, restored to its consistency point")
        }
    }
}

/// What to do about a refusal of walg's planner.
fn fix_for(code: &str) -> String {
    match code {
        "after_last_commit" | "after_latest" => "Choose an earlier time, or --latest.".into(),
        "before_earliest" => "Choose a later time.".into(),
        "wal_gap" | "not_covered" | "lsn_unreachable" => {
            "Choose a target inside a restorable window (walden timeline shows them).".into()
        }
        "unknown_backup" | "backup_not_restorable" => {
            "Choose another backup (walden timeline lists them).".into()
        }
        "unknown_timeline" => "Choose one of the listed timelines.".into(),
        _ => "Take a new base backup and plan again.".into(),
    }
}
