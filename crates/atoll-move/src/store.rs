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

/// What the catalog says of moves, read in one pass over the masters.
#[derive(Debug, Clone, Default)]
pub struct MovesRead {
    /// The unfinished moves, as [`unfinished`].
    pub unfinished: Vec<MoveRecord>,
    /// When each unfinished move started and last changed, by id (its source row's, or
    /// the destination row's when the source island could not say).
    pub times: std::collections::BTreeMap<i64, atoll_pg::catalog::move_status::MoveTimes>,
    /// The moves that finished last, newest first.
    pub finished: Vec<moves::FinishedMove>,
}

/// The unfinished moves with their times, and the `limit` moves that finished last, on
/// the same connections.
pub async fn read_moves(
    config: &Config,
    snapshot: &Snapshot,
    limit: i64,
) -> Result<MovesRead, MoveError> {
    let mut masters = Masters::new(config, snapshot);
    let mut read = MovesRead {
        unfinished: unfinished_on(&mut masters).await?,
        ..MovesRead::default()
    };
    for island in masters.islands() {
        let db = masters.get(island).await?;
        read.finished
            .extend(moves::finished(&db.client, &db.node, limit).await?);
        let times = atoll_pg::catalog::move_status::unfinished_times(&db.client, &db.node).await?;
        for t in times {
            if t.role == MoveRole::Source || !read.times.contains_key(&t.id) {
                read.times.insert(t.id, t);
            }
        }
    }
    read.finished
        .sort_by_key(|m| std::cmp::Reverse(m.finished_at_unix_ms));
    read.finished.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(read)
}

/// Records a finished move's timings on its source row (best effort: a catalog without
/// step 11 keeps none, and a failure here does not undo a finished move).
pub(crate) async fn record_timings(db: &Db, id: i64, r: &crate::MoveReport) {
    let some = |ms: u64| (ms > 0).then(|| i64::try_from(ms).unwrap_or(i64::MAX));
    let t = moves::MoveTimings {
        total_ms: some(r.total_ms),
        copy_ms: some(r.copy_ms),
        pause_ms: (r.pause_ms > 0.0).then_some(r.pause_ms),
        verify_block_ms: (r.verify_block_ms > 0.0).then_some(r.verify_block_ms),
    };
    if let Err(e) = moves::record_timings(&db.client, &db.node, id, &t).await {
        tracing::warn!(move_id = id, error = %e, "cannot record the move's timings");
    }
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
