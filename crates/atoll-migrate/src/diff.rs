//! `schema diff`: the live schema of every microshard reduced to facts
//! ([`atoll_pg::schema_signature`]), one query per island master; grouping and
//! explanation are pure ([`atoll_core::migration::group_signatures`]).

use crate::error::MigrateError;
use crate::state::Masters;
use atoll_core::migration::{group_signatures, SignatureGroup};
use atoll_core::{Config, Snapshot};
use atoll_pg::catalog::global_copy;
use atoll_pg::schema_signature;
use futures::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

/// Reads every shard's facts and groups the shards by them. A schema present on two
/// islands (a copy left by a move) is keyed `shNNNN@island`.
pub async fn schema_diff(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<SignatureGroup>, MigrateError> {
    Ok(group_signatures(&read_facts(config, snapshot).await?))
}

/// Every shard's facts, by schema (`shNNNN@island` for a second copy). Shard 0's
/// read-only copies are no shards: `atoll_move::global_copy::drift` compares them.
pub(crate) async fn read_facts(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<BTreeMap<String, BTreeSet<String>>, MigrateError> {
    let masters = Masters::connect(config, snapshot).await?;
    let per_island = try_join_all(
        masters
            .nodes
            .iter()
            .map(|(island, node, client)| async move {
                let mut facts = schema_signature::all_shards(client, node).await?;
                for copy in global_copy::copy_schemas(client, node).await? {
                    facts.remove(&copy);
                }
                Ok::<_, MigrateError>((*island, facts))
            }),
    )
    .await?;
    let mut facts: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut owner: BTreeMap<String, atoll_core::IslandId> = BTreeMap::new();
    for (island, here) in per_island {
        for (schema, set) in here {
            let key = match owner.get(&schema) {
                Some(_) => format!("{schema}@{island}"),
                None => {
                    owner.insert(schema.clone(), island);
                    schema
                }
            };
            facts.insert(key, set);
        }
    }
    Ok(facts)
}
