//! Why `atoll serve` could not start.

use std::net::SocketAddr;

/// A failure to start; a running server reports read failures in its answers instead.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The first discovery round could not connect.
    #[error(transparent)]
    Cluster(#[from] atoll_client::ClientError),
    /// A write token could not be resolved (the message names its reference, never the
    /// token).
    #[error("{0}")]
    Token(String),
    /// The migration directory could not be read.
    #[error("migration directory: {0}")]
    Migrations(String),
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
