//! Discovery: every configured node is read in parallel (role, version, WAL position, lag),
//! and every island master's catalog (cluster id, shard schemas, registry, sizes); the
//! observations become an immutable [`Snapshot`]. An unreachable node is an observation,
//! not an error.

use crate::connect::connect_with_timeout;
use crate::error::{describe, PgError};
use atoll_core::{
    Config, IslandCatalog, IslandId, Lsn, NodeConfig, NodeFacts, NodeObservation, ShardNo,
    ShardObservation, Snapshot,
};
use futures::future::join_all;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::Client;

/// What a [`Discoverer`] reads in each round, and how long it waits for a node.
#[derive(Debug, Clone, Copy)]
pub struct DiscoveryOptions {
    /// Also measure every shard's size (status, allocation, rebalancing). Routing does not
    /// need sizes and skips this work.
    pub sizes: bool,
    /// Bound on one node's whole probe (connect + queries), so a hung node cannot stall a round.
    pub node_timeout: Duration,
}

impl Default for DiscoveryOptions {
    fn default() -> Self {
        DiscoveryOptions {
            sizes: true,
            node_timeout: Duration::from_secs(5),
        }
    }
}

const NODE_SQL: &str =
    "select pg_is_in_recovery(), split_part(current_setting('server_version'), ' ', 1),
    (case when pg_is_in_recovery() then coalesce(pg_last_wal_replay_lsn(), '0/0')
          else pg_current_wal_lsn() end)::text,
    case when not pg_is_in_recovery() then null::float8
         when pg_last_wal_receive_lsn() is not distinct from pg_last_wal_replay_lsn() then 0::float8
         else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 end";

const META_SQL: &str = "select
    (select value from atoll.meta where key = 'cluster_id'),
    (select value from atoll.meta where key = 'island')";

/// Shard schemas and registry rows, joined; a registry row without a schema and a schema
/// without a row both show up. Sizes are summed in one grouped pass over pg_class (a
/// correlated subquery per schema is an order of magnitude slower at 1,000 shards), as
/// the main fork of every table, index and matview plus the table's TOAST: the free-space
/// and visibility maps are left out, which costs a quarter of the stat calls and changes
/// no balancing decision.
/// `gen`: whether the registry has generations (catalog step 6); 0 for every row if not.
/// `copies`: whether `atoll.global_copy` exists (step 12): a schema it lists is a read-only
/// copy of shard 0's tables, not a shard, and is left out.
fn shards_sql(sizes: bool, gen: bool, copies: bool) -> String {
    // reltuples is -1 for a table never analysed: such a schema has no estimate.
    let (size, rows, join) = if sizes {
        (
            "coalesce(sz.size, 0)::int8",
            "sz.rows::int8",
            "left join (select c.relnamespace,
                               sum(pg_relation_size(c.oid) + case when c.reltoastrelid <> 0
                                   then pg_relation_size(c.reltoastrelid) else 0 end) as size,
                               case when bool_and(c.reltuples >= 0) filter (where c.relkind = 'r')
                                    then sum(c.reltuples) filter (where c.relkind = 'r') end as rows
                        from pg_class c join pg_namespace cn on cn.oid = c.relnamespace
                        where cn.nspname ~ '^sh[0-9]{4}$' and c.relkind in ('r', 'm', 'i')
                        group by 1) sz on sz.relnamespace = n.oid",
        )
    } else {
        ("null::int8", "null::int8", "")
    };
    let gen = if gen { "coalesce(s.gen, 0)" } else { "0::int8" };
    let not_copy = if copies {
        "and nspname not in (select schema from atoll.global_copy)"
    } else {
        ""
    };
    format!(
        "select coalesce(n.nspname::text, 'sh' || lpad(s.shard::text, 4, '0')), n.oid is not null,
                coalesce(s.active, false), {size}, {gen}, {rows}, s.weight
         from (select oid, nspname from pg_namespace where nspname ~ '^sh[0-9]{{4}}$' {not_copy}) n
         full join atoll.shards s on s.shard = substr(n.nspname, 3)::int
         {join}"
    )
}

/// Runs discovery rounds over one configuration, keeping one connection per node between
/// rounds. Cheap to share: clone the `Arc` it sits in.
pub struct Discoverer {
    config: Config,
    options: DiscoveryOptions,
    /// Open connections by node address; a connection that failed is dropped so the next
    /// round reconnects. Locked only to take or put an entry, never across I/O.
    connections: Mutex<HashMap<String, Arc<Client>>>,
}

impl Discoverer {
    /// A discoverer for `config`; it connects lazily, in the first round.
    pub fn new(config: Config, options: DiscoveryOptions) -> Discoverer {
        Discoverer {
            config,
            options,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration it discovers.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// One full discovery round.
    pub async fn discover(&self) -> Snapshot {
        let islands = join_all(self.config.islands.iter().map(|island| async move {
            let probes = join_all(island.nodes.iter().map(|n| self.probe(island.id, n))).await;
            let mut nodes = Vec::new();
            let mut catalog = None;
            for (obs, cat) in probes {
                // Only the one master's catalog counts; with two masters, the first is shown
                // and the snapshot reports the split.
                if catalog.is_none() {
                    catalog = cat;
                }
                nodes.push(obs);
            }
            (island.id, nodes, catalog)
        }))
        .await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Snapshot::build(now, islands)
    }

    async fn probe(
        &self,
        island: IslandId,
        node: &NodeConfig,
    ) -> (NodeObservation, Option<IslandCatalog>) {
        let result = tokio::time::timeout(self.options.node_timeout, self.read_node(node)).await;
        let outcome = match result {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {:?}", self.options.node_timeout)),
        };
        if outcome.is_err() {
            self.forget(node);
        }
        match outcome {
            Ok((facts, catalog)) => (
                NodeObservation {
                    island,
                    addr: node.addr(),
                    outcome: Ok(facts),
                },
                catalog,
            ),
            Err(e) => (
                NodeObservation {
                    island,
                    addr: node.addr(),
                    outcome: Err(e),
                },
                None,
            ),
        }
    }

    async fn client(&self, node: &NodeConfig) -> Result<Arc<Client>, String> {
        let cached = self
            .lock()
            .get(&node.addr())
            .filter(|c| !c.is_closed())
            .cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = Arc::new(
            connect_with_timeout(node, self.config.connect_timeout)
                .await
                .map_err(|e| match e {
                    PgError::Connect { msg, .. } => msg,
                    other => other.to_string(),
                })?,
        );
        self.lock().insert(node.addr(), c.clone());
        Ok(c)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Client>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, node: &NodeConfig) {
        self.lock().remove(&node.addr());
    }

    async fn read_node(
        &self,
        node: &NodeConfig,
    ) -> Result<(NodeFacts, Option<IslandCatalog>), String> {
        let client = self.client(node).await?;
        let row = client
            .query_one(NODE_SQL, &[])
            .await
            .map_err(|e| describe(&e))?;
        let lsn_text: String = row.get(2);
        let facts = NodeFacts {
            in_recovery: row.get(0),
            server_version: row.get(1),
            lsn: Lsn::parse(&lsn_text).unwrap_or_default(),
            replay_lag_seconds: row.get(3),
        };
        if facts.in_recovery {
            return Ok((facts, None));
        }
        let catalog = read_catalog(&client, self.options.sizes)
            .await
            .map_err(|e| describe(&e))?;
        Ok((facts, Some(catalog)))
    }
}

/// The catalog and shards one node holds (a master, or a replica's copy of it), read over
/// `client` as discovery reads a master's; the per-node agent reads its own node with it.
/// Sent as one pipeline: the queries go out together.
pub async fn read_catalog(
    client: &Client,
    sizes: bool,
) -> Result<IslandCatalog, tokio_postgres::Error> {
    let found = client
        .query_one(
            "select to_regclass('atoll.shards') is not null and to_regclass('atoll.meta') is not null,
                    exists (select 1 from pg_attribute where attrelid = to_regclass('atoll.shards')
                                                         and attname = 'gen' and not attisdropped),
                    to_regclass('atoll.global_copy') is not null",
            &[],
        )
        .await?;
    let (has_catalog, has_gen, has_copies): (bool, bool, bool) =
        (found.get(0), found.get(1), found.get(2));
    if !has_catalog {
        // Schemas may exist without a catalog; they are unregistered, hence inactive.
        let rows = client
            .query("select nspname::text, true, false, null::int8, 0::int8, null::int8, null::float8 from pg_namespace where nspname ~ '^sh[0-9]{4}$'", &[])
            .await?;
        return Ok(IslandCatalog {
            cluster_id: None,
            catalog_island: None,
            shards: shard_rows(&rows),
            global_copy: None,
        });
    }
    let shards_sql = shards_sql(sizes, has_gen, has_copies);
    // Whether this master holds a ready global copy, asked with the meta row.
    let copy = if has_copies {
        "(select source_island from atoll.global_copy where state = 'ready')"
    } else {
        "null::int4"
    };
    let meta_sql = format!("{META_SQL}, {copy}");
    let (meta, rows) = futures::try_join!(
        client.query_one(&meta_sql, &[]),
        client.query(&shards_sql, &[])
    )?;
    let island: Option<String> = meta.get(1);
    Ok(IslandCatalog {
        cluster_id: meta.get(0),
        catalog_island: island.and_then(|i| i.parse().ok()).map(IslandId),
        shards: shard_rows(&rows),
        global_copy: meta
            .get::<_, Option<i32>>(2)
            .and_then(|i| u16::try_from(i).ok())
            .map(IslandId),
    })
}

fn shard_rows(rows: &[tokio_postgres::Row]) -> Vec<ShardObservation> {
    rows.iter()
        .filter_map(|r| {
            let name: &str = r.get(0);
            // `^sh[0-9]{4}$` already matched; round-trip parsing is the final word.
            let shard = ShardNo::from_schema(name).ok()?;
            let size: Option<i64> = r.get(3);
            let gen: i64 = r.get(4);
            let rows: Option<i64> = r.get(5);
            Some(ShardObservation {
                shard,
                schema_exists: r.get(1),
                active: r.get(2),
                size_bytes: size.map(|s| s.max(0) as u64),
                gen: gen.max(0) as u64,
                rows_estimate: rows.map(|n| n.max(0) as u64),
                weight: r.get(6),
            })
        })
        .collect()
}
