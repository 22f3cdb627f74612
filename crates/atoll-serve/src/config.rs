//! What `atoll serve` serves and where.

use atoll_core::Config;
use std::net::SocketAddr;
use std::time::Duration;

/// Settings of one control-plane process.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where the API and `/metrics` listen.
    pub listen: SocketAddr,
    /// The cluster's config.
    pub atoll: Config,
    /// How often the catalog's moves are read and discovery runs (shard notices update
    /// the snapshot in between); default 1 s.
    pub period: Duration,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
}

impl ServeConfig {
    /// Defaults for `listen` and the cluster's `atoll`.
    pub fn new(listen: SocketAddr, atoll: Config) -> ServeConfig {
        ServeConfig {
            listen,
            atoll,
            period: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(10),
        }
    }
}
