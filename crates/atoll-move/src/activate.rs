//! Step `activated`: the shard marked active on the destination, with the weight it had on
//! the source. After the switch the shard is inactive on both islands until this commits,
//! so it is retried on fresh connections before the move reports the shard OFFLINE.

use crate::context::MoveContext;
use crate::error::MoveError;
use atoll_pg::catalog::moves;
use atoll_pg::catalog::registry;
use std::time::{Duration, Instant};

/// How long activation is retried after the switch before giving up.
const ACTIVATE_PATIENCE: Duration = Duration::from_secs(30);

/// The shard's rebalancing weight on the source (it travels with the shard). Read
/// before the switch, so activation needs nothing from the source.
pub(crate) async fn source_weight(cx: &MoveContext<'_>) -> Result<Option<f64>, MoveError> {
    Ok(registry::weight(&cx.src.client, &cx.src.node, cx.shard()).await?)
}

/// Marks the shard active on the destination. After the switch the shard is inactive
/// on both islands until this commits, so a failure (a dropped connection, a restart
/// of the destination) is retried on fresh connections with backoff for
/// [`ACTIVATE_PATIENCE`] before the error, which says the shard is offline.
pub(crate) async fn activate(
    cx: &mut MoveContext<'_>,
    weight: Option<f64>,
) -> Result<(), MoveError> {
    let shard = cx.shard();
    let deadline = Instant::now() + ACTIVATE_PATIENCE;
    let mut backoff = Duration::from_millis(50);
    loop {
        match activate_once(cx, weight).await {
            Ok(()) => return Ok(()),
            Err(e @ (MoveError::Query { .. } | MoveError::Pg(_))) => {
                if Instant::now() + backoff > deadline {
                    return Err(MoveError::Offline {
                        shard,
                        detail: format!(
                            "switched off on island {} but activating on island {} failed for {} s ({e}); run `atoll move --resume --shard {}` now",
                            cx.rec.source,
                            cx.rec.destination,
                            ACTIVATE_PATIENCE.as_secs(),
                            shard.get()
                        ),
                    });
                }
                tracing::warn!(%shard, error = %e, "activation failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if let Ok(db) = cx.dst.reconnect(cx.config).await {
                    cx.dst = db;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// One attempt: the registry row and the destination's move row in one transaction
/// (idempotent, so retrying after a commit whose answer was lost is harmless). The move
/// row is the fence: once an abort of the move has marked it, activation rolls back
/// (see `moves::mark_abort_started`), whatever became of the move lock.
pub(crate) async fn activate_once(
    cx: &mut MoveContext<'_>,
    weight: Option<f64>,
) -> Result<(), MoveError> {
    let shard = cx.shard();
    let id = cx.rec.id;
    let node = cx.dst.node.clone();
    let after_gen = cx.switch_gen.unwrap_or(0);
    let (tx, ctx) = cx.dst.tx().await?;
    registry::activate_arrived(&tx, &node, shard, weight, after_gen).await?;
    if moves::record_activation(&tx, &node, id).await? == 1 {
        return tx.commit().await.map_err(|e| ctx.err(e));
    }
    // Dropping the transaction rolls the activation back.
    drop(tx);
    let why = match moves::abort_started(&cx.dst.client, &node, id).await? {
        Some(t) => format!("an abort of move {id} started at {t}"),
        None => format!(
            "move {id} has no destination row any more (an abort or another process ended it)"
        ),
    };
    Err(MoveError::Unsafe {
        shard,
        check: "activation_fenced",
        detail: format!(
            "{why} while the move was activating on island {}; the activation was rolled back, so the shard stays with island {}; see `atoll status` and finish any abort with `atoll move --abort --shard {}`",
            cx.rec.destination,
            cx.rec.source,
            shard.get()
        ),
    })
}
