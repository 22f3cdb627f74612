//! Shared helpers of the move integration tests: the test tables every shard gets, and
//! checks of a move's invariants. The cluster itself comes from atoll-testkit.

#![allow(dead_code)]

use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_testkit::TestCluster;
pub use atoll_testkit::{discover, shard};

/// A started cluster of `islands` x (1 master + `replicas` replicas) with `shards`
/// allocated and active (all on `island` when given), each with the test tables and `rows`
/// rows in `items`.
pub async fn setup(
    islands: u16,
    replicas: u16,
    shards: &[i64],
    rows: i64,
    island: Option<IslandId>,
) -> TestCluster {
    let mut setup = TestCluster::setup(islands, replicas).shards(shards.iter().copied());
    if let Some(island) = island {
        setup = setup.on_island(island);
    }
    let tc = setup.start().await.unwrap();
    tc.on_each_shard(&atoll_testkit::shards(shards.iter().copied()), |sc| {
        test_tables(sc, rows)
    })
    .await
    .unwrap();
    tc
}

/// `items` (with `rows` rows), `children`, an enum, an identity and generated column, a
/// view, a function and a trigger: what a move must carry over.
fn test_tables(sc: &str, rows: i64) -> String {
    format!(
        "create table {sc}.items (id bigint primary key default {sc}.id_gen(),
                                  payload bigint not null, note text);
         create index on {sc}.items (payload);
         create table {sc}.children (id serial primary key,
                                     item_id bigint not null references {sc}.items (id));
         insert into {sc}.items (payload, note)
           select -g, repeat('x', 100) from generate_series(1, {rows}) g;
         insert into {sc}.children (item_id) select id from {sc}.items limit 10;
         create type {sc}.mood as enum ('ok', 'meh');
         create table {sc}.tagged (id bigint generated always as identity primary key,
                                   mood {sc}.mood not null default 'ok',
                                   doubled bigint generated always as (id * 2) stored,
                                   unique (mood, id), check (id > 0));
         insert into {sc}.tagged (mood) values ('ok'), ('meh');
         create view {sc}.meh as select id from {sc}.tagged where mood = 'meh';
         create function {sc}.touch() returns trigger language plpgsql
           as $$ begin new.note := coalesce(new.note, 'touched'); return new; end $$;
         create trigger touch before insert on {sc}.items
           for each row execute function {sc}.touch();"
    )
}

pub async fn master(config: &Config, snap: &Snapshot, island: IslandId) -> tokio_postgres::Client {
    atoll_testkit::master(config, snap, island).await.unwrap()
}

/// Replication objects of moves left on any master: subscriptions, slots, publications.
pub async fn replication_leftovers(config: &Config) -> Vec<String> {
    let snap = discover(config).await;
    let mut out = Vec::new();
    for i in &snap.islands {
        let c = master(config, &snap, i.id).await;
        for r in c
            .query(
                "select 'sub ' || subname from pg_subscription where subname like 'atoll_move_%'
                 union all select 'slot ' || slot_name from pg_replication_slots
                  where slot_name like 'atoll_move_%' or slot_name like 'pg_%_sync_%'
                 union all select 'pub ' || pubname from pg_publication where pubname like 'atoll_move_%'",
                &[],
            )
            .await
            .unwrap()
        {
            out.push(format!("island {}: {}", i.id, r.get::<_, String>(0)));
        }
    }
    out
}

/// The shard is active on exactly `island`, has its schema only there (among `sh` names),
/// no move replication objects remain, and `items` holds `rows` rows.
pub async fn assert_settled(config: &Config, s: ShardNo, island: IslandId, rows: Option<i64>) {
    let snap = discover(config).await;
    assert_eq!(snap.active_island(s), Ok(island), "{s} active island");
    let copies = &snap.shards[&s];
    assert_eq!(copies.len(), 1, "{s} has copies {copies:?}");
    assert!(
        replication_leftovers(config).await.is_empty(),
        "{:?}",
        replication_leftovers(config).await
    );
    if let Some(rows) = rows {
        let c = master(config, &snap, island).await;
        let n: i64 = c
            .query_one(&format!("select count(*) from {}.items", s.schema()), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, rows, "{s} rows");
    }
}

/// Roles the security test objects name; roles are per PostgreSQL cluster, so every
/// island that may hold the shard needs them.
pub const TEST_ROLES: [&str; 3] = ["atoll_t_owner", "atoll_t_reader", "atoll_t_app"];

pub async fn create_test_roles(c: &tokio_postgres::Client) {
    for r in TEST_ROLES {
        c.batch_execute(&format!("create role {r} nologin"))
            .await
            .unwrap();
    }
}

/// Owners, privileges (column grants, a grant by a non-owner, default privileges),
/// comments and row-level security on shard `sc`'s objects from `setup`.
pub async fn add_security(c: &tokio_postgres::Client, sc: &str) {
    c.batch_execute(&format!(
        "alter table {sc}.children owner to atoll_t_owner;
         grant usage on schema {sc} to atoll_t_reader, atoll_t_app;
         grant select on {sc}.items to atoll_t_reader with grant option;
         set role atoll_t_reader; grant select on {sc}.items to atoll_t_app; reset role;
         grant select (id, payload), update (note) on {sc}.items to atoll_t_app;
         grant usage on sequence {sc}.id_seq to atoll_t_app;
         revoke all on sequence {sc}.children_id_seq from atoll_t_owner;
         grant usage on sequence {sc}.children_id_seq to atoll_t_app;
         grant select on {sc}.meh to atoll_t_reader;
         revoke execute on function {sc}.touch() from public;
         grant execute on function {sc}.touch() to atoll_t_app;
         alter default privileges in schema {sc} grant select on tables to atoll_t_reader;
         comment on schema {sc} is 'shard under test';
         comment on table {sc}.items is 'the items';
         comment on column {sc}.items.note is 'free text';
         comment on function {sc}.touch() is 'fills note';
         comment on type {sc}.mood is 'feelings';
         comment on index {sc}.items_payload_idx is 'by payload';
         comment on constraint tagged_id_check on {sc}.tagged is 'positive';
         comment on trigger touch on {sc}.items is 'before insert';
         alter table {sc}.items enable row level security;
         alter table {sc}.children enable row level security, force row level security;
         create policy readers on {sc}.items for select to atoll_t_reader using (payload < 0);
         create policy app_writes on {sc}.items as restrictive to atoll_t_app, public
           using (true) with check (payload <> 0);
         comment on policy readers on {sc}.items is 'negative payloads only';"
    ))
    .await
    .unwrap();
}

/// Everything `add_security` touches on schema `sc`, by name (no oids), sorted: equal on
/// two servers when owners, ACLs, column ACLs, default privileges, RLS flags, policies and
/// comments are.
pub async fn security_fingerprint(c: &tokio_postgres::Client, sc: &str) -> Vec<String> {
    c.query(
        r"select 'schema ' || pg_get_userbyid(n.nspowner) || ' ' || coalesce(n.nspacl::text, '-')
            from pg_namespace n where n.nspname = $1::text
          union all
          select 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || pg_get_userbyid(c.relowner)
                 || ' ' || coalesce(c.relacl::text, '-') || ' rls ' || c.relrowsecurity
                 || ' force ' || c.relforcerowsecurity
            from pg_class c where c.relnamespace = $1::text::regnamespace
          union all
          select 'col ' || c.relname || '.' || a.attname || ' ' || a.attacl::text
            from pg_attribute a join pg_class c on c.oid = a.attrelid
           where c.relnamespace = $1::text::regnamespace and a.attacl is not null
          union all
          select 'proc ' || p.oid::regprocedure || ' ' || pg_get_userbyid(p.proowner) || ' '
                 || coalesce(p.proacl::text, '-')
            from pg_proc p where p.pronamespace = $1::text::regnamespace
          union all
          select 'type ' || t.typname || ' ' || pg_get_userbyid(t.typowner) || ' '
                 || coalesce(t.typacl::text, '-')
            from pg_type t where t.typnamespace = $1::text::regnamespace and t.typtype = 'e'
          union all
          select 'default ' || pg_get_userbyid(d.defaclrole) || ' ' || d.defaclobjtype::text || ' '
                 || d.defaclacl::text
            from pg_default_acl d where d.defaclnamespace = $1::text::regnamespace
          union all
          select 'policy ' || tablename || ' ' || policyname || ' ' || permissive || ' '
                 || roles::text || ' ' || cmd || ' ' || coalesce(qual, '-') || ' '
                 || coalesce(with_check, '-')
            from pg_policies where schemaname = $1::text
          union all
          select 'comment ' || o.type || ' ' || o.identity || ' ' || d.description
            from pg_description d,
                 lateral pg_identify_object(d.classoid, d.objoid, d.objsubid) o
           where o.identity = $1::text or o.identity ~ ('(^| )' || $1 || '\.')
          order by 1",
        &[&sc],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Resumes the unfinished move of `s` with the default options, on a fresh snapshot.
pub async fn resume(
    config: &Config,
    s: ShardNo,
) -> Result<atoll_move::MoveReport, atoll_move::MoveError> {
    let snap = discover(config).await;
    atoll_move::resume_move(
        config,
        &snap,
        Some(s),
        &atoll_move::MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
}

/// The islands on which `s` is active, as a fresh discovery sees them.
pub async fn active_on(config: &Config, s: ShardNo) -> Vec<IslandId> {
    let snap = discover(config).await;
    snap.shards[&s]
        .iter()
        .filter(|c| c.active)
        .map(|c| c.island)
        .collect()
}
