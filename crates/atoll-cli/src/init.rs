//! `atoll init`: install or upgrade the catalog on every island master.

use crate::exit::Failure;
use crate::output::print_json;
use crate::status::{discover, require_masters};
use crate::{CmdResult, Context};
use std::process::ExitCode;

pub async fn run(ctx: &Context) -> CmdResult {
    let config = ctx.load_config()?;
    let snapshot = discover(&config).await;
    require_masters(&snapshot)?;
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
