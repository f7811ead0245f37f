-- The leader's volume use of each tracked cluster over time (walden_core::monitor::volume, the only writer),
-- for the forecast of when it is full (issue #12 item 6). One sample per monitor refresh that could read the
-- volume from the Machines API (`GET /v1/apps/{app}/volumes`: `bytes_used`, `bytes_total`); samples older than
-- 48 hours are deleted in the same transaction that writes a new one, so the table stays small. Times are
-- walden_core::ts strings (24 characters, UTC).
CREATE TABLE volume_samples (
    org         TEXT    NOT NULL CHECK (length(org) BETWEEN 1 AND 63),
    app         TEXT    NOT NULL CHECK (length(app) BETWEEN 1 AND 63),
    at          TEXT    NOT NULL CHECK (length(at) = 24),
    volume_id   TEXT    NOT NULL CHECK (length(volume_id) BETWEEN 1 AND 100),
    bytes_used  INTEGER NOT NULL CHECK (bytes_used >= 0),
    bytes_total INTEGER NOT NULL CHECK (bytes_total > 0 AND bytes_used <= bytes_total),
    PRIMARY KEY (org, app, at)
) STRICT;

-- Why the last refresh could not read the leader's volume (no leader, no volume attached to it, Fly refused);
-- NULL when it could. Not an alert by itself: the cluster's row says it.
ALTER TABLE cluster_health ADD COLUMN volume_error TEXT CHECK (volume_error IS NULL OR length(volume_error) <= 2000);
