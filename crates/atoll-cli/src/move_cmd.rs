//! `atoll move`: move one microshard to another island online; resume or abort a move
//! that was interrupted; list unfinished moves.

use crate::cluster::{Cluster, Need};
use crate::exit::Failure;
use crate::hook::TestHook;
use crate::output::{bytes, print_json};
use crate::progress::Progress;
use crate::{CmdResult, Context};
use atoll_core::move_plan::VerifyMode;
use atoll_core::{IslandId, ShardNo};
use atoll_move::{MoveOptions, MoveReport};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("mode").args(["to", "resume", "abort", "list"]).required(true)))]
pub struct MoveArgs {
    /// The shard to move (42 or sh0042); with --resume/--abort, which move
    #[arg(long, value_name = "N")]
    pub shard: Option<ShardNo>,
    /// The destination island
    #[arg(long, value_name = "ISLAND", requires = "shard")]
    pub to: Option<u16>,
    /// Continue an interrupted move from its last recorded step
    #[arg(long)]
    pub resume: bool,
    /// Roll an interrupted move back: the source stays active, nothing is left behind
    #[arg(long)]
    pub abort: bool,
    /// List unfinished moves
    #[arg(long)]
    pub list: bool,
    /// Compare row counts (counts) or also per-table checksums (full) before switching
    #[arg(long, value_name = "MODE", default_value = "counts")]
    pub verify: VerifyMode,
    /// Compare inside the final write pause (exact at the switch, but the pause grows
    /// with the shard) instead of at a frozen point just before it
    #[arg(long)]
    pub verify_in_pause: bool,
    /// Abort unfinished moves of this shard and drop stray replication objects first
    #[arg(long)]
    pub clean_leftovers: bool,
    /// Refuse when a destination replica lags more than this many bytes
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_replica_lag: u64,
    /// Move tables without a primary key or replica identity by giving them REPLICA
    /// IDENTITY FULL for the move (restored after the switch or an abort; updates and
    /// deletes on them then scan the table on the destination while the move catches up)
    #[arg(long, requires = "to")]
    pub replica_identity_full: bool,
    #[command(flatten)]
    pub hook: TestHook,
}

impl MoveArgs {
    fn options(&self, cluster: &Cluster) -> Result<MoveOptions, Failure> {
        let opts = MoveOptions {
            verify: self.verify,
            verify_in_pause: self.verify_in_pause,
            clean_leftovers: self.clean_leftovers,
            max_replica_lag_bytes: self.max_replica_lag,
            replica_identity_full: self.replica_identity_full,
            ..MoveOptions::default()
        };
        self.hook.apply(&cluster.config, opts)
    }
}

pub async fn run(ctx: &Context, args: MoveArgs) -> CmdResult {
    let cluster = ctx.cluster(Need::Catalog).await?;
    if args.list {
        return list(ctx, &cluster).await;
    }
    let opts = args.options(&cluster)?;
    if args.abort {
        return abort(ctx, &cluster, args.shard, &opts).await;
    }
    let (config, snapshot) = (&cluster.config, &cluster.snapshot);
    let view = Progress::new(ctx).moves();
    let result = match (args.resume, args.shard, args.to) {
        (true, shard, _) => {
            atoll_move::resume_move(config, snapshot, shard, &opts, view.sink()).await
        }
        (false, Some(shard), Some(to)) => {
            let to = IslandId(to);
            atoll_move::start_move(config, snapshot, shard, to, &opts, view.sink()).await
        }
        _ => {
            return Err(Failure::input(
                "say --shard N --to ISLAND, --resume, --abort or --list",
            ))
        }
    };
    view.finish();
    let report = result?;
    if ctx.json {
        print_json(&report)?;
    } else {
        print!("{}", render_report(&report));
    }
    if report.shard == Some(ShardNo::GLOBAL) {
        hand_over_copies(ctx, config).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// After a move of shard 0: its read-only copies follow its new master, and the old master
/// gets one (`atoll global replicate`, which also repairs this if it fails here).
async fn hand_over_copies(ctx: &Context, config: &atoll_core::Config) -> Result<(), Failure> {
    let quiet = ctx.json;
    let progress = move |island: IslandId, what: &str| {
        if !quiet {
            eprintln!("global copy on island {island}: {what}");
        }
    };
    let done = atoll_move::global_copy::after_shard_zero_move(config, &progress)
        .await
        .map_err(|e| {
            Failure::from(e).context(
                "shard 0 moved, but handing its read-only copies over failed; run `atoll global replicate`",
            )
        })?;
    if done.is_some() && !quiet {
        println!("shard 0's read-only copies follow its new master");
    }
    Ok(())
}

async fn list(ctx: &Context, cluster: &Cluster) -> CmdResult {
    let moves = atoll_move::unfinished(&cluster.config, &cluster.snapshot).await?;
    if ctx.json {
        print_json(&moves)?;
    } else if moves.is_empty() {
        println!("no unfinished moves");
    } else {
        for m in moves {
            println!(
                "move {}: {} island {} -> {}, step {}",
                m.id, m.shard, m.source, m.destination, m.step
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn abort(
    ctx: &Context,
    cluster: &Cluster,
    shard: Option<ShardNo>,
    opts: &MoveOptions,
) -> CmdResult {
    let r = atoll_move::abort_move_with(&cluster.config, &cluster.snapshot, shard, opts).await?;
    if ctx.json {
        print_json(&r)?;
    } else {
        println!(
            "aborted move {} of {} (was at step {}); the source is active",
            r.id, r.shard, r.from_step
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_report(r: &MoveReport) -> String {
    use std::fmt::Write;
    let shard = r.shard.map(|s| s.to_string()).unwrap_or_default();
    let from = r.from.map(|i| i.to_string()).unwrap_or_default();
    let to = r.to.map(|i| i.to_string()).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{shard} moved from island {from} to island {to} in {:.1} s: copied {} in {:.1} s, writes paused {:.1} ms, verified ({})",
        r.total_ms as f64 / 1e3,
        bytes(r.copy_bytes),
        r.copy_ms as f64 / 1e3,
        r.pause_ms,
        r.verify
    );
    if !r.replica_identity_full.is_empty() {
        let _ = writeln!(
            out,
            "replica identity FULL during the move (updates and deletes on these tables scanned them on the destination while it caught up), restored after the switch: {}",
            r.replica_identity_full.join(", ")
        );
    }
    if let Some(b) = &r.backup_schema {
        let _ = writeln!(
            out,
            "the source's copy is kept as {b} on island {from} until `atoll cleanup`"
        );
    }
    out
}
