//! `atoll router`: runs until SIGINT or SIGTERM, then shuts down gracefully.

use crate::exit::Failure;
use crate::{CmdResult, Context};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

pub async fn run(ctx: &Context) -> CmdResult {
    let config = super::load(ctx)?;
    let handle = atoll_router::start(config).await?;
    let admin = handle.admin_addr.map(|a| a.to_string());
    if ctx.json {
        // One line, so a supervisor can read the address as soon as it is printed.
        println!(
            "{}",
            serde_json::json!({ "listen": handle.addr.to_string(), "admin": admin })
        );
    } else {
        eprintln!(
            "atoll router listening on {} (metrics: {})",
            handle.addr,
            admin.as_deref().unwrap_or("off")
        );
    }
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::failed(e).context("cannot watch SIGTERM"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    eprintln!("atoll router: shutting down (requests in flight finish first)");
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
