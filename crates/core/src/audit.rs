//! The tamper-evident audit log.
//!
//! Every state-changing action appends one row to `audit_log` **inside the same transaction** as the change it
//! records ([`append`] takes the caller's `&mut Transaction`). If the row cannot be written the caller gets an
//! error and its transaction is rolled back: no audit row, no action (fail closed).
//!
//! The table is append-only (triggers refuse `UPDATE` and `DELETE`), and each row is chained to the previous
//! one by SHA-256, so changes made behind Walden's back (triggers dropped, rows edited, deleted or reordered
//! with raw SQL) are found by [`verify`], which reports the first broken row.
//!
//! # Canonical form (version 1)
//!
//! The hash of row *n* is `SHA-256(C_n)` where `C_n` is the concatenation of:
//!
//! | part | encoding |
//! |---|---|
//! | domain tag | the 16 bytes `walden-audit-v1\0` |
//! | `prev_hash` | 32 bytes: the `hash` of row *n − 1*; 32 zero bytes for the first row |
//! | `id` | 8 bytes, big-endian two's complement |
//! | `at`, `actor_id`, `actor_name`, `action`, `cluster_id`, `app_name`, `run_id`, `subject`, `reason`, `outcome`, `request_id`, `client_ip`, `detail` | each as a *field*, in this order |
//!
//! A *field* is `0x00` for SQL `NULL`; `0x01`, then the length of the UTF-8 bytes as 4 bytes big-endian, then
//! the bytes, for text; `0x02` then 8 bytes big-endian for an integer (`actor_id`). The encoding is
//! prefix-free, so no two different rows share a canonical form. `at` is the stored text
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`), `detail` the stored JSON text. [`canonical_hash`] is the reference
//! implementation; an offline verifier needs only the exported JSONL (which carries `hash` and `prev_hash`
//! in hex) and this table.
//!
//! # What the chain does and does not prove
//!
//! It proves that rows were not changed, removed from the middle or reordered after they were written, and —
//! through `sqlite_sequence`, which `AUTOINCREMENT` keeps — that rows were not cut from the end, unless the
//! attacker also edits that table. Someone with write access to the file who recomputes every hash after the
//! row they change cannot be caught from inside the file: [`crate::audit_checkpoints`] anchors the head outside
//! it, in signed checkpoints, as CloudTrail does with its signed digests.

use std::fmt;
use std::io::Write;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::ts;

// The vocabulary lives in the leaf module `access`; re-exported here, where callers have always found it.
pub use crate::access::{Actor, RequestMeta};

/// The hash of the (absent) row before the first one.
pub const GENESIS: [u8; 32] = [0; 32];
const DOMAIN: &[u8; 16] = b"walden-audit-v1\0";

/// Longest text accepted in any audit field (bytes). Longer text is cut at a character boundary and marked.
pub const MAX_FIELD_LEN: usize = 4096;

/// What the action was about. All optional; `subject` names anything that is not a cluster, app or run
/// (`user:12`, `invite:3`, `setting:require_totp_for_admins`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub cluster_id: Option<String>,
    pub app_name: Option<String>,
    pub run_id: Option<String>,
    pub subject: Option<String>,
}

impl Target {
    pub fn subject(s: impl Into<String>) -> Self {
        Target {
            subject: Some(s.into()),
            ..Target::default()
        }
    }
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The action happened.
    Ok,
    /// The actor was not allowed to do it.
    Denied,
    /// It was attempted and failed (a wrong password, a step that errored).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ok" => Some(Outcome::Ok),
            "denied" => Some(Outcome::Denied),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event to record. Never put a secret in any field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Dotted lower-case name, e.g. `user.create`, `auth.login`, `restore.approve` (see [`actions`]).
    pub action: String,
    pub target: Target,
    /// The reason the user gave, where the action asks for one.
    pub reason: Option<String>,
    pub outcome: Outcome,
    /// Extra facts as a JSON object (`{"from":"viewer","to":"admin"}`).
    pub detail: Option<serde_json::Value>,
}

impl Event {
    pub fn new(action: impl Into<String>, outcome: Outcome) -> Self {
        Event {
            action: action.into(),
            target: Target::default(),
            reason: None,
            outcome,
            detail: None,
        }
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.target.subject = Some(subject.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// Action names used by this crate. Other modules add their own, with the same dotted shape.
pub mod actions {
    pub const USER_CREATE: &str = "user.create";
    pub const USER_ROLE_CHANGE: &str = "user.role_change";
    pub const USER_DISABLE: &str = "user.disable";
    pub const USER_ENABLE: &str = "user.enable";
    pub const USER_PASSWORD_CHANGE: &str = "user.password_change";
    pub const USER_PASSWORD_RESET: &str = "user.password_reset";
    pub const USER_LOGOUT_EVERYWHERE: &str = "user.logout_everywhere";
    pub const USER_TOTP_BEGIN: &str = "user.totp_begin";
    pub const USER_TOTP_ENROL: &str = "user.totp_enrol";
    pub const USER_TOTP_DISABLE: &str = "user.totp_disable";
    pub const INVITE_CREATE: &str = "invite.create";
    pub const INVITE_ACCEPT: &str = "invite.accept";
    pub const INVITE_REVOKE: &str = "invite.revoke";
    pub const SETUP_FIRST_ADMIN: &str = "setup.first_admin";
    pub const AUTH_LOGIN: &str = "auth.login";
    pub const AUTH_LOGOUT: &str = "auth.logout";
    pub const SETTING_CHANGE: &str = "setting.change";
    pub const KEYS_ROTATE: &str = "keys.rotate";
    // Credential escrow (`crate::escrow`).
    /// A capture: a new version (`ok`), an unchanged capture (`ok`, `"unchanged": true`), or a refusal.
    pub const ESCROW_CAPTURE: &str = "escrow.capture";
    /// Someone listed the versions without the right (only refusals are written; listing is a read).
    pub const ESCROW_LIST: &str = "escrow.list";
    /// A login proof's result for one role.
    pub const ESCROW_PROOF: &str = "escrow.proof";
    /// A value was shown, with the reason; or a reveal was refused or failed.
    pub const ESCROW_REVEAL: &str = "escrow.reveal";
    /// A request for a two-person reveal.
    pub const ESCROW_REVEAL_REQUEST: &str = "escrow.reveal_request";
    /// An approval of such a request (or its refusal: self-approval, expired, already decided).
    pub const ESCROW_REVEAL_APPROVE: &str = "escrow.reveal_approve";
    /// An approved request whose window passed unused, or a pending request that aged out.
    pub const ESCROW_REVEAL_EXPIRE: &str = "escrow.reveal_expire";
    /// An alert raised: a condition that needs a person (`core::alerts`).
    pub const ALERT_RAISE: &str = "alert.raise";
    /// An open alert resolved: the condition is over.
    pub const ALERT_RESOLVE: &str = "alert.resolve";
    /// An alert's raise or recovery delivered to the webhook.
    pub const ALERT_NOTIFY: &str = "alert.notify";
    /// A Fly organisation added with its token (`core::orgs`; the detail names a fingerprint, never the token).
    pub const ORG_ADD: &str = "org.add";
    pub const ORG_REMOVE: &str = "org.remove";
    /// An added organisation's stored token checked with Fly again.
    pub const ORG_VALIDATE: &str = "org.validate";
    /// A cluster an admin chose to track, or stopped tracking (`core::orgs`).
    pub const CLUSTER_TRACK: &str = "cluster.track";
    pub const CLUSTER_UNTRACK: &str = "cluster.untrack";
    /// A person asked for a cluster's backups to be read again now (`core::monitor`; `failed` when the storage
    /// could not be read); the worker's own refreshes are not written.
    pub const CLUSTER_REFRESH: &str = "cluster.refresh";
    /// A server function refused its caller: not signed in, or a role below the one it needs (written by the
    /// web layer, outcome `denied`).
    pub const ACCESS_DENIED: &str = "access.denied";
    /// A request refused before it reached any handler: a Host not allowed, or a cross-origin state change
    /// (written by the web layer, outcome `denied`).
    pub const REQUEST_REFUSED: &str = "request.refused";
}

/// Why the log could not be written or read. Messages never contain the row's data.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit action name {0:?} is not a dotted lower-case name (a-z, 0-9, '_', '.')")]
    BadAction(String),
    #[error("the audit log could not be written or read: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the audit export could not be written: {0}")]
    Io(#[from] std::io::Error),
    #[error("the audit export could not be written as CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("the audit log could not be read: {0}")]
    Read(String),
    #[error("the audit log holds a row that is not valid: row {id}: {what}")]
    BadRow { id: i64, what: &'static str },
}

/// Append one row, in the caller's transaction. Returns the new row's id.
///
/// The transaction should have been opened with [`begin`] (`BEGIN IMMEDIATE`): the row reads the last hash
/// and then writes, and an immediate transaction holds the write lock from the start, so two writers never
/// race for the head of the chain (a deferred one would fail with `SQLITE_BUSY` instead of waiting).
pub async fn append(
    tx: &mut Transaction<'_, Sqlite>,
    actor: &Actor,
    meta: &RequestMeta,
    event: &Event,
) -> Result<i64, AuditError> {
    if !valid_action(&event.action) {
        return Err(AuditError::BadAction(clip(&event.action).into_owned()));
    }
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
    let (id, prev) = match head {
        Some((last, hash)) => {
            let prev: [u8; 32] = hash.as_slice().try_into().map_err(|_| AuditError::BadRow {
                id: last,
                what: "hash is not 32 bytes",
            })?;
            (last + 1, prev)
        }
        // With AUTOINCREMENT the first id is 1 unless rows were deleted; sqlite_sequence says so.
        None => {
            let seq: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'")
                    .fetch_optional(&mut **tx)
                    .await?;
            (seq.unwrap_or(0) + 1, GENESIS)
        }
    };
    let row = RowFields {
        id,
        at: ts::format(ts::now()),
        actor_id: actor.user_id(),
        actor_name: clip(&actor.display_name()).into_owned(),
        action: event.action.clone(),
        cluster_id: event
            .target
            .cluster_id
            .as_deref()
            .map(|s| clip(s).into_owned()),
        app_name: event
            .target
            .app_name
            .as_deref()
            .map(|s| clip(s).into_owned()),
        run_id: event.target.run_id.as_deref().map(|s| clip(s).into_owned()),
        subject: event
            .target
            .subject
            .as_deref()
            .map(|s| clip(s).into_owned()),
        reason: event.reason.as_deref().map(|s| clip(s).into_owned()),
        outcome: event.outcome.as_str().to_owned(),
        request_id: meta.request_id.as_deref().map(|s| clip(s).into_owned()),
        client_ip: meta.client_ip.as_deref().map(|s| clip(s).into_owned()),
        detail: event.detail.as_ref().map(|d| d.to_string()),
    };
    let hash = canonical_hash(&prev, &row.as_ref());
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_id, actor_name, action, cluster_id, app_name, run_id, subject, \
         reason, outcome, request_id, client_ip, detail, prev_hash, hash) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.id)
    .bind(&row.at)
    .bind(row.actor_id)
    .bind(&row.actor_name)
    .bind(&row.action)
    .bind(&row.cluster_id)
    .bind(&row.app_name)
    .bind(&row.run_id)
    .bind(&row.subject)
    .bind(&row.reason)
    .bind(&row.outcome)
    .bind(&row.request_id)
    .bind(&row.client_ip)
    .bind(&row.detail)
    .bind(&prev[..])
    .bind(&hash[..])
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Open a write transaction suited to [`append`] (`BEGIN IMMEDIATE`).
pub async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// The one way a service changes state: a write transaction that can only be committed together with its
/// audit row.
///
/// ```ignore
/// let mut tx = AuditedTx::begin(&pool).await?;
/// sqlx::query("UPDATE users SET …").execute(&mut *tx).await?;
/// tx.commit(actor, meta, &Event::new(actions::USER_ROLE_CHANGE, Outcome::Ok)).await?;
/// ```
///
/// It dereferences to the connection, so queries run in the transaction. [`AuditedTx::commit`] appends the
/// row and commits; if the row cannot be written nothing is committed (fail closed). Dropping it without
/// committing (an early `return Err(…)` or `?`) rolls everything back, so a change without its row cannot
/// be written through it.
pub struct AuditedTx {
    tx: Transaction<'static, Sqlite>,
}

impl AuditedTx {
    /// Open the transaction (`BEGIN IMMEDIATE`, see [`append`]).
    pub async fn begin(pool: &SqlitePool) -> Result<Self, sqlx::Error> {
        Ok(AuditedTx {
            tx: begin(pool).await?,
        })
    }

    /// Append the audit row for what was done, then commit both. Returns the row's id. Once committed, and
    /// only then, it tells [`commits`] that a row was added.
    pub async fn commit(
        mut self,
        actor: &Actor,
        meta: &RequestMeta,
        event: &Event,
    ) -> Result<i64, AuditError> {
        let id = append(&mut self.tx, actor, meta, event).await?;
        self.tx.commit().await?;
        COMMITS.send_modify(|n| *n = n.wrapping_add(1));
        Ok(id)
    }
}

/// How many audit rows this process has committed, for the checkpoint worker to wake on instead of polling
/// the table. Bumped by [`AuditedTx::commit`] after its commit succeeded, so a failed write wakes nobody and
/// still fails closed. A wake is a hint: the worker reads the log's head itself. Process-wide because every
/// service opens its `AuditedTx` on a bare pool; a process serves one console database, and a second one in
/// the same process (tests) only costs its worker an extra indexed read. Rows another process writes (the
/// `walden` CLI beside the server) wake nothing: the next wake or the worker's interval counts them.
static COMMITS: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::Sender::new(0));

/// A receiver that sees [`COMMITS`] change each time an audit row is committed in this process (several
/// commits between two looks are seen as one change).
pub fn commits() -> watch::Receiver<u64> {
    COMMITS.subscribe()
}

impl std::ops::Deref for AuditedTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for AuditedTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// Record an event that changes nothing else (a failed login, a denied request, a logout) in its own
/// transaction.
pub async fn record(
    pool: &SqlitePool,
    actor: &Actor,
    meta: &RequestMeta,
    event: &Event,
) -> Result<i64, AuditError> {
    AuditedTx::begin(pool)
        .await?
        .commit(actor, meta, event)
        .await
}

fn valid_action(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 64
        && a.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        && !a.starts_with('.')
        && !a.ends_with('.')
}

fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_FIELD_LEN {
        return s.into();
    }
    let mut end = MAX_FIELD_LEN - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end]).into()
}

/// The stored fields of one row, owned.
struct RowFields {
    id: i64,
    at: String,
    actor_id: Option<i64>,
    actor_name: String,
    action: String,
    cluster_id: Option<String>,
    app_name: Option<String>,
    run_id: Option<String>,
    subject: Option<String>,
    reason: Option<String>,
    outcome: String,
    request_id: Option<String>,
    client_ip: Option<String>,
    detail: Option<String>,
}

impl RowFields {
    fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            id: self.id,
            at: &self.at,
            actor_id: self.actor_id,
            actor_name: &self.actor_name,
            action: &self.action,
            cluster_id: self.cluster_id.as_deref(),
            app_name: self.app_name.as_deref(),
            run_id: self.run_id.as_deref(),
            subject: self.subject.as_deref(),
            reason: self.reason.as_deref(),
            outcome: &self.outcome,
            request_id: self.request_id.as_deref(),
            client_ip: self.client_ip.as_deref(),
            detail: self.detail.as_deref(),
        }
    }
}

/// The fields of one row as the canonical form sees them (borrowed, so verification allocates nothing).
#[derive(Clone, Copy, Debug)]
pub struct RowRef<'a> {
    pub id: i64,
    pub at: &'a str,
    pub actor_id: Option<i64>,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub cluster_id: Option<&'a str>,
    pub app_name: Option<&'a str>,
    pub run_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub outcome: &'a str,
    pub request_id: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// SHA-256 of a row's canonical form (see the module documentation).
pub fn canonical_hash(prev: &[u8; 32], row: &RowRef<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    feed(&mut h, prev, row);
    h.finalize().into()
}

fn feed(h: &mut Sha256, prev: &[u8; 32], r: &RowRef<'_>) {
    fn text(h: &mut Sha256, v: Option<&str>) {
        match v {
            None => h.update([0u8]),
            Some(s) => {
                // Field lengths are bounded far below u32::MAX by MAX_FIELD_LEN on the way in; a longer value
                // written by raw SQL still hashes unambiguously because the length saturates and the bytes follow.
                let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
                h.update([1u8]);
                h.update(len.to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    h.update(DOMAIN);
    h.update(prev);
    h.update(r.id.to_be_bytes());
    text(h, Some(r.at));
    match r.actor_id {
        None => h.update([0u8]),
        Some(v) => {
            h.update([2u8]);
            h.update(v.to_be_bytes());
        }
    }
    text(h, Some(r.actor_name));
    text(h, Some(r.action));
    text(h, r.cluster_id);
    text(h, r.app_name);
    text(h, r.run_id);
    text(h, r.subject);
    text(h, r.reason);
    text(h, Some(r.outcome));
    text(h, r.request_id);
    text(h, r.client_ip);
    text(h, r.detail);
}

// ---------------------------------------------------------------------------------------------------------
// Verification

/// What is wrong with the first broken row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Breakage {
    /// The row's content does not match its stored hash: it was changed after it was written.
    Altered,
    /// The row does not follow the row before it (`prev_hash` differs): a row before it was removed, or rows
    /// were reordered or inserted.
    ChainBroken,
    /// Rows are missing: `found` came where `expected` should have been.
    Missing { expected: i64, found: i64 },
    /// Rows were cut from the end: the log once reached row `last_written`.
    Truncated { last_written: i64 },
    /// A stored value has the wrong shape (a hash that is not 32 bytes, text that is not UTF-8).
    Malformed { what: String },
}

impl fmt::Display for Breakage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breakage::Altered => {
                f.write_str("its content does not match its hash (the row was changed)")
            }
            Breakage::ChainBroken => f.write_str(
                "it does not follow the row before it (a row was removed, inserted or reordered)",
            ),
            Breakage::Missing { expected, found } => {
                write!(f, "rows {expected}..{} are missing", found - 1)
            }
            Breakage::Truncated { last_written } => {
                write!(f, "rows up to {last_written} were written, but the log ends earlier (rows were cut from the end)")
            }
            Breakage::Malformed { what } => write!(f, "it is malformed: {what}"),
        }
    }
}

/// The first broken row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenRow {
    /// The id where the chain stops holding.
    pub id: i64,
    pub breakage: Breakage,
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Rows read.
    pub rows: u64,
    /// The last row up to which the chain holds (0 when none does).
    pub verified_through: i64,
    /// The hash of that row, hex (anchor it elsewhere to catch a wholesale rewrite).
    pub head_hash: Option<String>,
    /// The first broken row, if any.
    pub first_broken: Option<BrokenRow>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

const VERIFY_COLUMNS: &str =
    "id, at, actor_id, actor_name, action, cluster_id, app_name, run_id, subject, \
                              reason, outcome, request_id, client_ip, detail, prev_hash, hash";

/// Walk the whole chain, oldest first, and report the first broken row.
///
/// Reads in one snapshot (a read transaction) and streams the rows through one SHA-256 state, allocating
/// nothing per row. For a database file (always, in Walden) the walk runs on the blocking pool through
/// `rusqlite` on a read-only connection of its own, which reads column values in place; sqlx copies every
/// value of every row through a channel, which made verification four times slower (see the README). A
/// pool without a file behind it (an in-memory test database) is walked through sqlx instead.
pub async fn verify(pool: &SqlitePool) -> Result<VerifyReport, AuditError> {
    let path = pool.connect_options().get_filename().to_path_buf();
    if path.is_file() {
        tokio::task::spawn_blocking(move || verify_file(&path))
            .await
            .map_err(|_| AuditError::Read("the verification task failed".into()))?
    } else {
        verify_sqlx(pool).await
    }
}

/// The walk's state: feed it rows in id order, then [`Walk::finish`] with `sqlite_sequence`.
struct Walk {
    report: VerifyReport,
    prev: [u8; 32],
    expected_id: i64,
    hasher: Sha256,
}

impl Walk {
    fn new() -> Self {
        Walk {
            report: VerifyReport {
                rows: 0,
                verified_through: 0,
                head_hash: None,
                first_broken: None,
            },
            prev: GENESIS,
            // The log starts at row 1: a log whose oldest rows were removed reports them as missing.
            expected_id: 1,
            hasher: Sha256::new(),
        }
    }

    /// Check one row; `Err` ends the walk (the first broken row is recorded).
    fn step(&mut self, row: Result<(RowRef<'_>, &[u8], &[u8]), BrokenRow>) -> Result<(), ()> {
        self.report.rows += 1;
        match self.check(row) {
            Ok(hash) => {
                self.prev = hash;
                self.report.verified_through = self.expected_id;
                self.expected_id += 1;
                Ok(())
            }
            Err(broken) => {
                self.report.first_broken = Some(broken);
                Err(())
            }
        }
    }

    fn check(
        &mut self,
        row: Result<(RowRef<'_>, &[u8], &[u8]), BrokenRow>,
    ) -> Result<[u8; 32], BrokenRow> {
        let (r, stored_prev, stored) = row?;
        let expected = self.expected_id;
        if r.id != expected {
            return Err(BrokenRow {
                id: expected.min(r.id),
                breakage: if r.id > expected {
                    Breakage::Missing {
                        expected,
                        found: r.id,
                    }
                } else {
                    Breakage::ChainBroken
                },
            });
        }
        let stored: [u8; 32] = stored.try_into().map_err(|_| BrokenRow {
            id: r.id,
            breakage: Breakage::Malformed {
                what: "hash is not 32 bytes".into(),
            },
        })?;
        if stored_prev != self.prev {
            return Err(BrokenRow {
                id: r.id,
                breakage: Breakage::ChainBroken,
            });
        }
        feed(&mut self.hasher, &self.prev, &r);
        let computed: [u8; 32] = self.hasher.finalize_reset().into();
        if computed != stored {
            return Err(BrokenRow {
                id: r.id,
                breakage: Breakage::Altered,
            });
        }
        Ok(stored)
    }

    fn finish(mut self, seq: Option<i64>) -> VerifyReport {
        if self.report.first_broken.is_none() {
            if let Some(seq) = seq.filter(|s| *s > self.report.verified_through) {
                self.report.first_broken = Some(BrokenRow {
                    id: self.report.verified_through + 1,
                    breakage: Breakage::Truncated { last_written: seq },
                });
            }
        }
        if self.report.verified_through > 0 {
            self.report.head_hash = Some(hex::encode(self.prev));
        }
        self.report
    }
}

fn malformed(id: i64, what: &str) -> BrokenRow {
    BrokenRow {
        id,
        breakage: Breakage::Malformed { what: what.into() },
    }
}

const SEQ_SQL: &str = "SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'";

fn verify_file(path: &std::path::Path) -> Result<VerifyReport, AuditError> {
    use rusqlite::types::ValueRef;
    use rusqlite::{Connection, OpenFlags, OptionalExtension};

    let read = |e: rusqlite::Error| AuditError::Read(e.to_string());
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(read)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(read)?;
    let tx = conn.transaction().map_err(read)?;
    let mut walk = Walk::new();
    {
        let mut stmt = tx
            .prepare(&format!(
                "SELECT {VERIFY_COLUMNS} FROM audit_log ORDER BY id"
            ))
            .map_err(read)?;
        let mut rows = stmt.query([]).map_err(read)?;
        while let Some(row) = rows.next().map_err(read)? {
            let id = match row.get_ref(0).map_err(read)? {
                ValueRef::Integer(i) => i,
                _ => {
                    let _ = walk.step(Err(malformed(walk.expected_id, "id is not an integer")));
                    break;
                }
            };
            let text = |i: usize, name: &str| -> Result<Option<&str>, BrokenRow> {
                match row.get_ref(i) {
                    Ok(ValueRef::Null) => Ok(None),
                    Ok(ValueRef::Text(t)) => std::str::from_utf8(t)
                        .map(Some)
                        .map_err(|_| malformed(id, &format!("{name} is not UTF-8"))),
                    _ => Err(malformed(id, &format!("{name} is not text"))),
                }
            };
            let need = |i: usize, name: &str| -> Result<&str, BrokenRow> {
                text(i, name)?.ok_or_else(|| malformed(id, &format!("{name} is empty")))
            };
            let blob = |i: usize, name: &str| -> Result<&[u8], BrokenRow> {
                match row.get_ref(i) {
                    Ok(ValueRef::Blob(b)) => Ok(b),
                    _ => Err(malformed(id, &format!("{name} is not a blob"))),
                }
            };
            let parsed = (|| {
                let r = RowRef {
                    id,
                    at: need(1, "at")?,
                    actor_id: match row.get_ref(2) {
                        Ok(ValueRef::Null) => None,
                        Ok(ValueRef::Integer(i)) => Some(i),
                        _ => return Err(malformed(id, "actor_id is not an integer")),
                    },
                    actor_name: need(3, "actor_name")?,
                    action: need(4, "action")?,
                    cluster_id: text(5, "cluster_id")?,
                    app_name: text(6, "app_name")?,
                    run_id: text(7, "run_id")?,
                    subject: text(8, "subject")?,
                    reason: text(9, "reason")?,
                    outcome: need(10, "outcome")?,
                    request_id: text(11, "request_id")?,
                    client_ip: text(12, "client_ip")?,
                    detail: text(13, "detail")?,
                };
                Ok((r, blob(14, "prev_hash")?, blob(15, "hash")?))
            })();
            if walk.step(parsed).is_err() {
                break;
            }
        }
    }
    let seq: Option<i64> = tx
        .query_row(SEQ_SQL, [], |r| r.get(0))
        .optional()
        .map_err(read)?;
    drop(tx);
    Ok(walk.finish(seq))
}

async fn verify_sqlx(pool: &SqlitePool) -> Result<VerifyReport, AuditError> {
    use futures_util::TryStreamExt;

    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let mut walk = Walk::new();
    {
        let sql = format!("SELECT {VERIFY_COLUMNS} FROM audit_log ORDER BY id");
        let mut rows = sqlx::query(&sql).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let parsed = sqlx_row(&row, walk.expected_id);
            if walk.step(parsed).is_err() {
                break;
            }
        }
    }
    let seq: Option<i64> = sqlx::query_scalar(SEQ_SQL).fetch_optional(&mut *tx).await?;
    tx.rollback().await?;
    Ok(walk.finish(seq))
}

fn sqlx_row(row: &SqliteRow, expected_id: i64) -> Result<(RowRef<'_>, &[u8], &[u8]), BrokenRow> {
    let id: i64 = row
        .try_get(0)
        .map_err(|_| malformed(expected_id, "id is not an integer"))?;
    let text = |i: usize, name: &str| -> Result<&str, BrokenRow> {
        row.try_get::<&str, _>(i)
            .map_err(|_| malformed(id, &format!("{name} is not text")))
    };
    let opt = |i: usize, name: &str| -> Result<Option<&str>, BrokenRow> {
        row.try_get::<Option<&str>, _>(i)
            .map_err(|_| malformed(id, &format!("{name} is not text")))
    };
    let blob = |i: usize, name: &str| -> Result<&[u8], BrokenRow> {
        row.try_get::<&[u8], _>(i)
            .map_err(|_| malformed(id, &format!("{name} is not a blob")))
    };
    let r = RowRef {
        id,
        at: text(1, "at")?,
        actor_id: row
            .try_get::<Option<i64>, _>(2)
            .map_err(|_| malformed(id, "actor_id is not an integer"))?,
        actor_name: text(3, "actor_name")?,
        action: text(4, "action")?,
        cluster_id: opt(5, "cluster_id")?,
        app_name: opt(6, "app_name")?,
        run_id: opt(7, "run_id")?,
        subject: opt(8, "subject")?,
        reason: opt(9, "reason")?,
        outcome: text(10, "outcome")?,
        request_id: opt(11, "request_id")?,
        client_ip: opt(12, "client_ip")?,
        detail: opt(13, "detail")?,
    };
    Ok((r, blob(14, "prev_hash")?, blob(15, "hash")?))
}

// ---------------------------------------------------------------------------------------------------------
// Reading: the Audit page and exports

/// One row as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub id: i64,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC.
    pub at: String,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub action: String,
    pub cluster_id: Option<String>,
    pub app_name: Option<String>,
    pub run_id: Option<String>,
    pub subject: Option<String>,
    pub reason: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    /// JSON text.
    pub detail: Option<String>,
    /// Hex.
    pub prev_hash: String,
    /// Hex.
    pub hash: String,
}

impl AuditRow {
    fn from_row(row: &SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(AuditRow {
            id: row.try_get(0)?,
            at: row.try_get(1)?,
            actor_id: row.try_get(2)?,
            actor_name: row.try_get(3)?,
            action: row.try_get(4)?,
            cluster_id: row.try_get(5)?,
            app_name: row.try_get(6)?,
            run_id: row.try_get(7)?,
            subject: row.try_get(8)?,
            reason: row.try_get(9)?,
            outcome: row.try_get(10)?,
            request_id: row.try_get(11)?,
            client_ip: row.try_get(12)?,
            detail: row.try_get(13)?,
            prev_hash: hex::encode(row.try_get::<&[u8], _>(14)?),
            hash: hex::encode(row.try_get::<&[u8], _>(15)?),
        })
    }

    /// The outcome, parsed.
    pub fn outcome(&self) -> Option<Outcome> {
        Outcome::parse(&self.outcome)
    }
}

/// Filters for the Audit page and exports. Every field narrows; all `None` means everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Actor name, case-insensitive, exact.
    pub actor: Option<String>,
    /// Action name, exact, or a prefix ending in `.` (`user.` matches `user.create`, `user.disable`, ...).
    pub action: Option<String>,
    /// Cluster id, exact.
    pub cluster: Option<String>,
    /// At or after this time.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub since: Option<OffsetDateTime>,
    /// Strictly before this time.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub until: Option<OffsetDateTime>,
    /// Free text, case-insensitive, found in actor, action, targets, reason, outcome, client IP, request id or
    /// detail.
    pub text: Option<String>,
}

/// One page of rows, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// Largest page [`query`] returns.
pub const MAX_PAGE: u32 = 500;

fn push_filter<'a>(qb: &mut QueryBuilder<'a, Sqlite>, f: &'a AuditFilter) {
    qb.push(" WHERE 1 = 1");
    if let Some(actor) = f.actor.as_deref().filter(|s| !s.trim().is_empty()) {
        qb.push(" AND actor_name = ")
            .push_bind(actor.trim())
            .push(" COLLATE NOCASE");
    }
    if let Some(action) = f.action.as_deref().filter(|s| !s.trim().is_empty()) {
        let action = action.trim();
        if action.ends_with('.') {
            qb.push(" AND action LIKE ")
                .push_bind(format!("{}%", like_escape(action)))
                .push(" ESCAPE '\\'");
        } else {
            qb.push(" AND action = ").push_bind(action);
        }
    }
    if let Some(cluster) = f.cluster.as_deref().filter(|s| !s.trim().is_empty()) {
        qb.push(" AND cluster_id = ").push_bind(cluster.trim());
    }
    if let Some(since) = f.since {
        qb.push(" AND at >= ").push_bind(ts::format(since));
    }
    if let Some(until) = f.until {
        qb.push(" AND at < ").push_bind(ts::format(until));
    }
    if let Some(text) = f.text.as_deref().filter(|s| !s.trim().is_empty()) {
        let pattern = format!("%{}%", like_escape(text.trim()));
        qb.push(" AND (");
        let cols = [
            "actor_name",
            "action",
            "cluster_id",
            "app_name",
            "run_id",
            "subject",
            "reason",
            "outcome",
            "client_ip",
            "request_id",
            "detail",
        ];
        for (i, col) in cols.iter().enumerate() {
            if i > 0 {
                qb.push(" OR ");
            }
            qb.push(*col)
                .push(" LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\'");
        }
        qb.push(")");
    }
}

fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One page of rows matching `filter`, newest first. `before` is the `next_before` of the previous page
/// (keyset pagination: stable while new rows arrive). `limit` is capped at [`MAX_PAGE`].
pub async fn query(
    pool: &SqlitePool,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: u32,
) -> Result<AuditPage, AuditError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut qb = QueryBuilder::new(format!("SELECT {VERIFY_COLUMNS} FROM audit_log"));
    push_filter(&mut qb, filter);
    if let Some(before) = before {
        qb.push(" AND id < ").push_bind(before);
    }
    qb.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows = qb.build().fetch_all(pool).await?;
    let mut out = rows
        .iter()
        .map(AuditRow::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_before = if out.len() > limit as usize {
        out.truncate(limit as usize);
        out.last().map(|r| r.id)
    } else {
        None
    };
    Ok(AuditPage {
        rows: out,
        next_before,
    })
}

/// How many rows match `filter`.
pub async fn count(pool: &SqlitePool, filter: &AuditFilter) -> Result<i64, AuditError> {
    let mut qb = QueryBuilder::new("SELECT COUNT(*) FROM audit_log");
    push_filter(&mut qb, filter);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

/// Export format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object per line, with every column (hashes in hex).
    Jsonl,
    /// A header line then one row per line, every column (hashes in hex).
    Csv,
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!(
                "unknown export format {other:?} (use jsonl or csv)"
            )),
        }
    }
}

/// Write every row matching `filter` to `out`, oldest first (chain order), streaming. Returns the row count.
pub async fn export<W: Write>(
    pool: &SqlitePool,
    filter: &AuditFilter,
    format: ExportFormat,
    out: W,
) -> Result<u64, AuditError> {
    use futures_util::TryStreamExt;

    let mut qb = QueryBuilder::new(format!("SELECT {VERIFY_COLUMNS} FROM audit_log"));
    push_filter(&mut qb, filter);
    qb.push(" ORDER BY id");
    let mut rows = qb.build().fetch(pool);
    let mut n = 0u64;
    match format {
        ExportFormat::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            while let Some(row) = rows.try_next().await? {
                serde_json::to_writer(&mut out, &AuditRow::from_row(&row)?)
                    .map_err(std::io::Error::other)?;
                out.write_all(b"\n")?;
                n += 1;
            }
            out.flush()?;
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "id",
                "at",
                "actor_id",
                "actor_name",
                "action",
                "cluster_id",
                "app_name",
                "run_id",
                "subject",
                "reason",
                "outcome",
                "request_id",
                "client_ip",
                "detail",
                "prev_hash",
                "hash",
            ])?;
            while let Some(row) = rows.try_next().await? {
                let r = AuditRow::from_row(&row)?;
                let o = |v: &Option<String>| v.clone().unwrap_or_default();
                let record = [
                    r.id.to_string(),
                    r.at,
                    r.actor_id.map(|v| v.to_string()).unwrap_or_default(),
                    r.actor_name,
                    r.action,
                    o(&r.cluster_id),
                    o(&r.app_name),
                    o(&r.run_id),
                    o(&r.subject),
                    o(&r.reason),
                    r.outcome,
                    o(&r.request_id),
                    o(&r.client_ip),
                    o(&r.detail),
                    r.prev_hash,
                    r.hash,
                ];
                w.write_record(
                    record
                        .iter()
                        .map(|cell| spreadsheet_safe(cell).into_owned()),
                )?;
                n += 1;
            }
            w.flush()?;
        }
    }
    Ok(n)
}

/// A CSV cell a spreadsheet will not run as a formula: text that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return gets a leading `'` (OWASP's advice on CSV injection). Audit rows hold text a client chose (a
/// typed user name, a proxy's request id), so an export opened in a spreadsheet must not turn it into a live
/// `=HYPERLINK(...)`. JSONL exports keep the exact text.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

/// The audit log as a service of [`crate::Walden`]: the free functions of this module, bound to the pool.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    pool: SqlitePool,
}

impl AuditLog {
    pub fn new(pool: SqlitePool) -> Self {
        AuditLog { pool }
    }

    /// See [`record`].
    #[tracing::instrument(
        skip_all,
        fields(action = %event.action, outcome = %event.outcome),
        err(level = "debug")
    )]
    pub async fn record(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        event: &Event,
    ) -> Result<i64, AuditError> {
        record(&self.pool, actor, meta, event).await
    }

    /// See [`commits`]: what the checkpoint worker waits on.
    pub fn commits(&self) -> watch::Receiver<u64> {
        commits()
    }

    /// See [`verify`].
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn verify(&self) -> Result<VerifyReport, AuditError> {
        verify(&self.pool).await
    }

    /// See [`query`].
    #[tracing::instrument(skip_all, fields(?before, limit = limit), err(level = "debug"))]
    pub async fn query(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<AuditPage, AuditError> {
        query(&self.pool, filter, before, limit).await
    }

    /// See [`count`].
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn count(&self, filter: &AuditFilter) -> Result<i64, AuditError> {
        count(&self.pool, filter).await
    }

    /// See [`export`].
    #[tracing::instrument(skip_all, fields(?format), err(level = "debug"))]
    pub async fn export<W: Write>(
        &self,
        filter: &AuditFilter,
        format: ExportFormat,
        out: W,
    ) -> Result<u64, AuditError> {
        export(&self.pool, filter, format, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_checked() {
        assert!(valid_action("user.create"));
        assert!(valid_action("restore.step_3"));
        assert!(!valid_action(""));
        assert!(!valid_action("User.Create"));
        assert!(!valid_action("user create"));
        assert!(!valid_action(".user"));
        assert!(!valid_action("user."));
    }

    #[test]
    fn long_fields_are_clipped_at_a_char_boundary() {
        let s = "é".repeat(MAX_FIELD_LEN);
        let c = clip(&s);
        assert!(c.len() <= MAX_FIELD_LEN);
        assert!(c.ends_with("..."));
    }

    #[test]
    fn the_canonical_form_separates_fields() {
        let base = RowRef {
            id: 1,
            at: "2026-11-25T00:00:00.000Z",
            actor_id: None,
            actor_name: "ab",
            action: "x.y",
            cluster_id: None,
            app_name: None,
            run_id: None,
            subject: Some("c"),
            reason: None,
            outcome: "ok",
            request_id: None,
            client_ip: None,
            detail: None,
        };
        let moved = RowRef {
            actor_name: "a",
            subject: Some("bc"),
            ..base
        };
        let none_vs_empty = RowRef {
            subject: Some(""),
            ..base
        };
        let null = RowRef {
            subject: None,
            ..base
        };
        let h = canonical_hash(&GENESIS, &base);
        assert_ne!(h, canonical_hash(&GENESIS, &moved));
        assert_ne!(
            canonical_hash(&GENESIS, &none_vs_empty),
            canonical_hash(&GENESIS, &null)
        );
        assert_ne!(h, canonical_hash(&[1; 32], &base));
        assert_ne!(h, canonical_hash(&GENESIS, &RowRef { id: 2, ..base }));
        // Pinned (computed independently with Python's hashlib from the documented form): a change here
        // breaks every existing log.
        assert_eq!(
            hex::encode(h),
            "80daa6fd8cdaa3ce599ed453020144fe57443e7597029d3939e9f47a1460bd68"
        );
    }
}
