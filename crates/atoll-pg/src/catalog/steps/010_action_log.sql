-- Catalog step 10 ("action_log"): what operators did through the control plane
-- (`atoll serve`): who (the name of the write token used, never the token), from where,
-- what (kind and target), when, and how it ended. Kept on the coordination island's
-- master, so every control-plane process writes to and shows the same log. kind and
-- outcome are checked here and parsed into enums by catalog::action_log.
create table atoll.action_log (
    id bigint generated always as identity primary key,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    actor text not null,
    remote text not null,
    -- the control-plane process: host, pid and listen address
    server text not null,
    kind text not null check (kind in (
        'move', 'move_resume', 'move_abort', 'rebalance', 'migrate_apply')),
    target text not null,
    outcome text not null default 'running' check (outcome in (
        'running', 'succeeded', 'failed', 'refused', 'interrupted')),
    detail text
);
create index action_log_started on atoll.action_log (started_at desc);
