-- Catalog step 4 ("id_leases"): one row per app-side ID node id, created free
-- (expires_at = -infinity), so that acquiring is an UPDATE ... FOR UPDATE SKIP LOCKED over
-- existing rows: concurrent acquirers each lock a different row instead of colliding on an
-- insert. Kept on the coordination island's master only.
create table atoll.id_leases (
    node integer primary key check (node between 0 and 999),
    -- random per acquisition: who holds it, for renew and release
    token text,
    -- for people: host, pid and application of the holder (never credentials)
    holder text,
    acquired_at timestamptz,
    renewed_at timestamptz,
    released_at timestamptz,
    expires_at timestamptz not null default '-infinity'
);
insert into atoll.id_leases (node) select generate_series(0, 999);
