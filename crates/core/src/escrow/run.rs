//! Escrow end to end: capture a tracked cluster's credentials from Fly, prove the escrowed passwords with a
//! login, or take them typed in by a person when the cluster's Machines are down.
//!
//! The Fly side lives in `fly::escrow` (what to run on which Machine); the sealed store in the rest of this
//! module. This file only joins them: resolve the organisation's Fly client through [`Orgs`] (an added org's
//! sealed token, or the environment's), refuse clusters nobody chose to track, and record what Fly answered.
//! Every refusal writes its audit row; the escrowed passwords opened for a proof are audited as a proof (not a
//! reveal) before they are opened, and never leave core except on exec stdin to the cluster itself.

use std::collections::BTreeMap;

use fly::escrow::{self as fly_escrow, ProofOutcome};
use fly::stolon::ClusterCredentials;
use secrecy::SecretString;

use super::{
    actions, check_cluster, check_field, secret_from, target, CaptureHow, CaptureOutcome, Escrow,
    EscrowError, StoredValue, PASSWORD_FIELDS,
};
use crate::access::{Actor, RequestMeta, Role};
use crate::alerts::{kinds::ESCROW_PROOF_FAILED, AlertSpec, Severity};
use crate::audit::{self, Event, Outcome};

/// What [`Escrow::capture`] did: the recorded outcome and where the values came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureReport {
    pub outcome: CaptureOutcome,
    /// [`CaptureHow::Exec`] normally; [`CaptureHow::SecretsApi`] when every Machine was stopped and Fly's
    /// secrets API gave the values instead (the app's newest values, not necessarily the running ones).
    pub how: CaptureHow,
}

/// The result of one role's login proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleStatus {
    /// The escrowed password opens the role.
    Opens,
    /// Postgres refused the escrowed password: it was changed behind Walden's back. Alert-worthy.
    Fails,
    /// The check could not run (Postgres down, exec failed); nothing was proven either way, and no proof row
    /// was written (the audit log has a `failed` row).
    CouldNotCheck(String),
}

/// One role of a [`ProofReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleResult {
    pub role: String,
    pub status: RoleStatus,
    /// The Machine the login ran on, and whether it was the leader (see `fly::escrow::prove_logins`).
    pub machine_id: String,
    pub on_leader: bool,
}

/// What [`Escrow::prove`] found for the cluster's current version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofReport {
    pub version: i64,
    pub roles: Vec<RoleResult>,
}

impl ProofReport {
    /// The roles whose escrowed password no longer opens them: a restore with this version would fail.
    pub fn failing(&self) -> Vec<&str> {
        self.roles
            .iter()
            .filter(|r| r.status == RoleStatus::Fails)
            .map(|r| r.role.as_str())
            .collect()
    }

    /// Every role was proven to open.
    pub fn all_open(&self) -> bool {
        self.roles.iter().all(|r| r.status == RoleStatus::Opens)
    }
}

impl Escrow {
    /// Capture the credentials of the tracked cluster `org`/`app` from its leader's environment (one
    /// `printenv -0` exec) and record them as a new version when a value changed. When every Machine is
    /// stopped the values come from Fly's secrets API instead, recorded as [`CaptureHow::SecretsApi`]; any
    /// other Fly refusal (no leader, no access, not Stolon) is returned, and audited, as it is. Operators and
    /// up.
    #[tracing::instrument(skip_all, fields(org = org, app = app), err(level = "debug"))]
    pub async fn capture(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<CaptureReport, EscrowError> {
        check_cluster(org, app)?;
        let action = actions::ESCROW_CAPTURE;
        self.require(actor, meta, Role::Operator, action, org, app)
            .await?;
        let client = match self.ready_client(org, app).await {
            Ok(c) => c,
            Err(e) => return self.refused(actor, meta, action, org, app, e).await,
        };
        let captured = match fly_escrow::capture_credentials(&client, app).await {
            Ok(c) => Ok((c, CaptureHow::Exec)),
            Err(fly_escrow::EscrowError::AllStopped { .. }) => {
                fly_escrow::capture_from_secrets_api(&client, app)
                    .await
                    .map(|c| (c, CaptureHow::SecretsApi))
            }
            Err(e) => Err(e),
        };
        let (captured, how) = match captured {
            Ok(c) => c,
            Err(e) => {
                let e = EscrowError::Fly(Box::new(e));
                return self.refused(actor, meta, action, org, app, e).await;
            }
        };
        // A storage setting whose name escrow does not keep (e.g. `AWS_lower`) is skipped by name rather than
        // refusing the whole capture; the three passwords are always kept names.
        let (values, skipped): (
            BTreeMap<String, SecretString>,
            BTreeMap<String, SecretString>,
        ) = captured
            .fields()
            .map(|(name, value)| (name.to_owned(), value.clone()))
            .partition(|(name, _)| check_field(name).is_ok());
        if !skipped.is_empty() {
            tracing::warn!(org, app, skipped = ?skipped.keys().collect::<Vec<_>>(),
                "captured settings with names escrow does not keep were skipped");
        }
        let outcome = self
            .record_capture(actor, meta, org, app, how, &values)
            .await?;
        Ok(CaptureReport { outcome, how })
    }

    /// Prove that the current version's three passwords still open their roles, with a login on the
    /// cluster (the password on exec stdin only), and record a proof row per role. A password Postgres
    /// refuses is a failed proof row ([`ProofReport::failing`]); a check that could not run records none.
    /// The passwords are opened only after an audit row says so (as a proof, not a reveal). Operators and up.
    #[tracing::instrument(skip_all, fields(org = org, app = app), err(level = "debug"))]
    pub async fn prove(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<ProofReport, EscrowError> {
        check_cluster(org, app)?;
        let action = actions::ESCROW_PROOF;
        self.require(actor, meta, Role::Operator, action, org, app)
            .await?;
        let client = match self.ready_client(org, app).await {
            Ok(c) => c,
            Err(e) => return self.refused(actor, meta, action, org, app, e).await,
        };
        let (version, passwords) = match self.open_passwords(actor, meta, org, app).await {
            Ok(opened) => opened,
            Err(e) => return self.refused(actor, meta, action, org, app, e).await,
        };
        let proofs = match fly_escrow::prove_logins(&client, app, &passwords).await {
            Ok(p) => p,
            Err(e) => {
                let e = EscrowError::Fly(Box::new(e));
                return self.refused(actor, meta, action, org, app, e).await;
            }
        };
        drop(passwords);
        let mut roles = Vec::with_capacity(proofs.len());
        for proof in proofs {
            let status = match proof.outcome {
                ProofOutcome::Opens => RoleStatus::Opens,
                ProofOutcome::WrongPassword => RoleStatus::Fails,
                ProofOutcome::CouldNotCheck(why) => RoleStatus::CouldNotCheck(why),
            };
            match &status {
                RoleStatus::Opens | RoleStatus::Fails => {
                    let ok = status == RoleStatus::Opens;
                    let message = (!ok).then(|| {
                        format!(
                            "the escrowed password of {} ({}) no longer opens the role",
                            proof.role, proof.variable
                        )
                    });
                    self.record_proof(
                        actor,
                        meta,
                        org,
                        app,
                        version,
                        proof.role,
                        ok,
                        message.as_deref(),
                    )
                    .await?;
                }
                RoleStatus::CouldNotCheck(why) => {
                    let why: String = why.chars().take(300).collect();
                    let event = Event::new(action, Outcome::Failed)
                        .target(target(org, app, Some(version)))
                        .detail(serde_json::json!({
                            "version": version,
                            "role": proof.role,
                            "could_not_check": why,
                        }));
                    audit::record(&self.pool, actor, meta, &event).await?;
                }
            }
            roles.push(RoleResult {
                role: proof.role.to_owned(),
                status,
                machine_id: proof.machine_id,
                on_leader: proof.on_leader,
            });
        }
        let report = ProofReport { version, roles };
        self.alert_on_proof(actor, meta, org, app, &report).await?;
        Ok(report)
    }

    /// A kept password that no longer opens its role is an alert, not a silent state: raise
    /// `escrow_proof_failed` for the cluster when a role fails, resolve it when every role opens again (a
    /// check that could not run changes nothing).
    async fn alert_on_proof(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        report: &ProofReport,
    ) -> Result<(), EscrowError> {
        let alerts = crate::alerts::Alerts::new(self.pool.clone());
        let failing: Vec<&str> = report
            .roles
            .iter()
            .filter(|r| r.status == RoleStatus::Fails)
            .map(|r| r.role.as_str())
            .collect();
        if !failing.is_empty() {
            let message = format!(
                "The kept password of {} on {org}/{app} (version {}) no longer opens its role: a restore with \
                 it would fail. Capture again, or find out who changed it.",
                failing.join(", "),
                report.version
            );
            let spec =
                AlertSpec::cluster(ESCROW_PROOF_FAILED, Severity::Critical, org, app, message);
            alerts.raise(actor, meta, &spec).await?;
        } else if report.roles.iter().all(|r| r.status == RoleStatus::Opens) {
            let key = crate::alerts::cluster_key(ESCROW_PROOF_FAILED, org, app);
            let resolution = format!(
                "Every role of {org}/{app} opens again with the kept passwords (version {}).",
                report.version
            );
            alerts.resolve(actor, meta, &key, &resolution).await?;
        }
        Ok(())
    }

    /// Record credentials typed in by a person for the tracked cluster `org`/`app`, whose Machines are down
    /// so nothing can be read from them ([`CaptureHow::ManualMachinesDown`]). Same rules as a capture: the
    /// three passwords, optional storage settings, a new version only when something changed. Operators and
    /// up.
    #[tracing::instrument(skip_all, fields(org = org, app = app), err(level = "debug"))]
    pub async fn enter_manually(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
        values: &BTreeMap<String, SecretString>,
    ) -> Result<CaptureOutcome, EscrowError> {
        check_cluster(org, app)?;
        let action = actions::ESCROW_CAPTURE;
        self.require(actor, meta, Role::Operator, action, org, app)
            .await?;
        if let Err(e) = self.ensure_tracked(org, app).await {
            return self.refused(actor, meta, action, org, app, e).await;
        }
        self.record_capture(
            actor,
            meta,
            org,
            app,
            CaptureHow::ManualMachinesDown,
            values,
        )
        .await
    }

    /// The Fly client acting in `org`, once the keyring is there and `org`/`app` is tracked.
    async fn ready_client(&self, org: &str, app: &str) -> Result<fly::FlyClient, EscrowError> {
        self.keyring()?;
        self.ensure_tracked(org, app).await?;
        let orgs = self.orgs.as_ref().ok_or(EscrowError::NoFly)?;
        orgs.client_for(org)
            .await
            .map_err(|e| EscrowError::Org(Box::new(e)))
    }

    /// Refuse a cluster nobody chose to track (an admin tracks it with `walden org track`).
    async fn ensure_tracked(&self, org: &str, app: &str) -> Result<(), EscrowError> {
        let tracked: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tracked_clusters WHERE org = ? AND app = ? AND untracked_at IS NULL",
        )
        .bind(org)
        .bind(app)
        .fetch_optional(&self.pool)
        .await?;
        match tracked {
            Some(_) => Ok(()),
            None => Err(EscrowError::NotTracked {
                org: org.to_owned(),
                app: app.to_owned(),
            }),
        }
    }

    /// The current version's three passwords, opened for a login proof. The audit row saying they were
    /// opened (and why) is written first: no row, no plaintext.
    async fn open_passwords(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        org: &str,
        app: &str,
    ) -> Result<(i64, ClusterCredentials), EscrowError> {
        let ring = self.keyring()?.clone();
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(version) FROM escrow_versions WHERE org = ? AND app = ?",
        )
        .bind(org)
        .bind(app)
        .fetch_one(&self.pool)
        .await?;
        let version = version.ok_or_else(|| EscrowError::NotFound {
            what: format!("version of {org}/{app}: capture it first"),
        })?;
        let rows: Vec<StoredValue> = StoredValue::of_version(&self.pool, org, app, version)
            .await?
            .into_iter()
            .filter(|r| PASSWORD_FIELDS.contains(&r.field.as_str()))
            .collect();
        let event = Event::new(actions::ESCROW_PROOF, Outcome::Ok)
            .target(target(org, app, Some(version)))
            .detail(serde_json::json!({
                "version": version,
                "opened_for": "login proof",
                "fields": rows.iter().map(|r| r.field.as_str()).collect::<Vec<_>>(),
            }));
        audit::record(&self.pool, actor, meta, &event).await?;
        let open = |field: &str| -> Result<SecretString, EscrowError> {
            let row =
                rows.iter()
                    .find(|r| r.field == field)
                    .ok_or_else(|| EscrowError::NotFound {
                        what: format!("{field} in version {version} of {org}/{app}"),
                    })?;
            secret_from(self.open_value(&ring, row)?, || row.place())
        };
        let passwords = ClusterCredentials {
            su_password: open("SU_PASSWORD")?,
            repl_password: open("REPL_PASSWORD")?,
            operator_password: open("OPERATOR_PASSWORD")?,
        };
        Ok((version, passwords))
    }

    /// Write the `failed` audit row of an operation refused after the role check, and return the refusal
    /// (the audit error instead, when the row cannot be written: the log fails closed).
    async fn refused<T>(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        org: &str,
        app: &str,
        error: EscrowError,
    ) -> Result<T, EscrowError> {
        if matches!(error, EscrowError::Audit(_)) {
            return Err(error);
        }
        let event = Event::new(action, Outcome::Failed)
            .target(target(org, app, None))
            .detail(serde_json::json!({ "refused": error.code() }));
        audit::record(&self.pool, actor, meta, &event).await?;
        Err(error)
    }
}

impl EscrowError {
    /// A short, stable name of a refusal for its audit row. Not the error's text: Fly's errors may quote
    /// what a peer answered, and the audit log keeps forever what it is given.
    fn code(&self) -> &'static str {
        use fly_escrow::EscrowError as F;
        match self {
            EscrowError::Invalid(_) => "invalid",
            EscrowError::Forbidden => "forbidden",
            EscrowError::NoKey => "no_key",
            EscrowError::NotFound { .. } => "not_found",
            EscrowError::NotTracked { .. } => "not_tracked",
            EscrowError::NoFly => "no_fly",
            EscrowError::Org(_) => "org",
            EscrowError::UnknownKey { .. } => "unknown_key",
            EscrowError::Unopenable { .. } => "unopenable",
            EscrowError::Fly(e) => match **e {
                F::AppNotFound { .. } => "fly_app_not_found",
                F::NoAccess { .. } => "fly_no_access",
                F::NoMachines { .. } => "fly_no_machines",
                F::Flex { .. } => "fly_flex",
                F::NotStolon { .. } => "fly_not_stolon",
                F::AllStopped { .. } => "fly_all_stopped",
                F::NoLeader { .. } => "fly_no_leader",
                F::SeveralLeaders { .. } => "fly_several_leaders",
                F::ExecTimedOut { .. } => "fly_exec_timed_out",
                F::ExecFailed { .. } => "fly_exec_failed",
                F::Missing { .. } => "fly_missing",
                F::ValuesHidden { .. } => "fly_values_hidden",
                _ => "fly",
            },
            _ => "other",
        }
    }
}
