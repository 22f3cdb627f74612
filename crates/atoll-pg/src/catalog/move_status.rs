//! What moves leave behind on one master, read in a few queries whatever the number of
//! shards (`atoll status`, and a new move's check for stray objects): when each unfinished
//! move row reached its step (catalog steps 3 and 5, `atoll.moves`), and the replication
//! objects named like a move's (`atoll_move_shNNNN_<id>`) or traced to a recorded move
//! (table-sync slots, named after the move's subscription).
//!
//! Readers only; `moves` writes the rows.

use super::moves::MoveRole;
use crate::error::PgError;
use atoll_core::{NodeConfig, ShardNo};
use tokio_postgres::GenericClient;

/// When an unfinished move's row (on this master, in `role`) started and reached its step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveTimes {
    /// The move's id.
    pub id: i64,
    /// Which side of the move the row is on.
    pub role: MoveRole,
    /// When the move was recorded, in seconds since the Unix epoch.
    pub started_at_unix: i64,
    /// When the row last changed (its step reached, or its abort marked), in seconds since
    /// the Unix epoch.
    pub changed_at_unix: i64,
    /// The same moment as UTC text, `2025-01-31 12:00:00 UTC`.
    pub changed_at: String,
    /// When an abort of the move started, in seconds since the Unix epoch.
    pub abort_started_at_unix: Option<i64>,
}

/// [`MoveTimes`] of every unfinished move row on this master; empty before the move catalog
/// step is installed.
pub async fn unfinished_times(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Vec<MoveTimes>, PgError> {
    let q = |e| PgError::query(node, e);
    if !super::has_table(client, node, "atoll.moves").await? {
        return Ok(Vec::new());
    }
    // abort_started_at arrived with step 5: read as null where the column is missing.
    let has_abort: bool = client
        .query_one(
            "select exists (select 1 from pg_attribute
                             where attrelid = 'atoll.moves'::regclass
                               and attname = 'abort_started_at' and not attisdropped)",
            &[],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)?;
    let abort = if has_abort {
        "extract(epoch from abort_started_at)::int8"
    } else {
        "null::int8"
    };
    let rows = client
        .query(
            &format!(
                "select id, role, extract(epoch from started_at)::int8,
                        extract(epoch from changed_at)::int8,
                        to_char(changed_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC',
                        {abort}
                   from atoll.moves where step <> 'cleaned_up' order by id, role"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    rows.iter()
        .map(|r| {
            let role: String = r.try_get(1).map_err(q)?;
            Ok(MoveTimes {
                id: r.try_get(0).map_err(q)?,
                role: if role == MoveRole::Source.as_str() {
                    MoveRole::Source
                } else {
                    MoveRole::Destination
                },
                started_at_unix: r.try_get(2).map_err(q)?,
                changed_at_unix: r.try_get(3).map_err(q)?,
                changed_at: r.try_get(4).map_err(q)?,
                abort_started_at_unix: r.try_get(5).map_err(q)?,
            })
        })
        .collect()
}

/// The kind of a replication object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationKind {
    /// A subscription (on a move's destination).
    Subscription,
    /// A replication slot (on a move's source): the move's own, or a table-sync slot.
    Slot,
    /// A publication (on a move's source).
    Publication,
}

impl ReplicationKind {
    /// `subscription`, `slot` or `publication`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationKind::Subscription => "subscription",
            ReplicationKind::Slot => "slot",
            ReplicationKind::Publication => "publication",
        }
    }
}

/// A replication object of a move found on this master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationObject {
    /// What it is.
    pub kind: ReplicationKind,
    /// Its name.
    pub name: String,
    /// For a table-sync slot: the move (id, shard) whose subscription made it, from that
    /// move's source row here.
    pub sync_of: Option<(i64, ShardNo)>,
}

/// Every subscription, slot and publication on this master named like a move's, and the
/// table-sync slots of subscriptions that moves recorded here (one query).
pub async fn replication_objects(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Vec<ReplicationObject>, PgError> {
    let q = |e| PgError::query(node, e);
    let sync = if super::has_table(client, node, "atoll.moves").await? {
        " union all
          select 'slot', s.slot_name::text, m.id, m.shard from pg_replication_slots s
            join atoll.moves m on m.role = 'source' and m.subscription_oid is not null
             and s.slot_name like 'pg\\_' || m.subscription_oid || '\\_sync\\_%\\_' || m.destination_sysid"
    } else {
        ""
    };
    let rows = client
        .query(
            &format!(
                "select 'subscription', s.subname::text, null::int8, null::int4
                   from pg_subscription s join pg_database d on d.oid = s.subdbid
                  where d.datname = current_database() and s.subname like 'atoll\\_move\\_%'
                 union all
                 select 'slot', slot_name::text, null, null from pg_replication_slots
                  where slot_name like 'atoll\\_move\\_%'
                 union all
                 select 'publication', pubname::text, null, null from pg_publication
                  where pubname like 'atoll\\_move\\_%'{sync}
                 order by 1, 2"
            ),
            &[],
        )
        .await
        .map_err(q)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind: String = r.try_get(0).map_err(q)?;
        let kind = match kind.as_str() {
            "subscription" => ReplicationKind::Subscription,
            "slot" => ReplicationKind::Slot,
            _ => ReplicationKind::Publication,
        };
        let id: Option<i64> = r.try_get(2).map_err(q)?;
        let shard: Option<i32> = r.try_get(3).map_err(q)?;
        let sync_of = match (id, shard) {
            (Some(id), Some(s)) => Some((
                id,
                ShardNo::new(i64::from(s))
                    .map_err(|e| PgError::Refused(format!("node {node}: atoll.moves: {e}")))?,
            )),
            _ => None,
        };
        out.push(ReplicationObject {
            kind,
            name: r.try_get(1).map_err(q)?,
            sync_of,
        });
    }
    Ok(out)
}
