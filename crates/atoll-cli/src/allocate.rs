//! `atoll allocate`: create microshard schemas where there is the most room.

use crate::exit::Failure;
use crate::output::print_json;
use crate::status::{discover, require_masters};
use crate::{CmdResult, Context};
use atoll_core::{allocation, IslandId, ShardRange, Snapshot, SnapshotProblem};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AllocateArgs {
    /// Shards to create: N, N-M, or a comma list of those (0..=9999)
    #[arg(long, value_name = "RANGE")]
    pub shards: ShardRange,
    /// Put every shard on this island instead of the least loaded ones
    #[arg(long, value_name = "N")]
    pub island: Option<u16>,
    /// Activate the shards (new ones, and existing inactive ones of the range)
    #[arg(long)]
    pub activate: bool,
    /// Bring the new shards to the current migration version (see `atoll migrate`) before
    /// activating them
    #[arg(long)]
    pub migrate: bool,
    /// Migration directory for --migrate
    #[arg(
        long,
        default_value = "migrations",
        value_name = "DIR",
        requires = "migrate"
    )]
    pub migrations_dir: std::path::PathBuf,
}

pub async fn run(ctx: &Context, args: AllocateArgs) -> CmdResult {
    let config = ctx.load_config()?;
    let snapshot = discover(&config).await;
    require_masters(&snapshot)?;
    require_catalog(&snapshot)?;
    let plan = allocation::plan(&snapshot, args.shards.shards(), args.island.map(IslandId))
        .map_err(Failure::input)?;
    let (done, migrated) = if args.migrate {
        let dir = &args.migrations_dir;
        let (done, report) =
            crate::migrate::allocate_migrated(ctx, &config, &snapshot, &plan, args.activate, dir)
                .await?;
        (done, Some(report))
    } else {
        let done = atoll_pg::allocate::execute(&config, &snapshot, &plan, args.activate)
            .await
            .map_err(Failure::from)?;
        (done, None)
    };
    if ctx.json {
        match &migrated {
            Some(m) => print_json(&serde_json::json!({ "allocated": done, "migrate": m }))?,
            None => print_json(&done)?,
        }
    } else {
        let created = done.iter().filter(|a| a.created).count();
        for island in &snapshot.islands {
            let here: Vec<_> = done
                .iter()
                .filter(|a| a.created && a.island == island.id)
                .collect();
            if !here.is_empty() {
                println!("island {}: created {} shards", island.id, here.len());
            }
        }
        println!(
            "{} shards: {} created, {} already existed, {} active",
            done.len(),
            created,
            done.len() - created,
            done.iter().filter(|a| a.active).count()
        );
        if let Some(m) = &migrated {
            print!("{}", crate::migrate::render_report(m));
        }
    }
    if migrated.is_some_and(|m| m.status != "done" && m.status != "nothing_to_do") {
        return Ok(ExitCode::from(crate::exit::FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn require_catalog(s: &Snapshot) -> Result<(), Failure> {
    match s
        .problems
        .iter()
        .find(|p| matches!(p, SnapshotProblem::NotInitialized { .. }))
    {
        Some(p) => Err(Failure::input(p)),
        None => Ok(()),
    }
}
