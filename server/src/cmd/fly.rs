//! `walden fly …`: operator commands on the Fly Machines API client, useful on their own and for
//! scripted checks (issue #3, item 10). They talk to whatever `FLY_FLAPS_BASE_URL` points at, so the
//! emulator and tests are reached the same way as Fly.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use fly::stolon;
use fly::{ExecRequest, FlyClient, ListMachines, RolloutOptions};
use secrecy::{ExposeSecret, SecretString};

/// Connection settings, with flyctl's variable names.
#[derive(Clone, Args)]
pub struct FlyConnection {
    /// Fly API token (`fly tokens create org`); a `Bearer `/`FlyV1 ` prefix is accepted.
    #[arg(long, env = "FLY_API_TOKEN", hide_env_values = true, value_parser = parse_secret, value_name = "TOKEN", global = true)]
    pub fly_api_token: Option<SecretString>,

    /// Machines API base URL.
    #[arg(long, env = "FLY_FLAPS_BASE_URL", default_value = fly::DEFAULT_MACHINES_BASE_URL, value_name = "URL", global = true)]
    pub flaps_base_url: String,

    /// api.fly.io base URL (logs).
    #[arg(long, env = "FLY_API_HOSTNAME", default_value = fly::DEFAULT_API_BASE_URL, value_name = "URL", global = true)]
    pub api_hostname: String,
}

impl std::fmt::Debug for FlyConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlyConnection")
            .field(
                "fly_api_token",
                &self.fly_api_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("flaps_base_url", &self.flaps_base_url)
            .field("api_hostname", &self.api_hostname)
            .finish()
    }
}

/// `walden fly`.
#[derive(Debug, Args)]
pub struct FlyArgs {
    #[command(flatten)]
    pub conn: FlyConnection,

    #[command(subcommand)]
    pub command: FlyCommand,
}

#[derive(Debug, Subcommand)]
pub enum FlyCommand {
    /// List the apps of an organization.
    Apps {
        /// Organization slug (or `personal`).
        #[arg(long)]
        org: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// List an app's machines: id, name, state, region, role, image.
    Machines {
        app: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a command on a machine; prints its stdout/stderr and exits with its exit code.
    Exec {
        app: String,
        machine: String,
        /// Seconds the command may run.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Manage app secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Set secrets, then roll them out with machine updates (as `fly secrets set` does).
    Set {
        app: String,
        /// NAME=VALUE pairs; `NAME=-` reads that value from the first line of stdin (keeps it out
        /// of the process list). Checked after parsing so a malformed one is never echoed by clap.
        #[arg(required = true, value_name = "NAME=VALUE", value_parser = parse_secret_arg)]
        pairs: Vec<SecretString>,
        /// Only set the secrets; do not update the machines.
        #[arg(long)]
        stage: bool,
    },
}

/// One `NAME=VALUE` argument; the value is a secret.
#[derive(Clone)]
pub struct SecretPair {
    pub name: String,
    pub value: SecretString,
}

impl std::fmt::Debug for SecretPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}=[REDACTED]", self.name)
    }
}

fn parse_secret(value: &str) -> Result<SecretString, String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(value.to_owned()))
}

fn parse_secret_arg(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

fn parse_pair(arg: &str) -> Result<SecretPair, String> {
    let Some((name, value)) = arg.split_once('=') else {
        // Do not echo the argument: it may be a value typed without its name.
        return Err("expected NAME=VALUE".into());
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid secret name {name:?} (letters, digits and _ only)"
        ));
    }
    Ok(SecretPair {
        name: name.to_string(),
        value: SecretString::from(value.to_string()),
    })
}

fn client(conn: &FlyConnection) -> anyhow::Result<FlyClient> {
    let Some(token) = conn.fly_api_token.clone() else {
        bail!("no Fly API token: set FLY_API_TOKEN or pass --fly-api-token");
    };
    Ok(FlyClient::builder()
        .token(token)
        .machines_base_url(&conn.flaps_base_url)
        .api_base_url(&conn.api_hostname)
        .build()?)
}

/// `walden fly …`.
pub async fn run(args: FlyArgs) -> anyhow::Result<ExitCode> {
    let fly = client(&args.conn)?;
    match args.command {
        FlyCommand::Apps { org, json } => apps(&fly, &org, json).await,
        FlyCommand::Machines { app, json } => machines(&fly, &app, json).await,
        FlyCommand::Exec {
            app,
            machine,
            timeout,
            command,
        } => exec(&fly, &app, &machine, timeout, command).await,
        FlyCommand::Secrets(SecretsCommand::Set { app, pairs, stage }) => {
            secrets_set(&fly, &app, pairs, stage).await
        }
    }
}

async fn apps(fly: &FlyClient, org: &str, json: bool) -> anyhow::Result<ExitCode> {
    let list = fly
        .list_apps(org)
        .await
        .with_context(|| format!("listing apps of org {org}"))?;
    if json {
        let rows: Vec<_> = list
            .apps
            .iter()
            .map(|a| {
                serde_json::json!({
                    "id": a.id, "name": a.name, "status": a.status,
                    "org": a.organization.as_ref().and_then(|o| o.slug.clone()),
                    "machine_count": a.machine_count,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let rows: Vec<Vec<String>> = list
            .apps
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.status.clone().unwrap_or_default(),
                    a.machine_count.map(|c| c.to_string()).unwrap_or_default(),
                ]
            })
            .collect();
        print_table(&["NAME", "STATUS", "MACHINES"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn machines(fly: &FlyClient, app: &str, json: bool) -> anyhow::Result<ExitCode> {
    let list = fly
        .list_machines(app, &ListMachines::default())
        .await
        .with_context(|| format!("listing machines of app {app}"))?;
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|m| {
            [
                m.id.clone(),
                m.name.clone(),
                m.state.clone(),
                m.region.clone(),
                stolon::role(m).to_string(),
                m.image().unwrap_or_default(),
            ]
        })
        .collect();
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|[id, name, state, region, role, image]| {
                serde_json::json!({"id": id, "name": name, "state": state, "region": region, "role": role, "image": image})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
        print_table(&["ID", "NAME", "STATE", "REGION", "ROLE", "IMAGE"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

async fn exec(
    fly: &FlyClient,
    app: &str,
    machine: &str,
    timeout: u64,
    command: Vec<String>,
) -> anyhow::Result<ExitCode> {
    let req = ExecRequest::new(command).timeout(timeout);
    let out = fly
        .exec_unchecked(app, machine, &req)
        .await
        .with_context(|| format!("exec on machine {machine} of app {app}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.stdout.as_bytes())?;
    stdout.flush()?;
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(out.stderr.as_bytes())?;
    stderr.flush()?;
    Ok(exit_code(out.exit_code, out.exit_signal))
}

/// The command's exit code; a signal gives 128 + signal, as shells do.
fn exit_code(code: i64, signal: Option<i64>) -> ExitCode {
    let n = match signal {
        Some(s) if s > 0 => 128 + s,
        _ => code,
    };
    match u8::try_from(n) {
        Ok(v) => ExitCode::from(v),
        Err(_) => ExitCode::FAILURE,
    }
}

async fn secrets_set(
    fly: &FlyClient,
    app: &str,
    raw: Vec<SecretString>,
    stage: bool,
) -> anyhow::Result<ExitCode> {
    let mut pairs = Vec::with_capacity(raw.len());
    let mut stdin_used = false;
    for (i, r) in raw.iter().enumerate() {
        match parse_pair(r.expose_secret()) {
            Ok(mut p) => {
                if p.value.expose_secret() == "-" {
                    if stdin_used {
                        bail!("secret argument {}: only one NAME=- may read stdin", i + 1);
                    }
                    stdin_used = true;
                    p.value = read_stdin_line()
                        .with_context(|| format!("reading {} from stdin", p.name))?;
                }
                pairs.push(p)
            }
            Err(e) => bail!("secret argument {}: {e}", i + 1),
        }
    }
    let values: BTreeMap<String, Option<SecretString>> =
        pairs.into_iter().map(|p| (p.name, Some(p.value))).collect();
    let names: Vec<&str> = values.keys().map(String::as_str).collect();
    let version = fly
        .update_secrets(app, &values)
        .await
        .with_context(|| format!("setting secrets on app {app}"))?;
    println!(
        "set {} on {app} (secrets version {version})",
        names.join(", ")
    );
    if stage {
        println!("staged: machines pick the secrets up when they are next updated");
        return Ok(ExitCode::SUCCESS);
    }
    let steps = fly
        .rollout_secrets(app, version, &RolloutOptions::default())
        .await
        .with_context(|| format!("rolling secrets out to the machines of {app}"))?;
    let mut failed = false;
    for s in &steps {
        match &s.result {
            Ok(()) => println!(
                "machine {} ({}): updated with secrets version {version}",
                s.machine_id, s.previous_state
            ),
            Err(e) => {
                failed = true;
                eprintln!("error: machine {}: {e}", s.machine_id);
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One line of stdin without its line ending, as a secret.
fn read_stdin_line() -> anyhow::Result<SecretString> {
    use std::io::BufRead;
    use zeroize::Zeroize;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let value = line.trim_end_matches(['\r', '\n']).to_string();
    line.zeroize();
    Ok(SecretString::from(value))
}

fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_keep_equals_in_values_and_hide_them_in_debug() {
        let p = parse_pair("DATABASE_URL=postgres://u:p@h/db?x=1").unwrap();
        assert_eq!(p.name, "DATABASE_URL");
        assert_eq!(p.value.expose_secret(), "postgres://u:p@h/db?x=1");
        assert!(!format!("{p:?}").contains("postgres://"));
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("BAD-NAME=x").is_err());
        assert!(parse_pair("=x").is_err());
    }

    #[test]
    fn signals_map_to_128_plus() {
        assert_eq!(exit_code(0, None), ExitCode::SUCCESS);
        assert_eq!(exit_code(3, None), ExitCode::from(3));
        assert_eq!(exit_code(0, Some(9)), ExitCode::from(137));
        assert_eq!(exit_code(999, None), ExitCode::FAILURE);
    }
}
