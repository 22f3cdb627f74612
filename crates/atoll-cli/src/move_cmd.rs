//! `atoll move`: move one microshard to another island online; resume or abort a move
//! that was interrupted; list unfinished moves.

use crate::allocate::require_catalog;
use crate::exit::Failure;
use crate::output::{bytes, print_json};
use crate::status::{discover, require_masters};
use crate::{CmdResult, Context};
use atoll_core::move_plan::{MoveStep, VerifyMode};
use atoll_core::{IslandId, ShardNo};
use atoll_move::{MoveError, MoveEvent, MoveOptions, MoveReport, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

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
}

impl MoveArgs {
    pub fn options(&self) -> Result<MoveOptions, Failure> {
        Ok(MoveOptions {
            verify: self.verify,
            verify_in_pause: self.verify_in_pause,
            clean_leftovers: self.clean_leftovers,
            max_replica_lag_bytes: self.max_replica_lag,
            stop_after: stop_after()?,
            ..MoveOptions::default()
        })
    }
}

/// The test hook: `ATOLL_MOVE_STOP_AFTER=<step>` makes a move exit right after recording
/// that step, as if it had been killed there.
pub fn stop_after() -> Result<Option<MoveStep>, Failure> {
    match std::env::var("ATOLL_MOVE_STOP_AFTER") {
        Ok(s) if !s.is_empty() => s
            .parse()
            .map(Some)
            .map_err(|e| Failure::input(format!("ATOLL_MOVE_STOP_AFTER: {e}"))),
        _ => Ok(None),
    }
}

pub fn failure(e: MoveError) -> Failure {
    if e.is_refusal() {
        Failure::input(e)
    } else {
        Failure::failed(e)
    }
}

pub async fn run(ctx: &Context, args: MoveArgs) -> CmdResult {
    let config = ctx.load_config()?;
    let snapshot = discover(&config).await;
    require_masters(&snapshot)?;
    require_catalog(&snapshot)?;
    if args.list {
        let moves = atoll_move::unfinished(&config, &snapshot)
            .await
            .map_err(failure)?;
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
        return Ok(ExitCode::SUCCESS);
    }
    if args.abort {
        let r = atoll_move::abort_move(&config, &snapshot, args.shard)
            .await
            .map_err(failure)?;
        if ctx.json {
            print_json(&r)?;
        } else {
            println!(
                "aborted move {} of {} (was at step {}); the source is active",
                r.id, r.shard, r.from_step
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = args.options()?;
    let bars = Bars::new(ctx.json);
    let result = match (args.resume, args.shard, args.to) {
        (true, shard, _) => {
            atoll_move::resume_move(&config, &snapshot, shard, &opts, bars.progress()).await
        }
        (false, Some(shard), Some(to)) => {
            atoll_move::start_move(
                &config,
                &snapshot,
                shard,
                IslandId(to),
                &opts,
                bars.progress(),
            )
            .await
        }
        _ => {
            return Err(Failure::input(
                "say --shard N --to ISLAND, --resume, --abort or --list",
            ))
        }
    };
    bars.finish();
    let report = result.map_err(failure)?;
    if ctx.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_report(r: &MoveReport) {
    let shard = r.shard.map(|s| s.to_string()).unwrap_or_default();
    let from = r.from.map(|i| i.to_string()).unwrap_or_default();
    let to = r.to.map(|i| i.to_string()).unwrap_or_default();
    println!(
        "{shard} moved from island {from} to island {to} in {:.1} s: copied {} in {:.1} s, writes paused {:.1} ms, verified ({})",
        r.total_ms as f64 / 1e3,
        bytes(r.copy_bytes),
        r.copy_ms as f64 / 1e3,
        r.pause_ms,
        r.verify
    );
    if let Some(b) = &r.backup_schema {
        println!("the source's copy is kept as {b} on island {from} until `atoll cleanup`");
    }
}

/// Progress display: a bar per move on a terminal, plain lines on stderr otherwise,
/// nothing with --json.
pub struct Bars {
    multi: Option<MultiProgress>,
    plain: bool,
    bars: Arc<Mutex<HashMap<ShardNo, ProgressBar>>>,
}

impl Bars {
    pub fn new(json: bool) -> Bars {
        let tty = std::io::stderr().is_terminal();
        Bars {
            multi: (tty && !json).then(MultiProgress::new),
            plain: !tty && !json,
            bars: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn progress(&self) -> Progress {
        let multi = self.multi.clone();
        let plain = self.plain;
        let bars = self.bars.clone();
        Arc::new(move |shard, event| {
            if plain {
                if let MoveEvent::Step(s) = event {
                    eprintln!("{shard}: {s}");
                }
                return;
            }
            let Some(multi) = &multi else { return };
            let mut map = bars.lock().unwrap_or_else(|p| p.into_inner());
            let bar = map.entry(shard).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(1));
                b.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                b.set_prefix(shard.to_string());
                b
            });
            match event {
                MoveEvent::Step(s) => bar.set_message(s.to_string()),
                MoveEvent::Copy { done, total } => {
                    bar.set_length((*total).max(1));
                    bar.set_position((*done).min(*total));
                }
                MoveEvent::Note(n) => bar.set_message(n.clone()),
            }
        })
    }

    pub fn finish(&self) {
        let map = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        for b in map.values() {
            b.finish();
        }
    }
}
