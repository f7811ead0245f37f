//! Helpers for apps running Fly's Stolon Postgres image (`flyio/postgres`, `fly-apps/postgres-ha`).
//!
//! * Roles come from each machine's `role` health check (flyctl `machineRole`): when passing its
//!   output is the role (`leader`, `replica`, `readonly`), otherwise the role is unknown (`error`).
//! * `stolonctl` needs the store settings in `/data/.env`; an exec'd `sh -c` is not an interactive
//!   shell, so they are exported explicitly, the way the seed guide and flyctl do
//!   (`export $(cat /data/.env | xargs)`; the file holds four `STOLONCTL_*=value` lines without
//!   spaces). Arguments are passed as separate argv items, never pasted into the script:
//!   `["bash","-c","export $(cat /data/.env | xargs) && exec stolonctl \"$@\"","stolonctl", args…]`.
//! * `stolonctl-run <base64 args>` always exits 0 and prints `{"success":…,"message":…,"data":…}`.
//! * Role passwords: `SU_PASSWORD` is `flypgadmin`'s, `REPL_PASSWORD` is `repluser`'s and
//!   `OPERATOR_PASSWORD` is `postgres`'s. Pitfall (seed guide): `wal-g backup-push` connects as
//!   `PGUSER=postgres`, so it needs `PGPASSWORD=$OPERATOR_PASSWORD` — not `SU_PASSWORD`
//!   (that fails with `password authentication failed for user "postgres"`).
//! * [`password`]: generate and check role passwords the image survives (letters and digits).

pub mod password;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroize;

use crate::client::FlyClient;
use crate::error::Error;
use crate::types::{ExecRequest, ListMachines, Machine};

/// The script run by bash: export `/data/.env`, then exec stolonctl with the argv that follows
/// (`$0` is `stolonctl`, `"$@"` the caller's arguments, each its own argv item).
/// `set -a; . /data/.env` would do the same in bash; the `export $(cat … | xargs)` form is the one
/// the seed guide and fly-platform.md §7.4 document, and the one the emulator's shell understands.
pub const STOLONCTL_SCRIPT: &str = "export $(cat /data/.env | xargs) && exec stolonctl \"$@\"";

/// A machine's role as its `role` check reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    Replica,
    /// Stolon reports `readonly` when `/data` is more than 90 % full.
    Readonly,
    /// Another passing output (e.g. flex roles `primary`, `zombie`).
    Other(String),
    /// No `role` check, or it is not passing (flyctl shows `error`).
    Unknown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Leader => f.write_str("leader"),
            Role::Replica => f.write_str("replica"),
            Role::Readonly => f.write_str("readonly"),
            Role::Other(s) => f.write_str(s),
            Role::Unknown => f.write_str("error"),
        }
    }
}

/// Role of a machine from its `role` check.
pub fn role(machine: &Machine) -> Role {
    let Some(check) = machine.check("role") else {
        return Role::Unknown;
    };
    if check.status.as_deref() != Some("passing") {
        return Role::Unknown;
    }
    match check.output.as_deref().map(str::trim).unwrap_or("") {
        "leader" => Role::Leader,
        "replica" => Role::Replica,
        "readonly" => Role::Readonly,
        "" => Role::Unknown,
        other => Role::Other(other.to_string()),
    }
}

/// The single leader among `machines` (started machines only). Errors when there is none or more
/// than one (a split brain must not be guessed away).
pub fn find_leader(machines: &[Machine]) -> Result<&Machine, Error> {
    let leaders: Vec<&Machine> = machines
        .iter()
        .filter(|m| m.state == "started" && role(m) == Role::Leader)
        .collect();
    match leaders.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::Protocol(
            "no started machine reports role leader".into(),
        )),
        many => Err(Error::Protocol(format!(
            "{} machines report role leader: {}",
            many.len(),
            many.iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// argv for running `stolonctl args…` with `/data/.env` exported.
pub fn stolonctl_argv<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let mut argv = vec![
        "bash".to_string(),
        "-c".to_string(),
        STOLONCTL_SCRIPT.to_string(),
        "stolonctl".to_string(),
    ];
    argv.extend(args.iter().map(|a| a.as_ref().to_string()));
    argv
}

/// Quote one argument for the shlex splitting `stolonctl-run` does (POSIX single quotes).
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

/// argv for `stolonctl-run <base64(args)>`; each argument is quoted so it survives the shlex split.
pub fn stolonctl_run_argv<S: AsRef<str>>(args: &[S]) -> Vec<String> {
    let joined = args
        .iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        "stolonctl-run".to_string(),
        base64::engine::general_purpose::STANDARD.encode(joined),
    ]
}

/// The JSON line printed by `stolonctl-run`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StolonctlRunResult {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default)]
    pub data: Option<Value>,
}

/// Parse `stolonctl-run` output: the last line that is a JSON object.
pub fn parse_stolonctl_run(stdout: &str) -> Result<StolonctlRunResult, Error> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<StolonctlRunResult>(l).ok())
        .ok_or_else(|| Error::Protocol("stolonctl-run printed no JSON result line".into()))
}

/// Environment of a machine's processes, every value a secret.
#[derive(Default)]
pub struct MachineEnv {
    vars: BTreeMap<String, SecretString>,
}

impl fmt::Debug for MachineEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineEnv")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl MachineEnv {
    /// Parse `printenv` output (`NAME=value` lines; a line that does not start with `NAME=`
    /// continues the previous value, which had a newline in it). A continuation line that itself
    /// looks like `NAME=…` cannot be told apart from a new variable; role passwords and the
    /// `STOLONCTL_*`/wal-g settings are single-line.
    pub fn parse(stdout: &str) -> Self {
        let mut vars: Vec<(String, String)> = Vec::new();
        for line in stdout.split('\n') {
            match line.split_once('=') {
                Some((name, value))
                    if !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    vars.push((name.to_string(), value.to_string()));
                }
                _ => {
                    if let Some((_, v)) = vars.last_mut() {
                        v.push('\n');
                        v.push_str(line);
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for (name, mut value) in vars {
            // The trailing newline of the output ends up on the last value.
            while value.ends_with('\n') {
                value.pop();
            }
            out.insert(name, SecretString::from(value));
        }
        Self { vars: out }
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.vars.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    /// The three role passwords; names the first missing variable.
    pub fn credentials(&self) -> Result<ClusterCredentials, Error> {
        let get = |n: &str| {
            self.get(n)
                .cloned()
                .ok_or_else(|| Error::Protocol(format!("machine environment has no {n}")))
        };
        Ok(ClusterCredentials {
            su_password: get("SU_PASSWORD")?,
            repl_password: get("REPL_PASSWORD")?,
            operator_password: get("OPERATOR_PASSWORD")?,
        })
    }
}

/// A Stolon cluster's role passwords.
#[derive(Clone)]
pub struct ClusterCredentials {
    /// `flypgadmin` (Stolon superuser).
    pub su_password: SecretString,
    /// `repluser`.
    pub repl_password: SecretString,
    /// `postgres`; this is the one `wal-g backup-push` needs as `PGPASSWORD` (with `PGUSER=postgres`).
    pub operator_password: SecretString,
}

impl fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterCredentials([REDACTED])")
    }
}

/// Stolon operations on one app.
#[derive(Debug, Clone)]
pub struct Stolon {
    client: FlyClient,
    app: String,
}

impl Stolon {
    pub fn new(client: FlyClient, app: impl Into<String>) -> Self {
        Self {
            client,
            app: app.into(),
        }
    }

    /// Machines with their roles.
    pub async fn roles(&self) -> Result<Vec<(Machine, Role)>, Error> {
        let ms = self
            .client
            .list_machines(&self.app, &ListMachines::default())
            .await?;
        Ok(ms
            .into_iter()
            .filter(|m| !m.is_gone())
            .map(|m| {
                let r = role(&m);
                (m, r)
            })
            .collect())
    }

    /// The current leader.
    pub async fn leader(&self) -> Result<Machine, Error> {
        let ms = self
            .client
            .list_machines(&self.app, &ListMachines::default())
            .await?;
        find_leader(&ms).cloned()
    }

    /// Run `stolonctl args…` on a machine (exit code checked).
    pub async fn stolonctl<S: AsRef<str>>(
        &self,
        machine_id: &str,
        args: &[S],
        timeout_secs: u64,
    ) -> Result<String, Error> {
        let req = ExecRequest::new(stolonctl_argv(args)).timeout(timeout_secs);
        let mut out = self.client.exec(&self.app, machine_id, &req).await?;
        Ok(std::mem::take(&mut out.stdout))
    }

    /// Run `stolonctl-run` (the image's JSON wrapper) and require `success: true`.
    pub async fn stolonctl_run<S: AsRef<str>>(
        &self,
        machine_id: &str,
        args: &[S],
        timeout_secs: u64,
    ) -> Result<StolonctlRunResult, Error> {
        let req = ExecRequest::new(stolonctl_run_argv(args)).timeout(timeout_secs);
        let out = self.client.exec(&self.app, machine_id, &req).await?;
        let r = parse_stolonctl_run(&out.stdout)?;
        if r.success {
            Ok(r)
        } else {
            let msg = match &r.message {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            Err(Error::Protocol(format!(
                "stolonctl-run on machine {machine_id} reported failure: {msg}"
            )))
        }
    }

    /// Read the machine's environment (`printenv`) as secrets. The plaintext output is wiped.
    pub async fn read_env(&self, machine_id: &str) -> Result<MachineEnv, Error> {
        let req = ExecRequest::new(["printenv"]).timeout(30);
        let mut out = self.client.exec(&self.app, machine_id, &req).await?;
        let env = MachineEnv::parse(&out.stdout);
        out.stdout.zeroize();
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::CheckStatus;
    use secrecy::ExposeSecret;

    fn machine(id: &str, state: &str, status: &str, output: &str) -> Machine {
        Machine {
            id: id.into(),
            state: state.into(),
            checks: vec![CheckStatus {
                name: Some("role".into()),
                status: Some(status.into()),
                output: Some(output.into()),
                updated_at: None,
            }],
            ..Machine::default()
        }
    }

    #[test]
    fn role_from_check() {
        assert_eq!(
            role(&machine("a", "started", "passing", "leader\n")),
            Role::Leader
        );
        assert_eq!(
            role(&machine("a", "started", "passing", "replica")),
            Role::Replica
        );
        assert_eq!(
            role(&machine("a", "started", "critical", "leader")),
            Role::Unknown
        );
        assert_eq!(role(&Machine::default()), Role::Unknown);
        assert_eq!(
            role(&machine("a", "started", "passing", "primary")),
            Role::Other("primary".into())
        );
    }

    #[test]
    fn leader_must_be_unique() {
        let ms = vec![
            machine("a", "started", "passing", "replica"),
            machine("b", "started", "passing", "leader"),
            machine("c", "stopped", "passing", "leader"),
        ];
        assert_eq!(
            find_leader(&ms).map(|m| m.id.clone()).ok(),
            Some("b".into())
        );
        let two = vec![
            machine("a", "started", "passing", "leader"),
            machine("b", "started", "passing", "leader"),
        ];
        assert!(find_leader(&two).is_err());
        assert!(find_leader(&[]).is_err());
    }

    #[test]
    fn stolonctl_args_are_separate_argv_items() {
        let patch = r#"{"pgParameters":{"archive_command":"wal-g wal-push \"%p\"; rm -rf /"}}"#;
        let argv = stolonctl_argv(&["update", "--patch", patch]);
        assert_eq!(
            argv,
            vec![
                "bash",
                "-c",
                STOLONCTL_SCRIPT,
                "stolonctl",
                "update",
                "--patch",
                patch
            ]
        );
    }

    #[test]
    fn stolonctl_run_quotes_each_argument() {
        let argv = stolonctl_run_argv(&["update", "--patch", "{\"a\":\"it's\"}"]);
        assert_eq!(argv[0], "stolonctl-run");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&argv[1])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        assert_eq!(decoded, r#"'update' '--patch' '{"a":"it'\''s"}'"#);
    }

    #[test]
    fn parses_stolonctl_run_output() {
        let r = parse_stolonctl_run("noise\n{\"success\":true,\"message\":\"\",\"data\":\"ok\"}\n")
            .unwrap();
        assert!(r.success);
        assert_eq!(r.data, Some(Value::String("ok".into())));
        assert!(parse_stolonctl_run("no json").is_err());
    }

    #[test]
    fn printenv_parsing_keeps_secrets_and_multiline_values() {
        let env = MachineEnv::parse("SU_PASSWORD=a=b\nREPL_PASSWORD=r\nOPERATOR_PASSWORD=o\nKEY=line1\nline2\nFLY_APP_NAME=x\n");
        let c = env.credentials().unwrap();
        assert_eq!(c.su_password.expose_secret(), "a=b");
        assert_eq!(c.repl_password.expose_secret(), "r");
        assert_eq!(c.operator_password.expose_secret(), "o");
        assert_eq!(
            env.get("KEY").map(|s| s.expose_secret().to_string()),
            Some("line1\nline2".into())
        );
        assert_eq!(
            env.get("FLY_APP_NAME")
                .map(|s| s.expose_secret().to_string()),
            Some("x".into())
        );
        let dbg = format!("{env:?} {c:?}");
        assert!(!dbg.contains("a=b") && !dbg.contains("line1"), "{dbg}");
        let missing = MachineEnv::parse("SU_PASSWORD=a\n")
            .credentials()
            .unwrap_err();
        assert!(missing.to_string().contains("REPL_PASSWORD"), "{missing}");
    }
}
