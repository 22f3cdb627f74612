//! `shard.activate` / `shard.deactivate`: atoll-pg's activation (`shard_state::set_active`),
//! on this node's island, run on its master. Safe to re-run: setting a flag twice is
//! setting it once.

use super::{ActionCtx, ActionError, ErrorCode, ShardArgs};
use atoll_core::ShardNo;
use atoll_pg::{Discoverer, DiscoveryOptions};
use serde_json::{json, Value};

pub(super) async fn run(
    ctx: &ActionCtx<'_>,
    a: ShardArgs,
    active: bool,
) -> Result<Value, ActionError> {
    let shard = ShardNo::new(a.shard)
        .map_err(|e| ActionError::new(ErrorCode::Failed, format!("args.shard: {e}")))?;
    drop(ctx.local_master().await?);
    ctx.progress("discovering the cluster").await;
    let cfg = &ctx.ex.cfg;
    let options = DiscoveryOptions {
        sizes: false,
        ..Default::default()
    };
    let snapshot = Discoverer::new(cfg.cluster.clone(), options)
        .discover()
        .await;
    let verb = if active { "activating" } else { "deactivating" };
    ctx.progress(format!("{verb} {shard} on island {}", cfg.island))
        .await;
    let island =
        atoll_pg::shard_state::set_active(&cfg.cluster, &snapshot, shard, Some(cfg.island), active)
            .await
            .map_err(|e| match e {
                atoll_pg::PgError::Shard { .. } => {
                    ActionError::new(ErrorCode::ShardRefused, e.to_string())
                }
                other => other.into(),
            })?;
    Ok(json!({ "shard": shard.schema(), "island": island.0, "active": active }))
}
