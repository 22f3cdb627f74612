//! `atoll schema diff`: do all microshards carry the same tables, columns, indexes and
//! constraints?

use crate::cluster::{Cluster, Need};
use crate::exit::{Failure, UNHEALTHY};
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_core::ShardNo;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum SchemaCommand {
    /// Compare the live schema of every microshard; exit 3 when they differ
    Diff,
    /// The DDL that would bring each drifted group of shards to a reference shard's schema
    /// (missing tables, columns, indexes, defaults), and what cannot be generated safely;
    /// exit 3 when shards differ
    Plan(PlanArgs),
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// The reference shard (sh0001 or 1)
    #[arg(long, value_name = "SHARD")]
    pub like: String,
    /// Write the DDL as a migration (target sh, idempotent) into the migration directory
    #[arg(long)]
    pub write_migration: bool,
    /// Migration directory for --write-migration
    #[arg(long, default_value = "migrations", value_name = "DIR")]
    pub dir: PathBuf,
}

pub async fn run(ctx: &Context, cmd: SchemaCommand) -> CmdResult {
    match cmd {
        SchemaCommand::Diff => diff(ctx).await,
        SchemaCommand::Plan(args) => plan(ctx, &args).await,
    }
}

async fn plan(ctx: &Context, args: &PlanArgs) -> CmdResult {
    let like: ShardNo = args
        .like
        .parse()
        .map_err(|e| Failure::input(format!("--like: {e}")))?;
    let like = like.schema();
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    let groups = atoll_migrate::schema_plan(&config, &snapshot, &like).await?;
    let written = if args.write_migration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        atoll_migrate::write_convergence(&args.dir, &like, &groups, now)?
    } else {
        Vec::new()
    };
    if ctx.json {
        print_json(&serde_json::json!({ "like": like, "groups": groups, "written": written }))?;
    } else {
        if groups.is_empty() {
            println!("every shard has the schema of {like}");
        }
        for g in &groups {
            println!("{} ({} shards) to match {like}:", g.schemas, g.count);
            for d in &g.ddl {
                println!("  {d}");
            }
            for n in &g.not_generated {
                println!("  not generated: {n}");
            }
        }
        for p in &written {
            println!("wrote {}", p.display());
        }
        if !written.is_empty() {
            println!("run `atoll migrate plan`, then `atoll migrate apply`");
        }
    }
    Ok(if groups.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

async fn diff(ctx: &Context) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    let groups = atoll_migrate::schema_diff(&config, &snapshot).await?;
    let copies = if snapshot.active_island(ShardNo::GLOBAL).is_ok() {
        atoll_move::global_copy::drift(&config, &snapshot).await?
    } else {
        Vec::new()
    };
    if ctx.json {
        print_json(&serde_json::json!({ "groups": groups, "global_copies": copies }))?;
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
    if !ctx.json {
        print_copies(&copies);
    }
    let copies_differ = copies.iter().any(|c| !c.in_sync);
    Ok(if groups.len() <= 1 && !copies_differ {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

/// Shard 0's read-only copies against shard 0's tables.
fn print_copies(copies: &[atoll_move::global_copy::CopyDrift]) {
    for c in copies {
        if c.in_sync {
            println!("island {}: shard 0's copy has shard 0's tables", c.island);
            continue;
        }
        println!(
            "island {}: shard 0's copy differs from shard 0 (`atoll global replicate` brings it there):",
            c.island
        );
        for s in c.plan.before.iter().chain(&c.plan.after) {
            println!("  {s}");
        }
        for n in &c.plan.not_generated {
            println!("  not generated: {n}");
        }
    }
}
