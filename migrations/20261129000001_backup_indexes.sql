-- The index of each wal-g storage (walden_core::backups), kept incrementally so that a refresh writes only what
-- changed. One row per storage; `url` is the storage URL without credentials (no userinfo, no query). Only
-- walden_core::backups writes these tables, and every write bumps `revision` (an in-memory copy is reused only
-- while the stored (id, revision) is the one it was saved as; AUTOINCREMENT: an id is never reused, so a storage
-- forgotten and stored again is never mistaken for the old row).
CREATE TABLE backup_indexes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT    NOT NULL UNIQUE CHECK (length(url) BETWEEN 1 AND 2048 AND instr(url, '?') = 0),
    -- walg::index::INDEX_FORMAT of the stored index; another value makes the next refresh a full build.
    format          INTEGER NOT NULL CHECK (format > 0),
    segment_size    INTEGER NOT NULL CHECK (segment_size > 0),
    -- Per prefix, the key a refresh lists after (a JSON object of strings).
    cursors         TEXT    NOT NULL CHECK (json_valid(cursors) AND json_type(cursors) = 'object'),
    -- Unix milliseconds of the last full build and of the last refresh.
    built_at_ms     INTEGER NOT NULL,
    refreshed_at_ms INTEGER NOT NULL,
    revision        INTEGER NOT NULL CHECK (revision > 0),
    updated_at      TEXT    NOT NULL
) STRICT;

-- Every object under `wal_005/`, one row each (its classification is derived from the name on load).
CREATE TABLE backup_index_wal (
    index_id    INTEGER NOT NULL REFERENCES backup_indexes (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL CHECK (length(name) > 0),
    size        INTEGER NOT NULL CHECK (size >= 0),
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (index_id, name)
) STRICT, WITHOUT ROWID;

-- The small parts of the index, one row per entry: backup folders, complete backups (parsed sentinel and
-- metadata), history files (parsed), and stray keys under `basebackups_005/` (body `null`). Bodies are the
-- JSON of walg's serde types.
CREATE TABLE backup_index_entries (
    index_id INTEGER NOT NULL REFERENCES backup_indexes (id) ON DELETE CASCADE,
    kind     TEXT    NOT NULL CHECK (kind IN ('folder', 'backup', 'history', 'stray')),
    name     TEXT    NOT NULL CHECK (length(name) > 0),
    body     TEXT    NOT NULL CHECK (json_valid(body)),
    PRIMARY KEY (index_id, kind, name)
) STRICT, WITHOUT ROWID;
