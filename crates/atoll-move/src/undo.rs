//! Aborting a move ([`atoll_core::move_plan::MoveStep::abort_plan`] carried out).

use crate::db::{ident, Db};
use crate::error::MoveError;
use crate::replication::drop_replication;
use crate::store::{self, MoveRole};
use atoll_core::move_plan::{AbortAction, AbortRefused, MoveRecord, MoveStep};
use atoll_core::ShardNo;
use atoll_pg::catalog::{moves, registry};

/// What an abort did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AbortReport {
    /// The aborted move's id in `atoll.moves`.
    pub id: i64,
    /// The shard of the move, active on its source island again.
    pub shard: ShardNo,
    /// The step the move had reached when it was aborted.
    pub from_step: MoveStep,
    /// The undo steps carried out, in order.
    pub actions: Vec<AbortAction>,
}

/// Rolls a move back: the source keeps (or gets back) the shard, active; no subscription,
/// slot or publication stays; the destination's copy is dropped. Refused once the
/// destination is active. Every action is idempotent, so a failed abort can be re-run.
/// `stop_after` is the test hook ([`crate::MoveOptions::stop_abort_after`]).
pub(crate) async fn abort(
    src: &Db,
    dst: &Db,
    rec: &MoveRecord,
    stop_after: Option<AbortAction>,
) -> Result<AbortReport, MoveError> {
    let shard = rec.shard;
    let plan = rec
        .step
        .abort_plan()
        .map_err(|source| MoveError::AbortRefused { shard, source })?;
    let schema = shard.schema();
    // The refusals first, so a refused abort leaves no mark (the resume stays possible).
    if plan.contains(&AbortAction::RefuseIfDestinationActive)
        && registry::is_active(&dst.client, &dst.node, shard).await?
    {
        return Err(MoveError::AbortRefused {
            shard,
            source: AbortRefused(MoveStep::Activated),
        });
    }
    if plan.contains(&AbortAction::RestoreSourceSchema) {
        require_source_copy(src, dst, rec).await?;
    }
    // Before the first action: a resume must never carry on a move whose abort already
    // reactivated the source (it would activate the destination too). The destination
    // first: its mark is the fence against an activation still retrying there (a mover
    // whose move lock died with its session), and a refusal there must leave the source
    // unmarked so the move stays resumable.
    if moves::mark_abort_started(&dst.client, &dst.node, rec.id).await?
        == moves::AbortMark::DestinationActivated
    {
        return Err(MoveError::AbortRefused {
            shard,
            source: AbortRefused(MoveStep::Activated),
        });
    }
    moves::mark_abort_started(&src.client, &src.node, rec.id).await?;
    for action in &plan {
        match action {
            AbortAction::RefuseIfDestinationActive => {
                if registry::is_active(&dst.client, &dst.node, shard).await? {
                    return Err(MoveError::AbortRefused {
                        shard,
                        source: AbortRefused(MoveStep::Activated),
                    });
                }
            }
            // The three replication actions are carried out together.
            AbortAction::DropSubscription => {
                drop_replication(src, dst, rec.id, &rec.names()).await?;
                crate::global_copy::handoff::undo(dst, rec).await?;
            }
            AbortAction::DropSlot | AbortAction::DropPublication => {}
            AbortAction::RestoreSourceSchema => {
                if let Some(backup) = &rec.backup_schema {
                    let r = src
                        .one(
                            "select exists (select 1 from pg_namespace where nspname = $1),
                                    exists (select 1 from pg_namespace where nspname = $2)",
                            &[backup, &schema],
                        )
                        .await?;
                    let (has_backup, has_schema): (bool, bool) = (r.get(0), r.get(1));
                    if has_backup && !has_schema {
                        src.exec(&format!(
                            "alter schema {} rename to {}",
                            ident(backup),
                            ident(&schema)
                        ))
                        .await?;
                    }
                }
            }
            AbortAction::ReactivateSource => {
                let n =
                    registry::set_active_if_schema(&src.client, &src.node, shard, &schema, true)
                        .await?;
                if n == 0 {
                    // The schema vanished since the check above: the destination's copy
                    // may be the only one left, so it must not be dropped.
                    return Err(source_copy_missing(src, dst, rec));
                }
            }
            AbortAction::DropDestinationSchema => {
                // Only a schema this move created (its reference row commits with it), and
                // never one that is active there.
                let ours = store::step_of(dst, rec.id, MoveRole::Destination)
                    .await?
                    .is_some();
                let active = registry::is_active(&dst.client, &dst.node, shard).await?;
                if ours && !active {
                    dst.exec(&format!("drop schema if exists {} cascade", ident(&schema)))
                        .await?;
                    registry::forget_inactive(&dst.client, &dst.node, shard).await?;
                }
            }
            AbortAction::ForgetMove => {
                // Read from the source row, so before it goes.
                crate::replica_identity::after_abort(src, rec.id, &schema).await?;
                store::forget(dst, rec.id).await?;
                store::forget(src, rec.id).await?;
            }
        }
        if stop_after == Some(*action) {
            return Err(MoveError::AbortStopped {
                shard,
                action: *action,
            });
        }
    }
    Ok(AbortReport {
        id: rec.id,
        shard,
        from_step: rec.step,
        actions: plan,
    })
}

/// Before a switched move is rolled back: the source must still hold the shard, as its
/// backup schema (renamed back below) or already under its own name. Otherwise the
/// destination's copy is the only one, and the abort refuses instead of dropping it.
async fn require_source_copy(src: &Db, dst: &Db, rec: &MoveRecord) -> Result<(), MoveError> {
    let schema = rec.shard.schema();
    let backup = rec.backup_schema.clone().unwrap_or_default();
    let r = src
        .one(
            "select exists (select 1 from pg_namespace where nspname = $1),
                    exists (select 1 from pg_namespace where nspname = $2)",
            &[&backup, &schema],
        )
        .await?;
    let (has_backup, has_schema): (bool, bool) = (r.get(0), r.get(1));
    if has_backup || has_schema {
        Ok(())
    } else {
        Err(source_copy_missing(src, dst, rec))
    }
}

fn source_copy_missing(src: &Db, dst: &Db, rec: &MoveRecord) -> MoveError {
    let shard = rec.shard;
    MoveError::Unsafe {
        shard,
        check: "backup_missing",
        detail: format!(
            "the abort would drop the only copy: island {} has neither {} nor its backup schema {} any more, so the copy on island {} is kept; finish the move instead with `atoll move --resume --shard {}` (it activates that copy)",
            src.island,
            shard.schema(),
            rec.backup_schema.as_deref().unwrap_or("(none recorded)"),
            dst.island,
            shard.get()
        ),
    }
}
