//! `atoll init`: install or upgrade the catalog on every island master.

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use std::process::ExitCode;

pub async fn run(ctx: &Context) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Masters).await?;
    let outcomes = atoll_pg::catalog::init(&config, &snapshot)
        .await
        .map_err(Failure::from)?;
    if ctx.json {
        print_json(&outcomes)?;
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
    }
    Ok(ExitCode::SUCCESS)
}
