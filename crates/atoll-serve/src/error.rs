//! Why `atoll serve` could not start.

use std::net::SocketAddr;

/// A failure to start; a running server reports read failures in its answers instead.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The first discovery round could not connect.
    #[error(transparent)]
    Cluster(#[from] atoll_client::ClientError),
    /// The listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
