-- User ids are never reused (security review L7): `users.id` becomes INTEGER PRIMARY KEY AUTOINCREMENT, so an
-- id once given, even to a user whose row is later removed, is never given again; audit rows, invitations and
-- sessions name users by id, and a new user must never inherit an old one's history.
--
-- SQLite cannot change a primary key in place, so the table is rebuilt with every column, constraint and
-- default as before (it has no other index or trigger). Invitations reference users(id) by name, so they keep
-- working once the new table has the same name and ids. Foreign keys stay on: they are deferred to the end of
-- this migration's transaction, and each copied row settles the references the DROP left dangling, so the
-- commit fails, and nothing changes, if any reference would be left without its user.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE users_before_autoincrement AS SELECT * FROM users;

DROP TABLE users;

-- Console accounts. Names are ASCII ([A-Za-z0-9._-], checked in walden_core::users) and unique without regard
-- to case. `password_hash` is an argon2id PHC string; no password is ever stored. `session_epoch` is bumped
-- whenever every session of the user must end (password change, disable, role change, "log out everywhere").
CREATE TABLE users (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    name               TEXT    NOT NULL COLLATE NOCASE UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    password_hash      TEXT    NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role               TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    session_epoch      INTEGER NOT NULL DEFAULT 0,
    -- TOTP secret sealed with XChaCha20-Poly1305 (walden_core::keyring); never stored in clear.
    totp_secret        BLOB,
    -- A secret being enrolled, not yet confirmed by a first code.
    totp_pending       BLOB,
    -- The last TOTP time step accepted, so a code is never accepted twice (RFC 6238 §5.2).
    totp_last_step     INTEGER,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
) STRICT;

INSERT INTO users (id, name, password_hash, role, disabled, session_epoch, totp_secret, totp_pending,
                   totp_last_step, created_at, updated_at)
SELECT id, name, password_hash, role, disabled, session_epoch, totp_secret, totp_pending, totp_last_step,
       created_at, updated_at
FROM users_before_autoincrement
ORDER BY id;

DROP TABLE users_before_autoincrement;

-- Ids handed out before this migration and since removed are not reused either, as far as the database still
-- names them: the sequence starts above every user id in the audit log and in invitations.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'users', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users');
UPDATE sqlite_sequence
SET seq = max(
    seq,
    coalesce((SELECT max(id) FROM users), 0),
    coalesce((SELECT max(actor_id) FROM audit_log), 0),
    coalesce((SELECT max(created_by) FROM invites), 0),
    coalesce((SELECT max(used_by) FROM invites), 0)
)
WHERE name = 'users';
