//! Step `caught_up` (its last part): replication round trips measured with ticks until one
//! is short, so the write pause only waits for the last milliseconds of changes.

use crate::context::MoveContext;
use crate::error::MoveError;
use crate::replication::{require_no_apply_errors, tick, wait_tick};
use crate::MoveEvent;
use std::time::Instant;

/// Ticks until one round trip (source commit -> applied on the destination) is short,
/// so the pause only has to wait for the last few milliseconds of changes.
pub(crate) async fn catch_up(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    // A destination that keeps falling behind must end the move with an error, not
    // keep it ticking forever: the rounds and the total time are bounded.
    const MAX_ROUNDS: u32 = 500;
    let limit = cx.opts.catch_up_timeout;
    let deadline = Instant::now() + limit;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        require_no_apply_errors(&cx.dst, &cx.rec, cx.error_baseline).await?;
        let t = Instant::now();
        let k = tick(&cx.src, cx.rec.id).await?;
        let left = deadline.saturating_duration_since(t);
        wait_tick(&cx.dst, &cx.rec, k, cx.opts.poll, left)
            .await
            .map_err(|e| match e {
                MoveError::Timeout { shard, what, .. } => MoveError::Timeout {
                    shard,
                    what,
                    secs: limit.as_secs(),
                },
                e => e,
            })?;
        let rtt = t.elapsed();
        cx.emit(MoveEvent::Note(format!(
            "replication round trip {} ms",
            rtt.as_millis()
        )));
        // A busy destination may never get under the bound; after a while a round
        // trip within a few times the bound is good enough (the pause just waits longer).
        let bound = if attempts > 50 {
            cx.opts.catch_up_within * 4
        } else {
            cx.opts.catch_up_within
        };
        if rtt <= bound {
            return Ok(());
        }
        if attempts >= MAX_ROUNDS || Instant::now() > deadline {
            return Err(MoveError::Timeout {
                shard: cx.rec.shard,
                what: format!(
                    "catching up: {attempts} replication round trips to island {} stayed above {} ms (last {} ms); resume when the destination is less busy",
                    cx.dst.island,
                    bound.as_millis(),
                    rtt.as_millis()
                ),
                secs: limit.as_secs(),
            });
        }
    }
}
