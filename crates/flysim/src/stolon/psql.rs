//! `psql`: connection options (URL or flags), password auth against the stored hashes, output format.

use std::collections::BTreeMap;

use super::sql::{render, run_sql, SqlResult};
use super::{md5_password, role_of};
use crate::exec::Out;
use crate::image::ExecContext;
use crate::model::MachineState;

pub(crate) fn psql(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Out {
    let mut host = env
        .get("PGHOST")
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let mut port = env.get("PGPORT").cloned().unwrap_or_else(|| "5432".into());
    let mut user = env.get("PGUSER").cloned().unwrap_or_else(|| "root".into());
    let mut password = env.get("PGPASSWORD").cloned();
    let mut db: Option<String> = env.get("PGDATABASE").cloned();
    let mut sql: Vec<String> = Vec::new();
    let mut tuples_only = false;
    let mut unaligned = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let mut next = || {
            i += 1;
            args.get(i).cloned().unwrap_or_default()
        };
        match a {
            "-h" | "--host" => host = next(),
            "-p" | "--port" => port = next(),
            "-U" | "--username" => user = next(),
            "-d" | "--dbname" => db = Some(next()),
            "-c" | "--command" => sql.push(next()),
            "-t" | "--tuples-only" => tuples_only = true,
            "-A" | "--no-align" => unaligned = true,
            "-tA" | "-At" => {
                tuples_only = true;
                unaligned = true
            }
            "-X" | "-q" | "--no-psqlrc" | "--quiet" | "-w" => {}
            "-v" | "--set" => {
                let _ = next();
            }
            s if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                if let Some((u, p, h, po, d)) = parse_url(s) {
                    if let Some(u) = u {
                        user = u;
                    }
                    if p.is_some() {
                        password = p;
                    }
                    if let Some(h) = h {
                        host = h;
                    }
                    if let Some(po) = po {
                        port = po;
                    }
                    if let Some(d) = d {
                        db = Some(d);
                    }
                }
            }
            s if s.starts_with('-') => {
                return Out::err(
                    1,
                    format!("psql: error: flysim does not emulate option {s}\n"),
                );
            }
            s => db = Some(s.to_string()),
        }
        i += 1;
    }
    let db = db.unwrap_or_else(|| user.clone());
    let where_ = format!("connection to server at \"{host}\", port {port} failed");
    let app = context.app.clone();
    let Some(a) = context.state.apps.get(&app) else {
        return Out::err(2, "psql: error: no app\n");
    };
    let Some(pg) = a.pg.as_ref() else {
        return Out::err(2, format!("psql: error: {where_}: Connection refused\n"));
    };
    // :5432 is HAProxy → the leader; :5433 is the local Postgres.
    let target = if port == "5432" {
        pg.master.clone()
    } else {
        Some(context.machine.clone())
    };
    let Some(target) = target.and_then(|t| a.machines.get(&t)) else {
        return Out::err(
            2,
            format!("psql: error: {where_}: server closed the connection unexpectedly\n"),
        );
    };
    let role = role_of(a, target);
    let starting = target.ready_ms.is_none()
        || pg
            .pitr
            .as_ref()
            .is_some_and(|p| p.step != "recovered" && p.step != "failed");
    if target.state != MachineState::Started || starting || target.crash_reason.is_some() {
        if starting && target.state == MachineState::Started {
            return Out::err(
                2,
                format!("psql: error: {where_}: FATAL:  the database system is starting up\n"),
            );
        }
        return Out::err(2, format!("psql: error: {where_}: Connection refused\n"));
    }
    let Some(pw) = password else {
        return Out::err(
            2,
            format!("psql: error: {where_}: fe_sendauth: no password supplied\n"),
        );
    };
    match pg.roles.get(&user) {
        Some(h) if *h == md5_password(&user, &pw) => {}
        _ => {
            return Out::err(2, format!("psql: error: {where_}: FATAL:  password authentication failed for user \"{user}\"\n"));
        }
    }
    if !pg.databases.contains_key(&db) {
        return Out::err(
            2,
            format!("psql: error: {where_}: FATAL:  database \"{db}\" does not exist\n"),
        );
    }
    let read_only = role.role == Some("replica");
    let mut out = String::new();
    for q in sql {
        match run_sql(context, &db, &q, read_only) {
            Ok(SqlResult::Rows(col, rows)) => {
                out.push_str(&render(&col, &rows, tuples_only, unaligned));
            }
            Ok(SqlResult::Tag(tag)) => {
                out.push_str(&tag);
                out.push('\n');
            }
            Err(e) => {
                return Out {
                    code: 1,
                    stdout: out,
                    stderr: format!("ERROR:  {e}\n"),
                    ..Out::default()
                }
            }
        }
    }
    Out::ok(out)
}

/// (user, password, host, port, database) of a libpq URL.
pub(super) type UrlParts = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) fn parse_url(s: &str) -> Option<UrlParts> {
    let rest = s.split_once("://")?.1;
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (user, pass) = match auth {
        Some(a) => match a.split_once(':') {
            Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
            None => (Some(a.to_string()), None),
        },
        None => (None, None),
    };
    let (hp, db) = match hostpart.split_once('/') {
        Some((h, d)) => (
            h,
            Some(d.split('?').next().unwrap_or("").to_string()).filter(|d| !d.is_empty()),
        ),
        None => (hostpart, None),
    };
    let (host, port) = if let Some(stripped) = hp.strip_prefix('[') {
        match stripped.split_once(']') {
            Some((h, p)) => (
                Some(h.to_string()),
                p.strip_prefix(':').map(|p| p.to_string()),
            ),
            None => (Some(hp.to_string()), None),
        }
    } else {
        match hp.rsplit_once(':') {
            Some((h, p)) => (Some(h.to_string()), Some(p.to_string())),
            None => (Some(hp.to_string()).filter(|h| !h.is_empty()), None),
        }
    };
    Some((user, pass, host, port, db))
}
