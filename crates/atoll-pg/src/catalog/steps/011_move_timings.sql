-- Catalog step 11 ("move_timings"): how long a finished move took and how long it blocked
-- writes, on the move's source row, so any reader (the control plane's histograms and
-- recent moves) sees every move, whoever ran it. Null when the run that finished the move
-- did not do that part (a move resumed after its pause has no pause of its own).
alter table atoll.moves
    add column total_ms bigint,
    add column copy_ms bigint,
    add column pause_ms double precision,
    add column verify_block_ms double precision;
