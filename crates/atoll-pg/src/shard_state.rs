//! Activating and deactivating a microshard on the island that holds it.

use crate::catalog::registry;
use crate::connect::connect_with_timeout;
use crate::error::PgError;
use crate::master::master_node;
use atoll_core::{Config, IslandId, ShardNo, Snapshot};

/// Sets `shard` active or inactive on `island` (or on the one island that holds it).
/// Activation is refused while the shard is active on another island, and when copies on
/// several islands make the target ambiguous.
pub async fn set_active(
    config: &Config,
    snapshot: &Snapshot,
    shard: ShardNo,
    island: Option<IslandId>,
    active: bool,
) -> Result<IslandId, PgError> {
    let copies = snapshot
        .shards
        .get(&shard)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let refuse = |msg: String| PgError::Shard { shard, msg };
    let target = match (island, copies) {
        (Some(i), _) if copies.iter().any(|c| c.island == i) => i,
        (Some(i), _) => return Err(refuse(format!("does not exist on island {i}"))),
        (None, [one]) => one.island,
        (None, []) => return Err(refuse("does not exist on any island".into())),
        (None, many) => {
            let list: Vec<String> = many.iter().map(|c| c.island.to_string()).collect();
            return Err(refuse(format!(
                "exists on islands {}; say which with --island",
                list.join(", ")
            )));
        }
    };
    if active {
        if let Some(other) = copies.iter().find(|c| c.active && c.island != target) {
            return Err(refuse(format!(
                "is active on island {}; deactivate it there first",
                other.island
            )));
        }
    }
    let node = master_node(config, snapshot, target)?;
    let client = connect_with_timeout(&node, config.connect_timeout).await?;
    // The schema check and the flip happen together, so a schema dropped meanwhile is caught.
    // Above every generation discovered for the shard, so clients that heard of a change
    // on another island order this one after it (see `registry`).
    let after = snapshot.shard_gen(shard);
    let schema = shard.schema();
    let n =
        registry::set_active_if_schema_after(&client, &node, shard, &schema, active, after).await?;
    if n == 0 {
        return Err(refuse(format!("schema is missing on island {target}")));
    }
    Ok(target)
}
