//! `cluster.init`: a new island on this node. With `initdb`, the (empty) data directory is
//! initialised first and given the node's port; the server is started if it is not
//! running; then atoll's catalog is installed with the island from `atoll.toml` and the
//! given cluster id (or a new one). Not safe to re-run after a crash (a half-made data
//! directory): FAILED `interrupted`.

use super::{ActionCtx, ActionError, InitArgs};
use crate::error::AgentError;
use serde_json::{json, Value};
use std::io::Write as _;

pub(super) async fn run(ctx: &ActionCtx<'_>, a: InitArgs) -> Result<Value, ActionError> {
    let cfg = &ctx.ex.cfg;
    let dir = ctx.data_dir()?;
    if a.initdb {
        super::require_empty_dir(&dir, "initdb needs an empty data directory")?;
        ctx.progress(format!("initdb {}", dir.display())).await;
        ctx.ex.tools.initdb(&dir, &cfg.node.user).await?;
        let conf = dir.join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .map_err(|e| AgentError::io("cannot open", &conf, e))?;
        writeln!(
            f,
            "# atoll agent: cluster.init\nport = {}\nlisten_addresses = '{}'\nwal_level = logical\nmax_wal_senders = 20\nmax_replication_slots = 20",
            cfg.node.port,
            cfg.node.host.replace('\'', "")
        )
        .map_err(|e| AgentError::io("cannot write", &conf, e))?;
    }
    if !ctx.ex.tools.is_running(&dir).await {
        ctx.progress("starting the server").await;
        ctx.ex.tools.start(&dir).await?;
    }
    ctx.ex.reader.reset().await;
    let mut c = ctx.local_master().await?;
    let cluster_id = a
        .cluster_id
        .clone()
        .unwrap_or_else(atoll_pg::catalog::new_cluster_id);
    ctx.progress(format!("installing the catalog (island {})", cfg.island))
        .await;
    let outcome = atoll_pg::catalog::install(&mut c, &cfg.node, cfg.island, &cluster_id).await?;
    Ok(json!({
        "initdb": a.initdb,
        "data_directory": dir.display().to_string(),
        "catalog": outcome,
    }))
}
