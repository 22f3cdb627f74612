//! What every session of a proxy shares: the cluster's snapshot (kept fresh by
//! atoll-client), the users, the pools, the parameters shown to clients at startup.

use crate::auth::Users;
use crate::pool::Pools;
use atoll_client::Cluster;
use atoll_core::ShardNo;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::sync::OnceCell;

/// Shared by all sessions.
pub struct Shared {
    /// Where shards are: its snapshot follows moves and failovers.
    pub cluster: Cluster,
    /// Who may connect.
    pub users: Users,
    /// Connections to the nodes.
    pub pools: std::sync::Arc<Pools>,
    /// The ParameterStatus values a node sent, shown to every client (read once).
    params: OnceCell<Vec<(String, String)>>,
    /// The next process id handed to a client (its cancel key's first half).
    next_pid: AtomicI32,
}

impl Shared {
    /// Shares `cluster`, `users` and `pools`.
    pub fn new(cluster: Cluster, users: Users, pools: std::sync::Arc<Pools>) -> Shared {
        Shared {
            cluster,
            users,
            pools,
            params: OnceCell::new(),
            next_pid: AtomicI32::new(1),
        }
    }

    /// The configured master of the island where `shard` is active.
    pub fn master_of(
        &self,
        shard: ShardNo,
    ) -> Result<atoll_core::NodeConfig, (&'static str, String)> {
        let snapshot = self.cluster.snapshot();
        let island = snapshot
            .active_island(shard)
            .map_err(|e| ("3F000", format!("{}: {e}", shard.schema())))?;
        atoll_pg::master_node(&self.cluster.config(), &snapshot, island)
            .map_err(|e| ("08006", format!("{}: {e}", shard.schema())))
    }

    /// The parameters a node reports (shard 0's master's), read on first use; the session
    /// user's own are left out.
    pub async fn server_params(&self) -> Result<Vec<(String, String)>, String> {
        self.params
            .get_or_try_init(|| async {
                let node = self
                    .master_of(ShardNo::GLOBAL)
                    .or_else(|_| self.any_master())?;
                let lease = self.pools.get(&node).await.map_err(|e| e.to_string())?;
                let params: Vec<(String, String)> = lease
                    .conn
                    .params
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "session_authorization" | "is_superuser")
                    })
                    .cloned()
                    .collect();
                lease.release();
                Ok(params)
            })
            .await
            .cloned()
    }

    /// The first island's master, for a cluster without shard 0.
    fn any_master(&self) -> Result<atoll_core::NodeConfig, String> {
        let snapshot = self.cluster.snapshot();
        let config = self.cluster.config();
        config
            .islands
            .iter()
            .find_map(|i| atoll_pg::master_node(&config, &snapshot, i.id).ok())
            .ok_or_else(|| "no island has a master".to_string())
    }

    /// A process id and secret key for a new client.
    pub fn new_key(&self) -> (i32, i32) {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        (pid, rand::random())
    }
}
