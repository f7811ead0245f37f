-- The `wal_005/` listing of each stored index in blocks (walden_core::backups::wal_blocks) instead of a row per
-- object: loading 300,000 rows through sqlx cost a fifth of a full build, so a cold refresh (the CLI, a
-- restarted console) could not stay within 5 % of one. Block `block` holds objects `block * 1024 ..` of the
-- name-sorted list in a compact binary body (format byte 1); every block but the last is full.
--
-- The stored indexes are a cache of the buckets, so they are dropped rather than converted: the next refresh of
-- each storage builds its index in full and stores it in blocks.
DROP TABLE backup_index_wal;
DELETE FROM backup_index_entries;
DELETE FROM backup_indexes;

CREATE TABLE backup_index_wal_blocks (
    index_id INTEGER NOT NULL REFERENCES backup_indexes (id) ON DELETE CASCADE,
    block    INTEGER NOT NULL CHECK (block >= 0),
    objects  INTEGER NOT NULL CHECK (objects BETWEEN 1 AND 1024),
    body     BLOB    NOT NULL CHECK (length(body) > 2 AND substr(body, 1, 1) = x'01'),
    PRIMARY KEY (index_id, block)
) STRICT;
