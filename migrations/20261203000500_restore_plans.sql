-- Restore plans (walden_core::restore): the pre-flight plan of a point-in-time restore, kept under its hash so a
-- person (or a second one) can approve exactly that plan and the engine can run it. Written only by
-- walden_core::restore, with its `restore.plan` audit row in the same transaction. The plan holds no secret:
-- escrowed values appear only as placeholders. A row is never changed or deleted.
CREATE TABLE restore_plans (
    hash        TEXT    PRIMARY KEY CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    source_org  TEXT    NOT NULL CHECK (length(source_org) BETWEEN 1 AND 63),
    source_app  TEXT    NOT NULL CHECK (length(source_app) BETWEEN 1 AND 63),
    target_app  TEXT    NOT NULL CHECK (length(target_app) BETWEEN 1 AND 63),
    request     TEXT    NOT NULL CHECK (json_valid(request)),
    plan        TEXT    NOT NULL CHECK (json_valid(plan)),
    created_by  TEXT    NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
    created_at  TEXT    NOT NULL
) STRICT;

CREATE INDEX restore_plans_source ON restore_plans (source_org, source_app, created_at);

CREATE TRIGGER restore_plans_no_update BEFORE UPDATE ON restore_plans
BEGIN SELECT RAISE(ABORT, 'restore_plans is append-only: UPDATE refused'); END;
CREATE TRIGGER restore_plans_no_delete BEFORE DELETE ON restore_plans
BEGIN SELECT RAISE(ABORT, 'restore_plans is append-only: DELETE refused'); END;
