//! The persisted state of moves: `atoll.moves` rows on the source island's master (the
//! move) and on the destination's master (a reference with the same id, carrying the
//! destination's own progress so its work is never redone or undone twice).

use crate::db::Db;
use crate::error::MoveError;
use atoll_core::move_plan::{MoveRecord, MoveStep, VerifyMode};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};

pub(crate) const SOURCE: &str = "source";
pub(crate) const DESTINATION: &str = "destination";

/// A new move id: milliseconds since the epoch times 1000 plus a random part, so ids from
/// different runs (and different islands' tick rows) never collide in practice.
pub(crate) fn new_id() -> i64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    ms * 1000 + rand::random::<u16>() as i64 % 1000
}

pub(crate) async fn require_catalog(db: &Db) -> Result<(), MoveError> {
    let ok: bool = db
        .one("select to_regclass('atoll.moves') is not null", &[])
        .await?
        .get(0);
    if ok {
        Ok(())
    } else {
        Err(MoveError::NotFound(format!(
            "island {} ({}) has no atoll.moves table; run `atoll init` to upgrade the catalog",
            db.island, db.node
        )))
    }
}

pub(crate) async fn insert(db: &Db, rec: &MoveRecord, role: &str) -> Result<(), MoveError> {
    db.execute(
        "insert into atoll.moves (id, role, shard, source_island, destination_island, step, verify)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (id, role) do nothing",
        &[
            &rec.id,
            &role,
            &(rec.shard.get() as i32),
            &(rec.source.0 as i32),
            &(rec.destination.0 as i32),
            &rec.step.as_str(),
            &rec.verify.to_string(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn set_step(
    db: &Db,
    id: i64,
    role: &str,
    step: MoveStep,
) -> Result<(), MoveError> {
    db.execute(
        "update atoll.moves set step = $3, changed_at = now(),
                finished_at = case when $3 = 'cleaned_up' then now() end
         where id = $1 and role = $2",
        &[&id, &role, &step.as_str()],
    )
    .await?;
    Ok(())
}

/// The destination's own step for a move, `None` without a reference row.
pub(crate) async fn step_of(db: &Db, id: i64, role: &str) -> Result<Option<MoveStep>, MoveError> {
    let row = db
        .opt(
            "select step from atoll.moves where id = $1 and role = $2",
            &[&id, &role],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(r) => {
            let s: String = r.get(0);
            s.parse().map(Some).map_err(|e| {
                MoveError::NotFound(format!("island {}: atoll.moves row {id}: {e}", db.island))
            })
        }
    }
}

pub(crate) async fn forget(db: &Db, id: i64) -> Result<(), MoveError> {
    db.execute("delete from atoll.moves where id = $1", &[&id])
        .await?;
    db.execute("delete from atoll.move_ticks where move_id = $1", &[&id])
        .await?;
    Ok(())
}

fn record(r: &tokio_postgres::Row, island: IslandId) -> Result<MoveRecord, MoveError> {
    let bad = |what: String| MoveError::NotFound(format!("island {island}: atoll.moves: {what}"));
    let shard: i32 = r.get(1);
    let step: String = r.get(4);
    let verify: String = r.get(5);
    Ok(MoveRecord {
        id: r.get(0),
        shard: ShardNo::new(shard as i64).map_err(|e| bad(e.to_string()))?,
        source: IslandId(r.get::<_, i32>(2) as u16),
        destination: IslandId(r.get::<_, i32>(3) as u16),
        step: step
            .parse()
            .map_err(|e: atoll_core::move_plan::UnknownStep| bad(e.to_string()))?,
        verify: verify.parse::<VerifyMode>().map_err(bad)?,
        backup_schema: r.get(6),
    })
}

/// Every unfinished move, read from every island master (source rows; a destination row
/// whose source island cannot be read is reported too, as found there). An island whose
/// master cannot be read is an error: a move there might be missed.
pub async fn unfinished(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<MoveRecord>, MoveError> {
    let mut out: Vec<MoveRecord> = Vec::new();
    for island in &snapshot.islands {
        let db = Db::connect(config, snapshot, island.id).await?;
        require_catalog(&db).await?;
        for r in db
            .query(
                "select id, shard, source_island, destination_island, step, verify, backup_schema, role
                 from atoll.moves where step <> 'cleaned_up' order by role desc, id",
                &[],
            )
            .await?
        {
            let role: String = r.get(7);
            let rec = record(&r, island.id)?;
            if let Some(existing) = out.iter().position(|m| m.id == rec.id) {
                if role == SOURCE {
                    out[existing] = rec;
                }
            } else {
                out.push(rec);
            }
        }
    }
    Ok(out)
}

/// Re-reads one move's source row (the truth for its step).
pub(crate) async fn load(db: &Db, id: i64) -> Result<MoveRecord, MoveError> {
    let r = db
        .opt(
            "select id, shard, source_island, destination_island, step, verify, backup_schema
             from atoll.moves where id = $1 and role = 'source'",
            &[&id],
        )
        .await?
        .ok_or_else(|| {
            MoveError::NotFound(format!("move {id} is not recorded on island {}", db.island))
        })?;
    record(&r, db.island)
}
