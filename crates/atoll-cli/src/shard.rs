//! `atoll shard activate|deactivate`.

use crate::cluster::{Cluster, Need};
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_core::{IslandId, ShardNo};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ShardCommand {
    /// Mark a shard active on the island that holds it (clients route to it)
    Activate(ShardArgs),
    /// Mark a shard inactive (clients stop routing to it)
    Deactivate(ShardArgs),
}

#[derive(clap::Args)]
pub struct ShardArgs {
    /// Shard number (42) or schema name (sh0042)
    pub shard: ShardNo,
    /// The island, when the shard has copies on several
    #[arg(long, value_name = "N")]
    pub island: Option<u16>,
}

pub async fn run(ctx: &Context, cmd: ShardCommand) -> CmdResult {
    let (args, active) = match cmd {
        ShardCommand::Activate(a) => (a, true),
        ShardCommand::Deactivate(a) => (a, false),
    };
    let Cluster { config, snapshot } = ctx.cluster(Need::Registry).await?;
    let island = atoll_pg::shard_state::set_active(
        &config,
        &snapshot,
        args.shard,
        args.island.map(IslandId),
        active,
    )
    .await?;
    let state = if active { "active" } else { "inactive" };
    if ctx.json {
        print_json(
            &serde_json::json!({ "shard": args.shard, "island": island, "active": active }),
        )?;
    } else {
        println!("{} is {state} on island {island}", args.shard);
    }
    Ok(ExitCode::SUCCESS)
}
