//! `atoll proxy`: a PostgreSQL wire-protocol proxy, so an application in any language (any
//! driver, `psql`, `pgbench`) reaches the microshard each transaction names.
//!
//! The types a user needs: [`ProxyOptions`] and [`bind`], which returns a [`Proxy`] to
//! [`Proxy::serve`]. Per transaction, the route comes from the first statement
//! (`atoll_core::statement_route`: a schema-qualified `shNNNN.` name, an `atoll:shard` or
//! `atoll:id` hint, else the session's `SET atoll.shard` or `search_path`, else shard 0);
//! the statement runs on that shard's island master through a pooled connection, which
//! goes back to the pool when the transaction ends (transaction pooling). Clients prove
//! their password with SCRAM-SHA-256; the proxy logs in to the nodes with atoll's
//! configured credentials.
//!
//! Around that: the simple and the extended protocol, named prepared statements across
//! pooled connections (`prepared.rs`), COPY in and out, session settings kept and replayed
//! per transaction, session pooling on request, cancel requests, TLS both ways, replica
//! reads on request (within a lag bound), limits per node, per user and on clients, a
//! moving shard's transactions held through the cut-over instead of failed (`hold.rs`),
//! the admin database `atoll` and `/metrics` (see docs/proxy.md).
//!
//! Not for: HTTP (atoll-router), running migrations or moves. It must not depend on the
//! CLI, the sandbox (outside tests) or terminal output.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod admin;
mod auth;
mod backend;
mod cancel;
pub mod frame;
mod hold;
mod messages;
mod metrics;
mod node;
mod pool;
mod prepared;
mod relay;
mod route_cache;
mod server;
mod session;
mod shared;
mod status;
mod stream;

pub use server::Proxy;
pub use status::{HoldStatus, IslandStatus, PoolStatus, Status};

use atoll_client::{Cluster, ClusterOptions};
use atoll_core::{Config, Secret};
use std::net::SocketAddr;
use std::time::Duration;

/// How a proxy runs.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The users clients log in as, with their passwords (resolved references).
    pub users: Vec<(String, Secret)>,
    /// Connections per node, at most.
    pub pool_size: usize,
    /// Bound on connecting to a node and on waiting for a pooled connection.
    pub connect_timeout: Duration,
    /// How long a moving shard's transaction is held at most before 57P03.
    pub hold_timeout: Duration,
    /// Where `/metrics` is served (Prometheus' text format); `None`: nowhere.
    pub metrics: Option<SocketAddr>,
    /// TLS offered to clients ([`tls_server_config`]); `None`: declined (plain text).
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// How long a client keeps a server connection.
    pub pool_mode: ProxyPoolMode,
    /// Server connections one user's clients hold at once, over all nodes (`None`: only
    /// `pool_size` per node bounds them).
    pub user_pool_size: Option<usize>,
    /// Client connections open at once, at most (`None`: no bound).
    pub max_clients: Option<usize>,
    /// The database name clients connect to (`None`: the first configured node's); any
    /// other but the admin database `atoll` is refused (3D000). One proxy serves one
    /// cluster, so `pool_size` per node is also its bound per database.
    pub database: Option<String>,
    /// Replicas further behind their master (as of the last discovery round, every
    /// second) serve no replica reads; the master does (`None`: no bound).
    pub replica_max_lag: Option<Duration>,
}

pub use atoll_core::proxy_config::ProxyPoolMode;
pub use stream::server_config as tls_server_config;

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster could not be read.
    #[error("the cluster: {0}")]
    Cluster(#[from] atoll_client::ClientError),
    /// No user configured.
    #[error("no users: give at least one (--user NAME=env:VAR)")]
    NoUsers,
}

/// Binds the listener and starts following the cluster.
pub async fn bind(config: Config, options: ProxyOptions) -> Result<Proxy, ProxyError> {
    if options.users.is_empty() {
        return Err(ProxyError::NoUsers);
    }
    let database = options.database.clone().unwrap_or_else(|| {
        config
            .islands
            .iter()
            .flat_map(|i| i.nodes.first())
            .map(|n| n.database.clone())
            .next()
            .unwrap_or_else(|| "postgres".into())
    });
    let cluster = Cluster::connect(config, ClusterOptions::default()).await?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ProxyError::Listen {
            addr: options.listen,
            source,
        })?;
    let metrics = match options.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ProxyError::Listen { addr, source })?,
        ),
        None => None,
    };
    let users = auth::Users::new(&options.users);
    let pools = pool::Pools::new(options.pool_size, options.connect_timeout);
    Ok(Proxy::new(
        listener,
        metrics,
        shared::Shared::new(cluster, users, pools, database, &options),
    ))
}
