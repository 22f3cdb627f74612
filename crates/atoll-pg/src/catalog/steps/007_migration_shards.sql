-- Catalog step 7 ("migration_shards"): a migration run as a control plane, on the
-- coordination island's master. Each run records one row per schema it migrates (its
-- state, the failed file and error, attempts), what it was scoped to, the digest of the
-- reviewed plan it applies, and whether `migrate stop` asked it to stop.
alter table atoll.migration_runs
    add column scope text,
    add column plan_digest text,
    add column policy text,
    add column stop_requested boolean not null default false;
create table atoll.migration_shards (
    run_id bigint not null references atoll.migration_runs (run_id) on delete cascade,
    schema_name text not null,
    island integer not null,
    state text not null check (state in ('pending', 'waiting_for_canary', 'running', 'done',
                                          'failed', 'skipped', 'halted')),
    file text,
    error text,
    attempts integer not null default 0,
    changed_at timestamptz not null default clock_timestamp(),
    primary key (run_id, schema_name, island)
);
-- `apply --plan` resumed: the schemas earlier runs of the same plan finished.
create index migration_runs_plan_digest on atoll.migration_runs (plan_digest)
    where plan_digest is not null;
