//! Soak of `atoll move` (issue 8's quality bar): a shard of about `--mb` MiB (default 20)
//! moves back and forth `--moves` times (default 100) between two sandbox islands while a
//! writer inserts into it through atoll-client at `--rate` inserts/s (default 500). Per
//! move: the longest gap between two acknowledged writes from the move's start to the next
//! move's start, the steps it fell between, the server-side write pause, the errors that
//! reached the writer and the duration. At the end every acknowledged row must be present
//! exactly once (by the writer's unique payload and by primary key) and no error may have
//! reached the writer; the exit status is non-zero otherwise. New moves stop at
//! `--max-minutes` (default 30; the run is then a failure), a move still running then is
//! cut off; the sandbox is removed in every case, Ctrl-C included. Then the explanation
//! (`common/explain.rs`): per move the writer's cut-over gap next to the pause and how its
//! client re-routed, every stall over `--stall-ms` (default 10) placed in the move's phases
//! with its cause, the five longest. `--extra-tables N` adds N small tables to the shard
//! (the pause's per-table locking cost, against a `select 1` round trip).
//!
//! ```sh
//! cargo bench -p atoll-move --bench move_soak -- --moves 100 --mb 20 --rate 500 \
//!     --max-minutes 30 --json /tmp/move_soak.json
//! ```

#[path = "../common/mod.rs"]
mod common;
mod summary;

use atoll_core::{Config, ShardNo};
use atoll_move::MoveReport;
use atoll_testkit::writer;
use common::explain::{explain, RoundInput};
use common::{arg, arg_str, ends, move_and_drop_backup, server_log, setup, Timeline, Writer};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use summary::{summarize, AfterStep, MoveRun, Moves, Summary};

/// Time left after `--max-minutes` for stopping the writer, the audit and the cleanup
/// before the whole run is cut off.
const WIND_DOWN: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub moves: u64,
    pub mb: u64,
    pub rate: u64,
    pub max_minutes: f64,
    pub settle_ms: u64,
    pub stall_ms: f64,
    pub extra_tables: u32,
}

impl Settings {
    fn from_args() -> Settings {
        Settings {
            moves: arg("--moves", 100_u64).max(1),
            mb: arg("--mb", 20_u64),
            rate: arg("--rate", 500_u64).max(1),
            max_minutes: arg("--max-minutes", 30.0_f64).max(0.0),
            settle_ms: arg("--settle-ms", 1000_u64),
            stall_ms: arg("--stall-ms", 10.0_f64).max(1.0),
            extra_tables: arg("--extra-tables", 0_u32),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let settings = Settings::from_args();
    let bound = Duration::from_secs_f64(settings.max_minutes * 60.0);
    // Dropping `soak` (interrupted, or cut off) drops its cluster: the sandbox's servers
    // are stopped and its directory removed.
    let outcome = tokio::select! {
        r = tokio::time::timeout(bound + WIND_DOWN, soak(&settings)) => match r {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("cut off {WIND_DOWN:?} after --max-minutes")),
        },
        why = interrupted() => {
            eprintln!("move_soak: {why}; sandbox removed");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(summary) => finish(&summary),
        Err(e) => {
            eprintln!("move_soak: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn interrupted() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        Ok(()) = tokio::signal::ctrl_c() => "interrupted",
        _ = term => "terminated",
    }
}

async fn soak(settings: &Settings) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(settings.max_minutes * 60.0);
    let bench = setup(settings.mb).await?;
    server_log::log_more(&bench.tc).await?;
    common::extra_tables(
        &bench.tc,
        atoll_core::IslandId(0),
        bench.shard,
        settings.extra_tables,
    )
    .await?;
    let clock = server_log::ClockPair::now();
    let (config, s) = (&bench.config, bench.shard);
    let w = Writer::start(config, s, settings.rate).await;
    let moves = run_moves(config, s, settings, deadline).await;
    let writer_end = Instant::now();
    let (stats, secs) = w.stop().await?;
    let audit = writer::audit_writes(config, s, &stats).await;
    let mut summary = summarize(settings, &moves, &stats, writer_end, audit);
    let events = server_log::read(&bench.tc, clock);
    let reports: Vec<Option<MoveReport>> = moves
        .runs
        .iter()
        .map(|r| r.outcome.as_ref().ok().map(|(r, _)| r.clone()))
        .collect();
    let rounds: Vec<RoundInput> = moves
        .runs
        .iter()
        .enumerate()
        .map(|(i, r)| RoundInput {
            n: i + 1,
            from: r.from,
            to: r.to,
            timeline: &r.timeline,
            report: reports[i].as_ref(),
            start: r.timeline.started(),
            end: moves
                .runs
                .get(i + 1)
                .map(|n| n.timeline.started())
                .unwrap_or(writer_end),
        })
        .collect();
    summary.round_trip_ms = common::round_trip_ms(&bench.tc, atoll_core::IslandId(0), 200).await?;
    summary.explained = Some(explain(
        &rounds,
        &stats,
        &events,
        started,
        settings.stall_ms,
    ));
    summary.shard_mib = bench.items.total_mb;
    summary.writer_inserts_per_s = stats.acked.len() as f64 / secs;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Moves `s` back and forth until `settings.moves` are done, one fails, or `deadline`.
async fn run_moves(config: &Config, s: ShardNo, settings: &Settings, deadline: Instant) -> Moves {
    let mut moves = Moves {
        runs: Vec::new(),
        stopped_by_time_bound: false,
    };
    for n in 1..=settings.moves {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            moves.stopped_by_time_bound = true;
            break;
        };
        let (snap, from, to) = match ends(config, s).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("move {n}: cannot find {s}: {e:#}");
                break;
            }
        };
        let timeline = Timeline::new(false);
        let outcome =
            match tokio::time::timeout(left, move_and_drop_backup(config, &snap, s, to, &timeline))
                .await
            {
                Ok(r) => r.map_err(|e| format!("{e:#}")),
                Err(_) => {
                    moves.stopped_by_time_bound = true;
                    Err("cut off at --max-minutes".to_string())
                }
            };
        match &outcome {
            Ok((r, took)) => eprintln!(
                "move {n}/{} {from}->{to}: {:.1} s, pause {:.1} ms",
                settings.moves,
                took.as_secs_f64(),
                r.pause_ms
            ),
            Err(e) => eprintln!("move {n}/{} {from}->{to} failed: {e}", settings.moves),
        }
        let failed = outcome.is_err();
        moves.runs.push(MoveRun {
            from,
            to,
            timeline,
            outcome,
        });
        if failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(settings.settle_ms)).await;
    }
    moves
}

/// Prints the table and the summary, writes the JSON; the exit status says whether every
/// invariant held.
fn finish(s: &Summary) -> ExitCode {
    print_table(s);
    if let Some(e) = &s.explained {
        println!();
        common::explain::print(e);
    }
    if let Some(path) = arg_str("--json") {
        let written = serde_json::to_vec_pretty(s)
            .map_err(anyhow::Error::from)
            .and_then(|json| std::fs::write(&path, json).map_err(anyhow::Error::from));
        if let Err(e) = written {
            eprintln!("move_soak: write {path}: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    if s.passed {
        println!("PASSED");
        ExitCode::SUCCESS
    } else {
        println!("FAILED:");
        for f in &s.failures {
            println!("- {f}");
        }
        ExitCode::FAILURE
    }
}

fn print_table(s: &Summary) {
    let at = |p: &Option<AfterStep>| match p {
        Some(a) => format!("{}+{:.0}", a.step, a.after_ms),
        None => "start".to_string(),
    };
    println!("| move | duration | write pause (lock, apply wait, rest) | longest gap | gap from .. to (step+ms) | acked | errors |");
    println!("|---|---|---|---|---|---|---|");
    for r in &s.moves {
        println!(
            "| {} ({}->{}){} | {:.1} s | {:.1} ms ({:.1}, {:.1}, {:.1}) | {:.1} ms | {} .. {} | {} | {} |",
            r.n,
            r.from,
            r.to,
            if r.error.is_some() { " FAILED" } else { "" },
            r.duration_ms / 1e3,
            r.pause_ms,
            r.lock_ms,
            r.apply_wait_ms,
            r.verify_and_switch_ms,
            r.longest_gap_ms,
            at(&r.gap_began),
            at(&r.gap_ended),
            r.acked,
            r.writer_errors
        );
    }
    println!();
    println!(
        "shard {:.0} MiB with indexes; {} of {} moves done, {} failed{} in {:.0} s; writer {:.0} inserts/s (target {})",
        s.shard_mib,
        s.moves_done,
        s.settings.moves,
        s.moves_failed,
        if s.stopped_by_time_bound { ", stopped at --max-minutes" } else { "" },
        s.elapsed_s,
        s.writer_inserts_per_s,
        s.settings.rate
    );
    println!(
        "longest gap between two acknowledged writes: {:.1} ms; per-move longest gap p50 {:.1} ms, p99 {:.1} ms",
        s.longest_gap_ms, s.gap_p50_ms, s.gap_p99_ms
    );
    println!(
        "write pause p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; its LOCK TABLEs ({} tables) p50 {:.2} ms = {:.3} ms per table; anchor: a `select 1` round trip {:.3} ms",
        s.pause_p50_ms,
        s.pause_p99_ms,
        s.pause_max_ms,
        s.settings.extra_tables + 1,
        s.lock_p50_ms,
        s.lock_p50_ms / (s.settings.extra_tables + 1) as f64,
        s.round_trip_ms
    );
    match &s.rows {
        Some(r) => println!(
            "rows: {} acknowledged, {} present; {} lost, {} duplicated (payload), {} duplicated (primary key); present but never acknowledged: {} (tried, reported failed), {} (never tried); {} failed writes absent",
            r.acked, r.present, r.lost, r.duplicated_payloads, r.duplicated_ids, r.unacknowledged_present, r.unattempted_present, r.failed_absent
        ),
        None => println!("rows: not checked"),
    }
    println!("errors reaching the writer: {}", s.writer_errors);
}
