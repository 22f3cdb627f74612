//! What every session of a proxy shares: the cluster's snapshot (kept fresh by
//! atoll-client), the users, the pools, the parameters shown to clients at startup.

use crate::auth::Users;
use crate::hold::HoldStats;
use crate::node::Node;
use crate::pool::Pools;
use atoll_client::Cluster;
use atoll_core::{IslandId, RouteError, ShardNo};
use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::sync::Semaphore;

/// Why a shard has no master to run on right now.
pub enum Placement {
    /// The shard is known but active on no island (a move between its switch and its
    /// activation): hold.
    Nowhere,
    /// Refused: its SQLSTATE and message.
    Refused((&'static str, String)),
}

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
    /// How long a moving shard's transaction is held at most.
    pub hold_timeout: Duration,
    /// TLS offered to clients (`None`: declined).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Plain-text clients refused.
    pub require_tls: bool,
    /// How long a client keeps a server connection.
    pub pool_mode: crate::ProxyPoolMode,
    /// Per user, the bound on server connections its clients hold at once (`None`: only
    /// the per-node bound).
    user_limits: Option<HashMap<String, Arc<Semaphore>>>,
    /// Client connections open at most (`None`: no bound).
    pub clients_limit: Option<Arc<Semaphore>>,
    /// Holds under way and done.
    pub holds: HoldStats,
    /// Clients, transactions per shard, errors.
    pub stats: crate::metrics::Stats,
    /// Every session's cancel key and current node connection.
    pub cancels: crate::cancel::Cancels,
    /// What recent statement texts say about their routing.
    pub routes: crate::route_cache::RouteCache,
    /// The server name of every statement clients prepared.
    pub registry: crate::prepared::Registry,
    /// The configured nodes, each with its address made once.
    nodes: crate::node::Nodes,
    /// The database name clients connect to.
    pub database: String,
    /// Replicas further behind serve no replica reads.
    replica_max_lag: Option<Duration>,
}

impl Shared {
    /// Shares `cluster`, `users` and `pools`.
    pub fn new(
        cluster: Cluster,
        users: Users,
        pools: std::sync::Arc<Pools>,
        database: String,
        options: &crate::ProxyOptions,
    ) -> Shared {
        Shared {
            cluster,
            users,
            pools,
            params: OnceCell::new(),
            next_pid: AtomicI32::new(1),
            hold_timeout: options.hold_timeout,
            tls: options.tls.clone(),
            require_tls: options.require_tls,
            pool_mode: options.pool_mode,
            user_limits: options.user_pool_size.map(|n| {
                options
                    .users
                    .iter()
                    .map(|(u, _)| (u.clone(), Arc::new(Semaphore::new(n.max(1)))))
                    .collect()
            }),
            clients_limit: options.max_clients.map(|n| Arc::new(Semaphore::new(n))),
            holds: HoldStats::default(),
            stats: Default::default(),
            cancels: Default::default(),
            routes: Default::default(),
            registry: Default::default(),
            nodes: Default::default(),
            database,
            replica_max_lag: options.replica_max_lag,
        }
    }

    /// The island where `shard` is active and its configured master.
    pub fn master_of(&self, shard: ShardNo) -> Result<(IslandId, Arc<Node>), Placement> {
        let snapshot = self.cluster.snapshot();
        let island = match snapshot.active_island(shard) {
            Ok(i) => i,
            // Known but active nowhere (between a move's switch and its activation), or
            // maybe on an island whose master cannot be read now (a failover under way).
            Err(RouteError::NotActive(_))
                if snapshot.shards.contains_key(&shard)
                    || snapshot.islands.iter().any(|i| !i.shards_known) =>
            {
                return Err(Placement::Nowhere)
            }
            Err(e) => {
                return Err(Placement::Refused((
                    "3F000",
                    format!("{}: {e}", shard.schema()),
                )))
            }
        };
        let master = snapshot.island(island).and_then(|i| i.master());
        master
            .and_then(|m| self.nodes.get(&self.cluster.config(), &m.addr))
            .map(|node| (island, node))
            .ok_or_else(|| {
                let e = atoll_pg::PgError::NoMaster(island);
                Placement::Refused(("08006", format!("{}: {e}", shard.schema())))
            })
    }

    /// The bound on `user`'s server connections, if there is one.
    pub fn user_limit(&self, user: &str) -> Option<&Arc<Semaphore>> {
        self.user_limits.as_ref()?.get(user)
    }

    /// A node's connection failed: its idle connections are dropped and a discovery round
    /// runs in the background (the master may have changed).
    pub fn node_failed(&self, addr: &str) {
        self.pools.discard_idle(addr);
        let cluster = self.cluster.clone();
        tokio::spawn(async move { cluster.refresh().await });
    }

    /// A reachable replica of `island` (picked at random, to spread reads) within the lag
    /// bound, as configured.
    pub fn replica_of(&self, island: IslandId) -> Option<Arc<Node>> {
        let snapshot = self.cluster.snapshot();
        let near = |lag: Option<f64>| match self.replica_max_lag {
            None => true,
            Some(max) => lag.is_some_and(|s| s <= max.as_secs_f64()),
        };
        let replicas: Vec<&str> = snapshot
            .island(island)?
            .replicas()
            .filter(|r| near(r.lag_seconds))
            .map(|r| r.addr.as_str())
            .collect();
        if replicas.is_empty() {
            return None;
        }
        let addr = replicas[rand::random::<usize>() % replicas.len()];
        self.nodes.get(&self.cluster.config(), addr)
    }

    /// The parameters a node reports (shard 0's master's), read on first use; the session
    /// user's own are left out.
    pub async fn server_params(&self) -> Result<Vec<(String, String)>, String> {
        self.params
            .get_or_try_init(|| async {
                let node = match self.master_of(ShardNo::GLOBAL) {
                    Ok((_, node)) => node,
                    Err(_) => self.any_master()?,
                };
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
    fn any_master(&self) -> Result<Arc<Node>, String> {
        let snapshot = self.cluster.snapshot();
        let config = self.cluster.config();
        snapshot
            .islands
            .iter()
            .filter_map(|i| i.master())
            .find_map(|m| self.nodes.get(&config, &m.addr))
            .ok_or_else(|| "no island has a master".to_string())
    }

    /// A process id and secret key for a new client.
    pub fn new_key(&self) -> (i32, i32) {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        (pid, rand::random())
    }
}
