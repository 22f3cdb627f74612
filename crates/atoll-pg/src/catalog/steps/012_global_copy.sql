-- Catalog step 12 ("global_copy"): shard 0's cluster-wide tables copied read-only to
-- other islands by logical replication (`atoll global replicate`). On a copy island's
-- master, the row marks its `sh0000` schema as a copy, not a shard: discovery leaves it
-- out of the shards, so it is never taken for a second copy of shard 0. The trigger
-- function refuses writes to a copy's tables; replication applies changes with
-- session_replication_role = replica, where ordinary triggers do not fire.
create table atoll.global_copy (
    schema text primary key check (schema = 'sh0000'),
    source_island integer not null,
    publication text not null,
    subscription text not null,
    tables text[] not null,
    state text not null check (state in ('creating', 'copying', 'ready')),
    created_at timestamptz not null default now(),
    changed_at timestamptz not null default now()
);
create function atoll.global_copy_read_only() returns trigger language plpgsql as $$
begin
    raise exception '%.% is a read-only copy of shard 0''s table: write on shard 0''s master',
        tg_table_schema, tg_table_name
        using errcode = 'read_only_sql_transaction';
end
$$;
-- A copy is not migrated as a shard: migration runs read the schemas through this
-- function, redefined to leave copies out (applying shard 0's migrations to its copies
-- is their own step).
create or replace function atoll.migration_state(prefixes text[])
returns table (schema_name text, version text, checksum text)
language plpgsql stable as $fn$
declare
    s text;
    has_table boolean;
    has_pg_mig boolean;
begin
    for s, has_table, has_pg_mig in
        select n.nspname::text, exists (select 1 from pg_class c
                where c.relnamespace = n.oid and c.relname = 'atoll_migrations' and c.relkind = 'r'),
            exists (select 1 from pg_proc p
                where p.pronamespace = n.oid and p.proname = 'mig_versions_const')
        from pg_namespace n
        where (n.nspname ~ '^sh[0-9]{4}$' or n.nspname like any (
                  select p || '%' from unnest(prefixes) p))
          and n.nspname not in ('atoll', 'information_schema') and n.nspname !~ '^pg_'
          and n.nspname not in (select g.schema from atoll.global_copy g)
    loop
        schema_name := s;
        version := null;
        checksum := null;
        return next;
        if has_table then
            return query execute format(
                'select %L::text, version, nullif(checksum, ''pg-mig'') from %I.atoll_migrations', s, s);
        elsif has_pg_mig then
            return query execute format(
                'select %L::text, v, null::text from json_array_elements_text(%I.mig_versions_const()::json) v',
                s, s);
        end if;
    end loop;
end
$fn$;
