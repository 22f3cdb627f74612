//! `atoll global replicate|status`: shard 0's cluster-wide tables copied read-only to
//! every other island (atoll-move's `global_copy`), and how those copies are doing.

use crate::cluster::{Cluster, Need};
use crate::exit::UNHEALTHY;
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_core::{Config, IslandId, Snapshot};
use atoll_move::global_copy::{self, CopyHealth, CopyStatus, GlobalCopyError, ReplicateRequest};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum GlobalCommand {
    /// Copy shard 0's tables (sh0000) read-only to every other island by logical
    /// replication, or finish and repair the copies; checks the replication slots and WAL
    /// senders on shard 0's master first. Run it again after a kill: it continues
    Replicate(ReplicateArgs),
    /// Each island's copy: state, subscription, lag in bytes and ms, what is wrong and
    /// the command that repairs it (exit 3 when any copy is unhealthy)
    Status,
}

#[derive(clap::Args)]
pub struct ReplicateArgs {
    /// Exactly these tables of sh0000 (comma-separated, unqualified), added to or removed
    /// from existing copies; default: the tables the copies hold already, else every
    /// table but its migration history
    #[arg(long, value_name = "T1,T2", value_delimiter = ',')]
    pub tables: Option<Vec<String>>,
}

pub async fn run(ctx: &Context, cmd: GlobalCommand) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Masters).await?;
    match cmd {
        GlobalCommand::Replicate(args) => replicate(ctx, &config, &snapshot, args).await,
        GlobalCommand::Status => status(ctx, &config, &snapshot).await,
    }
}

async fn replicate(
    ctx: &Context,
    config: &Config,
    snapshot: &Snapshot,
    args: ReplicateArgs,
) -> CmdResult {
    let req = ReplicateRequest {
        tables: args.tables,
    };
    let quiet = ctx.json;
    let progress = move |island: IslandId, what: &str| {
        if !quiet {
            eprintln!("island {island}: {what}");
        }
    };
    let report = global_copy::replicate(config, snapshot, &req, &progress).await?;
    if ctx.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let c = &report.capacity;
    println!(
        "shard 0 on island {}: tables {}; its master had {} of {} replication slots and {} of {} WAL senders in use ({} more needed)",
        report.source,
        report.tables.join(", "),
        c.used_slots,
        c.max_slots,
        c.used_senders,
        c.max_senders,
        c.needed
    );
    for copy in &report.copies {
        let rows: i64 = copy.rows.iter().map(|(_, n)| n).sum();
        let what = if copy.created { "copied" } else { "checked" };
        println!(
            "island {}: {what}, {rows} rows verified, {:.1} s",
            copy.island,
            copy.elapsed_ms as f64 / 1000.0
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(ctx: &Context, config: &Config, snapshot: &Snapshot) -> CmdResult {
    let copies = global_copy::status(config, snapshot).await?;
    let healthy = copies.iter().all(|c| c.health == CopyHealth::Healthy);
    if ctx.json {
        print_json(&copies)?;
    } else if copies.is_empty() {
        println!("no global copies: `atoll global replicate` makes them");
    } else {
        for c in &copies {
            println!("{}", line(c));
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(UNHEALTHY)
    })
}

fn line(c: &CopyStatus) -> String {
    let lag = match (c.lag_bytes, c.lag_ms) {
        (Some(b), Some(ms)) => format!("lag {b} bytes, {ms:.0} ms"),
        (Some(b), None) => format!("lag {b} bytes"),
        _ => "lag unknown".into(),
    };
    let state = c.state.map_or("none", |s| s.as_str());
    match &c.health {
        CopyHealth::Healthy => format!("island {}: {state}, {lag}", c.island),
        other => format!("island {}: {state}, {lag}: {}", c.island, problem(c, other)),
    }
}

fn problem(c: &CopyStatus, h: &CopyHealth) -> String {
    let why = match h {
        CopyHealth::Healthy => return String::new(),
        CopyHealth::Missing => "has no copy of shard 0's tables".to_string(),
        CopyHealth::Unfinished => "its copy was not finished".to_string(),
        CopyHealth::Broken(why) => format!("its copy is broken: {why}"),
        CopyHealth::Lagging => "its copy lags".to_string(),
    };
    match &c.repair {
        Some(cmd) => format!("{why}; run `{cmd}`"),
        None => why,
    }
}

/// The copies and their problems for `atoll status`: none when shard 0 has no copies (or
/// is not active on one island, which status reports on its own).
pub async fn problems(config: &Config, snapshot: &Snapshot) -> (Vec<CopyStatus>, Vec<String>) {
    match global_copy::status(config, snapshot).await {
        Ok(copies) => {
            let problems = copies
                .iter()
                .filter(|c| c.health != CopyHealth::Healthy)
                .map(|c| {
                    format!(
                        "global copy on island {}: {}",
                        c.island,
                        problem(c, &c.health)
                    )
                })
                .collect();
            (copies, problems)
        }
        Err(GlobalCopyError::Refused(_)) => (Vec::new(), Vec::new()),
        Err(e) => (Vec::new(), vec![format!("global copies unreadable: {e}")]),
    }
}
