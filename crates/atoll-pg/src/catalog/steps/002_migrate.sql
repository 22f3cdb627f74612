-- Catalog step 2 ("migrate"): `atoll migrate` runs, kept on the coordination island's master. The
-- applied versions themselves live inside each schema (<schema>.atoll_migrations) so that
-- they move with the shard.
create table atoll.migration_runs (
    run_id bigint generated always as identity primary key,
    kind text not null check (kind in ('apply', 'undo')),
    host text not null,
    pid integer not null,
    started_at timestamptz not null default now(),
    changed_at timestamptz not null default now(),
    finished_at timestamptz,
    -- running | done | failed | interrupted (its process died; found by the next run)
    status text not null default 'running',
    schemas_total integer not null default 0,
    schemas_done integer not null default 0,
    schemas_failed integer not null default 0,
    message text
);
-- Who holds the cluster-wide migration lock. The lock itself is a session advisory lock
-- held by the run's connection (released by the server if the process dies); this row
-- only names the holder for the error a second run gets.
create table atoll.migration_lock (
    singleton boolean primary key default true check (singleton),
    run_id bigint not null,
    host text not null,
    pid integer not null,
    started_at timestamptz not null default now()
);
-- Every shard schema (and every schema starting with one of `prefixes`) with its applied
-- versions, in one call: one row (schema, null) per schema, then one row per version.
-- A schema migrated by pg-mig so far (no atoll_migrations yet, its versions in the
-- function mig_versions_const()) reports those, so users can switch from pg-mig.
-- One EXECUTE per schema is much cheaper than planning a UNION ALL over thousands of tables.
create function atoll.migration_state(prefixes text[])
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
