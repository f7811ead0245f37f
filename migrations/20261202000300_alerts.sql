-- Alerts (walden_core::alerts): a condition that needs a person (an escrowed password that no longer opens its
-- role, WAL that stopped arriving), raised once while it lasts and resolved with a recovery message. Only
-- walden_core::alerts writes this table, each change with its audit row in the same transaction.
--
-- `key` names the condition ("escrow.proof/demo/demo-db"): at most one open alert per key, so a condition seen
-- again while open is not raised twice. `notified_at` / `resolve_notified_at` record the webhook's delivery of
-- the raise and of the recovery (NULL: not delivered yet, or no webhook configured). A row is never deleted.
CREATE TABLE alerts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    key                 TEXT    NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    kind                TEXT    NOT NULL
                        CHECK (length(kind) BETWEEN 1 AND 64 AND kind NOT GLOB '*[^a-z_]*'),
    severity            TEXT    NOT NULL CHECK (severity IN ('warning', 'critical')),
    org                 TEXT    CHECK (org IS NULL OR length(org) BETWEEN 1 AND 63),
    app                 TEXT    CHECK (app IS NULL OR length(app) BETWEEN 1 AND 63),
    message             TEXT    NOT NULL CHECK (length(message) BETWEEN 1 AND 2000),
    raised_at           TEXT    NOT NULL,
    resolved_at         TEXT,
    resolution          TEXT    CHECK (resolution IS NULL OR length(resolution) BETWEEN 1 AND 2000),
    notified_at         TEXT,
    resolve_notified_at TEXT,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL)),
    CHECK (resolve_notified_at IS NULL OR resolved_at IS NOT NULL)
) STRICT;

CREATE UNIQUE INDEX alerts_open ON alerts (key) WHERE resolved_at IS NULL;
