//! Step `activated`: the shard marked active on the destination, with the weight it had on
//! the source. After the switch the shard is inactive on both islands until this commits,
//! so it is retried on fresh connections before the move reports the shard OFFLINE.

use crate::context::MoveContext;
use crate::error::MoveError;
use atoll_core::move_plan::MoveStep;
use atoll_pg::catalog::moves::{self, MoveRole};
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
                    return Err(MoveError::Other {
                        shard,
                        msg: format!(
                            "OFFLINE: switched off on island {} but activating on island {} failed for {} s ({e}); run `atoll move --resume --shard {}` now",
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
/// (idempotent, so retrying after a commit whose answer was lost is harmless).
pub(crate) async fn activate_once(
    cx: &mut MoveContext<'_>,
    weight: Option<f64>,
) -> Result<(), MoveError> {
    let shard = cx.shard();
    let id = cx.rec.id;
    let node = cx.dst.node.clone();
    let (tx, ctx) = cx.dst.tx().await?;
    registry::activate_arrived(&tx, &node, shard, weight).await?;
    let n = moves::set_step(&tx, &node, id, MoveRole::Destination, MoveStep::Activated).await?;
    if n != 1 {
        // Dropping the transaction rolls the activation back.
        return Err(MoveError::Other {
            shard: cx.rec.shard,
            msg: format!(
                "activation found {n} destination rows of move {id} instead of 1; rolled back"
            ),
        });
    }
    tx.commit().await.map_err(|e| ctx.err(e))
}
