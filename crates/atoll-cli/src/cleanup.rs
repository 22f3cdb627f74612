//! `atoll cleanup`: drop the backup schemas (`shNNNN_moved_<time>`) that moves leave on
//! their source islands, once older than a given age.

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::output::print_json;
use crate::{CmdResult, Context};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CleanupArgs {
    /// Only backups at least this old: e.g. 7d, 12h, 30m, 0 for all
    #[arg(long, value_name = "AGE", default_value = crate::debris::CLEANUP_AGE)]
    pub older_than: String,
    /// Show what would be dropped without dropping it
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(ctx: &Context, args: CleanupArgs) -> CmdResult {
    let age = atoll_core::move_plan::parse_age(&args.older_than)
        .map_err(|e| Failure::input(format!("--older-than: {e}")))?;
    let Cluster { config, snapshot } = ctx.cluster(Need::Masters).await?;
    let done = atoll_move::cleanup(&config, &snapshot, age, args.dry_run).await?;
    // Cleanup never touches an unfinished move; say which command does.
    for p in crate::debris::problems(&atoll_move::move_debris(&config, &snapshot).await) {
        eprintln!("note: {p}");
    }
    if ctx.json {
        print_json(&done)?;
    } else if done.is_empty() {
        println!("no backups older than {}", args.older_than);
    } else {
        let verb = if args.dry_run {
            "would drop"
        } else {
            "dropped"
        };
        for d in &done {
            println!(
                "island {}: {verb} {} (backup of {})",
                d.island, d.schema, d.shard
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
