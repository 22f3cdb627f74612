//! Replication objects that moves leave behind, on every island master and for every
//! shard at once (one query per master, see [`atoll_pg::catalog::move_status`]): those an
//! unfinished move owns (its resume or abort drops them) and strays that no recorded move
//! owns any more (a new move of their shard refuses until `--clean-leftovers` drops them).

use crate::db::{ident, Db};
use crate::error::MoveError;
use crate::masters::Masters;
use atoll_core::move_plan::{parse_move_name, MoveRecord};
use atoll_core::{IslandId, ShardNo};
use atoll_pg::catalog::move_status;
pub use atoll_pg::catalog::move_status::ReplicationKind;
use std::time::Duration;

/// A subscription, slot or publication named like a move's (`atoll_move_shNNNN_<id>`), or
/// a table-sync slot of a recorded move's subscription, on one island master.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReplicationLeftover {
    /// The island whose master holds it.
    pub island: IslandId,
    /// What it is.
    pub kind: ReplicationKind,
    /// Its name.
    pub name: String,
    /// The shard of the move that made it (from its name, or its move's record).
    pub shard: Option<ShardNo>,
    /// The id of the move that made it, when its name or record says.
    pub move_id: Option<i64>,
    /// Whether an unfinished move owns it (its resume or abort drops it); a stray otherwise.
    pub owned: bool,
}

/// The replication objects on `db`'s master, each marked owned when one of `unfinished`
/// made it.
pub(crate) async fn on_master(
    db: &Db,
    unfinished: &[MoveRecord],
) -> Result<Vec<ReplicationLeftover>, MoveError> {
    let found = move_status::replication_objects(&db.client, &db.node).await?;
    Ok(found
        .into_iter()
        .map(|o| classify(db.island, o, unfinished))
        .collect())
}

pub(crate) fn classify(
    island: IslandId,
    o: move_status::ReplicationObject,
    unfinished: &[MoveRecord],
) -> ReplicationLeftover {
    let (shard, move_id) = match o.sync_of {
        Some((id, shard)) => (Some(shard), Some(id)),
        None => match parse_move_name(&o.name) {
            Some((shard, id)) => (Some(shard), i64::try_from(id).ok()),
            None => (None, None),
        },
    };
    let owned = unfinished.iter().any(|m| match o.sync_of {
        Some((id, _)) => m.id == id,
        // The three objects of a move share one name.
        None => m.names().slot == o.name,
    });
    ReplicationLeftover {
        island,
        kind: o.kind,
        name: o.name,
        shard,
        move_id,
        owned,
    }
}

/// Stray replication objects (no move of `unfinished` owns them) of moves of `shard` on
/// every island master.
pub(crate) async fn strays_of(
    masters: &mut Masters<'_>,
    shard: ShardNo,
    unfinished: &[MoveRecord],
) -> Result<Vec<ReplicationLeftover>, MoveError> {
    let mut out = Vec::new();
    for island in masters.islands() {
        let db = masters.get(island).await?;
        out.extend(
            on_master(db, unfinished)
                .await?
                .into_iter()
                .filter(|o| !o.owned && o.shard == Some(shard)),
        );
    }
    Ok(out)
}

/// Drops leftovers found by [`strays_of`]: subscriptions first, as they hold the slots.
pub(crate) async fn drop_strays(
    masters: &mut Masters<'_>,
    found: &[ReplicationLeftover],
) -> Result<(), MoveError> {
    let mut ordered: Vec<_> = found.iter().collect();
    ordered.sort_by_key(|o| o.kind);
    for o in ordered {
        let db = masters.get(o.island).await?;
        let name = ident(&o.name);
        match o.kind {
            ReplicationKind::Subscription => {
                db.exec(&format!(
                    "alter subscription {name} disable; alter subscription {name} set (slot_name = none); drop subscription {name};"
                ))
                .await?
            }
            ReplicationKind::Slot => {
                crate::replication::drop_slot(db, &o.name, Duration::from_secs(30)).await?
            }
            ReplicationKind::Publication => {
                db.exec(&format!("drop publication if exists {name}"))
                    .await?
            }
        }
    }
    Ok(())
}
