//! `walden user …`: manage console accounts from the command line (first admin, recovery).
//!
//! Passwords are read from standard input: asked twice, without echo, on a terminal; one line when piped
//! (`printf '%s\n' "$PW" | walden user add --admin alice`). Every change is audited with the actor
//! `(system:cli)`.

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use walden_core::access::{Actor, FieldError, RequestMeta, Role};
use walden_core::users::{password_from_bytes, Accounts, User, MAX_PASSWORD_CHARS};
use walden_core::{Walden, WaldenOptions};
use zeroize::Zeroizing;

use crate::config::DataDirArgs;

#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (the password comes from standard input).
    Add {
        #[command(flatten)]
        data: DataDirArgs,
        /// Make the user an admin (same as --role admin).
        #[arg(long, conflicts_with = "role")]
        admin: bool,
        /// The user's role: viewer, operator or admin.
        #[arg(long, value_parser = parse_role, default_value = "viewer")]
        role: Role,
        /// The user name (letters, digits, '.', '_', '-').
        name: String,
    },
    /// List users.
    List {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Set a new password for a user, e.g. a locked-out admin (from standard input); ends their sessions.
    Passwd {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
    },
    /// Change a user's role.
    SetRole {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Disable a user (they can no longer sign in; their sessions end).
    Disable {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        #[command(flatten)]
        data: DataDirArgs,
        name: String,
    },
    /// Make a one-time invitation link (printed once): admin links live at most 24 hours (4 by default),
    /// others at most 7 days (3 by default).
    Invite {
        #[command(flatten)]
        data: DataDirArgs,
        /// The role the new user gets: viewer, operator or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// How long the link works, in hours.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        hours: Option<u32>,
    },
    /// List the invitations that can still be accepted.
    Invites {
        #[command(flatten)]
        data: DataDirArgs,
    },
    /// Revoke an invitation (its link stops working).
    RevokeInvite {
        #[command(flatten)]
        data: DataDirArgs,
        /// The invitation's number, as `walden user invites` shows it.
        id: i64,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: FieldError| e.message)
}

/// The CLI as an audit actor, with the OS user that ran it when known.
pub(crate) fn actor() -> Actor {
    let who = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.len() <= 32 && u.bytes().all(|b| b.is_ascii_graphic()));
    Actor::System {
        label: match who {
            Some(u) => format!("cli:{u}"),
            None => "cli".into(),
        },
    }
}

/// The façade on the data directory, with production password hashing and no Fly connection.
async fn open(data: &DataDirArgs) -> anyhow::Result<Walden> {
    Ok(Walden::open(&data.data_dir, WaldenOptions::default()).await?)
}

async fn find(acc: &Accounts, name: &str) -> anyhow::Result<User> {
    acc.find_by_name(name)
        .await?
        .with_context(|| format!("there is no user called {:?}", name.trim()))
}

pub async fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let meta = RequestMeta::default();
    match args.command {
        UserCommand::Add {
            data,
            admin,
            role,
            name,
        } => {
            let role = if admin { Role::Admin } else { role };
            // Check the name before asking for a password.
            walden_core::users::validate_name(&name)?;
            let walden = open(&data).await?;
            let acc = walden.accounts();
            let password = read_new_password()?;
            let user = acc
                .create_user(&actor(), &meta, &name, &password, role)
                .await?;
            println!("added {} ({}) with id {}", user.name, user.role, user.id);
        }
        UserCommand::List { data } => {
            let walden = open(&data).await?;
            let acc = walden.accounts();
            let users = acc.list(&actor()).await?;
            if users.is_empty() {
                println!("no users yet (add one with: walden user add --admin NAME)");
            }
            for u in users {
                println!(
                    "{:>4}  {:<24} {:<8} {}{}",
                    u.id,
                    u.name,
                    u.role,
                    if u.disabled { "disabled" } else { "enabled" },
                    if u.totp_enabled { ", totp" } else { "" }
                );
            }
        }
        UserCommand::Passwd { data, name } => {
            let walden = open(&data).await?;
            let acc = walden.accounts();
            let user = find(acc, &name).await?;
            let password = read_new_password()?;
            acc.reset_password(&actor(), &meta, user.id, &password)
                .await?;
            println!(
                "password of {} changed; their sessions have ended",
                user.name
            );
        }
        UserCommand::SetRole { data, name, role } => {
            let walden = open(&data).await?;
            let acc = walden.accounts();
            let user = find(acc, &name).await?;
            let user = acc.set_role(&actor(), &meta, user.id, role).await?;
            println!("{} is now {}", user.name, user.role);
        }
        UserCommand::Disable { data, name } => {
            let walden = open(&data).await?;
            let acc = walden.accounts();
            let user = find(acc, &name).await?;
            acc.set_disabled(&actor(), &meta, user.id, true).await?;
            println!("{} is disabled", user.name);
        }
        UserCommand::Enable { data, name } => {
            let walden = open(&data).await?;
            let acc = walden.accounts();
            let user = find(acc, &name).await?;
            acc.set_disabled(&actor(), &meta, user.id, false).await?;
            println!("{} is enabled", user.name);
        }
        UserCommand::Invite { data, role, hours } => {
            let ttl = hours.map_or_else(
                || walden_core::users::default_invite_ttl(role),
                |h| time::Duration::hours(i64::from(h)),
            );
            let walden = open(&data).await?;
            let (invite, token) = walden
                .accounts()
                .create_invite(&actor(), &meta, role, ttl)
                .await?;
            println!(
                "invitation {} for a new {} (valid until {}); send this path on the console's address, \
                 it is shown only now:\n/invite?token={}",
                invite.id,
                invite.role,
                invite.expires_at,
                token.expose_secret()
            );
        }
        UserCommand::Invites { data } => {
            let walden = open(&data).await?;
            let invites = walden.accounts().pending_invites(&actor()).await?;
            if invites.is_empty() {
                println!("no pending invitations");
            }
            for i in invites {
                println!(
                    "{:>4}  {:<8} by {:<24} expires {}",
                    i.id,
                    i.role,
                    i.created_by.as_deref().unwrap_or("(cli)"),
                    i.expires_at
                );
            }
        }
        UserCommand::RevokeInvite { data, id } => {
            let walden = open(&data).await?;
            walden
                .accounts()
                .revoke_invite(&actor(), &meta, id)
                .await
                .with_context(|| format!("invitation {id}"))?;
            println!("invitation {id} is revoked; its link no longer works");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Read a new password: twice without echo on a terminal, else one line from standard input.
fn read_new_password() -> anyhow::Result<SecretString> {
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password("New password: ").context("cannot read the password")?,
        );
        let second = Zeroizing::new(
            rpassword::prompt_password("Repeat the password: ")
                .context("cannot read the password")?,
        );
        if *first != *second {
            bail!("the two passwords differ; nothing was changed");
        }
        Ok(SecretString::from(first.as_str()))
    } else {
        read_password_line(&mut std::io::stdin().lock())
    }
}

/// One line from `input` (the line break is not part of the password). Refuses an empty input, invalid UTF-8
/// and anything longer than a password may be, without reading further.
pub fn read_password_line(input: &mut impl BufRead) -> anyhow::Result<SecretString> {
    // Four bytes per character at most, plus the line break.
    let limit = (MAX_PASSWORD_CHARS * 4 + 2) as u64;
    let mut buf = Zeroizing::new(Vec::new());
    input
        .by_ref()
        .take(limit + 1)
        .read_until(b'\n', &mut buf)
        .context("cannot read the password from standard input")?;
    if buf.is_empty() {
        bail!("no password on standard input (pipe one line, or run on a terminal to be asked)");
    }
    if buf.len() as u64 > limit {
        bail!("password: the password must be at most {MAX_PASSWORD_CHARS} characters long");
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    let pw = password_from_bytes(std::mem::take(&mut *buf))?;
    if pw.expose_secret().is_empty() {
        bail!("password: enter a password (standard input held an empty line)");
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_line_and_refuses_bad_input() {
        let pw = read_password_line(&mut &b"a fine passphrase\r\nsecond line\n"[..]).unwrap();
        assert_eq!(pw.expose_secret(), "a fine passphrase");
        let pw = read_password_line(&mut &b"no newline at the end"[..]).unwrap();
        assert_eq!(pw.expose_secret(), "no newline at the end");
        for (input, needle) in [
            (&b""[..], "no password"),
            (&b"\n"[..], "enter a password"),
            (&b"\xff\xfe bad\n"[..], "UTF-8"),
        ] {
            let err = read_password_line(&mut &input[..]).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let long = vec![b'x'; MAX_PASSWORD_CHARS * 4 + 10];
        let err = read_password_line(&mut &long[..]).unwrap_err().to_string();
        assert!(err.contains("at most"), "{err}");
    }
}
