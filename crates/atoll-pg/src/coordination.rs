//! Keeping migrations and moves apart. A move replicates a shard's tables with logical
//! replication, which does not carry DDL: a migration that changed the source (or the
//! copy) mid-move would break the subscription or leave the two copies with different
//! schemas. So a migration run refuses to start while any move is unfinished, and a move
//! refuses to start while a migration run holds the cluster lock.
//!
//! Each side first makes itself visible (the run takes its lock; the move persists its
//! record) and then looks for the other, so whichever comes second sees the first.

use crate::error::PgError;
use atoll_core::{Config, IslandId, NodeConfig};
use tokio_postgres::Client;

/// The island whose master keeps what is cluster-wide: the migration lock and run records,
/// the non-shard schemas a migration finalises, the ID node-id leases. The lowest
/// configured island id (island 0 unless there is none); `None` without islands.
pub fn coordination_island(config: &Config) -> Option<IslandId> {
    config.islands.iter().map(|i| i.id).min()
}

/// The session advisory lock a migration run holds on the first island's master for its
/// whole duration (released by the server if the process dies).
pub const MIGRATION_LOCK_KEY: i64 = 0x61_746f_6c6c_6d69; // "atollmi"

/// An unfinished move as one island master records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnfinishedMove {
    pub shard: i32,
    pub step: String,
    /// True on the source island's row, which carries the authoritative step; the
    /// destination keeps a reference row so the move is found from either side.
    pub is_source: bool,
}

/// Unfinished moves recorded on this island master; empty when the move catalog step is
/// not installed.
pub async fn unfinished_moves(
    client: &Client,
    node: &NodeConfig,
) -> Result<Vec<UnfinishedMove>, PgError> {
    let q = |e| PgError::query(node, e);
    let installed: bool = client
        .query_one("select to_regclass('atoll.moves') is not null", &[])
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)?;
    if !installed {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "select shard, step, role = 'source' from atoll.moves where step <> 'cleaned_up' order by 1",
            &[],
        )
        .await
        .map_err(q)?;
    rows.iter()
        .map(|r| {
            Ok(UnfinishedMove {
                shard: r.try_get(0).map_err(q)?,
                step: r.try_get(1).map_err(q)?,
                is_source: r.try_get(2).map_err(q)?,
            })
        })
        .collect()
}

/// Whether a migration run holds the cluster lock, asked of the first island's master by
/// looking the lock up in `pg_locks`. Looking rather than trying it matters: a probe that
/// took the lock for a moment would make a concurrent probe (another move of a parallel
/// rebalance) or a starting run believe a migration was running.
pub async fn migration_running(client: &Client, node: &NodeConfig) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    // A bigint advisory key is kept as classid = high half, objid = low half, objsubid = 1.
    client
        .query_one(
            "select exists (select 1 from pg_locks
                 where locktype = 'advisory' and granted and objsubid = 1
                   and database = (select oid from pg_database where datname = current_database())
                   and classid = ($1::int8 >> 32)::oid
                   and objid = ($1::int8 & 4294967295)::oid)",
            &[&MIGRATION_LOCK_KEY],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)
}
