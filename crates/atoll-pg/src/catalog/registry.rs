//! `atoll.shards` (catalog step 1): each island master's registry of the shards it holds,
//! with their active flag and rebalancing weight. The registry lives outside the shard
//! schemas on purpose: a schema copied to another island arrives without a row there, so
//! it stays inactive until activated.
//!
//! Writers: allocation and `atoll shard activate|deactivate` (this crate), a move's switch,
//! activation and abort (`atoll-move`). Reader: discovery (this crate), rebalance weights.

use crate::error::PgError;
use atoll_core::{NodeConfig, ShardNo};
use tokio_postgres::GenericClient;

fn key(shard: ShardNo) -> i32 {
    i32::from(shard.get())
}

/// Records `shard` as active or inactive.
pub async fn set_active(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
    active: bool,
) -> Result<(), PgError> {
    client
        .execute(
            "insert into atoll.shards (shard, active) values ($1, $2)
             on conflict (shard) do update set active = excluded.active, changed_at = now()",
            &[&key(shard), &active],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Records `shard` as active or inactive if `schema` exists (the check and the flip happen
/// in one statement, so a schema dropped meanwhile is caught). Returns the rows written: 0
/// when the schema is missing. `schema` is normally `shard.schema()`; a move's abort checks
/// the name the shard gets back.
pub async fn set_active_if_schema(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
    schema: &str,
    active: bool,
) -> Result<u64, PgError> {
    client
        .execute(
            "insert into atoll.shards (shard, active)
             select $1, $2 where exists (select 1 from pg_namespace where nspname = $3)
             on conflict (shard) do update set active = excluded.active, changed_at = now()",
            &[&key(shard), &active, &schema],
        )
        .await
        .map_err(|e| PgError::query(node, e))
}

/// Whether this master has `shard` active.
pub async fn is_active(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    client
        .query_one(
            "select exists (select 1 from atoll.shards where shard = $1 and active)",
            &[&key(shard)],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)
}

/// The shard's rebalancing weight here (`None`: none set, or no row).
pub async fn weight(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
) -> Result<Option<f64>, PgError> {
    Ok(client
        .query_opt(
            "select weight from atoll.shards where shard = $1",
            &[&key(shard)],
        )
        .await
        .map_err(|e| PgError::query(node, e))?
        .and_then(|r| r.get(0)))
}

/// Activates a shard that arrived by a move, with the weight it had on its source.
pub async fn activate_arrived(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
    weight: Option<f64>,
) -> Result<(), PgError> {
    client
        .execute(
            "insert into atoll.shards (shard, active, weight) values ($1, true, $2)
             on conflict (shard) do update set active = true, weight = excluded.weight, changed_at = now()",
            &[&key(shard), &weight],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Deletes the shard's row unless it is active (after its schema was dropped here).
pub async fn forget_inactive(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
) -> Result<(), PgError> {
    client
        .execute(
            "delete from atoll.shards where shard = $1 and not active",
            &[&key(shard)],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// SQL that deactivates `shard`, for the batch of the move's switch (sent inside the write
/// pause together with the schema rename, to spend one round trip).
pub fn deactivate_sql(shard: ShardNo) -> String {
    format!(
        "update atoll.shards set active = false, changed_at = now() where shard = {};",
        shard.get()
    )
}

/// The query of the active shards' weights, `(shard int4, weight float8)` rows; a user's
/// `--weight-sql` answers in the same shape.
pub const WEIGHTS_QUERY: &str =
    "select shard, weight from atoll.shards where weight is not null and active";
