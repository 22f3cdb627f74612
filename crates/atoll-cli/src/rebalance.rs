//! `atoll rebalance`: moves so the islands carry equal weight (shard sizes, the registry's
//! weights, or a custom weight query), optionally emptying islands to decommission them.
//! atoll-move finishes unfinished moves, plans, and runs the moves in parallel; this asks
//! for confirmation and shows the plan and the outcomes.

use crate::cluster::Need;
use crate::exit::Failure;
use crate::hook::TestHook;
use crate::output::{bytes, print_json};
use crate::progress::Progress;
use crate::{CmdResult, Context};
use atoll_core::move_plan::VerifyMode;
use atoll_core::rebalance::RebalancePlan;
use atoll_core::IslandId;
use atoll_move::{MoveOptions, MoveReport, RebalanceOutcome, RebalanceRequest};
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
    #[command(flatten)]
    pub hook: TestHook,
}

impl RebalanceArgs {
    fn request(&self) -> RebalanceRequest {
        RebalanceRequest {
            decommission: self.decommission.iter().map(|i| IslandId(*i)).collect(),
            weight_sql: self.weight_sql.clone(),
            resume: self.resume,
            dry_run: self.dry_run,
        }
    }
}

#[derive(serde::Serialize)]
struct RebalanceJson<'a> {
    plan: &'a RebalancePlan,
    dry_run: bool,
    resumed: Vec<MoveReport>,
    outcomes: Vec<RebalanceOutcome>,
}

pub async fn run(ctx: &Context, args: RebalanceArgs) -> CmdResult {
    let cluster = ctx.cluster(Need::Catalog).await?;
    let opts = args.hook.apply(
        &cluster.config,
        MoveOptions {
            verify: args.verify,
            ..MoveOptions::default()
        },
    )?;
    let config = cluster.config;
    let view = Progress::new(ctx).moves();
    let prepared = atoll_move::prepare_rebalance(
        &config,
        cluster.snapshot,
        &args.request(),
        &opts,
        view.sink(),
    )
    .await;
    view.finish();
    let prepared = prepared?;
    let plan = &prepared.plan;
    if !ctx.json {
        print!("{}", render_plan(plan, prepared.sizes));
    }
    if args.dry_run || plan.moves.is_empty() {
        if ctx.json {
            print_json(&RebalanceJson {
                plan,
                dry_run: args.dry_run,
                resumed: prepared.resumed,
                outcomes: vec![],
            })?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(plan.moves.len())? {
        return Err(Failure::input("not confirmed; nothing was moved"));
    }
    let view = Progress::new(ctx).moves();
    let (snapshot, moves) = (&prepared.snapshot, &plan.moves);
    let outcomes = atoll_move::run_moves(
        &config,
        snapshot,
        moves,
        args.parallelism,
        &opts,
        view.sink(),
    )
    .await;
    view.finish();
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if ctx.json {
        print_json(&RebalanceJson {
            plan,
            dry_run: false,
            resumed: prepared.resumed,
            outcomes,
        })?;
    } else {
        print!("{}", render_outcomes(&outcomes));
    }
    if failed > 0 {
        return Err(Failure::failed(format!(
            "{failed} of {} moves failed; fix the cause and run `atoll rebalance --resume`",
            plan.moves.len()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_outcomes(outcomes: &[RebalanceOutcome]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for o in outcomes {
        let _ = match (&o.report, &o.error) {
            (Some(r), _) => writeln!(
                out,
                "{}: island {} -> {} done, writes paused {:.1} ms",
                o.shard, o.from, o.to, r.pause_ms
            ),
            (_, Some(e)) => writeln!(
                out,
                "{}: island {} -> {} FAILED: {e}",
                o.shard, o.from, o.to
            ),
            _ => Ok(()),
        };
    }
    out
}

fn render_plan(plan: &RebalancePlan, sizes: bool) -> String {
    use std::fmt::Write;
    let w = |v: f64| {
        if sizes {
            bytes(v as u64)
        } else {
            format!("{v:.1}")
        }
    };
    let mut out = String::new();
    let _ = writeln!(out, "island  before                after");
    for (b, a) in plan.before.iter().zip(&plan.after) {
        let before = format!("{} ({} shards)", w(b.weight), b.shards);
        let after = format!("{} ({} shards)", w(a.weight), a.shards);
        let note = if b.decommissioned {
            "  decommissioned"
        } else {
            ""
        };
        let island = b.island.to_string();
        let _ = writeln!(out, "{island:<7} {before:<21} {after}{note}");
    }
    if plan.moves.is_empty() {
        let _ = writeln!(out, "balanced: nothing to move");
    }
    for m in &plan.moves {
        let _ = writeln!(
            out,
            "move {}: island {} -> {} ({})",
            m.shard,
            m.from,
            m.to,
            w(m.weight)
        );
    }
    out
}

fn confirm(n: usize) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::input(
            "pass --yes to run the plan without a terminal to confirm on",
        ));
    }
    print!("run these {n} moves? [y/N] ");
    let unread = |e| Failure::failed(e).context("cannot read the confirmation");
    std::io::stdout().flush().map_err(unread)?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(unread)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
