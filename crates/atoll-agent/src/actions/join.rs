//! `cluster.join`, on a new node: a base backup from the island's master into the (empty)
//! data directory, with the replication slot `cluster.add` made there, then the server
//! started as a streaming replica on its own port. Not safe to re-run after a crash (a
//! half-copied data directory): it is FAILED `interrupted`; empty the directory and
//! schedule it again.

use super::membership::slot_for;
use super::{ActionCtx, ActionError, ErrorCode, JoinArgs};
use crate::error::AgentError;
use crate::pg_tools::wait_for;
use atoll_core::NodeConfig;
use serde_json::{json, Value};
use std::io::Write as _;
use std::time::{Duration, Instant};

pub(super) async fn run(ctx: &ActionCtx<'_>, a: JoinArgs) -> Result<Value, ActionError> {
    let cfg = &ctx.ex.cfg;
    let dir = ctx.data_dir()?;
    super::require_empty_dir(&dir, "a join copies into an empty data directory")?;
    let t0 = Instant::now();
    let master = find_master(ctx, a.master.as_deref()).await?;
    let slot = slot_for(&cfg.node.addr());
    let mc = ctx.connect(&master).await?;
    let has_slot = mc
        .query_opt(
            "select 1 from pg_replication_slots where slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| AgentError::query(&master, e))?
        .is_some();
    drop(mc);
    if !has_slot {
        return Err(ActionError::new(
            ErrorCode::NotAdded,
            format!(
                "{master} has no slot {slot}: run cluster.add with node {} there first",
                cfg.node.addr()
            ),
        ));
    }
    ctx.progress(format!("base backup from {master}")).await;
    ctx.ex.tools.base_backup(&master, &dir, &slot).await?;
    // The copy carries the master's port: this node listens on its own.
    let auto = dir.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&auto)
        .map_err(|e| AgentError::io("cannot open", &auto, e))?;
    writeln!(f, "# atoll agent: cluster.join\nport = {}", cfg.node.port)
        .map_err(|e| AgentError::io("cannot write", &auto, e))?;
    ctx.progress("starting as a replica").await;
    ctx.ex.tools.start(&dir).await?;
    ctx.ex.reader.reset().await;
    let c = ctx.local().await?;
    let streaming = wait_for(Duration::from_secs(30), || async {
        c.query_opt(
            "select 1 from pg_stat_wal_receiver where status = 'streaming'",
            &[],
        )
        .await
        .is_ok_and(|r| r.is_some())
    })
    .await;
    if !streaming {
        return Err(ActionError::new(
            ErrorCode::Failed,
            format!("the replica started but is not streaming from {master} after 30 s"),
        ));
    }
    Ok(json!({
        "master": master.addr(),
        "slot": slot,
        "data_directory": dir.display().to_string(),
        "took_ms": t0.elapsed().as_millis() as u64,
    }))
}

/// `addr` if given (it must be on this island in atoll.toml), else the island's node that
/// answers as a master.
async fn find_master(ctx: &ActionCtx<'_>, addr: Option<&str>) -> Result<NodeConfig, ActionError> {
    let cfg = &ctx.ex.cfg;
    if let Some(addr) = addr {
        return cfg.island_node(addr).ok_or_else(|| {
            ActionError::new(
                ErrorCode::UnknownNode,
                format!("args.master: {addr} is not a node of island {}", cfg.island),
            )
        });
    }
    for peer in cfg.island_peers() {
        let Ok(c) = ctx.connect(&peer).await else {
            continue;
        };
        if let Ok(row) = c.query_one("select pg_is_in_recovery()", &[]).await {
            if !row.get::<_, bool>(0) {
                return Ok(peer);
            }
        }
    }
    Err(ActionError::new(
        ErrorCode::NotMaster,
        format!("no node of island {} answers as master", cfg.island),
    ))
}
