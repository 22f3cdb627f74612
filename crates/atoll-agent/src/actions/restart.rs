//! `node.restart`: stop (pg_ctl's mode) and start the node's server, waiting until it
//! accepts connections. Safe to re-run: stopping a stopped server and starting a running
//! one are no-ops.

use super::{ActionCtx, ActionError, RestartArgs};
use serde_json::{json, Value};
use std::time::Instant;

pub(super) async fn run(ctx: &ActionCtx<'_>, a: RestartArgs) -> Result<Value, ActionError> {
    let dir = ctx.data_dir()?;
    let t0 = Instant::now();
    ctx.progress(format!("stopping the server ({} mode)", a.mode.as_str()))
        .await;
    ctx.ex.tools.stop(&dir, a.mode.as_str()).await?;
    ctx.ex.reader.reset().await;
    ctx.progress("starting the server").await;
    // A start left running by an earlier attempt (a crash mid-restart) is as good.
    if let Err(e) = ctx.ex.tools.start(&dir).await {
        if !ctx.ex.tools.is_running(&dir).await {
            return Err(e.into());
        }
    }
    drop(ctx.local().await?);
    Ok(json!({
        "data_directory": dir.display().to_string(),
        "mode": a.mode.as_str(),
        "took_ms": t0.elapsed().as_millis() as u64,
    }))
}
