-- Console accounts. Names are ASCII ([A-Za-z0-9._-], checked in walden_core::users) and unique without regard
-- to case. `password_hash` is an argon2id PHC string; no password is ever stored. `session_epoch` is bumped
-- whenever every session of the user must end (password change, disable, role change, "log out everywhere").
CREATE TABLE users (
    id                 INTEGER PRIMARY KEY,
    name               TEXT    NOT NULL COLLATE NOCASE UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    password_hash      TEXT    NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    role               TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    session_epoch      INTEGER NOT NULL DEFAULT 0,
    -- TOTP secret sealed with XChaCha20-Poly1305 (walden_core::seal); never stored in clear.
    totp_secret        BLOB,
    -- A secret being enrolled, not yet confirmed by a first code.
    totp_pending       BLOB,
    -- The last TOTP time step accepted, so a code is never accepted twice (RFC 6238 §5.2).
    totp_last_step     INTEGER,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
) STRICT;

-- One-time invitation links. Only the SHA-256 of the token is stored; the token itself is shown once.
CREATE TABLE invites (
    id          INTEGER PRIMARY KEY,
    token_hash  BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    role        TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    created_by  INTEGER REFERENCES users (id),
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    used_at     TEXT,
    used_by     INTEGER REFERENCES users (id),
    revoked_at  TEXT
) STRICT;
