//! The few SQL statements `psql` understands, and how their results are rendered.

use crate::clock::rfc3339;
use crate::image::ExecContext;
use crate::model::PgCluster;

pub(super) enum SqlResult {
    Rows(String, Vec<String>),
    Tag(String),
}

pub(super) fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Run one statement against the app's cluster as `psql` would (`read_only` on a replica), connected
/// as `user`; `tx_read_only` when the session makes every transaction read-only (`PGOPTIONS='-c
/// default_transaction_read_only=on'`): reads as usual, every write refused as on a replica.
pub(super) fn run_sql_tx(
    context: &mut ExecContext<'_>,
    db: &str,
    user: &str,
    statement: &str,
    read_only: bool,
    tx_read_only: bool,
) -> Result<SqlResult, String> {
    let now = context.now;
    let Some(pg) = context
        .state
        .apps
        .get_mut(&context.app)
        .and_then(|a| a.pg.as_mut())
    else {
        return Err("no cluster".into());
    };
    let statement = statement.trim().trim_end_matches(';').trim();
    let lower = statement.to_ascii_lowercase();
    if lower.starts_with("alter role ") || lower.starts_with("alter user ") {
        // Parsed from the original text: the password literal keeps its case.
        return alter_role_password(pg, user, statement, read_only);
    }
    if let Some(result) = read_query(pg, db, &lower, read_only, now) {
        return result;
    }
    if let Some(result) = write_statement(pg, db, &lower, read_only || tx_read_only) {
        if matches!(result, Ok(SqlResult::Tag(_))) {
            pg.unarchived_commit_ms = Some(now);
        }
        return result;
    }
    Err(format!("flysim: statement not emulated: {statement}"))
}

/// A one-row, one-column answer.
fn one(column: &str, value: String) -> Result<SqlResult, String> {
    Ok(SqlResult::Rows(column.to_string(), vec![value]))
}

/// A server parameter: the spec's `pgParameters`, else Postgres' default; `archive_mode` is the value
/// the master's Postgres started with (see `PgCluster::started_archive_mode`).
fn parameter(pg: &PgCluster, name: &str) -> String {
    if name == "archive_mode" {
        if let Some(mode) = super::running_archive_mode(pg) {
            return mode;
        }
    }
    pg.spec
        .pointer(&format!("/pgParameters/{name}"))
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| match name {
            "wal_level" => "replica".into(),
            "max_connections" => "300".into(),
            "archive_mode" => "off".into(),
            "archive_timeout" => "0".into(),
            "archive_command" => "(disabled)".into(),
            _ => String::new(),
        })
}

/// The queries that only read (`None`: not one of them).
fn read_query(
    pg: &PgCluster,
    db: &str,
    lower: &str,
    read_only: bool,
    now: i64,
) -> Option<Result<SqlResult, String>> {
    let version = pg.pg_version;
    let result = match lower {
        "select 1" => one("?column?", "1".into()),
        "select true" => one("bool", "t".into()),
        "select false" => one("bool", "f".into()),
        "select version()" => one(
            "version",
            format!(
                "PostgreSQL {}.{} (Debian {}.{}-1.pgdg110+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 10.2.1-6) 10.2.1 20210110, 64-bit",
                version / 10000,
                version % 10000,
                version / 10000,
                version % 10000
            ),
        ),
        "select pg_is_in_recovery()" => one(
            "pg_is_in_recovery",
            if read_only { "t" } else { "f" }.into(),
        ),
        "select pg_current_wal_lsn()" if read_only => Err("recovery is in progress\nHINT:  WAL control functions cannot be executed during recovery.".into()),
        "select pg_current_wal_lsn()" => one("pg_current_wal_lsn", lsn_text(pg.lsn)),
        "select timeline_id from pg_control_checkpoint()" => {
            one("timeline_id", pg.timeline.to_string())
        }
        "select system_identifier from pg_control_system()" => {
            one("system_identifier", pg.system_identifier.to_string())
        }
        "select now()" => one("now", rfc3339(now)),
        "select datname from pg_database" => {
            let mut names: Vec<String> = vec!["template0".into(), "template1".into()];
            names.extend(pg.databases.keys().cloned());
            Ok(SqlResult::Rows("datname".into(), names))
        }
        // The user tables of the database (how Walden checks a cluster to restore into is empty).
        "select count(*) from pg_stat_user_tables" => one(
            "count",
            pg.databases.get(db).map(|t| t.len()).unwrap_or(0).to_string(),
        ),
        _ => {
            if let Some(name) = lower.strip_prefix("show ") {
                return Some(show(pg, name.trim(), read_only));
            }
            if let Some(result) = count_at_least(pg, db, lower) {
                return Some(result);
            }
            let table = lower.strip_prefix("select count(*) from ")?;
            let table = table.trim().trim_start_matches("public.").to_string();
            let tables = pg.databases.get(db).cloned().unwrap_or_default();
            match tables.get(&table) {
                Some(rows) => one("count", rows.to_string()),
                None => Err(format!("relation \"{table}\" does not exist")),
            }
        }
    };
    Some(result)
}

/// `select count(*) >= N from TABLE`: whether the table holds at least N rows (`t`/`f`), the shape of a
/// user's assertion that the restored data is there.
fn count_at_least(pg: &PgCluster, db: &str, lower: &str) -> Option<Result<SqlResult, String>> {
    let rest = lower.strip_prefix("select count(*) >= ")?;
    let (n, table) = rest.split_once(" from ")?;
    let n: u64 = n.trim().parse().ok()?;
    let table = table.trim().trim_start_matches("public.");
    let tables = pg.databases.get(db).cloned().unwrap_or_default();
    Some(match tables.get(table) {
        Some(rows) => one("?column?", if *rows >= n { "t" } else { "f" }.into()),
        None => Err(format!("relation \"{table}\" does not exist")),
    })
}

/// `SHOW name`.
fn show(pg: &PgCluster, name: &str, read_only: bool) -> Result<SqlResult, String> {
    match name {
        "transaction_read_only" => one(name, if read_only { "on" } else { "off" }.into()),
        "server_version" => one(
            name,
            format!("{}.{}", pg.pg_version / 10000, pg.pg_version % 10000),
        ),
        "archive_mode" | "archive_command" | "archive_timeout" | "wal_level"
        | "max_connections" | "shared_buffers" => one(name, parameter(pg, name)),
        _ => Err(format!("unrecognized configuration parameter \"{name}\"")),
    }
}

/// The leading identifier of `text`.
fn identifier(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The statements that write (`None`: not one of them); refused on a replica.
fn write_statement(
    pg: &mut PgCluster,
    db: &str,
    lower: &str,
    read_only: bool,
) -> Option<Result<SqlResult, String>> {
    let refuse = |what: &str| Err(format!("cannot execute {what} in a read-only transaction"));
    if let Some(rest) = lower.strip_prefix("create table ") {
        if read_only {
            return Some(refuse("CREATE TABLE"));
        }
        let name = identifier(rest.trim_start_matches("if not exists ").trim());
        if name.is_empty() {
            return Some(Err("syntax error at or near \"(\"".into()));
        }
        pg.databases
            .entry(db.to_string())
            .or_default()
            .entry(name)
            .or_insert(0);
        pg.lsn += 4096;
        return Some(Ok(SqlResult::Tag("CREATE TABLE".into())));
    }
    if let Some(rest) = lower.strip_prefix("insert into ") {
        if read_only {
            return Some(refuse("INSERT"));
        }
        return Some(insert(pg, db, rest, lower));
    }
    if let Some(rest) = lower.strip_prefix("create database ") {
        if read_only {
            return Some(refuse("CREATE DATABASE"));
        }
        pg.databases
            .entry(identifier(rest.trim().trim_matches('"')))
            .or_default();
        return Some(Ok(SqlResult::Tag("CREATE DATABASE".into())));
    }
    if lower == "select pg_switch_wal()" {
        let segment = pg.lsn / crate::walg::SEG_SIZE;
        let old = pg.lsn;
        pg.lsn = (segment + 1) * crate::walg::SEG_SIZE;
        return Some(one("pg_switch_wal", lsn_text(old)));
    }
    None
}

/// The roles of Fly's Stolon image that are superusers: stolon creates `flypgadmin` (its
/// `--pg-su-username`) and postgres-ha's `start` creates `postgres` with `SUPERUSER`; `repluser` only
/// has `REPLICATION`.
const SUPERUSERS: [&str; 2] = ["flypgadmin", "postgres"];

/// `ALTER ROLE name [WITH] [ENCRYPTED] PASSWORD 'literal'` (also `ALTER USER`): the role's stored
/// hash changes, so the old password stops opening it, as in Postgres. A superuser may change any
/// role's password, any other role only its own (Postgres `AlterRole`: "must be superuser or have
/// CREATEROLE"); a standby refuses it as a read-only transaction.
fn alter_role_password(
    pg: &mut PgCluster,
    user: &str,
    statement: &str,
    read_only: bool,
) -> Result<SqlResult, String> {
    let words = statement.splitn(3, char::is_whitespace).collect::<Vec<_>>();
    let rest = words.get(2).copied().unwrap_or("").trim_start();
    let (role, options) = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
        None => rest.split_once(char::is_whitespace).unwrap_or((rest, "")),
    };
    let role = if rest.starts_with('"') {
        role.to_string()
    } else {
        role.to_ascii_lowercase()
    };
    let mut options = options.trim_start();
    for word in ["with", "encrypted"] {
        options = strip_keyword(options, word).unwrap_or(options);
    }
    let Some(literal) = strip_keyword(options, "password").map(str::trim) else {
        return Err(format!(
            "flysim: statement not emulated: ALTER ROLE {role} (only PASSWORD '…')"
        ));
    };
    let Some(password) = literal
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
        .map(|l| l.replace("''", "'"))
    else {
        return Err(format!(
            "syntax error at or near \"{}\"",
            literal.split_whitespace().next().unwrap_or("")
        ));
    };
    if read_only {
        return Err("cannot execute ALTER ROLE in a read-only transaction".into());
    }
    if !pg.roles.contains_key(&role) {
        return Err(format!("role \"{role}\" does not exist"));
    }
    if role != user && !SUPERUSERS.contains(&user) {
        return Err("permission denied".into());
    }
    pg.roles
        .insert(role.clone(), super::md5_password(&role, &password));
    Ok(SqlResult::Tag("ALTER ROLE".into()))
}

/// `text` after a leading keyword (any case) and the blanks that follow it.
fn strip_keyword<'t>(text: &'t str, keyword: &str) -> Option<&'t str> {
    let head = text.get(..keyword.len())?;
    let tail = &text[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && tail.starts_with(char::is_whitespace))
        .then(|| tail.trim_start())
}

/// `INSERT INTO table …`: `VALUES (…), (…)` or `generate_series(a, b)` rows are counted.
fn insert(pg: &mut PgCluster, db: &str, rest: &str, lower: &str) -> Result<SqlResult, String> {
    let name = identifier(rest.trim().trim_start_matches("public."));
    let tables = pg.databases.entry(db.to_string()).or_default();
    let Some(count) = tables.get_mut(&name) else {
        return Err(format!("relation \"{name}\" does not exist"));
    };
    let rows = if let Some((_, values)) = lower.split_once(" values") {
        values.matches("),").count() as u64 + 1
    } else if let Some((_, series)) = lower.split_once("generate_series(") {
        let bounds: Vec<u64> = series
            .split([',', ')'])
            .take(2)
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        match bounds.as_slice() {
            [low, high] if high >= low => (high - low).saturating_add(1),
            _ => 0,
        }
    } else {
        1
    };
    *count = count.saturating_add(rows);
    pg.lsn = pg.lsn.saturating_add(rows.saturating_mul(128));
    Ok(SqlResult::Tag(format!("INSERT 0 {rows}")))
}

pub(super) fn render(col: &str, rows: &[String], tuples_only: bool, unaligned: bool) -> String {
    let mut s = String::new();
    if unaligned {
        if !tuples_only {
            s.push_str(col);
            s.push('\n');
        }
        for r in rows {
            s.push_str(r);
            s.push('\n');
        }
        if !tuples_only {
            s.push_str(&format!(
                "({} row{})\n",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            ));
        }
        return s;
    }
    let width = rows
        .iter()
        .map(|r| r.chars().count())
        .chain([col.len()])
        .max()
        .unwrap_or(0);
    if !tuples_only {
        let pad = width - col.len();
        s.push_str(&format!(
            " {}{}{} \n",
            " ".repeat(pad / 2),
            col,
            " ".repeat(pad - pad / 2)
        ));
        s.push_str(&format!("{}\n", "-".repeat(width + 2)));
    }
    for r in rows {
        s.push_str(&format!(" {r:<width$} \n"));
    }
    if !tuples_only {
        s.push_str(&format!(
            "({} row{})\n\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        ));
    }
    s
}
