//! `atoll.moves` and `atoll.move_ticks` (catalog step 3): the persisted state of microshard
//! moves. The source island's master holds the move's row ([`MoveRole::Source`], the truth
//! for its step), the destination's master a reference row with the same id carrying the
//! destination's own progress, so a move can be found from either side after a crash and
//! no destination work is redone or undone twice.
//!
//! `move_ticks` holds one counter per move that travels through the move's own
//! publication: seeing tick `k` applied on the destination proves that everything the
//! source committed before it was applied too.
//!
//! Writers: `atoll-move` only, through these functions. Readers: `atoll-move`,
//! `atoll-migrate` (a run refuses while a move is unfinished), status.

use crate::error::PgError;
use atoll_core::move_plan::{MoveRecord, MoveStep, VerifyMode};
use atoll_core::replica_identity::IdentityRestore;
use atoll_core::{IslandId, NodeConfig, ShardNo};
use tokio_postgres::{GenericClient, Row};

/// Which side of a move a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoveRole {
    /// On the source island's master: the move itself.
    Source,
    /// On the destination's master: a reference with the destination's own progress.
    Destination,
}

impl MoveRole {
    /// The `role` column's value: `source` or `destination`.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveRole::Source => "source",
            MoveRole::Destination => "destination",
        }
    }
}

/// One row of `atoll.moves`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRow {
    /// The move as the row records it.
    pub record: MoveRecord,
    /// Which side of the move the row is on.
    pub role: MoveRole,
}

const COLUMNS: &str =
    "id, shard, source_island, destination_island, step, verify, backup_schema, role";

fn bad(node: &NodeConfig, what: String) -> PgError {
    PgError::Refused(format!("node {node}: atoll.moves: {what}"))
}

fn row(r: &Row, node: &NodeConfig) -> Result<MoveRow, PgError> {
    let q = |e| PgError::query(node, e);
    let shard: i32 = r.try_get(1).map_err(q)?;
    let step: String = r.try_get(4).map_err(q)?;
    let verify: String = r.try_get(5).map_err(q)?;
    let role: String = r.try_get(7).map_err(q)?;
    let island = |i: i32| u16::try_from(i).map(IslandId);
    Ok(MoveRow {
        record: MoveRecord {
            id: r.try_get(0).map_err(q)?,
            shard: ShardNo::new(i64::from(shard)).map_err(|e| bad(node, e.to_string()))?,
            source: island(r.try_get(2).map_err(q)?)
                .map_err(|e| bad(node, format!("source island: {e}")))?,
            destination: island(r.try_get(3).map_err(q)?)
                .map_err(|e| bad(node, format!("destination island: {e}")))?,
            step: step
                .parse()
                .map_err(|e: atoll_core::move_plan::UnknownStep| bad(node, e.to_string()))?,
            verify: verify
                .parse::<VerifyMode>()
                .map_err(|e| bad(node, e.to_string()))?,
            backup_schema: r.try_get(6).map_err(q)?,
        },
        role: if role == "source" {
            MoveRole::Source
        } else {
            MoveRole::Destination
        },
    })
}

/// Whether the catalog steps a move needs are installed on this master, up to the newest
/// this build writes (step 5's `abort_started_at`, step 6's registry generations).
pub async fn installed(client: &impl GenericClient, node: &NodeConfig) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    client
        .query_one(
            "select exists (select 1 from pg_attribute
                             where attrelid = to_regclass('atoll.moves')
                               and attname = 'abort_started_at' and not attisdropped)
                and exists (select 1 from pg_attribute
                             where attrelid = to_regclass('atoll.moves')
                               and attname = 'identity_restore' and not attisdropped)
                and exists (select 1 from pg_attribute
                             where attrelid = to_regclass('atoll.shards')
                               and attname = 'gen' and not attisdropped)",
            &[],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)
}

/// Whether `atoll.moves` exists at all (any catalog version that has moves).
async fn has_moves_table(client: &impl GenericClient, node: &NodeConfig) -> Result<bool, PgError> {
    super::has_table(client, node, "atoll.moves").await
}

/// Every unfinished move recorded on this master (source rows before destination rows,
/// then by id); empty when the move catalog step is not installed.
pub async fn unfinished(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Vec<MoveRow>, PgError> {
    if !has_moves_table(client, node).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "select {COLUMNS} from atoll.moves where step <> 'cleaned_up' order by role desc, id"
            ),
            &[],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    rows.iter().map(|r| row(r, node)).collect()
}

/// How long a finished move took (catalog step 11); `None` for a part the run that
/// finished it did not do.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct MoveTimings {
    /// The whole run, ms.
    pub total_ms: Option<i64>,
    /// The initial copy, ms.
    pub copy_ms: Option<i64>,
    /// From the lock request to the destination's activation: the longest a writer
    /// waited, ms.
    pub pause_ms: Option<f64>,
    /// The brief write block that froze both copies for their comparison, ms.
    pub verify_block_ms: Option<f64>,
}

/// A move that finished, as its source row records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FinishedMove {
    /// The move's id.
    pub id: i64,
    /// The shard moved.
    pub shard: ShardNo,
    /// From.
    pub source: IslandId,
    /// To.
    pub destination: IslandId,
    /// When it started and finished, ms since the Unix epoch.
    pub started_at_unix_ms: i64,
    /// See `started_at_unix_ms`.
    pub finished_at_unix_ms: i64,
    /// Its timings.
    pub timings: MoveTimings,
}

/// Records `t` on the source row of move `id`; false before catalog step 11.
pub async fn record_timings(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    t: &MoveTimings,
) -> Result<bool, PgError> {
    let r = client
        .execute(
            "update atoll.moves set total_ms = $2, copy_ms = $3, pause_ms = $4, verify_block_ms = $5
             where id = $1 and role = 'source'",
            &[&id, &t.total_ms, &t.copy_ms, &t.pause_ms, &t.verify_block_ms],
        )
        .await;
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) => Ok(false),
        Err(e) => Err(PgError::query(node, e)),
    }
}

/// The `limit` moves that finished last with this master as their source, newest first;
/// empty before catalog step 11.
pub async fn finished(
    client: &impl GenericClient,
    node: &NodeConfig,
    limit: i64,
) -> Result<Vec<FinishedMove>, PgError> {
    if !has_moves_table(client, node).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "select id, shard, source_island, destination_island,
                    (extract(epoch from started_at) * 1000)::int8,
                    (extract(epoch from finished_at) * 1000)::int8,
                    total_ms, copy_ms, pause_ms, verify_block_ms
             from atoll.moves where role = 'source' and finished_at is not null
             order by finished_at desc limit $1",
            &[&limit],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) => {
            return Ok(Vec::new())
        }
        Err(e) => return Err(PgError::query(node, e)),
    };
    let q = |e| PgError::query(node, e);
    rows.iter()
        .map(|r| {
            let shard: i32 = r.try_get(1).map_err(q)?;
            let island = |i: usize| -> Result<IslandId, PgError> {
                let v: i32 = r.try_get(i).map_err(q)?;
                u16::try_from(v)
                    .map(IslandId)
                    .map_err(|_| bad(node, format!("island {v}")))
            };
            Ok(FinishedMove {
                id: r.try_get(0).map_err(q)?,
                shard: ShardNo::new(i64::from(shard)).map_err(|e| bad(node, e.to_string()))?,
                source: island(2)?,
                destination: island(3)?,
                started_at_unix_ms: r.try_get(4).map_err(q)?,
                finished_at_unix_ms: r.try_get(5).map_err(q)?,
                timings: MoveTimings {
                    total_ms: r.try_get(6).map_err(q)?,
                    copy_ms: r.try_get(7).map_err(q)?,
                    pause_ms: r.try_get(8).map_err(q)?,
                    verify_block_ms: r.try_get(9).map_err(q)?,
                },
            })
        })
        .collect()
}

/// The unfinished moves recorded here in `role`, other than `exclude`: shard and step
/// (rows that do not parse are skipped: they only size a capacity reservation).
pub async fn unfinished_steps(
    client: &impl GenericClient,
    node: &NodeConfig,
    role: MoveRole,
    exclude: Option<i64>,
) -> Result<Vec<(ShardNo, MoveStep)>, PgError> {
    let rows = client
        .query(
            "select shard, step from atoll.moves
              where role = $1 and step <> 'cleaned_up' and id is distinct from $2",
            &[&role.as_str(), &exclude],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let (shard, step): (i32, String) = (r.get(0), r.get(1));
            Some((ShardNo::new(i64::from(shard)).ok()?, step.parse().ok()?))
        })
        .collect())
}

/// One move's row in `role`, `None` when there is none.
pub async fn load(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    role: MoveRole,
) -> Result<Option<MoveRecord>, PgError> {
    let r = client
        .query_opt(
            &format!("select {COLUMNS} from atoll.moves where id = $1 and role = $2"),
            &[&id, &role.as_str()],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    r.map(|r| row(&r, node).map(|m| m.record)).transpose()
}

/// Records a move in `role` with its current step (a row already there is kept).
pub async fn insert(
    client: &impl GenericClient,
    node: &NodeConfig,
    rec: &MoveRecord,
    role: MoveRole,
) -> Result<(), PgError> {
    client
        .execute(
            "insert into atoll.moves (id, role, shard, source_island, destination_island, step, verify)
             values ($1, $2, $3, $4, $5, $6, $7)
             on conflict (id, role) do nothing",
            &[
                &rec.id,
                &role.as_str(),
                &i32::from(rec.shard.get()),
                &i32::from(rec.source.0),
                &i32::from(rec.destination.0),
                &rec.step.as_str(),
                &rec.verify.to_string(),
            ],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Sets the step of the move's row in `role`; the rows written (0: no such row).
/// Reaching [`MoveStep::CleanedUp`] also sets `finished_at`.
pub async fn set_step(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    role: MoveRole,
    step: MoveStep,
) -> Result<u64, PgError> {
    client
        .execute(
            "update atoll.moves set step = $3, changed_at = now(),
                    finished_at = case when $3 = 'cleaned_up' then now() end
             where id = $1 and role = $2",
            &[&id, &role.as_str(), &step.as_str()],
        )
        .await
        .map_err(|e| PgError::query(node, e))
}

/// Marks a destination row finished if it is not yet (a move finished by an older version
/// could have left it behind).
pub async fn settle_destination(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.moves set step = 'cleaned_up', changed_at = now(), finished_at = now()
              where id = $1 and role = 'destination' and step <> 'cleaned_up'",
            &[&id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// What [`mark_abort_started`] found on one master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortMark {
    /// The abort is recorded (now or by an earlier attempt) on every row of the move here.
    Marked,
    /// The destination's row says the shard was activated there: the move is past abort,
    /// and nothing was marked.
    DestinationActivated,
    /// No row of the move on this master.
    NoRow,
}

/// Records that an abort of the move starts (on every row of it on this master), unless
/// one started before: from now on a resume refuses ([`abort_started`]) and activation
/// is fenced off ([`record_activation`]).
///
/// The fence: activation and this mark both update the destination's row, so they are
/// serialised by its row lock and each re-checks the other's mark after waiting. A
/// destination row already `activated` is left alone and reported, so an abort can never
/// reactivate the source of a shard that became active on the destination in between.
pub async fn mark_abort_started(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<AbortMark, PgError> {
    let q = |e| PgError::query(node, e);
    let marked = client
        .execute(
            "update atoll.moves set abort_started_at = coalesce(abort_started_at, now()),
                    changed_at = now()
              where id = $1
                and not (role = 'destination' and step in ('activated', 'cleaned_up'))",
            &[&id],
        )
        .await
        .map_err(q)?;
    if marked > 0 {
        return Ok(AbortMark::Marked);
    }
    let activated = client
        .query_opt(
            "select 1 from atoll.moves where id = $1 and role = 'destination'
                and step in ('activated', 'cleaned_up')",
            &[&id],
        )
        .await
        .map_err(q)?;
    Ok(match activated {
        Some(_) => AbortMark::DestinationActivated,
        None => AbortMark::NoRow,
    })
}

/// Records on the destination's row, inside the activation's transaction, that the shard
/// is active there, unless an abort of the move started ([`mark_abort_started`]). The rows
/// written: 0 means the activation must be rolled back (fenced off, or no such row).
pub async fn record_activation(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<u64, PgError> {
    client
        .execute(
            "update atoll.moves set step = 'activated', changed_at = now()
              where id = $1 and role = 'destination' and abort_started_at is null",
            &[&id],
        )
        .await
        .map_err(|e| PgError::query(node, e))
}

/// When an abort of the move started, as recorded on this master (`None`: no abort).
pub async fn abort_started(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<Option<String>, PgError> {
    Ok(client
        .query_opt(
            "select abort_started_at::text from atoll.moves
              where id = $1 and abort_started_at is not null limit 1",
            &[&id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?
        .map(|r| r.get(0)))
}

/// Records the switch on the source row, with the backup schema's name, inside the write
/// pause's transaction. The rows written: anything but 1 means another process changed the
/// move meanwhile (or an abort of it started), and the caller must roll back.
pub async fn record_switch(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    backup_schema: &str,
) -> Result<u64, PgError> {
    client
        .execute(
            "update atoll.moves set step = 'switched', backup_schema = $2, changed_at = now()
              where id = $1 and role = 'source' and step <> 'switched'
                and abort_started_at is null",
            &[&id, &backup_schema],
        )
        .await
        .map_err(|e| PgError::query(node, e))
}

/// Records the subscription's oid and the destination's system identifier on the source
/// row: table-sync slots on the source are named after both and must be found after the
/// subscription is gone.
pub async fn record_subscription(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    subscription_oid: u32,
    destination_sysid: i64,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.moves set subscription_oid = $2, destination_sysid = $3
              where id = $1 and role = 'source'",
            &[&id, &i64::from(subscription_oid), &destination_sysid],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Records on the source row the tables a move sets to `REPLICA IDENTITY FULL` and what
/// each had, before the first `ALTER TABLE` (catalog step 9).
pub async fn record_identity_restore(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
    entries: &[IdentityRestore],
) -> Result<(), PgError> {
    let text: Vec<String> = entries.iter().map(IdentityRestore::encode).collect();
    client
        .execute(
            "update atoll.moves set identity_restore = $2 where id = $1 and role = 'source'",
            &[&id, &text],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// The tables whose replica identity the move set to `FULL` (empty when none, or when the
/// source row is gone).
pub async fn identity_restore(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<Vec<IdentityRestore>, PgError> {
    let row = client
        .query_opt(
            "select coalesce(identity_restore, '{}') from atoll.moves where id = $1 and role = 'source'",
            &[&id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    let text: Vec<String> = row.map(|r| r.get(0)).unwrap_or_default();
    text.iter()
        .map(|t| IdentityRestore::parse(t).map_err(|e| bad(node, e.to_string())))
        .collect()
}

/// The subscription oid recorded on the source row.
pub async fn recorded_subscription(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<Option<i64>, PgError> {
    Ok(client
        .query_opt(
            "select subscription_oid from atoll.moves where id = $1 and role = 'source'",
            &[&id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?
        .and_then(|r| r.get(0)))
}

/// Deletes the move's rows (both roles) and its tick row on this master.
pub async fn forget(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<(), PgError> {
    client
        .execute("delete from atoll.moves where id = $1", &[&id])
        .await
        .map_err(|e| PgError::query(node, e))?;
    delete_tick(client, node, id).await
}

/// SQL that adds the move's tick row (for a batch that also creates the publication).
pub fn add_tick_sql(id: i64) -> String {
    format!("insert into atoll.move_ticks (move_id) values ({id}) on conflict do nothing;")
}

/// The publication table entry that replicates this move's tick row only.
pub fn tick_publication_entry(id: i64) -> String {
    format!("atoll.move_ticks where (move_id = {id})")
}

/// Bumps the move's tick (autocommit, on the source) and returns the new value.
pub async fn bump_tick(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<i64, PgError> {
    let q = |e| PgError::query(node, e);
    client
        .query_one(
            "update atoll.move_ticks set tick = tick + 1 where move_id = $1 returning tick",
            &[&id],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)
}

/// The move's tick as applied here (on the destination); `None` before the copy brought it.
pub async fn read_tick(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<Option<i64>, PgError> {
    Ok(client
        .query_opt(
            "select tick from atoll.move_ticks where move_id = $1",
            &[&id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?
        .map(|r| r.get(0)))
}

/// Deletes the move's tick row on this master.
pub async fn delete_tick(
    client: &impl GenericClient,
    node: &NodeConfig,
    id: i64,
) -> Result<(), PgError> {
    client
        .execute("delete from atoll.move_ticks where move_id = $1", &[&id])
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}
