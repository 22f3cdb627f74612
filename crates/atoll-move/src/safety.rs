//! Safety checks run before a move creates anything. Each failure names its problem
//! (`table_without_primary_key`, `unsupported_object`, `destination_has_schema`,
//! `replica_lag`, `replication_slots`, `wal_senders`, `replication_workers`) and refuses.

use crate::db::Db;
use crate::ddl::SchemaDdl;
use crate::error::MoveError;
use atoll_core::{IslandId, ShardNo, Snapshot};

/// Replication slots and WAL senders a move needs on the source: its own, plus the
/// temporary ones of the table-sync workers copying in parallel.
pub(crate) fn needed_slots(tables: usize, sync_workers: i64) -> i64 {
    1 + (tables as i64 + 1).min(sync_workers.max(1))
}

pub(crate) fn check_tables(shard: ShardNo, ddl: &SchemaDdl) -> Result<(), MoveError> {
    if let Some(u) = ddl.unsupported.first() {
        return Err(MoveError::Unsafe {
            shard,
            check: "unsupported_object",
            detail: format!("{u} cannot be moved by logical replication here"),
        });
    }
    let bad: Vec<String> = ddl
        .tables
        .iter()
        .filter(|t| match t.replident {
            'd' => t.pk.is_empty(),
            'n' => true,
            _ => false,
        })
        .map(|t| format!("{}.{}", shard.schema(), t.name))
        .collect();
    if !bad.is_empty() {
        return Err(MoveError::Unsafe {
            shard,
            check: "table_without_primary_key",
            detail: format!(
                "{} has no primary key or replica identity, so updates and deletes could not be replicated",
                bad.join(", ")
            ),
        });
    }
    Ok(())
}

pub(crate) async fn check_destination_schema(shard: ShardNo, dst: &Db) -> Result<(), MoveError> {
    let exists: bool = dst
        .one(
            "select exists (select 1 from pg_namespace where nspname = $1)",
            &[&shard.schema()],
        )
        .await?
        .get(0);
    if exists {
        return Err(MoveError::Unsafe {
            shard,
            check: "destination_has_schema",
            detail: format!(
                "island {} already has schema {}; refusing to overwrite it",
                dst.island,
                shard.schema()
            ),
        });
    }
    Ok(())
}

/// The destination island's replicas must be reachable and within `max_lag_bytes`, so
/// reads from them see the shard soon after it becomes active there.
pub(crate) fn check_replicas(
    shard: ShardNo,
    snapshot: &Snapshot,
    island: IslandId,
    max_lag_bytes: u64,
) -> Result<(), MoveError> {
    let Some(isl) = snapshot.island(island) else {
        return Ok(());
    };
    for (i, n) in isl.nodes.iter().enumerate() {
        if Some(i) == isl.master {
            continue;
        }
        let problem = match (&n.error, n.lag_bytes) {
            (Some(e), _) => Some(format!("replica {} of island {island} is unreachable: {e}", n.addr)),
            (None, Some(l)) if l > max_lag_bytes => Some(format!(
                "replica {} of island {island} lags {l} bytes behind its master (limit {max_lag_bytes})",
                n.addr
            )),
            (None, None) => Some(format!("replica {} of island {island} reports no lag", n.addr)),
            _ => None,
        };
        if let Some(detail) = problem {
            return Err(MoveError::Unsafe {
                shard,
                check: "replica_lag",
                detail,
            });
        }
    }
    Ok(())
}

/// Free replication slots and WAL senders on the source, free logical replication workers
/// on the destination.
pub(crate) async fn check_capacity(
    shard: ShardNo,
    src: &Db,
    dst: &Db,
    tables: usize,
) -> Result<(), MoveError> {
    let r = src
        .one(
            "select current_setting('max_replication_slots')::int8 - (select count(*) from pg_replication_slots),
                    current_setting('max_wal_senders')::int8 - (select count(*) from pg_stat_replication),
                    current_setting('wal_level')",
            &[],
        )
        .await?;
    let (slots, senders, wal_level): (i64, i64, String) = (r.get(0), r.get(1), r.get(2));
    let w = dst
        .one(
            "select current_setting('max_logical_replication_workers')::int8
                    - (select count(*) from pg_stat_subscription where pid is not null),
                    current_setting('max_sync_workers_per_subscription')::int8",
            &[],
        )
        .await?;
    let (workers, sync): (i64, i64) = (w.get(0), w.get(1));
    let need = needed_slots(tables, sync);
    let refuse = |check: &'static str, detail: String| {
        Err(MoveError::Unsafe {
            shard,
            check,
            detail,
        })
    };
    if wal_level != "logical" {
        return refuse(
            "wal_level",
            format!(
                "island {} has wal_level = {wal_level}, logical is needed",
                src.island
            ),
        );
    }
    if slots < need {
        return refuse(
            "replication_slots",
            format!(
                "island {} has {slots} free replication slots, the move needs {need}",
                src.island
            ),
        );
    }
    if senders < need {
        return refuse(
            "wal_senders",
            format!(
                "island {} has {senders} free WAL senders, the move needs {need}",
                src.island
            ),
        );
    }
    if workers < need {
        return refuse(
            "replication_workers",
            format!(
                "island {} has {workers} free logical replication workers, the move needs {need}",
                dst.island
            ),
        );
    }
    Ok(())
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
}
