-- Fly organisations added with an org-scoped token (walden_core::orgs), and the clusters Walden tracks in them.
-- Only walden_core::orgs writes these tables, each change with its audit row in the same transaction.

-- One row per added organisation. `token_sealed` is the token sealed with the keyring (walden_core::keyring),
-- its associated data binding the org slug (`walden/org-token/{slug}`), so a sealed token moved to another
-- row does not open; `walden keys rotate` re-seals it (rotation::SEALED_COLUMNS). `token_fingerprint` is a
-- keyed fingerprint (hex) under the master key at the time it was added: it tells two tokens apart without
-- opening either. AUTOINCREMENT: an id is never reused (rotation addresses rows by id).
CREATE TABLE fly_orgs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    slug              TEXT    NOT NULL UNIQUE
                      CHECK (length(slug) BETWEEN 1 AND 63 AND slug NOT GLOB '*[^a-z0-9-]*'),
    name              TEXT    NOT NULL CHECK (length(name) <= 200),
    token_sealed      BLOB    NOT NULL CHECK (length(token_sealed) > 0),
    token_fingerprint TEXT    NOT NULL CHECK (length(token_fingerprint) = 64),
    added_by          TEXT    NOT NULL,
    added_at          TEXT    NOT NULL,
    last_validated_at TEXT    NOT NULL
) STRICT;

-- The clusters an admin chose to track. A row is never deleted: untracking sets `untracked_at`, so the
-- history of what was tracked when stays. `org` is a slug of `fly_orgs` or the organisation of
-- FLY_API_TOKEN (which has no row), hence no foreign key. Fly app names are global, so an app is tracked
-- at most once at a time.
CREATE TABLE tracked_clusters (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    org          TEXT    NOT NULL CHECK (length(org) BETWEEN 1 AND 63),
    app          TEXT    NOT NULL CHECK (length(app) BETWEEN 1 AND 63),
    tracked_by   TEXT    NOT NULL,
    tracked_at   TEXT    NOT NULL,
    untracked_by TEXT,
    untracked_at TEXT,
    CHECK ((untracked_at IS NULL) = (untracked_by IS NULL))
) STRICT;

CREATE UNIQUE INDEX tracked_clusters_active ON tracked_clusters (app) WHERE untracked_at IS NULL;
