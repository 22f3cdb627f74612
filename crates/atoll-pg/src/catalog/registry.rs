//! `atoll.shards` (catalog step 1): each island master's registry of the shards it holds,
//! with their active flag and rebalancing weight. The registry lives outside the shard
//! schemas on purpose: a schema copied to another island arrives without a row there, so
//! it stays inactive until activated.
//!
//! Writers: allocation and `atoll shard activate|deactivate` (this crate), a move's switch,
//! activation and abort (`atoll-move`). Reader: discovery (this crate), rebalance weights.
//!
//! Every change gets a generation and is announced with `NOTIFY atoll_shards` by the
//! table's triggers (catalog step 6, `steps/006_shard_notices.sql`; the payload is
//! [`atoll_core::ShardNotice`]): writers here only pass a lower bound for the generation
//! where they know one (`after_gen`), the triggers do the rest.

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
    set_active_if_schema_after(client, node, shard, schema, active, 0).await
}

/// [`set_active_if_schema`] with a generation above `after_gen` (the newest the caller
/// knows for the shard on any island), so clients order this change after that one even
/// when this server's clock is behind the other island's.
pub async fn set_active_if_schema_after(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
    schema: &str,
    active: bool,
    after_gen: u64,
) -> Result<u64, PgError> {
    client
        .execute(
            "insert into atoll.shards (shard, active, gen)
             select $1, $2, $4 where exists (select 1 from pg_namespace where nspname = $3)
             on conflict (shard) do update set active = excluded.active, gen = excluded.gen,
                                               changed_at = now()",
            &[&key(shard), &active, &schema, &gen_param(after_gen)],
        )
        .await
        .map_err(|e| PgError::query(node, e))
}

/// A generation lower bound as the `bigint` the column holds: one above `after`, within range.
fn gen_param(after: u64) -> i64 {
    i64::try_from(after.saturating_add(1)).unwrap_or(i64::MAX)
}

/// The shard's registry generation here (`None`: no row).
pub async fn gen(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
) -> Result<Option<u64>, PgError> {
    let q = |e| PgError::query(node, e);
    match client
        .query_opt(
            "select gen from atoll.shards where shard = $1",
            &[&key(shard)],
        )
        .await
        .map_err(q)?
    {
        Some(r) => Ok(Some(r.try_get::<_, i64>(0).map_err(q)?.max(0) as u64)),
        None => Ok(None),
    }
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

/// Activates a shard that arrived by a move, with the weight it had on its source and a
/// generation above `after_gen` (the switch's on the source).
pub async fn activate_arrived(
    client: &impl GenericClient,
    node: &NodeConfig,
    shard: ShardNo,
    weight: Option<f64>,
    after_gen: u64,
) -> Result<(), PgError> {
    client
        .execute(
            "insert into atoll.shards (shard, active, weight, gen) values ($1, true, $2, $3)
             on conflict (shard) do update set active = true, weight = excluded.weight,
                                               gen = excluded.gen, changed_at = now()",
            &[&key(shard), &weight, &gen_param(after_gen)],
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
/// pause together with the schema rename, to spend one round trip). It returns the row's
/// new generation ([`switched_gen`] reads it from the batch's answer), which the
/// destination's activation must exceed.
pub fn deactivate_sql(shard: ShardNo) -> String {
    format!(
        "update atoll.shards set active = false, changed_at = now() where shard = {} returning gen;",
        shard.get()
    )
}

/// The generation [`deactivate_sql`] returned, from the answer of a simple-query batch
/// that starts with it; `None` when it updated no row.
pub fn switched_gen(answer: &[tokio_postgres::SimpleQueryMessage]) -> Option<u64> {
    answer.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
        _ => None,
    })
}

/// The query of the active shards' weights, `(shard int4, weight float8)` rows; a user's
/// `--weight-sql` answers in the same shape.
pub const WEIGHTS_QUERY: &str =
    "select shard, weight from atoll.shards where weight is not null and active";
