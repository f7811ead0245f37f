-- Restore runs (walden_core::restore::engine): the persisted state machine that runs a stored plan's steps, one
-- row per run and one per step. Written only by the engine, each change with its audit row (`restore.run.*`,
-- `restore.step.*`) in the same transaction. A worker holds a run through its lease (owner and expiry); a lease
-- past its expiry is free, so a killed console's run is taken over and resumed where it was. No secret is ever
-- stored here: escrowed values are read from escrow when a step needs them, and a step's `produced` holds only
-- Fly ids and versions.
CREATE TABLE restore_runs (
    id               TEXT    PRIMARY KEY CHECK (length(id) = 16 AND id NOT GLOB '*[^0-9a-f]*'),
    plan_hash        TEXT    NOT NULL REFERENCES restore_plans (hash),
    -- pending: not started by a worker yet; running: a worker is (or was, if its lease expired) at `next_step`;
    -- paused: stopped before a step the engine cannot run yet (`failure` says which); failed: a step failed for
    -- good (`failure` says why, in plain words); cancelled; done.
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'paused', 'failed', 'cancelled', 'done')),
    next_step        INTEGER NOT NULL CHECK (next_step >= 0),
    lease_owner      TEXT    CHECK (lease_owner IS NULL OR length(lease_owner) BETWEEN 1 AND 64),
    lease_expires_at TEXT    CHECK (lease_expires_at IS NULL OR length(lease_expires_at) = 24),
    created_by       TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_by_id    INTEGER,
    created_at       TEXT    NOT NULL CHECK (length(created_at) = 24),
    finished_at      TEXT    CHECK (finished_at IS NULL OR length(finished_at) = 24),
    failure          TEXT    CHECK (failure IS NULL OR length(failure) BETWEEN 1 AND 2000),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((finished_at IS NOT NULL) = (state IN ('failed', 'cancelled', 'done'))),
    CHECK ((failure IS NOT NULL) = (state IN ('paused', 'failed')))
) STRICT;

-- At most one live run per plan (a paused run still holds what it created).
CREATE UNIQUE INDEX restore_runs_one_live ON restore_runs (plan_hash)
    WHERE state IN ('pending', 'running', 'paused');
CREATE INDEX restore_runs_runnable ON restore_runs (state, created_at);

CREATE TABLE restore_run_steps (
    run_id      TEXT    NOT NULL REFERENCES restore_runs (id),
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    kind        TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 40 AND kind NOT GLOB '*[^a-z_]*'),
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    started_at  TEXT    CHECK (started_at IS NULL OR length(started_at) = 24),
    finished_at TEXT    CHECK (finished_at IS NULL OR length(finished_at) = 24),
    -- The Fly ids and versions the step produced, e.g. {"volume": "vol_…"}; never a secret.
    produced    TEXT    CHECK (produced IS NULL OR (json_valid(produced) AND json_type(produced) = 'object')),
    error       TEXT    CHECK (error IS NULL OR length(error) BETWEEN 1 AND 2000),
    PRIMARY KEY (run_id, idx),
    CHECK ((status = 'pending') = (started_at IS NULL)),
    CHECK ((finished_at IS NOT NULL) = (status IN ('done', 'failed'))),
    CHECK ((produced IS NOT NULL) <= (status = 'done')),
    CHECK ((error IS NOT NULL) = (status = 'failed'))
) STRICT;

-- Runs and their steps are history: never deleted.
CREATE TRIGGER restore_runs_no_delete BEFORE DELETE ON restore_runs
BEGIN SELECT RAISE(ABORT, 'restore_runs are kept: DELETE refused'); END;
CREATE TRIGGER restore_run_steps_no_delete BEFORE DELETE ON restore_run_steps
BEGIN SELECT RAISE(ABORT, 'restore_run_steps are kept: DELETE refused'); END;
