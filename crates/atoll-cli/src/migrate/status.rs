//! `atoll migrate status|runs|stop`: a run's per-schema state (grouped as ranges, the
//! first failure on top), past runs, and asking the running run to stop.

use crate::cluster::{Cluster, Need};
use crate::exit::{Failure, FAILED};
use crate::output::print_json;
use crate::{CmdResult, Context};
use atoll_migrate::{RunRow, RunStatus, RunView};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// The run to show; the latest by default
    #[arg(long, value_name = "ID")]
    pub run: Option<i64>,
    /// Refresh every second until the run ends
    #[arg(long)]
    pub watch: bool,
}

#[derive(clap::Args)]
pub struct RunsArgs {
    /// How many runs to list
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: u32,
}

pub async fn status(ctx: &Context, args: &StatusArgs) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    loop {
        let view = atoll_migrate::run_status(&config, &snapshot, args.run).await?;
        let Some(view) = view else {
            let what = args
                .run
                .map_or("no migration run recorded".to_string(), |id| {
                    format!("no migration run {id}")
                });
            return Err(Failure::input(what));
        };
        let running = view.run.status == RunStatus::Running;
        if ctx.json {
            print_json(&view)?;
        } else {
            if args.watch {
                // Clear the screen and go home, so the view updates in place.
                print!("\x1b[2J\x1b[H");
            }
            print!("{}", render_status(&view));
        }
        if !(args.watch && running) {
            return Ok(exit_code(view.run.status));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Success for a run that is done or still running; 1 for one that failed, halted or
/// was stopped or interrupted.
fn exit_code(status: RunStatus) -> ExitCode {
    match status {
        RunStatus::Done | RunStatus::Running => ExitCode::SUCCESS,
        _ => ExitCode::from(FAILED),
    }
}

pub fn render_status(v: &RunView) -> String {
    use std::fmt::Write;
    let r = &v.run;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run {} {} {}: {} schemas ({}), started {} by {} pid {}{}",
        r.run_id,
        r.kind,
        r.status,
        v.shards.total,
        r.scope.as_deref().unwrap_or("every shard"),
        r.started_at,
        r.host,
        r.pid,
        if r.stop_requested && r.status == RunStatus::Running {
            " (stop requested)"
        } else {
            ""
        }
    );
    if let Some(f) = &v.shards.first_failure {
        let _ = writeln!(
            out,
            "first failure: {} (island {}) {}: {}",
            f.schema,
            f.island,
            f.file.as_deref().unwrap_or("-"),
            f.error.as_deref().unwrap_or("")
        );
    }
    for g in &v.shards.groups {
        let _ = writeln!(out, "{} {}: {}", g.state.label(), g.count, g.schemas);
    }
    if let Some(m) = &r.message {
        let _ = writeln!(out, "{}: {m}", r.status);
    }
    out
}

pub async fn runs(ctx: &Context, args: &RunsArgs) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    let runs = atoll_migrate::runs(&config, &snapshot, i64::from(args.limit)).await?;
    if ctx.json {
        print_json(&runs)?;
    } else {
        print!("{}", render_runs(&runs));
    }
    Ok(ExitCode::SUCCESS)
}

fn render_runs(runs: &[RunRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if runs.is_empty() {
        let _ = writeln!(out, "no migration runs recorded");
    }
    for r in runs {
        let _ = writeln!(
            out,
            "{} {} {} {}/{} schemas ({} failed) {} started {}{}",
            r.run_id,
            r.kind,
            r.status,
            r.schemas_done,
            r.schemas_total,
            r.schemas_failed,
            r.scope.as_deref().unwrap_or("every shard"),
            r.started_at,
            r.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
    }
    out
}

pub async fn stop(ctx: &Context) -> CmdResult {
    let Cluster { config, snapshot } = ctx.cluster(Need::Run).await?;
    match atoll_migrate::request_stop(&config, &snapshot).await? {
        Some(id) => {
            if ctx.json {
                print_json(&serde_json::json!({ "run_id": id, "stop_requested": true }))?;
            } else {
                println!(
                    "run {id}: stop requested; running schemas finish, nothing new starts (watch with `atoll migrate status --watch`)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        None => Err(Failure::failed("no migration run is running")),
    }
}
