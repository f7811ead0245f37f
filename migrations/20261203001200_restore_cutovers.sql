-- Cutovers and rollbacks after a verified restore (walden_core::restore::cutover): one row per restore run that
-- was cut over, its steps, and the secrets it replaced. Written only by the cutover module, each change with its
-- audit row (`restore.cutover.*`, `restore.rollback.*`) in the same transaction. A console drives a cutover
-- through its lease (owner and expiry, like restore_runs); a lease past its expiry is free, so a killed
-- console's cutover is resumed where it was.
CREATE TABLE restore_cutovers (
    run_id           TEXT    PRIMARY KEY REFERENCES restore_runs (id),
    org              TEXT    NOT NULL CHECK (length(org) BETWEEN 1 AND 63),
    old_app          TEXT    NOT NULL CHECK (length(old_app) BETWEEN 1 AND 63),
    new_app          TEXT    NOT NULL CHECK (length(new_app) BETWEEN 1 AND 63),
    -- The apps the user selected, as a JSON array of names.
    apps             TEXT    NOT NULL CHECK (json_valid(apps) AND json_type(apps) = 'array'),
    -- Where the new replicas go (NULL: the new leader's region), chosen when the cutover was asked for.
    replica_region   TEXT    CHECK (replica_region IS NULL OR (length(replica_region) BETWEEN 2 AND 8
                                    AND replica_region NOT GLOB '*[^a-z0-9]*')),
    -- cutover: the cutover's steps; rollback: the rollback's (which replaced them once asked for).
    phase            TEXT    NOT NULL CHECK (phase IN ('cutover', 'rollback')),
    -- running: a console is (or was, if its lease expired) at `next_step`; failed: a step failed for good
    -- (`failure` says why; asking again resumes at that step); done: every step of the phase is done.
    state            TEXT    NOT NULL CHECK (state IN ('running', 'failed', 'done')),
    next_step        INTEGER NOT NULL CHECK (next_step >= 0),
    lease_owner      TEXT    CHECK (lease_owner IS NULL OR length(lease_owner) BETWEEN 1 AND 64),
    lease_expires_at TEXT    CHECK (lease_expires_at IS NULL OR length(lease_expires_at) = 24),
    created_by       TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at       TEXT    NOT NULL CHECK (length(created_at) = 24),
    updated_at       TEXT    NOT NULL CHECK (length(updated_at) = 24),
    failure          TEXT    CHECK (failure IS NULL OR length(failure) BETWEEN 1 AND 2000),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((failure IS NOT NULL) = (state = 'failed'))
) STRICT;

-- One row per step of a phase. `produced` holds Fly ids and versions only (never a secret); it is also written
-- during a step (the volumes a clone made, the machines a stop found started), so a step run again after a
-- crash finds what it did.
CREATE TABLE restore_cutover_steps (
    run_id      TEXT    NOT NULL REFERENCES restore_cutovers (run_id),
    phase       TEXT    NOT NULL CHECK (phase IN ('cutover', 'rollback')),
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    kind        TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 40 AND kind NOT GLOB '*[^a-z_]*'),
    -- The app a per-app step is about; '' for the others.
    app         TEXT    NOT NULL CHECK (length(app) <= 63),
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at  TEXT    CHECK (started_at IS NULL OR length(started_at) = 24),
    finished_at TEXT    CHECK (finished_at IS NULL OR length(finished_at) = 24),
    produced    TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(produced) AND json_type(produced) = 'object'),
    error       TEXT    CHECK (error IS NULL OR length(error) BETWEEN 1 AND 2000),
    PRIMARY KEY (run_id, phase, idx),
    CHECK ((status = 'pending') = (started_at IS NULL)),
    CHECK ((finished_at IS NOT NULL) = (status IN ('done', 'failed'))),
    CHECK ((error IS NOT NULL) = (status = 'failed'))
) STRICT;

-- The values a cutover replaced (each app's DATABASE_URL, the old cluster's ENABLE_WALG), sealed with the master
-- key and bound to (run, app, name), so a rollback puts them back. Never plaintext; key rotation re-seals them
-- (core::rotation::SEALED_COLUMNS). Written once, before the value is changed on Fly.
CREATE TABLE restore_cutover_secrets (
    id      INTEGER PRIMARY KEY,
    run_id  TEXT    NOT NULL REFERENCES restore_cutovers (run_id),
    app     TEXT    NOT NULL CHECK (length(app) BETWEEN 1 AND 63),
    name    TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    sealed  BLOB    NOT NULL,
    UNIQUE (run_id, app, name)
) STRICT;

CREATE TRIGGER restore_cutovers_no_delete BEFORE DELETE ON restore_cutovers
BEGIN SELECT RAISE(ABORT, 'restore_cutovers are kept: DELETE refused'); END;
CREATE TRIGGER restore_cutover_steps_no_delete BEFORE DELETE ON restore_cutover_steps
BEGIN SELECT RAISE(ABORT, 'restore_cutover_steps are kept: DELETE refused'); END;
