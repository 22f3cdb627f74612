-- Catalog step 6 ("shard_notices"): every change of a registry row gets a generation and
-- is announced to listening clients with NOTIFY on channel atoll_shards, delivered when
-- the changing transaction commits (atoll_core::shard_notice has the payload format).
-- A trigger rather than a statement in each writer, so no writer (allocation, a move's
-- switch and activation, `shard activate|deactivate`, an abort, an UPDATE by hand) can
-- forget it.
--
-- The generation orders one shard's changes across islands: it is above the row's
-- previous one, above the server clock in microseconds since the Unix epoch (so a row
-- deleted and created again, or a change on another island seconds later, still comes
-- after), and above what the writer passes in `gen` (a move's activation passes its
-- switch's generation + 1, `shard activate` the newest it discovered + 1), so a server
-- clock behind another island's does not reorder a move.
alter table atoll.shards add column gen bigint not null default 0;

create function atoll.shards_gen() returns trigger
    language plpgsql set search_path = pg_catalog as $$
begin
    new.gen := greatest(
        new.gen,
        case when tg_op = 'UPDATE' then old.gen + 1 else 1 end,
        (extract(epoch from clock_timestamp()) * 1000000)::bigint);
    return new;
end $$;

create function atoll.shards_notify() returns trigger
    language plpgsql set search_path = pg_catalog as $$
declare
    island text := (select value from atoll.meta where key = 'island');
begin
    if island is not null then
        perform pg_notify('atoll_shards', format('v1 shard=%s island=%s active=%s gen=%s',
                                                 new.shard, island,
                                                 case when new.active then 'true' else 'false' end,
                                                 new.gen));
    end if;
    return null;
end $$;

create trigger shards_gen before insert or update on atoll.shards
    for each row execute function atoll.shards_gen();
create trigger shards_notify after insert or update on atoll.shards
    for each row execute function atoll.shards_notify();
