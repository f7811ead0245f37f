-- Credential escrow (walden_core::escrow): the passwords and storage settings a restore of a Stolon cluster
-- needs, sealed with the keyring (XChaCha20-Poly1305, associated data binding org, app, version and field).
-- Versions and values are append-only (triggers below); the only change a value row accepts is a new `sealed`
-- blob for the same plaintext (`walden keys rotate`), which the AEAD checks on every open.

-- One captured set of credentials of one tracked cluster (Fly org slug, app name). Versions count 1, 2, 3 … per
-- cluster with no gaps, and each is captured no earlier than the one before, so "the version valid at time T"
-- is the last version captured at or before T.
CREATE TABLE escrow_versions (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org             TEXT    NOT NULL CHECK (length(org) BETWEEN 1 AND 63 AND org NOT GLOB '*[^a-z0-9-]*'),
    app             TEXT    NOT NULL CHECK (length(app) BETWEEN 1 AND 63 AND app NOT GLOB '*[^a-z0-9-]*'),
    version         INTEGER NOT NULL CHECK (version >= 1),
    captured_at     TEXT    NOT NULL CHECK (length(captured_at) = 24),
    captured_by     TEXT    NOT NULL CHECK (length(captured_by) BETWEEN 1 AND 200),
    captured_by_id  INTEGER,
    how             TEXT    NOT NULL CHECK (how IN ('exec', 'secrets_api', 'manual', 'manual_machines_down')),
    UNIQUE (org, app, version)
) STRICT;

CREATE TRIGGER escrow_versions_in_order BEFORE INSERT ON escrow_versions
WHEN NEW.version <> 1 + COALESCE(
        (SELECT MAX(version) FROM escrow_versions WHERE org = NEW.org AND app = NEW.app), 0)
  OR NEW.captured_at < COALESCE(
        (SELECT MAX(captured_at) FROM escrow_versions WHERE org = NEW.org AND app = NEW.app), '')
BEGIN
    SELECT RAISE(ABORT, 'escrow_versions: a version must follow the last one, in number and in time');
END;

CREATE TRIGGER escrow_versions_no_update BEFORE UPDATE ON escrow_versions
BEGIN
    SELECT RAISE(ABORT, 'escrow_versions is append-only: UPDATE refused');
END;

CREATE TRIGGER escrow_versions_no_delete BEFORE DELETE ON escrow_versions
BEGIN
    SELECT RAISE(ABORT, 'escrow_versions is append-only: DELETE refused');
END;

-- One row per field of a version: every version is a complete snapshot, so a reveal or a restore reads one
-- version only. Fields are the three Stolon passwords and the wal-g storage settings, one row each, so a
-- changed setting is named by its own fingerprint and a reveal discloses one setting, not the whole block.
-- `sealed` is keyring format 2 (0x02, key id, nonce, ciphertext+tag). `fingerprint` is the keyed HMAC of the
-- value under the key named by `fingerprint_key`; `changed` says whether the value differs from the previous
-- version's (decided at capture, so listing never decrypts).
CREATE TABLE escrow_values (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org             TEXT    NOT NULL,
    app             TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    field           TEXT    NOT NULL CHECK (length(field) BETWEEN 1 AND 64 AND field NOT GLOB '*[^A-Z0-9_]*'
                        AND (field IN ('SU_PASSWORD', 'REPL_PASSWORD', 'OPERATOR_PASSWORD')
                             OR field GLOB 'WALG_?*' OR field GLOB 'AWS_?*'
                             OR field GLOB 'GOOGLE_?*' OR field GLOB 'AZURE_?*')),
    sealed          BLOB    NOT NULL CHECK (length(sealed) >= 49 AND substr(sealed, 1, 1) = x'02'),
    fingerprint     BLOB    NOT NULL CHECK (length(fingerprint) = 32),
    fingerprint_key TEXT    NOT NULL CHECK (length(fingerprint_key) = 16),
    changed         INTEGER NOT NULL CHECK (changed IN (0, 1)),
    UNIQUE (org, app, version, field),
    FOREIGN KEY (org, app, version) REFERENCES escrow_versions (org, app, version)
) STRICT;

-- Rotation may give a value a new `sealed` blob; nothing else of a value ever changes.
CREATE TRIGGER escrow_values_only_reseal BEFORE UPDATE ON escrow_values
WHEN NEW.id IS NOT OLD.id OR NEW.org IS NOT OLD.org OR NEW.app IS NOT OLD.app
  OR NEW.version IS NOT OLD.version OR NEW.field IS NOT OLD.field
  OR NEW.fingerprint IS NOT OLD.fingerprint OR NEW.fingerprint_key IS NOT OLD.fingerprint_key
  OR NEW.changed IS NOT OLD.changed
BEGIN
    SELECT RAISE(ABORT, 'escrow_values is append-only: only a re-seal of the same value is allowed');
END;

CREATE TRIGGER escrow_values_no_delete BEFORE DELETE ON escrow_values
BEGIN
    SELECT RAISE(ABORT, 'escrow_values is append-only: DELETE refused');
END;

-- Login proofs of a version's passwords, per Postgres role (written by the proof runner). Append-only.
CREATE TABLE escrow_proofs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org         TEXT    NOT NULL,
    app         TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('flypgadmin', 'repluser', 'postgres')),
    proven_at   TEXT    NOT NULL CHECK (length(proven_at) = 24),
    ok          INTEGER NOT NULL CHECK (ok IN (0, 1)),
    message     TEXT    CHECK (message IS NULL OR length(message) <= 1000),
    FOREIGN KEY (org, app, version) REFERENCES escrow_versions (org, app, version)
) STRICT;
CREATE INDEX escrow_proofs_by_cluster ON escrow_proofs (org, app, role, proven_at);

CREATE TRIGGER escrow_proofs_no_update BEFORE UPDATE ON escrow_proofs
BEGIN
    SELECT RAISE(ABORT, 'escrow_proofs is append-only: UPDATE refused');
END;

CREATE TRIGGER escrow_proofs_no_delete BEFORE DELETE ON escrow_proofs
BEGIN
    SELECT RAISE(ABORT, 'escrow_proofs is append-only: DELETE refused');
END;

-- Two-person reveals: a request (with its reason), approved by someone else, then used once within its window.
-- Each step sets its columns once; the triggers refuse any other change and every delete.
CREATE TABLE escrow_reveal_requests (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    org             TEXT    NOT NULL,
    app             TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    field           TEXT    NOT NULL,
    requester_id    INTEGER,
    requester_name  TEXT    NOT NULL CHECK (length(requester_name) BETWEEN 1 AND 200),
    reason          TEXT    NOT NULL CHECK (length(trim(reason)) BETWEEN 1 AND 1000),
    requested_at    TEXT    NOT NULL CHECK (length(requested_at) = 24),
    approver_id     INTEGER,
    approver_name   TEXT,
    approved_at     TEXT,
    expires_at      TEXT,
    used_at         TEXT,
    expired_at      TEXT,
    CHECK ((approver_name IS NULL) = (approved_at IS NULL) AND (approved_at IS NULL) = (expires_at IS NULL)),
    CHECK (approver_name IS NULL OR approver_name <> requester_name),
    CHECK (approver_id IS NULL OR requester_id IS NULL OR approver_id <> requester_id),
    CHECK (used_at IS NULL OR (approved_at IS NOT NULL AND used_at <= expires_at)),
    CHECK (used_at IS NULL OR expired_at IS NULL),
    FOREIGN KEY (org, app, version, field) REFERENCES escrow_values (org, app, version, field)
) STRICT;

CREATE TRIGGER escrow_reveal_requests_steps_once BEFORE UPDATE ON escrow_reveal_requests
WHEN NEW.id IS NOT OLD.id OR NEW.org IS NOT OLD.org OR NEW.app IS NOT OLD.app
  OR NEW.version IS NOT OLD.version OR NEW.field IS NOT OLD.field
  OR NEW.requester_id IS NOT OLD.requester_id OR NEW.requester_name IS NOT OLD.requester_name
  OR NEW.reason IS NOT OLD.reason OR NEW.requested_at IS NOT OLD.requested_at
  OR (OLD.approved_at IS NOT NULL AND (NEW.approver_id IS NOT OLD.approver_id
      OR NEW.approver_name IS NOT OLD.approver_name OR NEW.approved_at IS NOT OLD.approved_at
      OR NEW.expires_at IS NOT OLD.expires_at))
  OR (OLD.used_at IS NOT NULL AND NEW.used_at IS NOT OLD.used_at)
  OR (OLD.expired_at IS NOT NULL AND NEW.expired_at IS NOT OLD.expired_at)
BEGIN
    SELECT RAISE(ABORT, 'escrow_reveal_requests: each step is recorded once and never changed');
END;

CREATE TRIGGER escrow_reveal_requests_no_delete BEFORE DELETE ON escrow_reveal_requests
BEGIN
    SELECT RAISE(ABORT, 'escrow_reveal_requests: DELETE refused');
END;
