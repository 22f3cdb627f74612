//! `atoll schema diff`: do all microshards carry the same tables, columns, indexes and
//! constraints?

use crate::cluster::{Cluster, Need};
use crate::exit::UNHEALTHY;
use crate::output::print_json;
use crate::{CmdResult, Context};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum SchemaCommand {
    /// Compare the live schema of every microshard; exit 3 when they differ
    Diff,
}

pub async fn run(ctx: &Context, cmd: SchemaCommand) -> CmdResult {
    let SchemaCommand::Diff = cmd;
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    let groups = atoll_migrate::schema_diff(&config, &snapshot).await?;
    if ctx.json {
        print_json(&groups)?;
    } else if groups.is_empty() {
        println!("no microshards");
    } else {
        for g in &groups {
            if g.reference {
                println!(
                    "{} shards share the reference signature: {}",
                    g.count, g.schemas
                );
            } else {
                println!("{}", g.explain());
            }
        }
        if groups.len() == 1 {
            println!("all shards have the same schema");
        }
    }
    Ok(if groups.len() <= 1 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}
