-- Catalog step 5 ("move_abort"): when an abort of the move started. Set on both rows
-- before the abort's first action and never cleared (the rows go when the abort ends), so
-- a resume of a move whose abort was interrupted refuses instead of activating the shard
-- on the destination after the abort already reactivated it on the source.
alter table atoll.moves add column abort_started_at timestamptz;
