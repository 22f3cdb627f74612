//! Server connections per node, reused between transactions: at most `size` open per node
//! (a client waits for a free one, up to the connect timeout), idle ones kept for the next
//! transaction. A connection is returned only when its transaction ended cleanly; any
//! other is closed.

use crate::backend::{connect, BackendError, ServerConn};
use crate::node::Node;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One node's pool.
struct NodePool {
    /// Bounds the connections open to the node (idle or leased).
    limit: Arc<Semaphore>,
    /// Idle connections, newest last (boxed: a transaction moves its connection in and
    /// out of the pool and the session, a pointer rather than the whole state).
    #[allow(clippy::vec_box)]
    idle: Vec<Box<ServerConn>>,
}

/// The pools of every node, keyed by `host:port`.
pub struct Pools {
    /// Locked only to take or put an entry, never across I/O.
    nodes: Mutex<HashMap<String, NodePool>>,
    size: usize,
    timeout: Duration,
}

/// One node's pool as `SHOW atoll.pools` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStats {
    /// `host:port` of the node.
    pub addr: String,
    /// Connections leased to transactions now.
    pub leased: usize,
    /// Idle connections kept for the next transaction.
    pub idle: usize,
    /// The most connections open at once.
    pub limit: usize,
}

/// A leased server connection; dropped without [`Lease::release`], it is closed.
pub struct Lease {
    /// The connection.
    pub conn: Box<ServerConn>,
    _permit: OwnedSemaphorePermit,
    /// The client's user's share (`--user-pool-size`), held as long as the connection.
    user_permit: Option<OwnedSemaphorePermit>,
    pools: Arc<Pools>,
}

impl Lease {
    /// Gives the connection back for reuse (its transaction ended cleanly).
    pub fn release(self) {
        let Lease {
            conn,
            _permit,
            user_permit: _,
            pools,
        } = self;
        let mut nodes = pools.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = nodes.get_mut(&conn.addr) {
            p.idle.push(conn);
        }
    }
}

impl Pools {
    /// Pools of at most `size` connections per node.
    pub fn new(size: usize, timeout: Duration) -> Arc<Pools> {
        Arc::new(Pools {
            nodes: Mutex::new(HashMap::new()),
            size: size.max(1),
            timeout,
        })
    }

    /// Drops the idle connections to `addr` (its node failed).
    pub fn discard_idle(&self, addr: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = nodes.get_mut(addr) {
            p.idle.clear();
        }
    }

    /// Every node's pool, by address.
    pub fn stats(&self) -> Vec<PoolStats> {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<PoolStats> = nodes
            .iter()
            .map(|(addr, p)| PoolStats {
                addr: addr.clone(),
                leased: self.size.saturating_sub(p.limit.available_permits()),
                idle: p.idle.len(),
                limit: self.size,
            })
            .collect();
        all.sort_by(|a, b| a.addr.cmp(&b.addr));
        all
    }

    /// A connection to `node` within the user's share: `user` bounds how many connections
    /// (to all nodes) one user's clients hold at once.
    pub async fn get_for(
        self: &Arc<Self>,
        node: &Node,
        user: Option<&Arc<Semaphore>>,
    ) -> Result<Lease, BackendError> {
        let user_permit = match user {
            Some(limit) => {
                let busy = || "this user's connections (--user-pool-size) all busy".into();
                Some(self.permit(limit.clone(), node, busy).await?)
            }
            None => None,
        };
        let mut lease = self.get(node).await?;
        lease.user_permit = user_permit;
        Ok(lease)
    }

    /// A permit of `limit`, waiting at most the timeout; the refusal says `busy`.
    async fn permit(
        &self,
        limit: Arc<Semaphore>,
        node: &Node,
        busy: impl FnOnce() -> String,
    ) -> Result<OwnedSemaphorePermit, BackendError> {
        // Most transactions find a free one: no timer then.
        if let Ok(p) = limit.clone().try_acquire_owned() {
            return Ok(p);
        }
        tokio::time::timeout(self.timeout, limit.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| BackendError::Refused {
                node: node.config.to_string(),
                message: format!("{} for {:?}", busy(), self.timeout),
            })
    }

    /// An idle connection to `node`, or a new one within the limit.
    pub async fn get(self: &Arc<Self>, node: &Node) -> Result<Lease, BackendError> {
        let limit = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            match nodes.get(&node.addr) {
                Some(p) => p.limit.clone(),
                None => {
                    let limit = Arc::new(Semaphore::new(self.size));
                    let idle = Vec::new();
                    let pool = NodePool {
                        limit: limit.clone(),
                        idle,
                    };
                    nodes.insert(node.addr.clone(), pool);
                    limit
                }
            }
        };
        let busy = || format!("all {} pooled connections busy", self.size);
        let permit = self.permit(limit, node, busy).await?;
        let idle = {
            let mut nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            nodes.get_mut(&node.addr).and_then(|p| p.idle.pop())
        };
        let conn = match idle {
            Some(c) => c,
            None => Box::new(connect(&node.config, self.timeout).await?),
        };
        Ok(Lease {
            conn,
            _permit: permit,
            user_permit: None,
            pools: self.clone(),
        })
    }
}
