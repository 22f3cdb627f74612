//! Activating and deactivating a microshard on the island that holds it.

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
    let q = |e| PgError::query(&node, e);
    // The schema check and the flip happen together, so a schema dropped meanwhile is caught.
    let n = upsert_active(&client, shard, &shard.schema(), active)
        .await
        .map_err(q)?;
    if n == 0 {
        return Err(refuse(format!("schema is missing on island {target}")));
    }
    Ok(target)
}

/// Records `shard` as active or inactive in the master's registry if `schema` exists (the
/// check and the flip happen in one statement, so a schema dropped meanwhile is caught).
/// Returns the rows written: 0 when the schema is missing. `schema` is normally
/// `shard.schema()`; a move's abort checks the name the shard gets back.
pub async fn upsert_active(
    client: &tokio_postgres::Client,
    shard: ShardNo,
    schema: &str,
    active: bool,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "insert into atoll.shards (shard, active)
             select $1, $2 where exists (select 1 from pg_namespace where nspname = $3)
             on conflict (shard) do update set active = excluded.active, changed_at = now()",
            &[&(shard.get() as i32), &active, &schema],
        )
        .await
}
