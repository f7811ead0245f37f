-- The tamper-evident audit log (walden_core::audit). Append-only: the triggers below refuse UPDATE and DELETE.
-- Each row carries the SHA-256 of the previous row (`prev_hash`) and its own (`hash`), computed over the
-- canonical form documented in crates/core/src/audit.rs. AUTOINCREMENT keeps ids from ever being reused, so
-- `sqlite_sequence` also reveals rows cut from the end.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT    NOT NULL,
    actor_id    INTEGER,
    actor_name  TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    cluster_id  TEXT,
    app_name    TEXT,
    run_id      TEXT,
    subject     TEXT,
    reason      TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
    request_id  TEXT,
    client_ip   TEXT,
    detail      TEXT,
    prev_hash   BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash        BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor_name COLLATE NOCASE);
CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_cluster ON audit_log (cluster_id) WHERE cluster_id IS NOT NULL;

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
