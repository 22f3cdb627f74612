//! The client's error type. Nodes are named by `host:port` only (never credentials).

use atoll_core::{ConfigError, IdError, IdGenError, IslandId, ShardNo};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    IdGen(#[from] IdGenError),
    #[error("{shard} is absent (not active on any island) after waiting {}: {reason}", ms(*waited))]
    ShardAbsent {
        shard: ShardNo,
        waited: Duration,
        reason: String,
    },
    #[error("{shard}: island {island} has no reachable master after waiting {}", ms(*waited))]
    NoMaster {
        shard: ShardNo,
        island: IslandId,
        waited: Duration,
    },
    #[error("{shard} on node {node}: {msg}")]
    Query {
        shard: ShardNo,
        node: String,
        /// SQLSTATE when the server answered with an error.
        code: Option<String>,
        msg: String,
        /// False when the connection broke mid-statement and it may or may not have run.
        provably_not_run: bool,
    },
    #[error("{shard}: cannot connect to node {node}: {msg}")]
    Connect {
        shard: ShardNo,
        node: String,
        msg: String,
    },
    #[error("ID {id} belongs to environment {env}, but this cluster is environment {expected} (cluster.env_digit)")]
    WrongEnvironment { id: i64, env: u8, expected: u8 },
    #[error("{shard}: the database ID generator {what}")]
    BadDbId { shard: ShardNo, what: String },
    #[error("no active microshard to place a new object on (only shard 0, or none)")]
    NoActiveShards,
    #[error("app-side ID generation needs ClusterOptions::id_node (a fixed node id unique among running processes, or IdNode::Lease)")]
    NoIdNode,
    #[error("app-side IDs refused, no valid ID node id lease: {why}")]
    NoIdLease { why: String },
    #[error("ID node id lease: {0}")]
    IdLease(String),
    #[error("bad ClusterOptions::id_node: {0}")]
    BadLeaseOptions(String),
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

impl ClientError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

pub(crate) use atoll_pg::describe;
