//! `psql`: connection options (URL or flags), password auth against the stored hashes, output format.

use std::collections::BTreeMap;

use super::sql::{render, run_sql_tx, SqlResult};
use super::{md5_password, role_of};
use crate::exec::Out;
use crate::image::ExecContext;
use crate::model::MachineState;

/// Where and how `psql` connects, and what it runs.
struct Connection {
    host: String,
    port: String,
    user: String,
    password: Option<String>,
    database: Option<String>,
    commands: Vec<String>,
    tuples_only: bool,
    unaligned: bool,
    /// `PGOPTIONS` sets `default_transaction_read_only=on` (libpq passes it to the server at connect).
    tx_read_only: bool,
}

impl Connection {
    /// libpq's defaults from the environment.
    fn from_env(env: &BTreeMap<String, String>) -> Self {
        let var = |name: &str, default: &str| {
            env.get(name)
                .cloned()
                .unwrap_or_else(|| default.to_string())
        };
        Self {
            host: var("PGHOST", ""),
            port: var("PGPORT", "5432"),
            user: var("PGUSER", "root"),
            password: env.get("PGPASSWORD").cloned(),
            database: env.get("PGDATABASE").cloned(),
            commands: Vec::new(),
            tuples_only: false,
            unaligned: false,
            tx_read_only: env.get("PGOPTIONS").is_some_and(|o| {
                o.replace(' ', "")
                    .contains("default_transaction_read_only=on")
            }),
        }
    }

    /// Apply the command line (flags, a URL, or a bare database name).
    fn parse_args(mut self, args: &[String]) -> Result<Self, Out> {
        let mut i = 0;
        while i < args.len() {
            let arg = args[i].as_str();
            let mut next = || {
                i += 1;
                args.get(i).cloned().unwrap_or_default()
            };
            match arg {
                "-h" | "--host" => self.host = next(),
                "-p" | "--port" => self.port = next(),
                "-U" | "--username" => self.user = next(),
                "-d" | "--dbname" => self.database = Some(next()),
                "-c" | "--command" => self.commands.push(next()),
                "-t" | "--tuples-only" => self.tuples_only = true,
                "-A" | "--no-align" => self.unaligned = true,
                "-tA" | "-At" => {
                    self.tuples_only = true;
                    self.unaligned = true
                }
                "-X" | "-q" | "--no-psqlrc" | "--quiet" | "-w" => {}
                "-v" | "--set" => {
                    let _ = next();
                }
                url if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    self.apply_url(url)
                }
                flag if flag.starts_with('-') => {
                    return Err(Out::err(
                        1,
                        format!("psql: error: flysim does not emulate option {flag}\n"),
                    ));
                }
                name => self.database = Some(name.to_string()),
            }
            i += 1;
        }
        Ok(self)
    }

    fn apply_url(&mut self, url: &str) {
        let Some((user, password, host, port, database)) = parse_url(url) else {
            return;
        };
        if let Some(user) = user {
            self.user = user;
        }
        if password.is_some() {
            self.password = password;
        }
        if let Some(host) = host {
            self.host = host;
        }
        if let Some(port) = port {
            self.port = port;
        }
        if let Some(database) = database {
            self.database = Some(database);
        }
    }
}

/// `psql`: connect (through HAProxy on :5432 to the leader, or :5433 locally), authenticate, run the
/// `-c` commands.
pub(crate) fn psql(
    context: &mut ExecContext<'_>,
    args: &[String],
    env: &BTreeMap<String, String>,
) -> Out {
    let connection = match Connection::from_env(env).parse_args(args) {
        Ok(connection) => connection,
        Err(refused) => return refused,
    };
    let database = connection
        .database
        .clone()
        .unwrap_or_else(|| connection.user.clone());
    match connect(context, &connection, &database) {
        Ok(read_only) => run_commands(context, &connection, &database, read_only),
        Err(refused) => refused,
    }
}

/// Reach a ready server and authenticate; `Ok(read_only)` (a replica) or psql's error.
fn connect(
    context: &ExecContext<'_>,
    connection: &Connection,
    database: &str,
) -> Result<bool, Out> {
    let (host, port, user) = (&connection.host, &connection.port, &connection.user);
    let fail = |message: String| Err(Out::err(2, format!("psql: error: {message}\n")));
    if let Some(socket) = missing_socket(host, port) {
        return fail(format!("connection to server on socket \"{socket}\" failed: No such file or directory\n\tIs the server running locally and accepting connections on that socket?"));
    }
    let where_ = if host.starts_with('/') {
        format!("connection to server on socket \"{host}/.s.PGSQL.{port}\" failed")
    } else {
        format!("connection to server at \"{host}\", port {port} failed")
    };
    let Some(owner) = context.state.apps.get(&context.app) else {
        return fail("no app".into());
    };
    let Some(pg) = owner.pg.as_ref() else {
        return fail(format!("{where_}: Connection refused"));
    };
    // :5432 is HAProxy → the leader; :5433 (or the socket in /tmp) is the local Postgres.
    let target = if port == "5432" {
        pg.master.clone()
    } else {
        Some(context.machine.clone())
    };
    let Some(target) = target.and_then(|t| owner.machines.get(&t)) else {
        return fail(format!(
            "{where_}: server closed the connection unexpectedly"
        ));
    };
    let starting = target.ready_ms.is_none()
        || pg
            .pitr
            .as_ref()
            .is_some_and(|p| p.step != "recovered" && p.step != "failed");
    let started = target.state == MachineState::Started;
    if !started || starting || target.crash_reason.is_some() {
        if starting && started {
            return fail(format!(
                "{where_}: FATAL:  the database system is starting up"
            ));
        }
        return fail(format!("{where_}: Connection refused"));
    }
    let Some(password) = &connection.password else {
        return fail(format!("{where_}: fe_sendauth: no password supplied"));
    };
    match pg.roles.get(user) {
        Some(hash) if *hash == md5_password(user, password) => {}
        _ => {
            return fail(format!(
                "{where_}: FATAL:  password authentication failed for user \"{user}\""
            ))
        }
    }
    if !pg.databases.contains_key(database) {
        return fail(format!(
            "{where_}: FATAL:  database \"{database}\" does not exist"
        ));
    }
    Ok(role_of(owner, target).role == Some("replica"))
}

/// The socket path of a unix-socket connection that cannot work: without `PGHOST`/`-h` libpq looks in
/// `/var/run/postgresql`, but stolon puts Postgres' socket in `/tmp` (stolon
/// `internal/common/common.go`: `PgUnixSocketDirectories = "/tmp"`), and Postgres listens on 5433 only
/// (`:5432` is HAProxy, TCP; postgres-ha `config/haproxy.cfg`).
pub(crate) fn missing_socket(host: &str, port: &str) -> Option<String> {
    let directory = if host.is_empty() {
        "/var/run/postgresql"
    } else if host.starts_with('/') {
        host.trim_end_matches('/')
    } else {
        return None;
    };
    if directory == "/tmp" && port == "5433" {
        return None;
    }
    Some(format!("{directory}/.s.PGSQL.{port}"))
}

/// Run each `-c` command in order, stopping at the first error.
fn run_commands(
    context: &mut ExecContext<'_>,
    connection: &Connection,
    database: &str,
    read_only: bool,
) -> Out {
    let mut out = String::new();
    for command in &connection.commands {
        let ro = connection.tx_read_only;
        match run_sql_tx(context, database, &connection.user, command, read_only, ro) {
            Ok(SqlResult::Rows(column, rows)) => {
                out.push_str(&render(
                    &column,
                    &rows,
                    connection.tuples_only,
                    connection.unaligned,
                ));
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
        Some((credentials, host)) => (Some(credentials), host),
        None => (None, rest),
    };
    let (user, pass) = match auth {
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
            None => (Some(credentials.to_string()), None),
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
