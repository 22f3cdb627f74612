//! Carrying a recorded move on: running its steps to the end ([`finish`], rolling back
//! when the copies differ), resuming it ([`resume_move`]) or rolling it back
//! ([`abort_move`]), always under the shard's move lock.

use crate::context::MoveContext;
use crate::db::Db;
use crate::error::MoveError;
use crate::move_lock::hold_move_lock;
use crate::{run, store, undo, AbortReport, MoveOptions, MoveReport, Progress};
use atoll_core::move_plan::{AbortAction, MoveRecord};
use atoll_core::{Config, ShardNo, Snapshot};

pub(crate) async fn finish(
    config: &Config,
    snapshot: &Snapshot,
    mut mover: MoveContext<'_>,
) -> Result<MoveReport, MoveError> {
    match run::run(&mut mover).await {
        Ok(()) => {
            mover.report.backup_schema = mover.rec.backup_schema.clone();
            Ok(mover.report)
        }
        Err(e @ (MoveError::VerifyFailed { .. } | MoveError::SecurityDiffers { .. })) => {
            // The copies differ: roll back, so the source stays the only active copy.
            let (rec, stop) = (mover.rec.clone(), mover.opts.stop_abort_after);
            drop(mover);
            abort_locked(config, snapshot, &rec, stop).await?;
            Err(e)
        }
        Err(e) => Err(e),
    }
}

/// Picks the one unfinished move (of `shard`, if given).
async fn pick(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
) -> Result<MoveRecord, MoveError> {
    let all = store::unfinished(config, snapshot).await?;
    let mut found: Vec<MoveRecord> = all
        .into_iter()
        .filter(|m| shard.is_none_or(|s| s == m.shard))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(MoveError::NotFound(match shard {
            Some(s) => format!("{s} has no unfinished move"),
            None => "there is no unfinished move".into(),
        })),
        _ => {
            let list: Vec<String> = found
                .iter()
                .map(|m| format!("{} ({})", m.shard, m.step))
                .collect();
            Err(MoveError::NotFound(format!(
                "several unfinished moves: {}; say which with --shard",
                list.join(", ")
            )))
        }
    }
}

/// Continues an unfinished move from its persisted step.
pub async fn resume_move(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<MoveReport, MoveError> {
    let found = pick(config, snapshot, shard).await?;
    resume_record(config, snapshot, &found, opts, progress).await
}

pub(crate) async fn resume_record(
    config: &Config,
    snapshot: &Snapshot,
    found: &MoveRecord,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<MoveReport, MoveError> {
    let _lock = hold_move_lock(config, snapshot, found.source, found.shard).await?;
    let src = Db::connect(config, snapshot, found.source).await?;
    let dst = Db::connect(config, snapshot, found.destination).await?;
    let rec = store::load(&src, found.id).await?;
    refuse_if_aborting(&src, &dst, &rec).await?;
    let step = rec.step;
    let mut mover = MoveContext::new(config, rec, src, dst, opts, progress);
    mover.report.resumed_from = Some(step);
    finish(config, snapshot, mover).await
}

/// Rolls back the one unfinished move (of `shard`, if given).
pub async fn abort_move(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
) -> Result<AbortReport, MoveError> {
    abort_move_with(config, snapshot, shard, &MoveOptions::default()).await
}

/// [`abort_move`] with the test hook of `opts` ([`MoveOptions::stop_abort_after`]); the
/// other options do not apply to an abort.
pub async fn abort_move_with(
    config: &Config,
    snapshot: &Snapshot,
    shard: Option<ShardNo>,
    opts: &MoveOptions,
) -> Result<AbortReport, MoveError> {
    let found = pick(config, snapshot, shard).await?;
    abort_record(config, snapshot, &found, opts.stop_abort_after).await
}

pub(crate) async fn abort_record(
    config: &Config,
    snapshot: &Snapshot,
    found: &MoveRecord,
    stop: Option<AbortAction>,
) -> Result<AbortReport, MoveError> {
    let _lock = hold_move_lock(config, snapshot, found.source, found.shard).await?;
    abort_locked(config, snapshot, found, stop).await
}

/// [`abort_record`] for a caller that already holds the shard's move lock.
pub(crate) async fn abort_locked(
    config: &Config,
    snapshot: &Snapshot,
    found: &MoveRecord,
    stop: Option<AbortAction>,
) -> Result<AbortReport, MoveError> {
    let src = Db::connect(config, snapshot, found.source).await?;
    let dst = Db::connect(config, snapshot, found.destination).await?;
    let rec = match store::load(&src, found.id).await {
        Ok(r) => r,
        // Only the destination's reference row is left: undo what the destination holds.
        Err(MoveError::NotFound(_)) => found.clone(),
        Err(e) => return Err(e),
    };
    undo::abort(&src, &dst, &rec, stop).await
}

/// Refuses to resume a move whose abort started and did not finish (recorded on either
/// side): the abort may have reactivated the source already.
async fn refuse_if_aborting(src: &Db, dst: &Db, rec: &MoveRecord) -> Result<(), MoveError> {
    use atoll_pg::catalog::moves::abort_started;
    let started = match abort_started(&src.client, &src.node, rec.id).await? {
        Some(t) => Some(t),
        None => abort_started(&dst.client, &dst.node, rec.id).await?,
    };
    match started {
        None => Ok(()),
        Some(t) => Err(MoveError::Unsafe {
            shard: rec.shard,
            check: "abort_in_progress",
            detail: format!(
                "an abort of move {} started at {t} and did not finish, so it cannot be resumed; finish the abort with `atoll move --abort --shard {}`",
                rec.id,
                rec.shard.get()
            ),
        }),
    }
}
