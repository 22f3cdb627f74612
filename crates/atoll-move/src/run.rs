//! Runs a move from its persisted step to the end: each step is chosen by
//! [`MoveStep::resume_action`], carried out, and recorded before the next one starts.

use crate::context::MoveContext;
use crate::error::MoveError;
use crate::store::{self, MoveRole};
use atoll_core::move_plan::{MoveStep, ResumeAction};
use atoll_pg::catalog::moves;
use std::time::Instant;

/// Runs the move from its persisted step to the end.
pub async fn run(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    let started = Instant::now();
    // CREATE SUBSCRIPTION starts the copy, so the copy's clock starts before it (on a
    // resume past that step, when waiting starts).
    let mut copy_clock: Option<Instant> = None;
    cx.apply_errors = crate::apply_health::ErrorWatch::new(
        crate::replication::error_count(&cx.dst, &cx.rec).await?,
    );
    loop {
        match cx.rec.step.resume_action() {
            ResumeAction::CopySchema => {
                crate::schema_copy::copy_schema(cx).await?;
                cx.reached(MoveStep::SchemaCopied).await?;
            }
            ResumeAction::Subscribe => {
                crate::capacity::reserve_capacity(cx).await?;
                copy_clock = Some(Instant::now());
                crate::subscribe::subscribe(cx).await?;
                // The subscription (and its slot) now counts for parallel moves.
                if cx.capacity_locked {
                    crate::capacity::unlock_capacity(&cx.src, &cx.dst).await;
                    cx.capacity_locked = false;
                }
                cx.reached(MoveStep::Subscribed).await?;
            }
            ResumeAction::WaitForCopy => {
                let t = copy_clock.unwrap_or_else(Instant::now);
                crate::copy::wait_copy(cx).await?;
                cx.report.copy_ms = t.elapsed().as_millis() as u64;
                crate::copy::post_copy(cx).await?;
                crate::catch_up::catch_up(cx).await?;
                crate::global_copy::handoff::prepare(cx).await?;
                cx.reached(MoveStep::CaughtUp).await?;
            }
            ResumeAction::Cutover => crate::cutover::cutover(cx).await?,
            ResumeAction::Activate => {
                require_switched_off(cx).await?;
                crate::global_copy::handoff::mark_switch(cx).await?;
                crate::replica_identity::restore_replica_triggers(cx).await?;
                let weight = crate::activate::source_weight(cx).await?;
                // The switch's generation, for the activation's notice to come after it.
                cx.switch_gen =
                    atoll_pg::catalog::registry::gen(&cx.src.client, &cx.src.node, cx.rec.shard)
                        .await?;
                crate::activate::activate(cx, weight).await?;
                cx.reached(MoveStep::Activated).await?;
            }
            ResumeAction::DropReplication => {
                crate::replica_identity::after_switch(cx).await?;
                crate::replication::drop_replication(&cx.src, &cx.dst, cx.rec.id, &cx.rec.names())
                    .await?;
                // The destination first: the source's row is what marks the move
                // finished, so a crash in between leaves it unfinished and resumable.
                store::set_step(
                    &cx.dst,
                    cx.rec.id,
                    MoveRole::Destination,
                    MoveStep::CleanedUp,
                )
                .await?;
                cx.hook(MoveStep::CleanedUp)?;
                cx.reached(MoveStep::CleanedUp).await?;
                // Finished by this run: its timings are this run's.
                cx.report.total_ms = started.elapsed().as_millis() as u64;
                store::record_timings(&cx.src, cx.rec.id, &cx.report).await;
            }
            ResumeAction::Nothing => {
                // A move finished by an older version could have its destination row
                // left behind; settle it.
                moves::settle_destination(&cx.dst.client, &cx.dst.node, cx.rec.id).await?;
                break;
            }
        }
    }
    cx.report.total_ms = started.elapsed().as_millis() as u64;
    Ok(())
}

/// A move resumed after its switch activates the destination only once the source is
/// proven switched off: inactive there and its schema renamed away. Anything else (an
/// interrupted abort or a hand-made change reactivated it) would make the shard active on
/// two islands.
async fn require_switched_off(cx: &MoveContext<'_>) -> Result<(), MoveError> {
    let shard = cx.rec.shard;
    let active =
        atoll_pg::catalog::registry::is_active(&cx.src.client, &cx.src.node, shard).await?;
    let present: bool = cx
        .src
        .one(
            "select exists (select 1 from pg_namespace where nspname = $1)",
            &[&shard.schema()],
        )
        .await?
        .get(0);
    if !active && !present {
        return Ok(());
    }
    Err(MoveError::Unsafe {
        shard,
        check: "source_not_switched_off",
        detail: format!(
            "island {} (the source) has {} {} again, so activating it on island {} would make it active twice; roll the move back with `atoll move --abort --shard {}`",
            cx.src.island,
            shard.schema(),
            if active { "active" } else { "back under its name" },
            cx.dst.island,
            shard.get()
        ),
    })
}
