//! `walden org …`: the Fly organisations Walden reaches with their own token, their Postgres apps, and the
//! clusters Walden tracks (`walden_core::orgs`; the same rules as the console, audited with the actor
//! `(system:cli)`).
//!
//! A token never comes from a flag's value (readable by every process in /proc/*/cmdline): `walden org add`
//! reads it from standard input (asked without echo on a terminal, one line when piped) or from
//! `--token-file`. It is validated with the Machines API peer named by `FLY_FLAPS_BASE_URL` (Fly's by
//! default; the emulator in tests) and stored sealed with the master key (`WALDEN_MASTER_KEY` or
//! `--master-key-file`). `FLY_API_TOKEN`, when set, adds its organisation (`WALDEN_FLY_ORG`) as the
//! `environment` one, as `walden serve` does.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use secrecy::SecretString;
use walden_core::access::RequestMeta;
use walden_core::clusters::FlyConnection;
use walden_core::orgs::{FlyEndpoints, OrgSource, OrgSummary, PostgresApp};
use walden_core::{Walden, WaldenOptions};
use zeroize::Zeroizing;

use crate::config::DataDirArgs;

/// The longest token read (Fly's tokens are a few thousand bytes at most).
const MAX_TOKEN_BYTES: u64 = 16 * 1024;

#[derive(Debug, Args)]
pub struct OrgArgs {
    #[command(flatten)]
    pub conn: OrgConnection,
    #[command(subcommand)]
    pub command: OrgCommand,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Add an organisation with an org-scoped token (`fly tokens create org`), read from standard input
    /// or --token-file; it is checked with Fly and stored sealed.
    Add {
        /// The organisation's slug.
        org: String,
        /// A file holding the token, instead of standard input.
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
    /// List the organisations (never their tokens).
    List,
    /// Check an added organisation's stored token with Fly again.
    Check { org: String },
    /// Remove an added organisation and its token; its clusters are no longer tracked.
    Remove { org: String },
    /// List an organisation's Postgres apps: flavour, version, regions, machines and roles.
    Apps { org: String },
    /// Track a Postgres cluster of an organisation.
    Track { org: String, app: String },
    /// Stop tracking a cluster.
    Untrack { org: String, app: String },
    /// List the tracked clusters.
    Tracked,
}

/// The database, the master key and the Fly peer.
#[derive(Debug, Args)]
pub struct OrgConnection {
    #[command(flatten)]
    pub data: DataDirArgs,
    /// A file holding the master key (64 hex characters), instead of `WALDEN_MASTER_KEY`.
    #[arg(
        long,
        env = "WALDEN_MASTER_KEY_FILE",
        value_name = "PATH",
        global = true
    )]
    pub master_key_file: Option<PathBuf>,
    /// A file holding the retired master keys, instead of `WALDEN_RETIRED_MASTER_KEYS`.
    #[arg(
        long,
        env = "WALDEN_RETIRED_MASTER_KEYS_FILE",
        value_name = "PATH",
        global = true
    )]
    pub retired_master_keys_file: Option<PathBuf>,
    /// The organisation of `FLY_API_TOKEN` (listed as the `environment` organisation).
    #[arg(
        long,
        env = "WALDEN_FLY_ORG",
        default_value = "personal",
        value_name = "SLUG",
        global = true
    )]
    pub fly_org: String,
    /// Machines API base URL (flyctl's variable; default https://api.machines.dev).
    #[arg(long, env = "FLY_FLAPS_BASE_URL", value_name = "URL", global = true)]
    pub fly_machines_url: Option<String>,
    /// api.fly.io base URL (flyctl's variable; default https://api.fly.io).
    #[arg(long, env = "FLY_API_HOSTNAME", value_name = "URL", global = true)]
    pub fly_api_url: Option<String>,
}

impl OrgConnection {
    pub(crate) async fn open(&self) -> anyhow::Result<Walden> {
        let keyring = crate::config::cli_keyring(
            &self.data.data_dir,
            self.master_key_file.as_deref(),
            self.retired_master_keys_file.as_deref(),
        )?;
        let endpoints = FlyEndpoints {
            machines_base_url: self.fly_machines_url.clone(),
            api_base_url: self.fly_api_url.clone(),
        };
        let environment = match std::env::var("FLY_API_TOKEN") {
            Ok(token) if !token.trim().is_empty() => {
                let mut builder = fly::FlyClient::builder().token(SecretString::from(token));
                if let Some(url) = &self.fly_machines_url {
                    builder = builder.machines_base_url(url.clone());
                }
                if let Some(url) = &self.fly_api_url {
                    builder = builder.api_base_url(url.clone());
                }
                Some(FlyConnection {
                    client: builder.build().context("invalid Fly API settings")?,
                    org: self.fly_org.clone(),
                })
            }
            _ => None,
        };
        let options = WaldenOptions {
            keyring,
            fly: environment,
            fly_endpoints: Some(endpoints),
            ..WaldenOptions::default()
        };
        Ok(Walden::open(&self.data.data_dir, options).await?)
    }
}

pub async fn run(args: OrgArgs) -> anyhow::Result<ExitCode> {
    let actor = super::user::actor();
    let meta = RequestMeta::default();
    // The token is read before anything is opened, so a bad input changes nothing.
    let token = match &args.command {
        OrgCommand::Add { token_file, .. } => Some(read_token(token_file.as_deref())?),
        _ => None,
    };
    let walden = args.conn.open().await?;
    let orgs = walden.orgs();
    match args.command {
        OrgCommand::Add { org, .. } => {
            let token = token.context("no token was read")?;
            let added = orgs.add(&actor, &meta, &org, &token).await?;
            println!(
                "added organisation {} ({}), token fingerprint {}",
                added.slug,
                added.name,
                added.fingerprint.unwrap_or_default()
            );
        }
        OrgCommand::List => print!("{}", orgs_text(&orgs.list(&actor).await?)),
        OrgCommand::Check { org } => {
            let at = orgs.validate(&actor, &meta, &org).await?;
            println!("the token of {org} is valid (checked at {at})");
        }
        OrgCommand::Remove { org } => {
            orgs.remove(&actor, &meta, &org).await?;
            println!("removed organisation {org}");
        }
        OrgCommand::Apps { org } => {
            print!("{}", apps_text(&orgs.postgres_apps(&actor, &org).await?));
        }
        OrgCommand::Track { org, app } => {
            orgs.track(&actor, &meta, &org, &app).await?;
            println!("tracking {app} ({org})");
        }
        OrgCommand::Untrack { org, app } => {
            orgs.untrack(&actor, &meta, &org, &app).await?;
            println!("no longer tracking {app} ({org})");
        }
        OrgCommand::Tracked => {
            let tracked = orgs.tracked(&actor).await?;
            if tracked.is_empty() {
                println!("no tracked clusters");
            }
            for t in tracked {
                println!(
                    "{}\t{}\ttracked by {} at {}",
                    t.org, t.app, t.tracked_by, t.tracked_at
                );
            }
        }
    }
    walden.close().await;
    Ok(ExitCode::SUCCESS)
}

/// The token: from `file`, else standard input (without echo on a terminal).
fn read_token(file: Option<&Path>) -> anyhow::Result<SecretString> {
    match file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read the token file {}", path.display()))?;
            read_token_line(&mut std::io::BufReader::new(file))
        }
        None if std::io::stdin().is_terminal() => {
            let token = Zeroizing::new(
                rpassword::prompt_password("Organisation token: ")
                    .context("cannot read the token")?,
            );
            Ok(SecretString::from(token.trim()))
        }
        None => read_token_line(&mut std::io::stdin().lock()),
    }
}

/// The first line of `input`, trimmed. Refuses nothing, invalid UTF-8, and more than a token can be.
fn read_token_line(input: &mut impl BufRead) -> anyhow::Result<SecretString> {
    let mut buf = Zeroizing::new(Vec::new());
    input
        .by_ref()
        .take(MAX_TOKEN_BYTES + 1)
        .read_until(b'\n', &mut buf)
        .context("cannot read the token")?;
    if buf.len() as u64 > MAX_TOKEN_BYTES {
        bail!("token: this is longer than a Fly API token; nothing was changed");
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| anyhow::anyhow!("token: this is not a Fly API token (not UTF-8)"))?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "no token on standard input (pipe one line, pass --token-file, or run on a terminal)"
        );
    }
    Ok(SecretString::from(token))
}

fn orgs_text(orgs: &[OrgSummary]) -> String {
    if orgs.is_empty() {
        return "no organisations (add one with `walden org add ORG`, or set FLY_API_TOKEN)\n"
            .into();
    }
    let mut out = String::new();
    for org in orgs {
        let how = match org.source {
            OrgSource::Environment => "environment (FLY_API_TOKEN)".to_owned(),
            OrgSource::Added => format!(
                "added by {} at {}, token {}",
                org.added_by.as_deref().unwrap_or("?"),
                org.added_at.as_deref().unwrap_or("?"),
                org.fingerprint.as_deref().unwrap_or("?")
            ),
        };
        out += &format!("{}\t{}\t{how}\n", org.slug, org.name);
    }
    out
}

fn apps_text(apps: &[PostgresApp]) -> String {
    if apps.is_empty() {
        return "no Postgres apps\n".into();
    }
    let mut out = String::new();
    for app in apps {
        let flavour = match app.flavour {
            walden_core::orgs::PgFlavour::Stolon => "stolon",
            walden_core::orgs::PgFlavour::Flex => "flex",
        };
        out += &format!(
            "{}\t{flavour}\tpostgres {}\t{}\t{}{}\n",
            app.app,
            app.pg_version.as_deref().unwrap_or("?"),
            app.regions.join(","),
            app.status,
            if app.tracked { "\ttracked" } else { "" }
        );
        for m in &app.machines {
            out += &format!("  {}\t{}\t{}\t{}\n", m.id, m.region, m.state, m.role);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_trimmed_line_and_refuses_bad_input() {
        let token = read_token_line(&mut &b"  FlyV1 fm2_abc \r\nsecond\n"[..]).unwrap();
        assert_eq!(
            secrecy::ExposeSecret::expose_secret(&token),
            "FlyV1 fm2_abc"
        );
        assert!(read_token_line(&mut &b""[..]).is_err());
        assert!(read_token_line(&mut &b"\n"[..]).is_err());
        assert!(read_token_line(&mut &[0xff, 0xfe, b'\n'][..]).is_err());
        let long = vec![b'a'; MAX_TOKEN_BYTES as usize + 10];
        assert!(read_token_line(&mut &long[..]).is_err());
    }
}
