-- Catalog step 8 ("shard_endpoints"): how to reach each node of each island, with the
-- kind of authentication and an alias into a keychain instead of a credential (seed 000:
-- endpoints as records, the env-var DSN list only a development fallback). Kept on the
-- coordination island's master. auth_kind and credential_alias are plain text on purpose:
-- the reader (catalog::shard_endpoints) validates every row and refuses a malformed one by
-- name, so a bad row is an error, never a silent fallback.
create table atoll.shard_endpoints (
    island integer not null,
    host text not null,
    port integer not null,
    -- PostgreSQL user and database; null: the cluster's defaults (postgres)
    "user" text,
    database text,
    -- password | aws-iam | gcp-iam | none
    auth_kind text not null,
    -- a keychain alias (never the credential itself)
    credential_alias text,
    updated_at timestamptz not null default now(),
    primary key (island, host, port)
);
