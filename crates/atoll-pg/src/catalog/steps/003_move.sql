-- Catalog step 3 ("move"): the persisted state of microshard moves. The source island's
-- master holds the move's row (role = 'source'), the destination's master a reference row
-- with the same id, so a move can be found from either side after a crash. `move_ticks`
-- carries the marker rows a move replicates through its own subscription to learn, exactly,
-- when the destination has applied everything committed on the source before a point.
create table atoll.moves (
    id bigint not null,
    role text not null check (role in ('source', 'destination')),
    shard integer not null check (shard between 0 and 9999),
    source_island integer not null,
    destination_island integer not null,
    step text not null,
    verify text not null default 'counts',
    backup_schema text,
    -- the subscription's oid and the destination's system identifier (source row),
    -- recorded when the subscription is created: table-sync slots on the source are
    -- named pg_<oid>_sync_<relid>_<sysid> and must be found after it is gone
    subscription_oid bigint,
    destination_sysid bigint,
    started_at timestamptz not null default now(),
    changed_at timestamptz not null default now(),
    finished_at timestamptz,
    primary key (id, role)
);
create table atoll.move_ticks (
    move_id bigint primary key,
    tick bigint not null default 0
);
