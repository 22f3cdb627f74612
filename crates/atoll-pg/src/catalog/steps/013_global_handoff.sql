-- Catalog step 13 ("global_handoff"): on shard 0's destination master during a move of
-- shard 0 that has read-only copies, the replication slots made there for the copies to
-- follow the new master, and the WAL position from which they must be read: the
-- destination's position between the switch and the activation (before it, the slots
-- hold only the move's own catch-up, which the copies already have from the old master).
create table atoll.global_handoff (
    move_id bigint primary key,
    source_island integer not null,
    slots text[] not null,
    switch_lsn pg_lsn,
    created_at timestamptz not null default now()
);
