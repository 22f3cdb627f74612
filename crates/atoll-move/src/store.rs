//! The persisted state of moves as this crate uses it: `atoll.moves` rows on the source
//! island's master (the move) and on the destination's master (a reference with the same
//! id), read and written through [`atoll_pg::catalog::moves`] (the SQL lives there).

use crate::db::Db;
use crate::error::MoveError;
use crate::masters::Masters;
use atoll_core::move_plan::{MoveRecord, MoveStep};
use atoll_core::{Config, Snapshot};
use atoll_pg::catalog::moves;
pub(crate) use atoll_pg::catalog::moves::MoveRole;

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
    if moves::installed(&db.client, &db.node).await? {
        Ok(())
    } else {
        Err(MoveError::NotFound(format!(
            "island {} ({}) has no atoll.moves table or an older catalog than this build; run `atoll init` to upgrade it",
            db.island, db.node
        )))
    }
}

pub(crate) async fn insert(db: &Db, rec: &MoveRecord, role: MoveRole) -> Result<(), MoveError> {
    Ok(moves::insert(&db.client, &db.node, rec, role).await?)
}

pub(crate) async fn set_step(
    db: &Db,
    id: i64,
    role: MoveRole,
    step: MoveStep,
) -> Result<(), MoveError> {
    moves::set_step(&db.client, &db.node, id, role, step).await?;
    Ok(())
}

/// The step of a move's row in `role` on `db`, `None` without one.
pub(crate) async fn step_of(
    db: &Db,
    id: i64,
    role: MoveRole,
) -> Result<Option<MoveStep>, MoveError> {
    Ok(moves::load(&db.client, &db.node, id, role)
        .await?
        .map(|r| r.step))
}

pub(crate) async fn forget(db: &Db, id: i64) -> Result<(), MoveError> {
    Ok(moves::forget(&db.client, &db.node, id).await?)
}

/// Every unfinished move, read from every island master (source rows; a destination row
/// whose source island cannot be read is reported too, as found there). An island whose
/// master cannot be read is an error: a move there might be missed.
pub async fn unfinished(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<MoveRecord>, MoveError> {
    unfinished_on(&mut Masters::new(config, snapshot)).await
}

/// [`unfinished`] on connections kept for more reads.
pub(crate) async fn unfinished_on(masters: &mut Masters<'_>) -> Result<Vec<MoveRecord>, MoveError> {
    let mut out: Vec<MoveRecord> = Vec::new();
    for island in masters.islands() {
        let db = masters.get(island).await?;
        require_catalog(db).await?;
        for row in moves::unfinished(&db.client, &db.node).await? {
            let rec = row.record;
            if let Some(existing) = out.iter().position(|m| m.id == rec.id) {
                if row.role == MoveRole::Source {
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
    moves::load(&db.client, &db.node, id, MoveRole::Source)
        .await?
        .ok_or_else(|| {
            MoveError::NotFound(format!("move {id} is not recorded on island {}", db.island))
        })
}
