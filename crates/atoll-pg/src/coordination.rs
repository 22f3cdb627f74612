//! Keeping migrations and moves apart. A move replicates a shard's tables with logical
//! replication, which does not carry DDL: a migration that changed the source (or the
//! copy) mid-move would break the subscription or leave the two copies with different
//! schemas. So a migration run refuses to start while any move is unfinished, and a move
//! refuses to start while a migration run holds the cluster lock.
//!
//! Each side first makes itself visible (the run takes its lock; the move persists its
//! record) and then looks for the other, so whichever comes second sees the first.

use crate::error::PgError;
use atoll_core::NodeConfig;
use tokio_postgres::Client;

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
/// trying the lock (and releasing it at once if it was free).
pub async fn migration_running(client: &Client, node: &NodeConfig) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    let got: bool = client
        .query_one("select pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)?;
    if got {
        client
            .execute("select pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(q)?;
    }
    Ok(!got)
}
