//! Replication capacity for a move: the slots and WAL senders it needs on the source, the
//! workers and origins on the destination, other unfinished moves counted by their
//! reservations, checked under the capacity lock (`replication_slots`, `wal_senders`,
//! `replication_workers`, `replication_origins`, `wal_level`).

use crate::db::Db;
use crate::error::MoveError;
use atoll_core::move_plan::MoveStep;
use atoll_core::ShardNo;
use atoll_pg::catalog::moves::MoveRole;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Replication slots and WAL senders a move needs on the source: its own, plus the
/// temporary ones of the table-sync workers copying in parallel.
pub(crate) fn needed_slots(tables: usize, sync_workers: i64) -> i64 {
    1 + (tables as i64 + 1).min(sync_workers.max(1))
}

/// How long a move waits for another move's check-and-subscribe section on the same
/// island (it includes creating a logical slot, which waits for running transactions).
const CAPACITY_LOCK_WAIT: Duration = Duration::from_secs(300);

/// Takes the capacity lock ([`atoll_pg::locks::CAPACITY`], session level) on the source's
/// and the destination's masters, lower island id first so that two moves in opposite
/// directions cannot deadlock across servers. Held from [`check_capacity`] until the
/// subscription exists ([`unlock_capacity`], or the sessions' end), so moves started
/// together count each other's reservations instead of all passing the check.
pub(crate) async fn lock_capacity(shard: ShardNo, src: &Db, dst: &Db) -> Result<(), MoveError> {
    let (first, second) = if src.island <= dst.island {
        (src, dst)
    } else {
        (dst, src)
    };
    for db in [first, second] {
        db.exec(&format!(
            "set lock_timeout = '{}s'",
            CAPACITY_LOCK_WAIT.as_secs()
        ))
        .await?;
        let got = atoll_pg::locks::take(&db.client, &db.node, atoll_pg::locks::CAPACITY)
            .await
            .map_err(MoveError::from);
        db.exec("reset lock_timeout").await?;
        match got {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return Err(MoveError::Timeout {
                    shard,
                    what: format!(
                        "waiting for the capacity lock on island {} (other moves are creating their subscriptions)",
                        db.island
                    ),
                    secs: CAPACITY_LOCK_WAIT.as_secs(),
                })
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Releases the capacity lock. A failure is only logged: the subscription exists, and the
/// lock goes with the session when the move's connections close.
pub(crate) async fn unlock_capacity(src: &Db, dst: &Db) {
    for db in [src, dst] {
        if let Err(e) =
            atoll_pg::locks::release(&db.client, &db.node, atoll_pg::locks::CAPACITY).await
        {
            tracing::warn!(island = %db.island, error = %e, "releasing the capacity lock failed; it is released when the move's session ends");
        }
    }
}

/// What an unfinished move holds or will hold: while it copies (before `caught_up`) its
/// slot plus the table-sync slots (and as many WAL senders and workers), afterwards its
/// one slot until the replication objects are dropped.
pub(crate) fn reserved(step: MoveStep, tables: usize, sync_workers: i64) -> i64 {
    if step < MoveStep::CaughtUp {
        needed_slots(tables, sync_workers)
    } else if step < MoveStep::CleanedUp {
        1
    } else {
        0
    }
}

/// Free capacity: `max` minus what is in use, where the other moves' use is counted as
/// their reservation (their table-sync slots and workers appear only while they copy) and
/// what is actually in use is the lower bound.
pub(crate) fn free(max: i64, in_use: i64, not_moves: i64, reservations: i64) -> i64 {
    max - in_use.max(not_moves + reservations)
}

/// The reservations of the unfinished moves recorded on `db` in `role` (other than
/// `exclude`), with `sync_workers` table syncs per subscription: their total, and each
/// move named with its share (for the refusal's message).
async fn reservations(
    db: &Db,
    role: MoveRole,
    exclude: Option<i64>,
    sync_workers: i64,
) -> Result<(i64, Vec<String>), MoveError> {
    let moves =
        atoll_pg::catalog::moves::unfinished_steps(&db.client, &db.node, role, exclude).await?;
    // Their tables, counted in one pass (this runs under the capacity lock).
    let schemas: Vec<String> = moves.iter().map(|(shard, _)| shard.schema()).collect();
    let tables: std::collections::HashMap<String, i64> = db
        .query(
            "select n.nspname::text, count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = any($1) and c.relkind = 'r' and c.relpersistence = 'p' group by 1",
            &[&schemas],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut total = 0;
    let mut holders = Vec::new();
    for (shard, step) in moves {
        let n = tables.get(&shard.schema()).copied().unwrap_or(0);
        let share = reserved(step, n as usize, sync_workers);
        total += share;
        if share > 0 {
            holders.push(format!("{shard} ({step}, {share})"));
        }
    }
    Ok((total, holders))
}

/// Free replication slots and WAL senders on the source, free logical replication workers
/// and replication origins on the destination, counting other unfinished moves by their
/// reservations. Callers hold the capacity lock ([`lock_capacity`]). `exclude` is the move
/// itself when resuming, with its slot's name: a slot its earlier attempt left is dropped
/// before the subscription is created, so it does not count as used.
pub(crate) async fn check_capacity(
    shard: ShardNo,
    src: &Db,
    dst: &Db,
    tables: usize,
    exclude: Option<(i64, &str)>,
) -> Result<(), MoveError> {
    let s = source_capacity(src, exclude.map(|e| e.1)).await?;
    let d = destination_capacity(dst).await?;
    // The other moves from the source are assumed to have the same number of table-sync
    // workers as this destination allows (islands are configured alike).
    let id = exclude.map(|e| e.0);
    let (src_reserved, src_holders) = reservations(src, MoveRole::Source, id, d.sync).await?;
    let (dst_reserved, dst_holders) = reservations(dst, MoveRole::Destination, id, d.sync).await?;
    let need = needed_slots(tables, d.sync);
    let named = |holders: &[String]| {
        if holders.is_empty() {
            String::new()
        } else {
            format!("; moves holding reservations: {}", holders.join(", "))
        }
    };
    let (src_named, dst_named) = (named(&src_holders), named(&dst_holders));
    let free_of = |c: Capacity, reserved| free(c.max, c.used, c.other, reserved);
    let (slots, senders) = (
        free_of(s.slots, src_reserved),
        free_of(s.senders, src_reserved),
    );
    let (workers, origins) = (
        free_of(d.workers, dst_reserved),
        free_of(d.origins, dst_reserved),
    );
    tracing::debug!(%shard, src_reserved, slots, senders, workers, origins, dst_reserved, need, "replication capacity");
    let (si, di) = (src.island, dst.island);
    let shortage = if s.wal_level != "logical" {
        Some((
            "wal_level",
            format!(
                "island {si} has wal_level = {}, logical is needed",
                s.wal_level
            ),
        ))
    } else if slots < need {
        Some(("replication_slots", format!("island {si} has {slots} free replication slots (other moves' reservations counted), the move needs {need}{src_named}")))
    } else if senders < need {
        Some(("wal_senders", format!("island {si} has {senders} free WAL senders (other moves' reservations counted), the move needs {need}{src_named}")))
    } else if workers < need {
        Some(("replication_workers", format!("island {di} has {workers} free logical replication workers (other moves' reservations counted), the move needs {need}{dst_named}")))
    } else if origins < need {
        Some(("replication_origins", format!("island {di} has {origins} free replication origins (max_replication_slots there caps them; other moves' reservations counted), the move needs {need}{dst_named}")))
    } else {
        None
    };
    match shortage {
        None => Ok(()),
        Some((check, detail)) => Err(MoveError::Unsafe {
            shard,
            check,
            detail,
        }),
    }
}

/// One replication resource on a server: its maximum, how many are in use, and how many
/// of those are not atoll moves'.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    max: i64,
    used: i64,
    other: i64,
}

/// What the source offers: replication slots, WAL senders, and its `wal_level`.
struct SourceCapacity {
    slots: Capacity,
    senders: Capacity,
    wal_level: String,
}

/// Moves' slots are `atoll_move_*` and the table-sync slots `pg_<oid>_sync_<relid>_<sysid>`;
/// their WAL senders carry application_name atoll_move (see db::conninfo). A slot named
/// `own_slot` (this move's own, left by an earlier attempt) is not counted as used.
async fn source_capacity(src: &Db, own_slot: Option<&str>) -> Result<SourceCapacity, MoveError> {
    let r = src
        .one(
            r"select current_setting('max_replication_slots')::int8,
                    (select count(*) from pg_replication_slots),
                    (select count(*) from pg_replication_slots
                      where slot_name not like 'atoll\_move\_%'
                        and slot_name !~ '^pg_[0-9]+_sync_[0-9]+_[0-9]+$'),
                    current_setting('max_wal_senders')::int8,
                    (select count(*) from pg_stat_replication),
                    (select count(*) from pg_stat_replication
                      where application_name is distinct from 'atoll_move'),
                    current_setting('wal_level'),
                    (select count(*) from pg_replication_slots where slot_name = $1)",
            &[&own_slot],
        )
        .await?;
    let own_left: i64 = r.get(7);
    Ok(SourceCapacity {
        slots: Capacity {
            max: r.get(0),
            used: r.get::<_, i64>(1) - own_left,
            other: r.get(2),
        },
        senders: Capacity {
            max: r.get(3),
            used: r.get(4),
            other: r.get(5),
        },
        wal_level: r.get(6),
    })
}

/// What the destination offers: logical replication workers and replication origins,
/// and how many table syncs a subscription runs at once.
struct DestinationCapacity {
    workers: Capacity,
    /// A subscription uses one replication origin, and each table sync one while it runs;
    /// before PostgreSQL 18 the subscriber's max_replication_slots caps them.
    origins: Capacity,
    sync: i64,
}

async fn destination_capacity(dst: &Db) -> Result<DestinationCapacity, MoveError> {
    let w = dst
        .one(
            r"select current_setting('max_logical_replication_workers')::int8,
                    (select count(*) from pg_stat_subscription where pid is not null),
                    (select count(*) from pg_stat_subscription
                      where pid is not null and subname not like 'atoll\_move\_%'),
                    current_setting('max_sync_workers_per_subscription')::int8,
                    coalesce(current_setting('max_active_replication_origins', true),
                             current_setting('max_replication_slots'))::int8,
                    (select count(*) from pg_replication_origin),
                    (select count(*) from pg_replication_origin o
                      where not exists (select 1 from pg_subscription s
                                         where s.subname like 'atoll\_move\_%'
                                           and (o.roname = 'pg_' || s.oid
                                                or o.roname like 'pg\_' || s.oid || '\_%')))",
            &[],
        )
        .await?;
    Ok(DestinationCapacity {
        workers: Capacity {
            max: w.get(0),
            used: w.get(1),
            other: w.get(2),
        },
        sync: w.get(3),
        origins: Capacity {
            max: w.get(4),
            used: w.get(5),
            other: w.get(6),
        },
    })
}

/// A resumed move about to create its subscription checks capacity as a new one does
/// (under the capacity lock, not counting its own reservation); a subscription that
/// already exists needs no check.
pub(crate) async fn reserve_capacity(
    cx: &mut crate::context::MoveContext<'_>,
) -> Result<(), MoveError> {
    if cx.capacity_locked
        || crate::replication::sub_oid(&cx.dst, &cx.rec.names().subscription)
            .await?
            .is_some()
    {
        return Ok(());
    }
    // Read before the lock: other moves wait while it is held.
    let tables = cx.ddl().await?.tables.len();
    lock_capacity(cx.rec.shard, &cx.src, &cx.dst).await?;
    cx.capacity_locked = true;
    let slot = cx.rec.names().slot;
    check_capacity(
        cx.rec.shard,
        &cx.src,
        &cx.dst,
        tables,
        Some((cx.rec.id, slot.as_str())),
    )
    .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn slots_needed_grow_with_parallel_table_syncs() {
        assert_eq!(super::needed_slots(0, 4), 2);
        assert_eq!(super::needed_slots(2, 4), 4);
        assert_eq!(super::needed_slots(10, 4), 5);
        assert_eq!(super::needed_slots(10, 0), 2);
    }

    #[test]
    fn other_moves_count_by_their_reservation() {
        use atoll_core::move_plan::MoveStep::*;
        assert_eq!(super::reserved(Prepared, 3, 4), 5);
        assert_eq!(super::reserved(Subscribed, 3, 2), 3);
        assert_eq!(super::reserved(CaughtUp, 3, 4), 1);
        assert_eq!(super::reserved(Activated, 3, 4), 1);
        assert_eq!(super::reserved(CleanedUp, 3, 4), 0);
        // A copying move whose sync slots do not exist yet still takes its share...
        assert_eq!(super::free(10, 3, 2, 5), 3);
        // ...and slots in use beyond the reservations (strays) are counted too.
        assert_eq!(super::free(10, 9, 2, 5), 1);
    }
}
