//! `atoll rebalance`: plan moves so the islands carry equal weight (shard sizes, the
//! registry's weights, or a custom weight query), optionally emptying islands to
//! decommission them; print the plan; run the moves in parallel.

use crate::allocate::require_catalog;
use crate::exit::Failure;
use crate::move_cmd::{failure, stop_after, Bars};
use crate::output::{bytes, print_json};
use crate::status::{discover, require_masters};
use crate::{CmdResult, Context};
use atoll_core::move_plan::VerifyMode;
use atoll_core::rebalance::RebalancePlan;
use atoll_core::IslandId;
use atoll_move::MoveOptions;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct RebalanceArgs {
    /// Move every shard off this island (repeatable)
    #[arg(long, value_name = "ISLAND")]
    pub decommission: Vec<u16>,
    /// Moves running at the same time
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub parallelism: usize,
    /// Print the plan only
    #[arg(long)]
    pub dry_run: bool,
    /// Run the plan without asking
    #[arg(long)]
    pub yes: bool,
    /// Finish unfinished moves (of an interrupted rebalance) first, then plan the rest
    #[arg(long)]
    pub resume: bool,
    /// Query run on every island master returning (shard int, weight float8) rows;
    /// default: the registry's weight column, else the shard's size
    #[arg(long, value_name = "SQL")]
    pub weight_sql: Option<String>,
    /// Compare row counts (counts) or also checksums (full) before each switch
    #[arg(long, value_name = "MODE", default_value = "counts")]
    pub verify: VerifyMode,
}

#[derive(serde::Serialize)]
struct RebalanceJson<'a> {
    plan: &'a RebalancePlan,
    dry_run: bool,
    resumed: Vec<atoll_move::MoveReport>,
    outcomes: Vec<atoll_move::RebalanceOutcome>,
}

pub async fn run(ctx: &Context, args: RebalanceArgs) -> CmdResult {
    let config = ctx.load_config()?;
    let mut snapshot = discover(&config).await;
    require_masters(&snapshot)?;
    require_catalog(&snapshot)?;
    let opts = MoveOptions {
        verify: args.verify,
        stop_after: stop_after()?,
        ..MoveOptions::default()
    };
    let pending = atoll_move::unfinished(&config, &snapshot)
        .await
        .map_err(failure)?;
    let mut resumed = Vec::new();
    if !pending.is_empty() {
        if !args.resume || args.dry_run {
            let list: Vec<String> = pending
                .iter()
                .map(|m| format!("{} ({})", m.shard, m.step))
                .collect();
            return Err(Failure::input(format!(
                "unfinished moves: {}; run `atoll rebalance --resume` to finish them first, or abort them with `atoll move --abort --shard N`",
                list.join(", ")
            )));
        }
        let bars = Bars::new(ctx.json);
        for m in &pending {
            let r =
                atoll_move::resume_move(&config, &snapshot, Some(m.shard), &opts, bars.progress())
                    .await
                    .map_err(failure)?;
            resumed.push(r);
        }
        bars.finish();
        snapshot = discover(&config).await;
    }
    let weights = atoll_move::load_weights(&config, &snapshot, args.weight_sql.as_deref())
        .await
        .map_err(failure)?;
    let decommission: Vec<IslandId> = args.decommission.iter().map(|i| IslandId(*i)).collect();
    // What was actually used: sizes only when no shard has a custom or registry weight.
    let sizes = weights.sizes;
    let plan = atoll_move::plan_rebalance(&snapshot, weights.loads, &decommission, sizes)
        .map_err(Failure::input)?;
    if !ctx.json {
        print_plan(&plan, sizes);
    }
    if args.dry_run || plan.moves.is_empty() {
        if ctx.json {
            print_json(&RebalanceJson {
                plan: &plan,
                dry_run: args.dry_run,
                resumed,
                outcomes: vec![],
            })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(plan.moves.len())? {
        return Err(Failure::input("not confirmed; nothing was moved"));
    }
    let bars = Bars::new(ctx.json);
    let outcomes = atoll_move::run_moves(
        &config,
        &snapshot,
        &plan.moves,
        args.parallelism,
        &opts,
        bars.progress(),
    )
    .await;
    bars.finish();
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if ctx.json {
        print_json(&RebalanceJson {
            plan: &plan,
            dry_run: false,
            resumed,
            outcomes,
        })?;
    } else {
        for o in &outcomes {
            match (&o.report, &o.error) {
                (Some(r), _) => println!(
                    "{}: island {} -> {} done, writes paused {:.1} ms",
                    o.shard, o.from, o.to, r.pause_ms
                ),
                (_, Some(e)) => println!("{}: island {} -> {} FAILED: {e}", o.shard, o.from, o.to),
                _ => {}
            }
        }
    }
    if failed > 0 {
        return Err(Failure::failed(format!(
            "{failed} of {} moves failed; fix the cause and run `atoll rebalance --resume`",
            plan.moves.len()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(plan: &RebalancePlan, sizes: bool) {
    let w = |v: f64| {
        if sizes {
            bytes(v as u64)
        } else {
            format!("{v:.1}")
        }
    };
    println!("island  before                after");
    for (b, a) in plan.before.iter().zip(&plan.after) {
        let before = format!("{} ({} shards)", w(b.weight), b.shards);
        let after = format!("{} ({} shards)", w(a.weight), a.shards);
        let note = if b.decommissioned {
            "  decommissioned"
        } else {
            ""
        };
        let island = b.island.to_string();
        println!("{island:<7} {before:<21} {after}{note}");
    }
    if plan.moves.is_empty() {
        println!("balanced: nothing to move");
    }
    for m in &plan.moves {
        println!(
            "move {}: island {} -> {} ({})",
            m.shard,
            m.from,
            m.to,
            w(m.weight)
        );
    }
}

fn confirm(n: usize) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::input(
            "pass --yes to run the plan without a terminal to confirm on",
        ));
    }
    print!("run these {n} moves? [y/N] ");
    std::io::stdout().flush().map_err(Failure::failed)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(Failure::failed)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
