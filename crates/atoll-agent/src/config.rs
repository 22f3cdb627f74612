//! The agent's settings: which node it runs beside (found in `atoll.toml` by `host:port`),
//! where it listens, where its state lives, and who may read and write.

use crate::error::AgentError;
use atoll_core::{Config, IslandId, NodeConfig, SecretRef};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Actions that may wait in the queue (NEW) at once, unless configured otherwise.
pub const DEFAULT_QUEUE_LIMIT: usize = 1000;
/// How long a graceful shutdown waits for a running action before leaving it to the
/// restart's recovery.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Who may read attributes and action records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadAccess {
    /// Anyone who reaches the listen address (the default; writes still need the token).
    Open,
    /// Only requests carrying the write token.
    Token,
}

/// Everything an agent needs to run; built with [`AgentConfig::for_node`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The whole cluster configuration (`atoll.toml`): switchover candidates and joins
    /// look up the island's other nodes there.
    pub cluster: Config,
    /// The island the node belongs to.
    pub island: IslandId,
    /// How to connect to the node (user, database, password reference, TLS).
    pub node: NodeConfig,
    /// The node's stable id within the cluster (default: `host:port` from the config).
    pub node_id: String,
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Directory of the durable state (the action queue, `agent.sqlite`).
    pub state_dir: PathBuf,
    /// Bearer token for writes (and reads with [`ReadAccess::Token`]), by reference.
    /// `None`: the agent accepts no action.
    pub token: Option<SecretRef>,
    /// Who may read.
    pub reads: ReadAccess,
    /// Maximum number of NEW actions; one more is refused with 429.
    pub queue_limit: usize,
    /// The node's data directory, when the agent must know it before the server runs
    /// (`cluster.join`, `cluster.init`, `node.restart` of a stopped server); otherwise read
    /// from the server and remembered in the state directory.
    pub data_dir: Option<PathBuf>,
    /// Directory of the PostgreSQL binaries (default: found as the sandbox finds them).
    pub pg_bin: Option<PathBuf>,
    /// Server log file for servers the agent starts (default `<state_dir>/postgresql.log`).
    pub pg_log: Option<PathBuf>,
    /// Bound on waiting for a running action at shutdown.
    pub shutdown_grace: Duration,
    /// Crash-test hook: once an action's work is done, hold it RUNNING without recording
    /// the outcome, as if the agent were killed right there (tests kill it with -9 and
    /// check the restart's recovery). The CLI sets it only for an `atoll sandbox` cluster.
    pub test_hold_after_work: bool,
}

impl AgentConfig {
    /// Settings for the agent of the node `addr` (`host:port`) of `cluster`, with defaults
    /// for everything optional. Refuses an address the configuration does not list.
    pub fn for_node(
        cluster: Config,
        addr: &str,
        listen: SocketAddr,
        state_dir: PathBuf,
    ) -> Result<AgentConfig, AgentError> {
        let found = cluster.islands.iter().find_map(|i| {
            i.nodes
                .iter()
                .find(|n| n.addr() == addr)
                .map(|n| (i.id, n.clone()))
        });
        let (island, node) = found.ok_or_else(|| AgentError::Config {
            field: "node".into(),
            msg: format!("{addr} is not a node of {}", cluster.source),
        })?;
        Ok(AgentConfig {
            node_id: node.addr(),
            cluster,
            island,
            node,
            listen,
            state_dir,
            token: None,
            reads: ReadAccess::Open,
            queue_limit: DEFAULT_QUEUE_LIMIT,
            data_dir: None,
            pg_bin: None,
            pg_log: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            test_hold_after_work: false,
        })
    }

    /// The other nodes of this node's island, in configured order.
    pub fn island_peers(&self) -> Vec<NodeConfig> {
        self.cluster
            .islands
            .iter()
            .filter(|i| i.id == self.island)
            .flat_map(|i| i.nodes.iter())
            .filter(|n| n.addr() != self.node.addr())
            .cloned()
            .collect()
    }

    /// The configured node at `addr` on this node's island.
    pub fn island_node(&self, addr: &str) -> Option<NodeConfig> {
        self.cluster
            .islands
            .iter()
            .filter(|i| i.id == self.island)
            .flat_map(|i| i.nodes.iter())
            .find(|n| n.addr() == addr)
            .cloned()
    }

    /// The server log file for servers this agent starts.
    pub fn pg_log_file(&self) -> PathBuf {
        self.pg_log
            .clone()
            .unwrap_or_else(|| self.state_dir.join("postgresql.log"))
    }
}
