//! One connection pool (deadpool-postgres) per node address, built from the node's
//! [`NodeConfig`] without a DSN string, so no password can reach a log line or an error.

use crate::options::ClusterOptions;
use atoll_core::{Config, IslandId, NodeConfig};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::collections::HashMap;
use std::sync::Arc;

/// A node's pool, or why it could not be built (e.g. its password secret is unreadable).
#[derive(Clone)]
pub(crate) struct NodePool {
    pub node: NodeConfig,
    pub pool: Result<Pool, String>,
}

pub(crate) type Pools = HashMap<String, NodePool>;

/// Pools for every node of `config`, reusing `old` ones whose node settings are unchanged
/// (so a config reload keeps warm connections).
pub(crate) fn build(config: &Config, options: &ClusterOptions, old: Option<&Pools>) -> Arc<Pools> {
    let mut out = HashMap::new();
    for island in &config.islands {
        for node in &island.nodes {
            let addr = node.addr();
            let reused = old
                .and_then(|o| o.get(&addr))
                .filter(|p| p.node == *node)
                .cloned();
            let entry = reused.unwrap_or_else(|| NodePool {
                node: node.clone(),
                pool: build_one(node, config, options),
            });
            out.insert(addr, entry);
        }
    }
    Arc::new(out)
}

fn build_one(node: &NodeConfig, config: &Config, options: &ClusterOptions) -> Result<Pool, String> {
    let pg = atoll_pg::pg_config(node, &options.application_name, config.connect_timeout)
        .map_err(|e| e.to_string())?;
    // The same TLS connector (cached per CA file) as every other atoll connection.
    let tls = atoll_pg::tls_connector(&node.tls).map_err(|e| e.to_string())?;
    let manager = Manager::from_config(
        pg,
        tls,
        ManagerConfig {
            // Fast: a closed connection (node restarted, failed over) is noticed and replaced;
            // no extra round trip per checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.pool_wait_timeout))
        .create_timeout(Some(config.connect_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| format!("cannot build the connection pool: {e}"))
}

/// Opens one pooled connection to each of `masters` whose pool has none, in the
/// background (a failure is left to the statements that need the node), so the first
/// statement routed there after a move or a failover does not also pay for connecting.
pub(crate) fn warm_masters(pools: &Pools, masters: &[(IslandId, Option<NodeConfig>)]) {
    for node in masters.iter().filter_map(|(_, n)| n.as_ref()) {
        let Some(NodePool { pool: Ok(pool), .. }) = pools.get(&node.addr()) else {
            continue;
        };
        if pool.status().size == 0 {
            let pool = pool.clone();
            tokio::spawn(async move {
                if let Err(e) = pool.get().await {
                    tracing::debug!(error = %e, "atoll-client: warming a master's pool failed");
                }
            });
        }
    }
}
