//! The Fly side of credential escrow (issue #11 items 2 and 3): read a Stolon cluster's role
//! passwords and wal-g storage settings from its leader ([`capture_credentials`]), and prove that
//! escrowed passwords still open the cluster's roles ([`prove_logins`]).
//!
//! **Why exec, and why `printenv -0`.** Fly puts app secrets into the environment of exec'd
//! processes (fly-platform.md §3, flyctl's `bash -c "echo $S3_ARCHIVE_CONFIG"`), so one exec of
//! `["printenv", "-0"]` reads everything in a single call: no value is ever in argv (only the
//! fixed program name and flag are), the snapshot is taken at one instant, Fly's exec rate limit
//! (1 req/s per Machine) is not spent per variable, and the wal-g names (`WALG_*`, `AWS_*`,
//! `GOOGLE_*`, `AZURE_*`) need no guessing. `-0` (GNU coreutils `--null`) ends each entry with a
//! NUL instead of a newline, so a value holding a newline (a Google service-account JSON) cannot be
//! mistaken for a new variable the way it can with plain `printenv` ([`crate::stolon::MachineEnv`]).
//! Only the wanted names are kept; the rest of the output is wiped.
//!
//! **Why exec wins over the secrets API.** `GET /apps/{app}/secrets?show_secrets=true` returns
//! the *newest* values set for the app, which a running cluster has not necessarily booted with
//! (secrets reach Machines only after an update, fly-platform.md §7.3), and the permission it needs
//! is undocumented (fly-platform.md §6). The leader's environment is what the running cluster
//! actually uses; the login proof then checks that those values open the roles. So
//! [`capture_credentials`] reads the leader, and [`capture_from_secrets_api`] is the explicit
//! fallback for a cluster whose Machines cannot be read (all stopped, no leader) when the token
//! may read values; its result says so ([`CaptureSource::SecretsApi`]).
//!
//! **The login proof** runs `psql` on the leader with the password on exec `stdin`
//! (`MachineExecRequest.stdin` in the OpenAPI document, `Stdin` in fly-go `machine_types.go`),
//! read by the shell into `PGPASSWORD`; the role name is a positional argument (`"$1"`), never
//! pasted into the script. So the password is in no argv (visible in `ps` and Fly's request
//! logs), no URL and no Machine event; it is in psql's environment only, which on Linux only its
//! own user and root can read.

use std::collections::BTreeMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroize;

use crate::client::FlyClient;
use crate::error::Error;
use crate::stolon::{role, ClusterCredentials, Role};
use crate::types::{ExecOutput, ExecRequest, ListMachines, Machine};

/// The role password variables of Fly's Stolon image and the role each one opens (seed guide;
/// fly-apps/postgres-ha `cmd/start/main.go`).
pub const ROLE_PASSWORDS: [(&str, &str); 3] = [
    ("flypgadmin", "SU_PASSWORD"),
    ("repluser", "REPL_PASSWORD"),
    ("postgres", "OPERATOR_PASSWORD"),
];

/// Prefixes of the wal-g storage settings (wal-g docs: storages S3, GCS, Azure, plus `WALG_*`).
pub const STORAGE_PREFIXES: [&str; 4] = ["WALG_", "AWS_", "GOOGLE_", "AZURE_"];

/// argv of the capture: the whole environment, NUL-separated. No value is in it.
pub const CAPTURE_ARGV: [&str; 2] = ["printenv", "-0"];

/// The login check, run as `sh -c PROOF_SCRIPT sh ROLE` with the password and a newline on stdin.
/// `IFS= read -r` keeps the line exactly (blanks and backslashes included); `-w` never prompts;
/// `-X` skips any psqlrc. `localhost:5433` reaches the local Postgres: stolon sets
/// `listen_addresses = 127.0.0.1,<6PN>` (`cmd/keeper/cmd/keeper.go::createPGParameters`) and
/// HAProxy's `:5433` front is a wildcard to it (fly-platform.md §2.3). Over TCP every role logs in
/// with md5: postgres-ha sets no `pgHBA`, so stolon's `generateHBA` adds
/// `host all all 0.0.0.0/0 md5` and `::0/0` (repluser included). Without `-h` libpq would look
/// for a socket in `/var/run/postgresql`, which Stolon does not use (its socket is in `/tmp`).
pub const PROOF_SCRIPT: &str = "IFS= read -r PGPASSWORD; export PGPASSWORD; exec psql -X -w -h localhost -p 5433 -U \"$1\" -d postgres -t -A -c 'select 1'";

/// Seconds an exec may take (Fly's proxy ends a request after 60 s).
const EXEC_TIMEOUT_SECS: u64 = 30;

/// What Postgres an app runs, from its Machines' image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterKind {
    /// Fly's Stolon image (`flyio/postgres`, fly-apps/postgres-ha).
    Stolon,
    /// postgres-flex (repmgr): image label `fly.pg-manager=repmgr` (fly-apps/postgres-flex
    /// `Dockerfile`; flyctl `flypg` tells the two apart the same way).
    Flex,
    /// Anything else (the image, or `unknown`).
    Other(String),
}

/// The kind of Postgres a Machine runs.
pub fn cluster_kind(machine: &Machine) -> ClusterKind {
    let labels = machine.image_ref.as_ref().map(|r| &r.labels);
    if labels
        .and_then(|l| l.get("fly.pg-manager"))
        .map(String::as_str)
        == Some("repmgr")
    {
        return ClusterKind::Flex;
    }
    let repository = machine
        .image_ref
        .as_ref()
        .and_then(|r| r.repository.clone())
        .or_else(|| {
            machine
                .image()
                .map(|i| i.split(':').next().unwrap_or_default().to_string())
        })
        .unwrap_or_default();
    let repository = repository
        .strip_prefix("registry-1.docker.io/")
        .or_else(|| repository.strip_prefix("docker.io/"))
        .unwrap_or(&repository);
    match repository {
        "flyio/postgres" => ClusterKind::Stolon,
        "flyio/postgres-flex" => ClusterKind::Flex,
        _ => ClusterKind::Other(machine.image().unwrap_or_else(|| "unknown".into())),
    }
}

/// Why a capture or a proof could not be done. Texts are for people and never hold a value.
#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("app {app} was not found (or this Fly token cannot see it)")]
    AppNotFound { app: String },
    #[error("the Fly token may not reach app {app} (HTTP {status}); use a token of the app's organization")]
    NoAccess { app: String, status: u16 },
    #[error("app {app} has no machines")]
    NoMachines { app: String },
    #[error("app {app} is a postgres-flex (repmgr) cluster; Walden escrows the credentials of Fly's Stolon clusters (flyio/postgres) only")]
    Flex { app: String },
    #[error(
        "app {app} does not run Fly's Stolon Postgres image (flyio/postgres); it runs {image}"
    )]
    NotStolon { app: String, image: String },
    #[error("every machine of app {app} is stopped, so there is nothing to read from; start the cluster, or enter the credentials by hand")]
    AllStopped { app: String },
    #[error("no started machine of app {app} reports role leader ({roles}); the cluster is down or electing a leader. Try again later, or enter the credentials by hand")]
    NoLeader { app: String, roles: String },
    #[error("{} machines of app {app} report role leader ({}); refusing to guess which one is right", .machines.len(), .machines.join(", "))]
    SeveralLeaders { app: String, machines: Vec<String> },
    #[error("reading the environment of machine {machine} timed out; try again")]
    ExecTimedOut { machine: String },
    #[error("reading the environment of machine {machine} failed with exit code {exit_code}")]
    ExecFailed { machine: String, exit_code: i64 },
    #[error("{source_text} has no {}; is this a Fly Stolon cluster with its secrets set?", .names.join(", "))]
    Missing {
        /// Where the variables were looked for ("the environment of machine …", "Fly's secrets API").
        source_text: String,
        names: Vec<String>,
    },
    #[error("Fly's secrets API shows no secret values of app {app} to this token; enter the credentials by hand")]
    ValuesHidden { app: String },
    #[error("Fly API: {0}")]
    Fly(#[source] Box<Error>),
}

impl EscrowError {
    /// The errors after which only manual entry can escrow the credentials now.
    pub fn suggests_manual_entry(&self) -> bool {
        matches!(
            self,
            EscrowError::AllStopped { .. }
                | EscrowError::NoLeader { .. }
                | EscrowError::ValuesHidden { .. }
        )
    }
}

/// A Fly API error in the words of escrow (access and absence named as such).
fn api_error(app: &str, error: Error) -> EscrowError {
    match error.status() {
        Some(status @ (401 | 403)) => EscrowError::NoAccess {
            app: app.to_string(),
            status,
        },
        Some(404) => EscrowError::AppNotFound {
            app: app.to_string(),
        },
        _ => EscrowError::Fly(Box::new(error)),
    }
}

/// Where a capture's values came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureSource {
    /// The leader's environment: what the running cluster booted with.
    LeaderEnv { machine_id: String, region: String },
    /// Fly's secrets API (`show_secrets=true`): the app's newest values, which its Machines may not
    /// have booted with yet (secrets reach a Machine only with an update).
    SecretsApi,
}

/// What one capture read. `Debug` shows names, never values.
pub struct CapturedCredentials {
    pub app: String,
    pub source: CaptureSource,
    /// The image (`repository:tag`) the leader (or, from the secrets API, the first Machine) runs.
    pub image: Option<String>,
    pub passwords: ClusterCredentials,
    /// wal-g storage settings by name (`WALG_*`, `AWS_*`, `GOOGLE_*`, `AZURE_*`), as present.
    pub storage: BTreeMap<String, SecretString>,
}

impl fmt::Debug for CapturedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CapturedCredentials")
            .field("app", &self.app)
            .field("source", &self.source)
            .field("image", &self.image)
            .field("passwords", &self.passwords)
            .field("storage", &self.storage.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CapturedCredentials {
    /// Every captured field by its variable name: the three passwords (in [`ROLE_PASSWORDS`]
    /// order), then the storage settings by name. One place for whoever seals one record per field.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        [
            ("SU_PASSWORD", &self.passwords.su_password),
            ("REPL_PASSWORD", &self.passwords.repl_password),
            ("OPERATOR_PASSWORD", &self.passwords.operator_password),
        ]
        .into_iter()
        .chain(
            self.storage
                .iter()
                .map(|(name, value)| (name.as_str(), value)),
        )
    }
}

/// Whether `name` is one of the variables a capture keeps.
pub fn is_captured_name(name: &str) -> bool {
    ROLE_PASSWORDS.iter().any(|(_, var)| *var == name)
        || STORAGE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The captured variables of NUL-separated `NAME=value` entries (`printenv -0`); others are
/// dropped. An entry without `=` or with an invalid name is ignored.
pub fn parse_null_env(stdout: &str) -> BTreeMap<String, SecretString> {
    stdout
        .split('\0')
        .filter_map(|entry| entry.split_once('='))
        .filter(|(name, _)| is_captured_name(name))
        .map(|(name, value)| (name.to_string(), SecretString::from(value.to_string())))
        .collect()
}

/// The started Machines of a Stolon app, sorted by id, after the checks every exec shares: those
/// of [`stolon_app_machines`], and at least one Machine is started.
async fn stolon_machines(client: &FlyClient, app: &str) -> Result<Vec<Machine>, EscrowError> {
    let mut started: Vec<Machine> = stolon_app_machines(client, app)
        .await?
        .into_iter()
        .filter(|m| m.state == "started")
        .collect();
    if started.is_empty() {
        return Err(EscrowError::AllStopped { app: app.into() });
    }
    started.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(started)
}

/// The live Machines of a Stolon app: the app is reachable, has Machines, and runs the Stolon
/// image (a postgres-flex app is named as such).
async fn stolon_app_machines(client: &FlyClient, app: &str) -> Result<Vec<Machine>, EscrowError> {
    let machines: Vec<Machine> = client
        .list_machines(app, &ListMachines::default())
        .await
        .map_err(|e| api_error(app, e))?
        .into_iter()
        .filter(|m| !m.is_gone())
        .collect();
    let Some(first) = machines.first() else {
        return Err(EscrowError::NoMachines { app: app.into() });
    };
    if machines
        .iter()
        .any(|m| cluster_kind(m) == ClusterKind::Flex)
    {
        return Err(EscrowError::Flex { app: app.into() });
    }
    if !machines
        .iter()
        .any(|m| cluster_kind(m) == ClusterKind::Stolon)
    {
        let image = match cluster_kind(first) {
            ClusterKind::Other(image) => image,
            other => format!("{other:?}"),
        };
        return Err(EscrowError::NotStolon {
            app: app.into(),
            image,
        });
    }
    Ok(machines)
}

/// The one started leader, or `Ok(None)` when none reports `leader`; several is an error.
fn leader_of(app: &str, started: &[Machine]) -> Result<Option<Machine>, EscrowError> {
    let leaders: Vec<&Machine> = started.iter().filter(|m| role(m) == Role::Leader).collect();
    match leaders.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        many => Err(EscrowError::SeveralLeaders {
            app: app.into(),
            machines: many.iter().map(|m| m.id.clone()).collect(),
        }),
    }
}

/// "id: role" of each started Machine, for the no-leader message.
fn roles_text(started: &[Machine]) -> String {
    started
        .iter()
        .map(|m| format!("{}: {}", m.id, role(m)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Read SU_PASSWORD, REPL_PASSWORD, OPERATOR_PASSWORD and the wal-g storage settings from the
/// leader's environment with one `printenv -0` exec (see the module documentation for why). The
/// raw output is wiped once parsed; values live only in [`SecretString`]s.
pub async fn capture_credentials(
    client: &FlyClient,
    app: &str,
) -> Result<CapturedCredentials, EscrowError> {
    let started = stolon_machines(client, app).await?;
    let Some(leader) = leader_of(app, &started)? else {
        return Err(EscrowError::NoLeader {
            app: app.into(),
            roles: roles_text(&started),
        });
    };
    let request = ExecRequest::new(CAPTURE_ARGV).timeout(EXEC_TIMEOUT_SECS);
    let mut output = run_exec(client, app, &leader.id, &request).await?;
    let env = parse_null_env(&output.stdout);
    wipe(&mut output);
    let (passwords, storage) =
        split_passwords(env, || format!("the environment of machine {}", leader.id))?;
    Ok(CapturedCredentials {
        app: app.into(),
        image: leader.image(),
        source: CaptureSource::LeaderEnv {
            region: leader.region.clone(),
            machine_id: leader.id,
        },
        passwords,
        storage,
    })
}

/// The fallback when no Machine can be read: the app's secret values from Fly's secrets API
/// (`show_secrets=true`), for a token allowed to read them. The values are the app's newest, not
/// necessarily those its Machines booted with; the result is marked [`CaptureSource::SecretsApi`]
/// and, like any capture, should be proven ([`prove_logins`]) once the cluster runs.
pub async fn capture_from_secrets_api(
    client: &FlyClient,
    app: &str,
) -> Result<CapturedCredentials, EscrowError> {
    let machines = stolon_app_machines(client, app).await?;
    let secrets = client
        .list_secrets_with_values(app)
        .await
        .map_err(|e| api_error(app, e))?;
    if !secrets.is_empty() && secrets.iter().all(|s| s.value.is_none()) {
        return Err(EscrowError::ValuesHidden { app: app.into() });
    }
    let env: BTreeMap<String, SecretString> = secrets
        .into_iter()
        .filter(|s| is_captured_name(&s.name))
        .filter_map(|s| Some((s.name, s.value?)))
        .collect();
    let (passwords, storage) = split_passwords(env, || "Fly's secrets API".to_string())?;
    Ok(CapturedCredentials {
        app: app.into(),
        source: CaptureSource::SecretsApi,
        image: machines.first().and_then(Machine::image),
        passwords,
        storage,
    })
}

/// The three role passwords out of captured variables, and the storage settings left; names the
/// missing ones.
fn split_passwords(
    mut env: BTreeMap<String, SecretString>,
    source_text: impl FnOnce() -> String,
) -> Result<(ClusterCredentials, BTreeMap<String, SecretString>), EscrowError> {
    let missing: Vec<String> = ROLE_PASSWORDS
        .iter()
        .map(|(_, var)| var.to_string())
        .filter(|var| !env.contains_key(var))
        .collect();
    let (Some(su), Some(repl), Some(operator)) = (
        env.remove("SU_PASSWORD"),
        env.remove("REPL_PASSWORD"),
        env.remove("OPERATOR_PASSWORD"),
    ) else {
        return Err(EscrowError::Missing {
            source_text: source_text(),
            names: missing,
        });
    };
    let passwords = ClusterCredentials {
        su_password: su,
        repl_password: repl,
        operator_password: operator,
    };
    Ok((passwords, env))
}

/// Run a capture exec, mapping timeouts, failures and access errors; a failed command's output is
/// wiped before it is dropped (it may hold part of the environment).
async fn run_exec(
    client: &FlyClient,
    app: &str,
    machine: &str,
    request: &ExecRequest,
) -> Result<ExecOutput, EscrowError> {
    match client.exec(app, machine, request).await {
        Ok(output) => Ok(output),
        Err(Error::ExecFailed {
            mut output,
            exit_code,
            ..
        }) => {
            wipe(&mut output);
            Err(EscrowError::ExecFailed {
                machine: machine.into(),
                exit_code,
            })
        }
        Err(e) if is_timeout(&e) => Err(EscrowError::ExecTimedOut {
            machine: machine.into(),
        }),
        Err(e) => Err(api_error(app, e)),
    }
}

/// 408 `deadline_exceeded` from Fly, or the client's own timeout.
fn is_timeout(error: &Error) -> bool {
    error.status() == Some(408)
        || matches!(
            error,
            Error::Transport {
                kind: crate::error::TransportKind::Timeout,
                ..
            }
        )
}

fn wipe(output: &mut ExecOutput) {
    output.stdout.zeroize();
    output.stderr.zeroize();
}

/// What a login check found for one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofOutcome {
    /// The password opened the role (`select 1` answered `1`).
    Opens,
    /// Postgres refused it: `password authentication failed` (also what Postgres says for a role
    /// that does not exist, so that roles cannot be probed).
    WrongPassword,
    /// The check could not run or ended otherwise; why, in psql's or Fly's words.
    CouldNotCheck(String),
}

/// The login check of one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleProof {
    pub role: &'static str,
    /// The variable whose value was checked (`SU_PASSWORD`, …).
    pub variable: &'static str,
    /// The Machine the check ran on.
    pub machine_id: String,
    /// Whether that Machine reported role `leader` (see [`prove_logins`] for the fallback).
    pub on_leader: bool,
    pub outcome: ProofOutcome,
}

/// Prove that each escrowed password opens its role (flypgadmin ↔ SU_PASSWORD, repluser ↔
/// REPL_PASSWORD, postgres ↔ OPERATOR_PASSWORD) with a login on the leader, the password on
/// exec stdin only.
///
/// The leader is the Machine whose `role` check passes with `leader`. That check itself logs in as
/// `flypgadmin` with the Machine's SU_PASSWORD (postgres-ha `pkg/flycheck/role.go` through
/// `pkg/flypg/node.go::NewLocalConnection`; the seed guide's "haproxy still has the server as
/// unhealthy … flypgadmin can't connect"), so once someone has
/// run `ALTER ROLE flypgadmin` no Machine reports a leader — exactly when the proof matters most.
/// Then the check runs on the first started Machine instead (a replica holds the same roles:
/// physical replication copies `pg_authid`), and [`RoleProof::on_leader`] says so.
pub async fn prove_logins(
    client: &FlyClient,
    app: &str,
    passwords: &ClusterCredentials,
) -> Result<Vec<RoleProof>, EscrowError> {
    let started = stolon_machines(client, app).await?;
    let (machine, on_leader) = match leader_of(app, &started)? {
        Some(leader) => (leader.id, true),
        None => match started.first() {
            Some(first) => (first.id.clone(), false),
            None => return Err(EscrowError::AllStopped { app: app.into() }),
        },
    };
    let mut proofs = Vec::with_capacity(ROLE_PASSWORDS.len());
    for (role, variable) in ROLE_PASSWORDS {
        let password = match variable {
            "SU_PASSWORD" => &passwords.su_password,
            "REPL_PASSWORD" => &passwords.repl_password,
            _ => &passwords.operator_password,
        };
        let outcome = prove_one(client, app, &machine, role, password).await?;
        proofs.push(RoleProof {
            role,
            variable,
            machine_id: machine.clone(),
            on_leader,
            outcome,
        });
    }
    Ok(proofs)
}

/// argv of the login check for `role` (the role is `$1`, never part of the script).
pub fn proof_argv(role: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        PROOF_SCRIPT.into(),
        "sh".into(),
        role.into(),
    ]
}

/// One login check. Access errors end the whole proof; anything else is this role's outcome.
async fn prove_one(
    client: &FlyClient,
    app: &str,
    machine: &str,
    role: &str,
    password: &SecretString,
) -> Result<ProofOutcome, EscrowError> {
    let value = password.expose_secret();
    if value.contains(['\n', '\r', '\0']) {
        return Ok(ProofOutcome::CouldNotCheck(
            "the password holds a line break or NUL, which the stdin login check cannot pass"
                .into(),
        ));
    }
    let mut request = ExecRequest::new(proof_argv(role)).timeout(EXEC_TIMEOUT_SECS);
    request.stdin = Some(format!("{value}\n"));
    let answer = client.exec_unchecked(app, machine, &request).await;
    if let Some(stdin) = request.stdin.as_mut() {
        stdin.zeroize();
    }
    let mut output = match answer {
        Ok(output) => output,
        Err(e) if matches!(e.status(), Some(401 | 403 | 404)) => return Err(api_error(app, e)),
        Err(e) if is_timeout(&e) => {
            return Ok(ProofOutcome::CouldNotCheck(format!(
                "the login check on machine {machine} timed out"
            )))
        }
        Err(e) => return Ok(ProofOutcome::CouldNotCheck(e.to_string())),
    };
    let outcome = judge(&output);
    wipe(&mut output);
    Ok(outcome)
}

/// The outcome of a finished login check from psql's exit code and output.
pub fn judge(output: &ExecOutput) -> ProofOutcome {
    if output.exit_code == 0 && output.stdout.trim() == "1" {
        return ProofOutcome::Opens;
    }
    if output.stderr.contains("password authentication failed") {
        return ProofOutcome::WrongPassword;
    }
    let reason = output
        .stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect::<String>())
        .unwrap_or_else(|| format!("psql ended with exit code {}", output.exit_code));
    ProofOutcome::CouldNotCheck(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ImageRef;

    fn machine_with(repository: &str, labels: &[(&str, &str)]) -> Machine {
        Machine {
            id: "m".into(),
            image_ref: Some(ImageRef {
                repository: Some(repository.into()),
                tag: Some("15".into()),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..ImageRef::default()
            }),
            ..Machine::default()
        }
    }

    #[test]
    fn image_tells_stolon_from_flex() {
        assert_eq!(
            cluster_kind(&machine_with(
                "flyio/postgres",
                &[("fly.app_role", "postgres_cluster")]
            )),
            ClusterKind::Stolon
        );
        assert_eq!(
            cluster_kind(&machine_with(
                "flyio/postgres-flex",
                &[("fly.pg-manager", "repmgr")]
            )),
            ClusterKind::Flex
        );
        // The label decides even under another repository name (a custom build of flex).
        assert_eq!(
            cluster_kind(&machine_with("acme/pg", &[("fly.pg-manager", "repmgr")])),
            ClusterKind::Flex
        );
        assert_eq!(
            cluster_kind(&machine_with("nginx", &[])),
            ClusterKind::Other("nginx:15".into())
        );
    }

    #[test]
    fn null_separated_env_keeps_only_captured_names_and_newlines() {
        let raw = "SU_PASSWORD=a=b\0PATH=/bin\0GOOGLE_APPLICATION_CREDENTIALS={\n \"k\": 1\n}\0WALG_S3_PREFIX=s3://x\0AWS_SECRET_ACCESS_KEY=KEY=x\0FLY_CONSUL_URL=https://t@c\0";
        let env = parse_null_env(raw);
        let names: Vec<&str> = env.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "AWS_SECRET_ACCESS_KEY",
                "GOOGLE_APPLICATION_CREDENTIALS",
                "SU_PASSWORD",
                "WALG_S3_PREFIX"
            ]
        );
        assert_eq!(
            env["GOOGLE_APPLICATION_CREDENTIALS"].expose_secret(),
            "{\n \"k\": 1\n}"
        );
        assert_eq!(env["SU_PASSWORD"].expose_secret(), "a=b");
        assert_eq!(env["AWS_SECRET_ACCESS_KEY"].expose_secret(), "KEY=x");
    }

    #[test]
    fn proof_argv_never_holds_more_than_the_role() {
        let argv = proof_argv("flypgadmin");
        assert_eq!(argv, ["sh", "-c", PROOF_SCRIPT, "sh", "flypgadmin"]);
        let debug = format!("{:?}", {
            let mut r = ExecRequest::new(argv);
            r.stdin = Some("hunter2\n".into());
            r
        });
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn judging_psql_output() {
        let out = |code: i64, stdout: &str, stderr: &str| ExecOutput {
            exit_code: code,
            stdout: stdout.into(),
            stderr: stderr.into(),
            ..ExecOutput::default()
        };
        assert_eq!(judge(&out(0, "1\n", "")), ProofOutcome::Opens);
        assert_eq!(
            judge(&out(2, "", "psql: error: connection to server at \"localhost\", port 5433 failed: FATAL:  password authentication failed for user \"repluser\"\n")),
            ProofOutcome::WrongPassword
        );
        assert_eq!(
            judge(&out(2, "", "psql: error: connection to server at \"localhost\" (::1), port 5433 failed: Connection refused\n")),
            ProofOutcome::CouldNotCheck("psql: error: connection to server at \"localhost\" (::1), port 5433 failed: Connection refused".into())
        );
        assert_eq!(
            judge(&out(1, "", "")),
            ProofOutcome::CouldNotCheck("psql ended with exit code 1".into())
        );
    }

    #[test]
    fn captured_credentials_debug_shows_no_value() {
        let c = CapturedCredentials {
            app: "a".into(),
            source: CaptureSource::LeaderEnv {
                machine_id: "m".into(),
                region: "iad".into(),
            },
            image: None,
            passwords: ClusterCredentials {
                su_password: SecretString::from("su-secret"),
                repl_password: SecretString::from("repl-secret"),
                operator_password: SecretString::from("op-secret"),
            },
            storage: [(
                "AWS_SECRET_ACCESS_KEY".to_string(),
                SecretString::from("aws-secret"),
            )]
            .into_iter()
            .collect(),
        };
        let debug = format!("{c:?}");
        for value in ["su-secret", "repl-secret", "op-secret", "aws-secret"] {
            assert!(!debug.contains(value), "{debug}");
        }
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"), "{debug}");
        let names: Vec<&str> = c.fields().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "SU_PASSWORD",
                "REPL_PASSWORD",
                "OPERATOR_PASSWORD",
                "AWS_SECRET_ACCESS_KEY"
            ]
        );
    }
}
