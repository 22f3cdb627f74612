//! The client's error type. Nodes are named by `host:port` only (never credentials).

use atoll_core::{ConfigError, IdError, IdGenError, IslandId, ShardNo};
use std::time::Duration;

/// An error of the client library. Nodes are named `host:port`, never with credentials.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration could not be loaded or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The islands could not be had from the endpoint records (`[endpoints]`): the
    /// keychain, a record, or the coordination island's nodes.
    #[error("endpoints: {0}")]
    Endpoints(#[from] atoll_pg::PgError),
    /// An ID is malformed (not 19 digits with a valid environment digit).
    #[error(transparent)]
    Id(#[from] IdError),
    /// The app-side ID generator refused (running ahead of the clock, clock out of range).
    #[error(transparent)]
    IdGen(#[from] IdGenError),
    /// The shard stayed absent (active on no island) for the whole shard-absent window.
    #[error("{shard} is absent (not active on any island) after waiting {}: {reason}", ms(*waited))]
    ShardAbsent {
        /// The shard asked for.
        shard: ShardNo,
        /// How long it was waited for.
        waited: Duration,
        /// The last routing error.
        reason: String,
    },
    /// The shard's island had no reachable master for the whole shard-absent window.
    #[error("{shard}: island {island} has no reachable master after waiting {}", ms(*waited))]
    NoMaster {
        /// The shard asked for.
        shard: ShardNo,
        /// Its island.
        island: IslandId,
        /// How long it was waited for.
        waited: Duration,
    },
    /// A statement failed on a node (server error or connection lost mid-statement).
    #[error("{shard} on node {node}: {msg}")]
    Query {
        /// The shard the statement was for.
        shard: ShardNo,
        /// `host:port` of the node.
        node: String,
        /// SQLSTATE when the server answered with an error.
        code: Option<String>,
        /// PostgreSQL's message with SQLSTATE and detail, or the driver's error.
        msg: String,
        /// False when the connection broke mid-statement and it may or may not have run.
        provably_not_run: bool,
    },
    /// No connection to the node could be had (refused, timeout, pool exhausted): nothing was sent.
    #[error("{shard}: cannot connect to node {node}: {msg}")]
    Connect {
        /// The shard the statement was for.
        shard: ShardNo,
        /// `host:port` of the node.
        node: String,
        /// What went wrong.
        msg: String,
    },
    /// An ID from another environment than this cluster's `cluster.env_digit`.
    #[error("ID {id} belongs to environment {env}, but this cluster is environment {expected} (cluster.env_digit)")]
    WrongEnvironment {
        /// The ID as given.
        id: i64,
        /// Its environment digit.
        env: u8,
        /// This cluster's environment digit.
        expected: u8,
    },
    /// `shNNNN.id_gen()` returned no value, a malformed ID, or an ID of another shard.
    #[error("{shard}: the database ID generator {what}")]
    BadDbId {
        /// The shard whose generator was called.
        shard: ShardNo,
        /// What it returned wrong.
        what: String,
    },
    /// A random shard was asked for, but no shard other than shard 0 is active.
    #[error("no active microshard to place a new object on (only shard 0, or none)")]
    NoActiveShards,
    /// An app-side ID was asked for without [`crate::ClusterOptions::id_node`] set.
    #[error("app-side ID generation needs ClusterOptions::id_node (a fixed node id unique among running processes, or IdNode::Lease)")]
    NoIdNode,
    /// An app-side ID was asked for while this process holds no valid node id lease.
    #[error("app-side IDs refused, no valid ID node id lease: {why}")]
    NoIdLease {
        /// Why no lease is valid (not yet taken, expired, taken over).
        why: String,
    },
    /// Taking or renewing the node id lease failed; the text says why.
    #[error("ID node id lease: {0}")]
    IdLease(String),
    /// [`crate::LeaseOptions`] are invalid; the text says which field.
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
