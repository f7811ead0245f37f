//! `walden escrow …`: the credential escrow of tracked clusters (`walden_core::escrow`; the same rules as
//! the console, audited with the CLI user as the actor, like `walden user`).
//!
//! The database, master key and Fly peer are those of `walden org` ([`OrgConnection`]): added
//! organisations' sealed tokens, or `FLY_API_TOKEN` for the environment's organisation (`WALDEN_FLY_ORG`),
//! against the Machines API peer named by `FLY_FLAPS_BASE_URL` (the emulator in tests). A cluster is named
//! `ORG APP`, or just `APP` for the environment's organisation.
//!
//! No value ever comes from argv (readable by every process in /proc/*/cmdline): `walden escrow enter` reads
//! `NAME=VALUE` lines from standard input. `list` prints versions and fingerprints, never values; `reveal`
//! prints one value once, to standard output, only with a `--reason` (written to the audit log).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use walden_core::access::RequestMeta;
use walden_core::escrow::{unchanged_since, RoleStatus, VersionInfo, MAX_VALUE_LEN};
use zeroize::Zeroizing;

use super::org::OrgConnection;

/// The most read from standard input by `enter` (the three passwords and a few storage settings).
const MAX_ENTER_BYTES: u64 = 64 * 1024;

#[derive(Debug, Args)]
pub struct EscrowArgs {
    #[command(flatten)]
    pub conn: OrgConnection,
    #[command(subcommand)]
    pub command: EscrowCommand,
}

/// `ORG APP`, or `APP` alone for the environment's organisation.
#[derive(Debug, Args)]
pub struct ClusterName {
    /// The organisation (or the app, when the environment's organisation is meant).
    #[arg(value_name = "ORG")]
    first: String,
    /// The app.
    #[arg(value_name = "APP")]
    second: Option<String>,
}

impl ClusterName {
    fn resolve(&self, environment_org: &str) -> (String, String) {
        match &self.second {
            Some(app) => (self.first.clone(), app.clone()),
            None => (environment_org.to_owned(), self.first.clone()),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EscrowCommand {
    /// Capture a tracked cluster's credentials from its leader (the secrets API when every machine is
    /// stopped); a new version only when a value changed.
    Capture(ClusterName),
    /// List the versions of a cluster's credentials: when, by whom, how, fields and fingerprints (never
    /// values), and the latest login proofs.
    List(ClusterName),
    /// Prove that the current passwords still open their Postgres roles (a login on the cluster).
    Prove(ClusterName),
    /// Print one escrowed value once, for a reason written to the audit log: `ORG APP FIELD` or `APP FIELD`.
    Reveal {
        /// `ORG APP FIELD`, or `APP FIELD` for the environment's organisation.
        #[arg(num_args = 2..=3, value_name = "ORG APP FIELD", required = true)]
        names: Vec<String>,
        /// Why the value is needed (required; written to the audit log).
        #[arg(long)]
        reason: Option<String>,
        /// The version to reveal from (the current one by default).
        #[arg(long, value_name = "N")]
        at_version: Option<i64>,
    },
    /// Enter credentials by hand for a cluster whose machines are down: `NAME=VALUE` lines on standard
    /// input (SU_PASSWORD, REPL_PASSWORD, OPERATOR_PASSWORD and any WALG_*/AWS_*/GOOGLE_*/AZURE_* setting).
    Enter(ClusterName),
}

pub async fn run(args: EscrowArgs) -> anyhow::Result<ExitCode> {
    let actor = super::user::actor();
    let meta = RequestMeta::default();
    // Values are read before anything is opened, so a bad input changes nothing.
    let entered = match &args.command {
        EscrowCommand::Enter(_) => Some(read_values(&mut std::io::stdin().lock())?),
        _ => None,
    };
    let env_org = args.conn.fly_org.clone();
    let walden = args.conn.open().await?;
    let escrow = walden.escrow();
    let mut code = ExitCode::SUCCESS;
    match args.command {
        EscrowCommand::Capture(name) => {
            let (org, app) = name.resolve(&env_org);
            let report = escrow.capture(&actor, &meta, &org, &app).await?;
            let from = match report.how {
                walden_core::escrow::CaptureHow::SecretsApi => {
                    " from Fly's secrets API (every machine is stopped: these are the app's newest \
                     values, prove them once the cluster runs)"
                }
                _ => "",
            };
            let o = &report.outcome;
            if o.created {
                println!(
                    "captured {org}/{app}{from}: version {} (changed: {}{})",
                    o.version,
                    if o.changed.is_empty() {
                        "none".into()
                    } else {
                        o.changed.join(", ")
                    },
                    if o.removed.is_empty() {
                        String::new()
                    } else {
                        format!("; removed: {}", o.removed.join(", "))
                    }
                );
            } else {
                println!(
                    "captured {org}/{app}{from}: unchanged, still version {}",
                    o.version
                );
            }
        }
        EscrowCommand::List(name) => {
            let (org, app) = name.resolve(&env_org);
            let versions = escrow.versions(&actor, &meta, &org, &app).await?;
            print!("{}", versions_text(&org, &app, &versions));
            for p in escrow.latest_proofs(&actor, &meta, &org, &app).await? {
                println!(
                    "proof\t{}\tversion {}\t{}\t{}{}",
                    p.role,
                    p.version,
                    p.proven_at,
                    if p.ok { "opens" } else { "FAILS" },
                    p.message.map(|m| format!("\t{m}")).unwrap_or_default()
                );
            }
        }
        EscrowCommand::Prove(name) => {
            let (org, app) = name.resolve(&env_org);
            let report = escrow.prove(&actor, &meta, &org, &app).await?;
            for r in &report.roles {
                let status = match &r.status {
                    RoleStatus::Opens => "opens".to_owned(),
                    RoleStatus::Fails => {
                        "FAILS: the escrowed password no longer opens it".to_owned()
                    }
                    RoleStatus::CouldNotCheck(why) => format!("could not check: {why}"),
                };
                println!(
                    "{}\tversion {}\t{status}\t(on {}{})",
                    r.role,
                    report.version,
                    r.machine_id,
                    if r.on_leader {
                        ", the leader"
                    } else {
                        ", not the leader"
                    }
                );
            }
            if !report.all_open() {
                let failing = report.failing();
                if !failing.is_empty() {
                    eprintln!(
                        "the escrowed password of {} no longer works: capture again, or enter the current one",
                        failing.join(", ")
                    );
                }
                code = ExitCode::from(2);
            }
        }
        EscrowCommand::Reveal {
            names,
            reason,
            at_version,
        } => {
            let (org, app, field) = match names.as_slice() {
                [app, field] => (env_org.clone(), app.clone(), field.clone()),
                [org, app, field] => (org.clone(), app.clone(), field.clone()),
                _ => bail!("name the value as ORG APP FIELD, or APP FIELD"),
            };
            let version = match at_version {
                Some(v) => v,
                None => escrow
                    .versions(&actor, &meta, &org, &app)
                    .await?
                    .last()
                    .map(|v| v.version)
                    .with_context(|| format!("there are no escrowed credentials of {org}/{app}"))?,
            };
            // No reason: core refuses it, and audits the refusal.
            let reason = reason.unwrap_or_default();
            let value = escrow
                .reveal(&actor, &meta, &org, &app, version, &field, &reason)
                .await?;
            println!("{}", value.expose_secret());
        }
        EscrowCommand::Enter(name) => {
            let (org, app) = name.resolve(&env_org);
            let values = entered.context("no values were read")?;
            let o = escrow
                .enter_manually(&actor, &meta, &org, &app, &values)
                .await?;
            if o.created {
                println!("entered {org}/{app}: version {}", o.version);
            } else {
                println!(
                    "entered {org}/{app}: unchanged, still version {}",
                    o.version
                );
            }
        }
    }
    walden.close().await;
    Ok(code)
}

/// `NAME=VALUE` lines (blank lines and `#` comments skipped). Errors name the line, never its content.
fn read_values(input: &mut impl Read) -> anyhow::Result<BTreeMap<String, SecretString>> {
    let mut buf = Zeroizing::new(Vec::new());
    input
        .take(MAX_ENTER_BYTES + 1)
        .read_to_end(&mut buf)
        .context("cannot read standard input")?;
    if buf.len() as u64 > MAX_ENTER_BYTES {
        bail!("standard input is longer than credentials can be; nothing was changed");
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| anyhow::anyhow!("standard input is not UTF-8 text; nothing was changed"))?;
    let mut values = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            bail!("line {} is not NAME=VALUE; nothing was changed", i + 1);
        };
        let name = name.trim();
        if value.len() > MAX_VALUE_LEN {
            bail!(
                "the value of {name} (line {}) is too long; nothing was changed",
                i + 1
            );
        }
        if values
            .insert(name.to_owned(), SecretString::from(value))
            .is_some()
        {
            bail!(
                "{name} is given twice (line {}); nothing was changed",
                i + 1
            );
        }
    }
    if values.is_empty() {
        bail!("no NAME=VALUE lines on standard input; nothing was changed");
    }
    Ok(values)
}

fn versions_text(org: &str, app: &str, versions: &[VersionInfo]) -> String {
    if versions.is_empty() {
        return format!(
            "no escrowed credentials of {org}/{app} (capture them with `walden escrow capture`)\n"
        );
    }
    let mut out = String::new();
    for v in versions {
        out += &format!(
            "version {}\t{}\tby {}\t{}\n",
            v.version,
            v.captured_at,
            v.captured_by,
            v.how.as_str()
        );
        for f in &v.fields {
            out += &format!(
                "  {}\t{}\t{}\n",
                f.field,
                &f.fingerprint[..f.fingerprint.len().min(16)],
                if f.changed { "changed" } else { "unchanged" }
            );
        }
        for r in &v.removed {
            out += &format!("  {r}\tremoved\n");
        }
    }
    if let Some(last) = versions.last() {
        for f in &last.fields {
            if let Some(since) = unchanged_since(versions, &f.field) {
                out += &format!("{} unchanged since {since}\n", f.field);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_name_value_lines_and_refuses_bad_input() {
        let values =
            read_values(&mut &b"# typed\nSU_PASSWORD=a=b\r\n\nREPL_PASSWORD= x \n"[..]).unwrap();
        assert_eq!(values["SU_PASSWORD"].expose_secret(), "a=b");
        assert_eq!(values["REPL_PASSWORD"].expose_secret(), " x ");
        assert!(read_values(&mut &b""[..]).is_err());
        let err = read_values(&mut &b"SU_PASSWORD=1\nhunter2\n"[..]).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        assert!(read_values(&mut &b"A=1\nA=2\n"[..]).is_err());
        assert!(read_values(&mut &[0xff, b'\n'][..]).is_err());
    }
}
