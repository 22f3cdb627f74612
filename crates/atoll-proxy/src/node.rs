//! The configured nodes the proxy connects to, each with its `host:port` made once, so
//! routing a transaction allocates nothing to name its node (profiled: building the
//! address and copying the node's config per transaction showed in the proxy's user time).

use atoll_core::{Config, NodeConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A configured node (with its credentials) and its address.
#[derive(Debug)]
pub struct Node {
    /// As configured.
    pub config: NodeConfig,
    /// `host:port`: the key of its pool.
    pub addr: String,
}

/// The nodes of the config in use, by address; emptied when the config is reloaded (its
/// credentials may have changed).
#[derive(Default)]
pub struct Nodes {
    /// Locked only to look a node up or add one, never across I/O.
    inner: Mutex<Known>,
}

#[derive(Default)]
struct Known {
    /// The config the nodes came from (held, so its address is not reused).
    config: Option<Arc<Config>>,
    by_addr: HashMap<String, Arc<Node>>,
}

impl Nodes {
    /// The node of `config` at `addr` (`host:port`), if configured.
    pub fn get(&self, config: &Arc<Config>, addr: &str) -> Option<Arc<Node>> {
        let mut known = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !known
            .config
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, config))
        {
            known.by_addr.clear();
            known.config = Some(config.clone());
        }
        if let Some(n) = known.by_addr.get(addr) {
            return Some(n.clone());
        }
        let config = config
            .islands
            .iter()
            .flat_map(|i| &i.nodes)
            .find(|n| n.has_addr(addr))?
            .clone();
        let node = Arc::new(Node {
            addr: config.addr(),
            config,
        });
        known.by_addr.insert(node.addr.clone(), node.clone());
        Some(node)
    }
}
