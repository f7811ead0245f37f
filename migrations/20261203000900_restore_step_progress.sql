-- A long step's live progress (walden_core::restore::engine): the PITR's phase, percentage, seconds left and the
-- machine's last log lines (lines that could carry a secret left out), rewritten at every poll so a progress page
-- and the CLI can show it, across a page reload or a console restart. Never a secret.
ALTER TABLE restore_run_steps ADD COLUMN progress TEXT
    CHECK (progress IS NULL OR (json_valid(progress) AND json_type(progress) = 'object' AND length(progress) <= 16000));
