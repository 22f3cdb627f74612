//! The cluster-wide rebalance lock ([`atoll_pg::locks::REBALANCE`]): held from a
//! rebalance's plan to its last move on a dedicated connection to the coordination
//! island's master, so two rebalances never plan on the same state. The server releases it
//! when the process dies.

use atoll_core::{Config, Snapshot};
use atoll_pg::locks;
use tokio_postgres::Client;

/// A held rebalance lock; dropping it (or the process ending) releases it.
pub struct RebalanceLock {
    /// The session holding the lock: the lock lasts as long as it.
    _client: Client,
}

impl std::fmt::Debug for RebalanceLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RebalanceLock")
    }
}

/// Why the rebalance lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum RebalanceLockError {
    /// Another rebalance holds it.
    #[error("another rebalance is running: {holder} holds the rebalance lock on island {island}; wait for it to end (or stop it), then retry")]
    Busy {
        /// The holding session, as `pg_stat_activity` names it.
        holder: String,
        /// The coordination island.
        island: atoll_core::IslandId,
    },
    /// The coordination island could not be reached.
    #[error(transparent)]
    Pg(#[from] atoll_pg::PgError),
}

/// Takes the rebalance lock, or says who holds it. Without islands there is nothing to
/// lock (and nothing to rebalance).
pub async fn take(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Option<RebalanceLock>, RebalanceLockError> {
    let Some(island) = atoll_pg::coordination::coordination_island(config) else {
        return Ok(None);
    };
    let node = atoll_pg::master_node(config, snapshot, island)?;
    // The holder's name is what a second rebalance's refusal shows.
    let name = format!(
        "atoll rebalance on {} pid {}",
        atoll_pg::coordination::host_name(),
        std::process::id()
    );
    let client = atoll_pg::connect_as(&node, &name, config.connect_timeout).await?;
    if locks::try_take(&client, &node, locks::REBALANCE).await? {
        return Ok(Some(RebalanceLock { _client: client }));
    }
    let holder = locks::holder(&client, &node, locks::REBALANCE)
        .await?
        .unwrap_or_else(|| "a session that just ended".into());
    Err(RebalanceLockError::Busy { holder, island })
}
