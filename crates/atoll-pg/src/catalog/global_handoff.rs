//! `atoll.global_handoff` (catalog step 13): on shard 0's destination master during a
//! move of shard 0 that has read-only copies, the slots made there for the copies and the
//! WAL position they read from once the move switched (see atoll-move's
//! `global_copy/handoff.rs` and docs/global.md).
//!
//! Writers: `atoll-move`'s global copies only, through these functions.

use crate::error::PgError;
use atoll_core::{IslandId, NodeConfig};
use tokio_postgres::GenericClient;

/// A move of shard 0 handing its copies over to its new master (catalog step 13, on the
/// destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handoff {
    /// The move.
    pub move_id: i64,
    /// The island shard 0 moved from.
    pub source_island: IslandId,
    /// The slots made here, one per copy (named as the copy's subscription).
    pub slots: Vec<String>,
    /// Where the copies start reading here; `None` until the move switched.
    pub switch_lsn: Option<String>,
}

/// Records the slots made for a move's handoff (idempotent).
pub async fn insert(
    client: &impl GenericClient,
    node: &NodeConfig,
    h: &Handoff,
) -> Result<(), PgError> {
    client
        .execute(
            "insert into atoll.global_handoff (move_id, source_island, slots) values ($1, $2, $3)
             on conflict (move_id) do update set slots = excluded.slots",
            &[&h.move_id, &i32::from(h.source_island.0), &h.slots],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Records the switch position of a move's handoff, once: between the switch and the
/// activation (a resumed activation keeps the first).
pub async fn switched(
    client: &impl GenericClient,
    node: &NodeConfig,
    move_id: i64,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.global_handoff set switch_lsn = pg_current_wal_lsn()
             where move_id = $1 and switch_lsn is null",
            &[&move_id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// The newest handoff recorded here, if any (none before step 13).
pub async fn get(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Option<Handoff>, PgError> {
    let q = |e| PgError::query(node, e);
    if !super::has_table(client, node, "atoll.global_handoff").await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "select move_id, source_island, slots, switch_lsn::text from atoll.global_handoff
             order by created_at desc limit 1",
            &[],
        )
        .await
        .map_err(q)?;
    let Some(r) = row else { return Ok(None) };
    let island: i32 = r.get(1);
    Ok(Some(Handoff {
        move_id: r.get(0),
        source_island: u16::try_from(island).map(IslandId).map_err(|_| {
            PgError::Refused(format!(
                "node {node}: atoll.global_handoff: source island {island}"
            ))
        })?,
        slots: r.get(2),
        switch_lsn: r.get(3),
    }))
}

/// Forgets a finished handoff.
pub async fn delete(
    client: &impl GenericClient,
    node: &NodeConfig,
    move_id: i64,
) -> Result<(), PgError> {
    client
        .execute(
            "delete from atoll.global_handoff where move_id = $1",
            &[&move_id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}
