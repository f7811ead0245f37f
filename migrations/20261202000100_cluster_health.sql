-- The health of each tracked cluster (walden_core::monitor, the only writer): one row per cluster, updated by
-- every refresh of its wal-g storage. The `good_*` columns hold the summary of the last refresh that read the
-- storage (they stay when a later refresh fails, with that failure in `last_error` beside them). Times are
-- walden_core::ts strings (24 characters, UTC). No secret is ever stored: `storage` is the storage URL without
-- credentials, `last_error` the reader's message (which names the storage, never a credential).
CREATE TABLE cluster_health (
    org                      TEXT    NOT NULL CHECK (length(org) BETWEEN 1 AND 63),
    app                      TEXT    NOT NULL CHECK (length(app) BETWEEN 1 AND 63),
    storage                  TEXT    CHECK (storage IS NULL OR length(storage) <= 2000),
    refresh_started_at       TEXT    NOT NULL CHECK (length(refresh_started_at) = 24),
    refresh_finished_at      TEXT    CHECK (refresh_finished_at IS NULL OR length(refresh_finished_at) = 24),
    refresh_ms               INTEGER CHECK (refresh_ms IS NULL OR refresh_ms >= 0),
    last_error               TEXT    CHECK (last_error IS NULL OR length(last_error) <= 2000),
    good_at                  TEXT    CHECK (good_at IS NULL OR length(good_at) = 24),
    good_earliest_restorable TEXT,
    good_latest_restorable   TEXT,
    good_newest_wal          TEXT,
    good_newest_base_backup  TEXT,
    good_last_commit         TEXT,
    good_errors              INTEGER NOT NULL DEFAULT 0 CHECK (good_errors >= 0),
    good_warnings            INTEGER NOT NULL DEFAULT 0 CHECK (good_warnings >= 0),
    good_infos               INTEGER NOT NULL DEFAULT 0 CHECK (good_infos >= 0),
    good_first_error         TEXT    CHECK (good_first_error IS NULL OR length(good_first_error) <= 2000),
    -- The cluster's archive_timeout (seconds) as read from its Stolon spec, and when; NULL: not read yet.
    archive_timeout_secs     INTEGER CHECK (archive_timeout_secs IS NULL OR archive_timeout_secs >= 0),
    archive_timeout_read_at  TEXT    CHECK (archive_timeout_read_at IS NULL OR length(archive_timeout_read_at) = 24),
    PRIMARY KEY (org, app)
) STRICT;
