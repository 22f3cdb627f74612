//! What moves left behind, for `atoll status`: unfinished moves (with their step, since
//! when, and the command that ends each), replication objects named like a move's (owned
//! by an unfinished move, or stray), and backup schemas awaiting `atoll cleanup`.
//!
//! Cheap at any shard count: every island master is read in parallel, a fixed handful of
//! queries each (`catalog::moves::unfinished`, `catalog::move_status`, the backup names),
//! never one per shard.

use crate::cleanup::backup_names;
use crate::db::Db;
use crate::error::MoveError;
use crate::leftovers::{self, ReplicationLeftover};
use atoll_core::move_plan::{finish_by, parse_backup_schema, FinishBy, MoveRecord};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_pg::catalog::move_status::{self, MoveTimes, ReplicationObject};
use atoll_pg::catalog::moves::{self, MoveRole, MoveRow};

/// Everything [`move_debris`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MoveDebris {
    /// Moves recorded and not finished, by id.
    pub unfinished: Vec<UnfinishedMove>,
    /// Replication objects of moves on any master (owned by an unfinished move, or stray).
    pub replication: Vec<ReplicationLeftover>,
    /// Backup schemas of moved-away shards on their old islands.
    pub backups: Vec<MoveBackup>,
    /// Islands whose master has a node to ask but could not be read: what they hold is
    /// unknown, not absent.
    pub unread: Vec<UnreadIsland>,
}

/// An unfinished move and how long it has been where it is.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnfinishedMove {
    /// The move as recorded (the source's row, else the destination's reference row).
    #[serde(flatten)]
    pub record: MoveRecord,
    /// When the move was recorded, in seconds since the Unix epoch.
    pub started_at_unix: Option<i64>,
    /// Since when the move has been at its step (its row's last change), in seconds since
    /// the Unix epoch.
    pub since_unix: Option<i64>,
    /// The same moment as UTC text.
    pub since: Option<String>,
    /// When an abort of it started (then only `--abort` ends it).
    pub abort_started_at_unix: Option<i64>,
    /// Which command ends it.
    pub finish_by: FinishBy,
}

/// A backup schema `shNNNN_moved_<unix secs>` a finished move left on its source island.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MoveBackup {
    /// The island whose master holds it.
    pub island: IslandId,
    /// Its name.
    pub schema: String,
    /// The shard it is an old copy of.
    pub shard: ShardNo,
    /// When the shard was switched off there, in seconds since the Unix epoch.
    pub moved_at_unix: u64,
    /// The unfinished move that still needs it (to be rolled back); cleanup keeps it.
    pub needed_by: Option<i64>,
}

/// An island master that could not be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnreadIsland {
    /// The island.
    pub island: IslandId,
    /// Why.
    pub error: String,
}

/// What one master holds.
struct IslandRead {
    island: IslandId,
    rows: Vec<MoveRow>,
    times: Vec<MoveTimes>,
    objects: Vec<ReplicationObject>,
    backups: Vec<String>,
}

/// Reads every island master of `snapshot` that has a master (the others are reported by
/// discovery already) and puts together what moves left there. Never fails: a master that
/// cannot be read is listed in [`MoveDebris::unread`].
pub async fn move_debris(config: &Config, snapshot: &Snapshot) -> MoveDebris {
    let islands: Vec<IslandId> = snapshot
        .islands
        .iter()
        .filter(|i| i.master().is_some())
        .map(|i| i.id)
        .collect();
    let reads =
        futures::future::join_all(islands.iter().map(|&i| read_island(config, snapshot, i))).await;
    let mut out = MoveDebris::default();
    let mut read = Vec::with_capacity(reads.len());
    for (island, r) in islands.into_iter().zip(reads) {
        match r {
            Ok(r) => read.push(r),
            Err(e) => out.unread.push(UnreadIsland {
                island,
                error: e.to_string(),
            }),
        }
    }
    out.unfinished = merge_unfinished(&read);
    let records: Vec<MoveRecord> = out.unfinished.iter().map(|u| u.record.clone()).collect();
    for r in read {
        out.replication.extend(
            r.objects
                .into_iter()
                .map(|o| leftovers::classify(r.island, o, &records)),
        );
        for schema in r.backups {
            let Some((shard, moved_at_unix)) = parse_backup_schema(&schema) else {
                continue;
            };
            let needed_by = records
                .iter()
                .find(|m| m.source == r.island && m.backup_schema.as_deref() == Some(&schema))
                .map(|m| m.id);
            out.backups.push(MoveBackup {
                island: r.island,
                schema,
                shard,
                moved_at_unix,
                needed_by,
            });
        }
    }
    out
}

async fn read_island(
    config: &Config,
    snapshot: &Snapshot,
    island: IslandId,
) -> Result<IslandRead, MoveError> {
    let db = Db::connect(config, snapshot, island).await?;
    Ok(IslandRead {
        island,
        rows: moves::unfinished(&db.client, &db.node).await?,
        times: move_status::unfinished_times(&db.client, &db.node).await?,
        objects: move_status::replication_objects(&db.client, &db.node).await?,
        backups: backup_names(&db).await?,
    })
}

/// One entry per move id: the source's row where it was read (the truth for the step),
/// else the destination's; its times from the same row; an abort start from either.
fn merge_unfinished(read: &[IslandRead]) -> Vec<UnfinishedMove> {
    let mut chosen: Vec<(&MoveRow, &IslandRead)> = Vec::new();
    for r in read {
        for row in &r.rows {
            match chosen
                .iter()
                .position(|(c, _)| c.record.id == row.record.id)
            {
                Some(i) if row.role == MoveRole::Source => chosen[i] = (row, r),
                Some(_) => {}
                None => chosen.push((row, r)),
            }
        }
    }
    chosen.sort_by_key(|(row, _)| row.record.id);
    chosen
        .into_iter()
        .map(|(row, from)| {
            let id = row.record.id;
            let times = from.times.iter().find(|t| t.id == id && t.role == row.role);
            let abort_started_at_unix = read
                .iter()
                .flat_map(|r| &r.times)
                .filter(|t| t.id == id)
                .filter_map(|t| t.abort_started_at_unix)
                .min();
            UnfinishedMove {
                record: row.record.clone(),
                started_at_unix: times.map(|t| t.started_at_unix),
                since_unix: times.map(|t| t.changed_at_unix),
                since: times.map(|t| t.changed_at.clone()),
                abort_started_at_unix,
                finish_by: finish_by(row.record.step, abort_started_at_unix.is_some()),
            }
        })
        .collect()
}
