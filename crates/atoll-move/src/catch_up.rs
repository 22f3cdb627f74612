//! Step `caught_up` (its last part): replication round trips measured with ticks until one
//! is short, so the write pause only waits for the last milliseconds of changes.

use crate::context::MoveContext;
use crate::error::MoveError;
use crate::replication::{check_apply_errors, ensure_enabled, tick, wait_tick};
use crate::MoveEvent;
use std::time::{Duration, Instant};

/// How often the worker's errors are looked at while a tick is awaited: a worker that
/// keeps failing never applies it, and must end the move within seconds, not at the
/// catch-up's bound.
const ERROR_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Ticks until one round trip (source commit -> applied on the destination) is short,
/// so the pause only has to wait for the last few milliseconds of changes.
pub(crate) async fn catch_up(cx: &mut MoveContext<'_>) -> Result<(), MoveError> {
    // A destination that keeps falling behind must end the move with an error, not
    // keep it ticking forever: the rounds and the total time are bounded.
    const MAX_ROUNDS: u32 = 500;
    let limit = cx.opts.catch_up_timeout;
    let deadline = Instant::now() + limit;
    let mut attempts = 0u32;
    // A run resumed after a crash while post-copy DDL ran finds it disabled.
    ensure_enabled(&cx.dst, &cx.rec).await?;
    loop {
        attempts += 1;
        let errors = check_apply_errors(&cx.dst, &cx.rec, &mut cx.apply_errors).await?;
        let t = Instant::now();
        let k = tick(&cx.src, cx.rec.id).await?;
        wait_applied(cx, k, deadline).await.map_err(|e| match e {
            MoveError::Timeout { shard, what, .. } => MoveError::Timeout {
                shard,
                what,
                secs: limit.as_secs(),
            },
            e => e,
        })?;
        // The tick came after every error counted before it: the worker got past them.
        cx.apply_errors.progressed(errors);
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

/// Waits until tick `k` is applied on the destination (until `deadline`), looking at the
/// worker's errors every [`ERROR_CHECK_EVERY`].
async fn wait_applied(
    cx: &mut MoveContext<'_>,
    k: i64,
    deadline: Instant,
) -> Result<(), MoveError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let slice = left.min(ERROR_CHECK_EVERY);
        match wait_tick(&cx.dst, &cx.rec, k, cx.opts.poll, slice).await {
            Err(MoveError::Timeout { .. }) if slice < left => {
                check_apply_errors(&cx.dst, &cx.rec, &mut cx.apply_errors).await?;
            }
            r => return r,
        }
    }
}
