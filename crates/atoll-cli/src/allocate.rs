//! `atoll allocate`: create microshard schemas where there is the most room, spread over
//! the islands (the planner counts each new shard at its expected size).

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::output::print_json;
use crate::progress::Progress;
use crate::{CmdResult, Context};
use atoll_core::allocation::{self, Placement};
use atoll_core::{IslandId, ShardRange};
use atoll_migrate::{AllocateOptions, Event, RunReport};
use atoll_pg::allocate::Allocated;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct AllocateArgs {
    /// Shards to create: N, N-M, or a comma list of those (0..=9999)
    #[arg(long, value_name = "RANGE")]
    pub shards: ShardRange,
    /// Put every shard on this island instead of the least loaded ones
    #[arg(long, value_name = "N")]
    pub island: Option<u16>,
    /// Put no new shard on these islands (comma list), e.g. one about to be decommissioned
    #[arg(
        long,
        value_name = "N,..",
        value_delimiter = ',',
        conflicts_with = "island"
    )]
    pub exclude: Vec<u16>,
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
    /// With --migrate: also allow destructive statements on shards of the range that
    /// existed before this call (new shards replay the whole history regardless)
    #[arg(long, requires = "migrate")]
    pub allow_unsafe: bool,
}

pub async fn run(ctx: &Context, args: AllocateArgs) -> CmdResult {
    let cluster = ctx.cluster(Need::Catalog).await?;
    let exclude: Vec<IslandId> = args.exclude.iter().copied().map(IslandId).collect();
    let plan = allocation::plan_excluding(
        &cluster.snapshot,
        args.shards.shards(),
        args.island.map(IslandId),
        &exclude,
    )
    .map_err(Failure::input)?;
    let (done, migrated) = if args.migrate {
        let (done, report) = migrated(ctx, &cluster, &plan, &args).await?;
        (done, Some(report))
    } else {
        let done =
            atoll_pg::allocate::execute(&cluster.config, &cluster.snapshot, &plan, args.activate)
                .await?;
        (done, None)
    };
    if ctx.json {
        match &migrated {
            Some(m) => print_json(&serde_json::json!({ "allocated": done, "migrate": m }))?,
            None => print_json(&done)?,
        }
    } else {
        print!("{}", render(&cluster, &done));
        if let Some(m) = &migrated {
            print!("{}", crate::migrate::render_report(m));
        }
    }
    Ok(match migrated {
        Some(m) => crate::migrate::exit_code(&m),
        None => ExitCode::SUCCESS,
    })
}

/// `--migrate`: the library allocates, migrates and activates; this shows the run.
async fn migrated(
    ctx: &Context,
    cluster: &Cluster,
    plan: &[Placement],
    args: &AllocateArgs,
) -> Result<(Vec<Allocated>, RunReport), Failure> {
    // Read first: a bad migration directory allocates nothing.
    let set = crate::migrate::read_set(&args.migrations_dir)?;
    let opts = AllocateOptions {
        activate: args.activate,
        allow_unsafe: args.allow_unsafe,
    };
    let view = Progress::new(ctx).run();
    let on = |e: Event| view.on(e);
    let (config, snapshot) = (&cluster.config, &cluster.snapshot);
    let result = atoll_migrate::allocate_migrated(config, snapshot, plan, &set, opts, &on).await;
    view.finish();
    Ok(result?)
}

fn render(cluster: &Cluster, done: &[Allocated]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for island in &cluster.snapshot.islands {
        let here = done
            .iter()
            .filter(|a| a.created && a.island == island.id)
            .count();
        if here > 0 {
            let _ = writeln!(out, "island {}: created {here} shards", island.id);
        }
    }
    let created = done.iter().filter(|a| a.created).count();
    let _ = writeln!(
        out,
        "{} shards: {} created, {} already existed, {} active",
        done.len(),
        created,
        done.len() - created,
        done.iter().filter(|a| a.active).count()
    );
    out
}
