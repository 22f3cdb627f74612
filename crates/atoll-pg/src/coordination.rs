//! Keeping migrations and moves apart. A move replicates a shard's tables with logical
//! replication, which does not carry DDL: a migration that changed the source (or the
//! copy) mid-move would break the subscription or leave the two copies with different
//! schemas. So a migration run refuses to start while any move is unfinished, and a move
//! refuses to start while a migration run holds the cluster lock.
//!
//! Each side first makes itself visible (the run takes its lock; the move persists its
//! record) and then looks for the other, so whichever comes second sees the first.

use crate::error::PgError;
use atoll_core::{Config, IslandId, NodeConfig};
use tokio_postgres::Client;

/// The island whose master keeps what is cluster-wide: the migration lock and run records,
/// the non-shard schemas a migration finalises, the ID node-id leases. The lowest
/// configured island id (island 0 unless there is none); `None` without islands.
pub fn coordination_island(config: &Config) -> Option<IslandId> {
    config.islands.iter().map(|i| i.id).min()
}

/// This machine's host name, to name a lock's holder (`unknown-host` when it cannot be
/// read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// Whether a migration run holds the cluster lock ([`crate::locks::MIGRATION_RUN`]), asked
/// of the coordination island's master.
pub async fn migration_running(client: &Client, node: &NodeConfig) -> Result<bool, PgError> {
    crate::locks::is_held(client, node, crate::locks::MIGRATION_RUN).await
}
