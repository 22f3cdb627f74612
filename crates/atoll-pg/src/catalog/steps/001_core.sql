-- Catalog step 1 ("core"): the catalog's own facts (cluster id, island number, version)
-- and the registry of the shards this island holds. The registry lives outside the shard
-- schemas on purpose: a schema copied to another island arrives without a registry row
-- there, so it is inactive until activated.
create table atoll.meta (
    key text primary key,
    value text not null
);
create table atoll.shards (
    shard integer primary key check (shard between 0 and 9999),
    active boolean not null default false,
    -- rebalancing weight; null means "use the shard's size"
    weight double precision check (weight is null or weight >= 0),
    created_at timestamptz not null default now(),
    changed_at timestamptz not null default now()
);
