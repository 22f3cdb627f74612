//! Shared helpers of the move integration tests: cluster setup on a TestSandbox, a
//! retrying writer, and checks of a move's invariants.

#![allow(dead_code)]

pub mod writer;

use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_pg::{Discoverer, DiscoveryOptions};
use atoll_sandbox::TestSandbox;
use std::time::Duration;

pub fn shard(n: i64) -> ShardNo {
    ShardNo::new(n).unwrap()
}

pub async fn discover(config: &Config) -> Snapshot {
    Discoverer::new(
        config.clone(),
        DiscoveryOptions {
            sizes: true,
            node_timeout: Duration::from_secs(5),
        },
    )
    .discover()
    .await
}

/// Loads the sandbox's config, installs the catalog and allocates `shards` (active), each
/// with the test tables and `rows` rows in `items`.
pub async fn setup(sb: &TestSandbox, shards: &[i64], rows: i64) -> Config {
    let config = Config::from_file(&sb.config_path()).unwrap();
    let snap = discover(&config).await;
    atoll_pg::catalog::init(&config, &snap).await.unwrap();
    let snap = discover(&config).await;
    let list: Vec<ShardNo> = shards.iter().map(|n| shard(*n)).collect();
    let plan = atoll_core::allocation::plan(&snap, &list, None).unwrap();
    atoll_pg::allocate::execute(&config, &snap, &plan, true)
        .await
        .unwrap();
    let snap = discover(&config).await;
    for s in &list {
        let island = snap.active_island(*s).unwrap();
        let c = master(&config, &snap, island).await;
        let sc = s.schema();
        c.batch_execute(&format!(
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
        ))
        .await
        .unwrap();
    }
    config
}

pub async fn master(config: &Config, snap: &Snapshot, island: IslandId) -> tokio_postgres::Client {
    let node = atoll_pg::master_node(config, snap, island).unwrap();
    atoll_pg::connect(&node).await.unwrap()
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
