//! Finding the configured node that discovery says is an island's master.

use crate::error::PgError;
use atoll_core::{Config, IslandId, NodeConfig, Snapshot};

/// The master of `island` per `snapshot`, as configured (with its credentials).
pub fn master_node(
    config: &Config,
    snapshot: &Snapshot,
    island: IslandId,
) -> Result<NodeConfig, PgError> {
    let addr = snapshot
        .island(island)
        .and_then(|i| i.master())
        .map(|n| n.addr.as_str())
        .ok_or(PgError::NoMaster(island))?;
    config
        .islands
        .iter()
        .find(|i| i.id == island)
        .and_then(|i| i.nodes.iter().find(|n| n.has_addr(addr)))
        .cloned()
        .ok_or(PgError::NoMaster(island))
}
