//! `atoll router`: runs until SIGINT or SIGTERM, then shuts down gracefully.

use crate::shutdown::ShutdownSignal;
use crate::{CmdResult, Context};
use std::process::ExitCode;

pub async fn run(ctx: &Context) -> CmdResult {
    let config = super::load(ctx)?;
    // Before the address is printed: a SIGTERM sent on reading it must stop us gracefully.
    let shutdown = ShutdownSignal::install()?;
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
    shutdown.recv().await;
    eprintln!("atoll router: shutting down (requests in flight finish first)");
    handle.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
