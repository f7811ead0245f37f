-- Controlling a restore run (walden_core::restore::engine::control): the two-person approvals of plans and the
-- clean-up jobs of cancelled runs. Written only by core, each change with its audit row (`restore.approve`,
-- `restore.run.cancel`) in the same transaction.

-- Another operator or admin approved the plan `plan_hash` (with the `require_restore_approval` setting on, a run
-- starts only from an approved plan). The plan's author cannot approve it: core refuses, and the table checks
-- the names too. One approval per person and plan.
CREATE TABLE restore_plan_approvals (
    plan_hash     TEXT    NOT NULL REFERENCES restore_plans (hash),
    approver      TEXT    NOT NULL CHECK (length(approver) BETWEEN 1 AND 200),
    approver_id   INTEGER,
    author        TEXT    NOT NULL CHECK (length(author) BETWEEN 1 AND 200),
    approved_at   TEXT    NOT NULL CHECK (length(approved_at) = 24),
    PRIMARY KEY (plan_hash, approver),
    CHECK (approver <> author)
) STRICT;

CREATE TRIGGER restore_plan_approvals_no_change BEFORE UPDATE ON restore_plan_approvals
BEGIN SELECT RAISE(ABORT, 'restore_plan_approvals are kept as written: UPDATE refused'); END;
CREATE TRIGGER restore_plan_approvals_no_delete BEFORE DELETE ON restore_plan_approvals
BEGIN SELECT RAISE(ABORT, 'restore_plan_approvals are kept: DELETE refused'); END;

-- The clean-up of a run cancelled with "destroy": a job of its own, leased like a run (a crashed worker's
-- clean-up is taken over when its lease expires) and idempotent (each destroy looks first). `destroyed` lists
-- what is gone so far (Fly ids); `error` the last failure, in plain words.
CREATE TABLE restore_cleanups (
    run_id           TEXT    PRIMARY KEY REFERENCES restore_runs (id),
    -- pending until every destroy is done (a failed attempt records `error` and is tried again by the worker).
    state            TEXT    NOT NULL CHECK (state IN ('pending', 'done')),
    lease_owner      TEXT    CHECK (lease_owner IS NULL OR length(lease_owner) BETWEEN 1 AND 64),
    lease_expires_at TEXT    CHECK (lease_expires_at IS NULL OR length(lease_expires_at) = 24),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    requested_by     TEXT    NOT NULL CHECK (length(requested_by) BETWEEN 1 AND 200),
    requested_at     TEXT    NOT NULL CHECK (length(requested_at) = 24),
    finished_at      TEXT    CHECK (finished_at IS NULL OR length(finished_at) = 24),
    destroyed        TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(destroyed) AND json_type(destroyed) = 'array'),
    error            TEXT    CHECK (error IS NULL OR length(error) BETWEEN 1 AND 2000),
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL)),
    CHECK ((finished_at IS NOT NULL) = (state = 'done'))
) STRICT;

CREATE TRIGGER restore_cleanups_no_delete BEFORE DELETE ON restore_cleanups
BEGIN SELECT RAISE(ABORT, 'restore_cleanups are kept: DELETE refused'); END;
