//! `atoll serve`: the control plane (REST API under `/api/v1`, Prometheus `/metrics`) until
//! SIGINT or SIGTERM, then a graceful stop.

use crate::exit::Failure;
use crate::shutdown::ShutdownSignal;
use crate::{CmdResult, Context};
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the API and /metrics listen
    #[arg(long, default_value = "127.0.0.1:8700")]
    listen: SocketAddr,
    /// How often the catalog is read and discovery runs, in ms
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    period_ms: u64,
    /// A token that authorises actions (moves, rebalance, migrate), by reference:
    /// [NAME=]env:VAR or [NAME=]file:PATH, at least 16 characters; NAME (default
    /// "operator") is what the action log records. Repeat for several operators; without
    /// one, actions are refused and the console is read-only
    // Parsed after clap, whose error would echo a token pasted by mistake.
    #[arg(long, value_name = "[NAME=]REF")]
    write_token: Vec<String>,
    /// The migration directory that migrate actions plan and apply
    #[arg(long, value_name = "DIR")]
    migrations: Option<std::path::PathBuf>,
}

pub fn run(ctx: &Context, args: ServeArgs) -> CmdResult {
    crate::runtime()?.block_on(serve(ctx, args))
}

async fn serve(ctx: &Context, args: ServeArgs) -> CmdResult {
    let atoll = atoll_core::Config::load(ctx.config.as_deref()).map_err(Failure::input)?;
    let mut config = atoll_serve::ServeConfig::new(args.listen, atoll);
    config.period = std::time::Duration::from_millis(args.period_ms);
    config.write_tokens = args
        .write_token
        .iter()
        .map(|t| t.parse().map_err(Failure::input))
        .collect::<Result<_, _>>()?;
    config.migrations = args.migrations;
    until_signal(ctx, config).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves `config` until SIGINT or SIGTERM, printing where (also used by `atoll demo
/// --serve`).
pub async fn until_signal(ctx: &Context, config: atoll_serve::ServeConfig) -> Result<(), Failure> {
    // Before the address is printed: a SIGTERM sent on reading it must stop us gracefully.
    let shutdown = ShutdownSignal::install()?;
    let handle = atoll_serve::start(config).await.map_err(|e| match e {
        atoll_serve::ServeError::Listen { .. }
        | atoll_serve::ServeError::Token(_)
        | atoll_serve::ServeError::Migrations(_) => Failure::input(e),
        other => Failure::failed(other),
    })?;
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({ "listen": handle.addr.to_string() })
        );
    } else {
        eprintln!(
            "atoll serve: console at http://{}/ (API /api/v1, metrics /metrics); Ctrl-C stops it",
            handle.addr
        );
    }
    shutdown.recv().await;
    eprintln!("atoll serve: shutting down (requests in flight finish first)");
    handle.shutdown().await;
    Ok(())
}
