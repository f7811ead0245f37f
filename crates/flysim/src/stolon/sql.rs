//! The few SQL statements `psql` understands, and how their results are rendered.

use crate::clock::rfc3339;
use crate::image::ExecContext;

pub(super) enum SqlResult {
    Rows(String, Vec<String>),
    Tag(String),
}

pub(super) fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

pub(super) fn run_sql(
    context: &mut ExecContext<'_>,
    db: &str,
    q: &str,
    read_only: bool,
) -> Result<SqlResult, String> {
    let app = context.app.clone();
    let now = context.now;
    let Some(pg) = context.state.apps.get_mut(&app).and_then(|a| a.pg.as_mut()) else {
        return Err("no cluster".into());
    };
    let q = q.trim().trim_end_matches(';').trim();
    let lower = q.to_ascii_lowercase();
    let one = |col: &str, v: String| Ok(SqlResult::Rows(col.to_string(), vec![v]));
    let param = |name: &str| -> String {
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
    };
    if lower == "select 1" {
        return one("?column?", "1".into());
    }
    if lower == "select version()" {
        let v = pg.pg_version;
        return one(
            "version",
            format!(
                "PostgreSQL {}.{} (Debian {}.{}-1.pgdg110+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 10.2.1-6) 10.2.1 20210110, 64-bit",
                v / 10000,
                v % 10000,
                v / 10000,
                v % 10000
            ),
        );
    }
    if let Some(name) = lower.strip_prefix("show ") {
        let name = name.trim();
        return match name {
            "transaction_read_only" => one(name, if read_only { "on" } else { "off" }.into()),
            "server_version" => one(
                name,
                format!("{}.{}", pg.pg_version / 10000, pg.pg_version % 10000),
            ),
            "archive_mode" | "archive_command" | "archive_timeout" | "wal_level"
            | "max_connections" | "shared_buffers" => one(name, param(name)),
            _ => Err(format!("unrecognized configuration parameter \"{name}\"")),
        };
    }
    if lower == "select pg_is_in_recovery()" {
        return one(
            "pg_is_in_recovery",
            if read_only { "t" } else { "f" }.into(),
        );
    }
    if lower == "select pg_current_wal_lsn()" {
        if read_only {
            return Err("recovery is in progress\nHINT:  WAL control functions cannot be executed during recovery.".into());
        }
        return one("pg_current_wal_lsn", lsn_text(pg.lsn));
    }
    if lower == "select timeline_id from pg_control_checkpoint()" {
        return one("timeline_id", pg.timeline.to_string());
    }
    if lower == "select system_identifier from pg_control_system()" {
        return one("system_identifier", pg.system_identifier.to_string());
    }
    if lower == "select now()" {
        return one("now", rfc3339(now));
    }
    if lower == "select datname from pg_database" {
        let mut names: Vec<String> = vec!["template0".into(), "template1".into()];
        names.extend(pg.databases.keys().cloned());
        return Ok(SqlResult::Rows("datname".into(), names));
    }
    if let Some(rest) = lower.strip_prefix("select count(*) from ") {
        let table = rest.trim().trim_start_matches("public.").to_string();
        let tables = pg.databases.get(db).cloned().unwrap_or_default();
        return match tables.get(&table) {
            Some(n) => one("count", n.to_string()),
            None => Err(format!("relation \"{table}\" does not exist")),
        };
    }
    if let Some(rest) = lower.strip_prefix("create table ") {
        if read_only {
            return Err("cannot execute CREATE TABLE in a read-only transaction".into());
        }
        let rest = rest.trim_start_matches("if not exists ").trim();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            return Err("syntax error at or near \"(\"".into());
        }
        pg.databases
            .entry(db.to_string())
            .or_default()
            .entry(name)
            .or_insert(0);
        pg.lsn += 4096;
        return Ok(SqlResult::Tag("CREATE TABLE".into()));
    }
    if let Some(rest) = lower.strip_prefix("insert into ") {
        if read_only {
            return Err("cannot execute INSERT in a read-only transaction".into());
        }
        let name: String = rest
            .trim()
            .trim_start_matches("public.")
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let tables = pg.databases.entry(db.to_string()).or_default();
        let Some(n) = tables.get_mut(&name) else {
            return Err(format!("relation \"{name}\" does not exist"));
        };
        let rows = if let Some((_, values)) = lower.split_once(" values") {
            values.matches("),").count() as u64 + 1
        } else if let Some((_, series)) = lower.split_once("generate_series(") {
            let nums: Vec<u64> = series
                .split([',', ')'])
                .take(2)
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            match nums.as_slice() {
                [a, b] if b >= a => (b - a).saturating_add(1),
                _ => 0,
            }
        } else {
            1
        };
        *n = n.saturating_add(rows);
        pg.lsn = pg.lsn.saturating_add(rows.saturating_mul(128));
        return Ok(SqlResult::Tag(format!("INSERT 0 {rows}")));
    }
    if let Some(rest) = lower.strip_prefix("create database ") {
        if read_only {
            return Err("cannot execute CREATE DATABASE in a read-only transaction".into());
        }
        let name: String = rest
            .trim()
            .trim_matches('"')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        pg.databases.entry(name).or_default();
        return Ok(SqlResult::Tag("CREATE DATABASE".into()));
    }
    if lower == "select pg_switch_wal()" {
        let seg = pg.lsn / crate::walg::SEG_SIZE;
        let old = pg.lsn;
        pg.lsn = (seg + 1) * crate::walg::SEG_SIZE;
        return one("pg_switch_wal", lsn_text(old));
    }
    Err(format!("flysim: statement not emulated: {q}"))
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
