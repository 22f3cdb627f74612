//! `atoll cleanup`: dropping the backup schemas (`shNNNN_moved_<unix secs>`) that finished
//! moves leave on their source islands, once they are old enough. A backup that an
//! unfinished move still needs (to be rolled back) is never dropped.

use crate::db::{ident, Db};
use crate::error::MoveError;
use atoll_core::move_plan::{backups_to_drop, parse_backup_schema};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};

/// A backup schema that [`cleanup`] dropped (or would drop, with `dry_run`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DroppedBackup {
    /// The island whose master holds the backup: the source of the finished move.
    pub island: IslandId,
    /// The backup schema's name, `shNNNN_moved_<unix secs>`.
    pub schema: String,
    /// The shard the backup is an old copy of.
    pub shard: ShardNo,
    /// When the shard was switched off there, in seconds since the Unix epoch (from the
    /// name).
    pub moved_at_unix: u64,
    /// False with `dry_run`.
    pub dropped: bool,
}

/// Drops, on every island master of `snapshot`, the backup schemas older than
/// `older_than_secs` seconds that no unfinished move still needs; with `dry_run` only lists
/// them. Returns them in island order.
pub async fn cleanup(
    config: &Config,
    snapshot: &Snapshot,
    older_than_secs: u64,
    dry_run: bool,
) -> Result<Vec<DroppedBackup>, MoveError> {
    let pending = crate::store::unfinished(config, snapshot).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = Vec::new();
    for island in &snapshot.islands {
        let db = Db::connect(config, snapshot, island.id).await?;
        let names = backup_names(&db).await?;
        for name in backups_to_drop(&names, now, older_than_secs) {
            if pending
                .iter()
                .any(|m| m.source == island.id && m.backup_schema.as_deref() == Some(name))
            {
                continue;
            }
            let Some((shard, ts)) = parse_backup_schema(name) else {
                continue;
            };
            if !dry_run && !drop_unless_needed(config, snapshot, &db, shard, name).await? {
                continue;
            }
            out.push(DroppedBackup {
                island: island.id,
                schema: name.to_string(),
                shard,
                moved_at_unix: ts,
                dropped: !dry_run,
            });
        }
    }
    Ok(out)
}

/// The backup schemas (`shNNNN_moved_<unix secs>`) on `db`'s master, by name.
pub(crate) async fn backup_names(db: &Db) -> Result<Vec<String>, MoveError> {
    Ok(db
        .query(
            "select nspname::text from pg_namespace where nspname ~ '^sh[0-9]{4}_moved_[0-9]+$' order by 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Drops backup `name` of `shard` under the shard's move lock on this (its source) island,
/// after looking again, under the lock, for an unfinished move that still needs it: a move
/// switched between the first look and now must keep its backup (an abort renames it back).
/// False when it was kept: needed, or a move of the shard is running right now.
async fn drop_unless_needed(
    config: &Config,
    snapshot: &Snapshot,
    db: &Db,
    shard: ShardNo,
    name: &str,
) -> Result<bool, MoveError> {
    let _lock = match crate::move_lock::hold_move_lock(config, snapshot, db.island, shard).await {
        Ok(lock) => lock,
        Err(MoveError::Busy { .. }) => {
            tracing::warn!(%shard, backup = name, "a move of the shard is running; its backup is kept");
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let needed = atoll_pg::catalog::moves::unfinished(&db.client, &db.node)
        .await?
        .iter()
        .any(|m| m.record.backup_schema.as_deref() == Some(name));
    if needed {
        return Ok(false);
    }
    db.exec(&format!("drop schema {} cascade", ident(name)))
        .await?;
    Ok(true)
}
