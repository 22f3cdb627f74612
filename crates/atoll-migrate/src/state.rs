//! Reading what every schema has applied: one call per island master, all masters at once.

use crate::error::MigrateError;
use atoll_core::migration::{MigrationSet, SchemaState};
use atoll_core::{Config, IslandId, NodeConfig, Snapshot};
use atoll_pg::catalog::migration_runs::{self, StateRow};
use atoll_pg::{connect_with_timeout, master_node};
use futures::future::try_join_all;
use std::collections::BTreeMap;
use tokio_postgres::Client;

/// The island whose non-shard schemas (`public`, ...) are migrated and which holds the run
/// lock: the cluster's coordination island (island 0, or the lowest configured one).
pub fn finalizer_island(config: &Config) -> Option<IslandId> {
    atoll_pg::coordination::coordination_island(config)
}

/// Every island master, configured node and open connection.
pub struct Masters {
    pub nodes: Vec<(IslandId, NodeConfig, Client)>,
}

impl Masters {
    pub async fn connect(config: &Config, snapshot: &Snapshot) -> Result<Masters, MigrateError> {
        let nodes = try_join_all(config.islands.iter().map(|i| async move {
            let node = master_node(config, snapshot, i.id)?;
            let client = connect_with_timeout(&node, config.connect_timeout).await?;
            Ok::<_, MigrateError>((i.id, node, client))
        }))
        .await?;
        Ok(Masters { nodes })
    }
}

/// Reads every schema a target of `set` may apply to, with its applied versions: shard
/// schemas on every island, other schemas only on the finalizer island.
pub async fn read_states(
    config: &Config,
    masters: &Masters,
    set: &MigrationSet,
) -> Result<Vec<SchemaState>, MigrateError> {
    let finalizer = finalizer_island(config);
    let prefixes: Vec<String> = set.targets().into_iter().map(str::to_string).collect();
    let per_island = try_join_all(masters.nodes.iter().map(|(island, node, client)| {
        let extra: Vec<String> = if Some(*island) == finalizer {
            prefixes.clone()
        } else {
            Vec::new()
        };
        async move { read_island(*island, node, client, &extra).await }
    }))
    .await?;
    Ok(per_island.into_iter().flatten().collect())
}

async fn read_island(
    island: IslandId,
    node: &NodeConfig,
    client: &Client,
    prefixes: &[String],
) -> Result<Vec<SchemaState>, MigrateError> {
    let Some(rows) = migration_runs::schema_states(client, node, prefixes).await? else {
        return Err(MigrateError::NoCatalog(island));
    };
    let mut by_schema: BTreeMap<String, SchemaState> = BTreeMap::new();
    for StateRow {
        schema,
        version,
        checksum,
    } in rows
    {
        let state = by_schema
            .entry(schema.clone())
            .or_insert_with(|| SchemaState {
                schema,
                island,
                applied: Vec::new(),
                checksums: BTreeMap::new(),
            });
        if let Some(v) = version {
            if let Some(c) = checksum {
                state.checksums.insert(v.clone(), c);
            }
            state.applied.push(v);
        }
    }
    Ok(by_schema.into_values().collect())
}
