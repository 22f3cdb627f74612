//! `atoll init`: install or upgrade the catalog on every island master; an island lacking
//! the copy of shard 0's tables the other islands hold (a new one) gets it.

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_move::global_copy::{self, CopyHealth, ReplicateRequest};
use std::process::ExitCode;

pub async fn run(ctx: &Context) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Masters).await?;
    let outcomes = atoll_pg::catalog::init(&config, &snapshot)
        .await
        .map_err(Failure::from)?;
    let copied = global_copies(ctx, &config, &snapshot).await?;
    if ctx.json {
        let mut list = serde_json::to_value(&outcomes).map_err(Failure::failed)?;
        for o in list.as_array_mut().into_iter().flatten() {
            let island = o["island"].as_u64();
            let made = copied.iter().any(|i| Some(u64::from(i.0)) == island);
            if let Some(o) = o.as_object_mut() {
                o.insert("global_copy_created".into(), made.into());
            }
        }
        print_json(&list)?;
    } else {
        for o in &outcomes {
            if o.steps_applied.is_empty() {
                println!(
                    "island {}: catalog v{} is current (cluster {})",
                    o.island, o.to_version, o.cluster_id
                );
            } else {
                println!(
                    "island {}: catalog v{} -> v{} (cluster {}, applied: {})",
                    o.island,
                    o.from_version,
                    o.to_version,
                    o.cluster_id,
                    o.steps_applied.join(", ")
                );
            }
        }
        for island in &copied {
            println!("island {island}: shard 0's tables copied (see `atoll global status`)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Copies shard 0's tables to the islands that lack the copy the others hold. None when
/// no island holds one, or shard 0 is not active anywhere yet.
async fn global_copies(
    ctx: &Context,
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<IslandId>, Failure> {
    if snapshot.active_island(ShardNo::GLOBAL).is_err() {
        return Ok(Vec::new());
    }
    let missing: Vec<IslandId> = global_copy::status(config, snapshot)
        .await?
        .into_iter()
        .filter(|c| c.health == CopyHealth::Missing)
        .map(|c| c.island)
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let quiet = ctx.json;
    let progress = move |island: IslandId, what: &str| {
        if !quiet {
            eprintln!("island {island}: {what}");
        }
    };
    let req = ReplicateRequest::default();
    global_copy::replicate(config, snapshot, &req, &progress)
        .await
        .map_err(|e| {
            Failure::from(e).context(
                "the catalog is initialised, but copying shard 0's tables to the new islands failed; run `atoll global replicate`",
            )
        })?;
    Ok(missing)
}
