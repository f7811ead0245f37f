//! The pre-flight rules, each a pure function of what was read, returning the [`Reason`] it refuses with (what
//! is wrong, in plain words, and what to do). [`super::Restores::preflight`] runs every one and keeps every
//! refusal, so a person fixes everything at once.

use super::request::{check_app_name, known_region, RestoreRequest, REGIONS};
use super::Reason;

/// The rules on the request's own words: the new name (Fly's rule), the region, and a destination that is
/// not the source.
pub fn request_words(req: &RestoreRequest) -> Vec<Reason> {
    let dest = &req.destination;
    let mut reasons = Vec::new();
    if let Err(why) = check_app_name(&dest.app) {
        reasons.push(Reason::new(
            "bad_name",
            why,
            "Choose a name of lowercase letters, digits and dashes.".into(),
        ));
    }
    if let Some(r) = dest.region.as_deref().filter(|r| !known_region(r)) {
        reasons.push(Reason::new(
            "unknown_region",
            format!("'{r}' is not a Fly region."),
            format!("Choose one of: {}.", REGIONS.join(", ")),
        ));
    }
    if let Some(sql) = req.assertion.as_deref() {
        if let Err(why) = assertion(sql) {
            reasons.push(Reason::new(
                "bad_assertion",
                format!("The assertion query is refused: {why}."),
                "Give one read-only statement (SELECT, WITH … SELECT, VALUES, TABLE or SHOW) without ';', comments, \
                 backslashes, INTO, FOR UPDATE/SHARE or functions that write."
                    .into(),
            ));
        }
    }
    if let Some(db) = req.assertion_database.as_deref() {
        if !is_identifier(db) {
            reasons.push(Reason::new(
                "bad_assertion",
                format!("'{db}' is not a database name the assertion can run in."),
                "Give a plain name of letters, digits and underscores.".into(),
            ));
        }
    }
    if dest.app == req.source.app {
        reasons.push(Reason::new(
            "same_as_source",
            format!("The new cluster cannot be the source, {}.", req.source.app),
            "Name a new app.".into(),
        ));
    }
    reasons
}

/// The least memory a restoring machine gets: the community PITR guide (docs/reference/seed-guide.txt: "the
/// shared CPU/256MB does not have enough ram to perform the restore process") found 256 MB too small.
pub const MIN_MEMORY_MB: i64 = 512;

/// Headroom on top of the data a restore writes: a quarter more, and at least one GB (Postgres' own files,
/// the new timeline's WAL, logs).
pub const VOLUME_HEADROOM_PERCENT: u64 = 25;

/// A WAL segment replayed occupies its full size in `pg_wal` while recovery runs, whatever its stored size.
pub const GIB: u64 = 1024 * 1024 * 1024;

/// The volume a restore needs, in whole GB: the backup's uncompressed size plus the WAL to replay (segments ×
/// segment size) plus [`VOLUME_HEADROOM_PERCENT`] %, and one GB more, rounded up.
pub fn volume_needed_gb(backup_uncompressed: u64, wal_segments: u64, segment_size: u64) -> i64 {
    let data = backup_uncompressed.saturating_add(wal_segments.saturating_mul(segment_size));
    let with_headroom = data.saturating_add(data / 100 * VOLUME_HEADROOM_PERCENT) + GIB;
    i64::try_from(with_headroom.div_ceil(GIB)).unwrap_or(i64::MAX)
}

/// The machine's memory: never under [`MIN_MEMORY_MB`] nor under the source's (its `shared_buffers` and
/// `work_mem` were sized for it).
pub fn memory(requested: i64, source: Option<i64>) -> Option<Reason> {
    if requested < MIN_MEMORY_MB {
        return Some(Reason::new(
            "memory_too_small",
            format!("{requested} MB of memory is too little for a restore: 256 MB machines run out of memory replaying WAL."),
            format!("Give the machine at least {MIN_MEMORY_MB} MB (--memory 512 or more)."),
        ));
    }
    match source {
        Some(s) if requested < s => Some(Reason::new(
            "memory_below_source",
            format!("{requested} MB is less than the source machine's {s} MB, for which its Postgres settings were made."),
            format!("Give the machine at least {s} MB."),
        )),
        _ => None,
    }
}

/// The volume: at least [`volume_needed_gb`].
pub fn volume(requested: i64, needed: i64) -> Option<Reason> {
    (requested < needed).then(|| {
        Reason::new(
            "volume_too_small",
            format!(
                "A {requested} GB volume cannot hold the restore: the backup's uncompressed size, the WAL to replay \
                 and {VOLUME_HEADROOM_PERCENT} % headroom plus 1 GB come to {needed} GB."
            ),
            format!("Ask for a volume of at least {needed} GB."),
        )
    })
}

/// The major version in a `fly.pg-version` label or image tag (`14.6` → 14, `9.6.24` → 9.6 stays 9).
pub fn major_of_label(label: &str) -> Option<u32> {
    label.split(['.', '-']).next()?.parse().ok()
}

/// The major version of a backup's `PgVersion` (`PG_VERSION_NUM`: 140006 → 14, 90624 → 9).
pub fn major_of_num(num: i64) -> Option<u32> {
    let num = u32::try_from(num).ok()?;
    // Since PostgreSQL 10 the major is num / 10000; before it, 9.6 is 90600 and its first digit (9) is enough here.
    Some(num / 10_000)
}

/// The backup must have been taken by the same Postgres major version the image runs: a physical backup
/// starts only under its own major ("database files are incompatible with server"), and the keeper loops.
pub fn same_major(
    backup: &str,
    backup_num: Option<i64>,
    image: &str,
    label: Option<&str>,
) -> Option<Reason> {
    let b = backup_num.and_then(major_of_num);
    let i = label.and_then(major_of_label);
    match (b, i) {
        (Some(b), Some(i)) if b != i => Some(Reason::new(
            "major_mismatch",
            format!(
                "Backup {backup} was taken by PostgreSQL {b}, but the source's image {image} runs PostgreSQL {i}: \
                 PostgreSQL refuses data files of another major version and the machine would restart forever."
            ),
            format!("Restore a backup taken under PostgreSQL {i}, or restore this one with a PostgreSQL {b} image."),
        )),
        (None, _) => None,
        (Some(_), None) => Some(Reason::new(
            "major_unknown",
            format!("The Postgres version of the source's image {image} is unknown (no fly.pg-version label or tag)."),
            "Check the source's machines: the restore uses their image.".into(),
        )),
        _ => None,
    }
}

/// Why a password would break the Stolon image, from the image's own source (fly-apps/postgres-ha):
/// `pkg/flyunlock/unlock.go::createRequiredUsers` (run with `FLY_RESTORED_FROM`, so by every restore) pastes it
/// into `ALTER USER … WITH PASSWORD '%s'` unescaped, so a `'` fails the SQL and the machine boot-loops; Stolon
/// writes the replication password into a pgpass line `host:port:*:user:password`
/// (`internal/postgresql/postgresql.go`) unescaped, so a `:` or `\` breaks replica resync. An empty password is
/// refused by `pkg/flypg/node.go::NewNode` ("SU_PASSWORD is required"). The stricter generator rule
/// (`fly::stolon::password`) applies to new passwords; a kept one only has to survive.
pub fn password_breaks(password: &str) -> Option<&'static str> {
    if password.is_empty() {
        return Some("it is empty, and the image refuses to start without it (pkg/flypg/node.go)");
    }
    if password.contains('\'') {
        return Some("it holds a quote ('), which breaks the image's ALTER USER … PASSWORD '…' when restoring (pkg/flyunlock/unlock.go)");
    }
    if password.contains([':', '\\']) {
        return Some("it holds ':' or '\\', which break the pgpass line Stolon writes for replication (stolon internal/postgresql/postgresql.go)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_rule() {
        // 10 GiB backup + 64 segments of 16 MiB = 11 GiB; +25 % + 1 GiB = 14.75 → 15.
        assert_eq!(volume_needed_gb(10 * GIB, 64, 16 * 1024 * 1024), 15);
        assert_eq!(volume_needed_gb(0, 0, 16 * 1024 * 1024), 1);
        assert!(volume(14, 15).is_some());
        assert!(volume(15, 15).is_none());
    }

    #[test]
    fn memory_rule() {
        assert_eq!(
            memory(256, None).map(|r| r.code),
            Some("memory_too_small".into())
        );
        assert_eq!(
            memory(1024, Some(2048)).map(|r| r.code),
            Some("memory_below_source".into())
        );
        assert!(memory(512, Some(256)).is_none());
    }

    #[test]
    fn majors() {
        assert_eq!(major_of_label("14.6"), Some(14));
        assert_eq!(major_of_num(140006), Some(14));
        assert_eq!(major_of_num(150002), Some(15));
        assert!(same_major("b", Some(140006), "flyio/postgres:15.2", Some("15.2")).is_some());
        assert!(same_major("b", Some(140006), "flyio/postgres:14.6", Some("14.6")).is_none());
    }

    #[test]
    fn passwords() {
        assert!(password_breaks("abcDEF123456789xyz").is_none());
        assert!(password_breaks("demo-su-Zq81xKp2").is_none());
        assert!(password_breaks("it's").is_some());
        assert!(password_breaks("a:b").is_some());
        assert!(password_breaks("a\\b").is_some());
        assert!(password_breaks("").is_some());
    }
}

/// Words that make a statement write, lock or change the session: refused anywhere in an assertion, even inside
/// a string (strict on purpose). Transaction control (BEGIN, COMMIT, …) can only start a statement, which the
/// first-word rule refuses.
const ASSERTION_FORBIDDEN_WORDS: [&str; 32] = [
    "insert",
    "update",
    "delete",
    "merge",
    "truncate",
    "create",
    "alter",
    "drop",
    "grant",
    "revoke",
    "copy",
    "into",
    "call",
    "do",
    "lock",
    "vacuum",
    "analyze",
    "analyse",
    "cluster",
    "reindex",
    "refresh",
    "listen",
    "unlisten",
    "notify",
    "set",
    "reset",
    "prepare",
    "execute",
    "discard",
    "comment",
    "import",
    "checkpoint",
];

/// Functions that write, signal, sleep or read the server's files, refused when called (also any `pg_…` or
/// `lo_…` function: the admin and large-object families).
const ASSERTION_FORBIDDEN_FUNCTIONS: [&str; 6] = [
    "nextval",
    "setval",
    "set_config",
    "dblink",
    "dblink_exec",
    "txid_current",
];

/// The first words an assertion may start with.
const ASSERTION_STARTS: [&str; 5] = ["select", "with", "values", "table", "show"];

/// Whether `sql` is one read-only statement Walden runs after a restore. Strict and simple, by design: one
/// statement (a trailing `;` at most), starting with SELECT, WITH, VALUES, TABLE or SHOW; no comments, no
/// backslash (psql meta-commands), none of [`ASSERTION_FORBIDDEN_WORDS`] anywhere (so no DML/DDL, `INTO`,
/// `FOR UPDATE`/`SHARE`, transaction control), no call of [`ASSERTION_FORBIDDEN_FUNCTIONS`] or of any `pg_…`/`lo_…`
/// function. The query also runs in a read-only transaction, so what slips past still cannot write.
pub fn assertion(sql: &str) -> Result<(), String> {
    let body = sql.trim();
    let body = body.strip_suffix(';').unwrap_or(body).trim();
    if body.is_empty() {
        return Err("it is empty".into());
    }
    if body.chars().count() > 2000 {
        return Err("it is longer than 2000 characters".into());
    }
    if body.contains(';') {
        return Err("it holds more than one statement (a ';')".into());
    }
    if body.contains('\\') {
        return Err("it holds a backslash (a psql meta-command)".into());
    }
    if body.contains("--") || body.contains("/*") {
        return Err("it holds a comment".into());
    }
    if body
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err("it holds a control character".into());
    }
    let words = words_of(body);
    let first = words.first().map(|(w, _)| w.as_str()).unwrap_or("");
    if !ASSERTION_STARTS.contains(&first) {
        return Err(format!(
            "it starts with '{first}', not SELECT, WITH, VALUES, TABLE or SHOW"
        ));
    }
    if let Some((w, _)) = words
        .iter()
        .find(|(w, _)| ASSERTION_FORBIDDEN_WORDS.contains(&w.as_str()))
    {
        return Err(format!(
            "it uses '{}', which is not read-only",
            w.to_uppercase()
        ));
    }
    if let Some((w, _)) = words.iter().find(|(w, called)| {
        *called
            && (w.starts_with("pg_")
                || w.starts_with("lo_")
                || ASSERTION_FORBIDDEN_FUNCTIONS.contains(&w.as_str()))
    }) {
        return Err(format!(
            "it calls {w}(), which may write or act on the server"
        ));
    }
    if words
        .windows(2)
        .any(|p| p[0].0 == "for" && matches!(p[1].0.as_str(), "update" | "share" | "no" | "key"))
    {
        return Err("it locks rows (FOR UPDATE/SHARE)".into());
    }
    Ok(())
}

/// The statement's words, lowercased, each with whether a `(` follows it (a function call).
fn words_of(sql: &str) -> Vec<(String, bool)> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_alphabetic() || chars[i] == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect::<String>().to_lowercase();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            out.push((word, chars.get(j) == Some(&'(')));
        } else {
            i += 1;
        }
    }
    out
}

/// A plain database name: letters, digits and underscores, not starting with a digit, at most 63 bytes.
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[cfg(test)]
mod assertion_tests {
    use super::assertion;

    #[test]
    fn one_read_only_statement_passes() {
        for ok in [
            "select count(*) >= 10 from events",
            "SELECT exists (select 1 from orders where id = 42);",
            "with t as (select 1 as x) select x from t",
            "values (true)",
            "table events",
            "show server_version",
        ] {
            assert_eq!(assertion(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "select 1; select 2",
            "delete from events",
            "with d as (delete from events returning *) select count(*) from d",
            "select * into copy_of_events from events",
            "select * from events for update",
            "select nextval('s')",
            "select pg_terminate_backend(1)",
            "select lo_import('/etc/passwd')",
            "\\! rm -rf /",
            "select 1 -- hidden",
            "explain analyze select 1",
            "begin",
            "select set_config('x', 'y', false)",
        ] {
            assert!(assertion(bad).is_err(), "{bad}");
        }
    }
}
