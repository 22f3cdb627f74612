//! The router's one error type.

use std::path::PathBuf;

/// What can go wrong loading, checking or running the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The router config file could not be read.
    #[error("cannot read router config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The router config is invalid: where (file and item), then what.
    #[error("{where_}: {what}")]
    Config {
        /// The file and the item (`router.toml: rule "project"`).
        where_: String,
        /// What is wrong with it.
        what: String,
    },
    /// The cluster config the router names could not be loaded.
    #[error("router: the atoll cluster config: {0}")]
    Cluster(#[from] atoll_core::ConfigError),
    /// The cluster could not be reached for discovery.
    #[error("router: discovery: {0}")]
    Discovery(#[from] atoll_client::ClientError),
    /// A listening socket could not be opened.
    #[error("router: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A shard endpoint record or its credential could not be used.
    #[error("{0}")]
    Endpoint(String),
}

impl RouterError {
    /// Whether the user gave bad input (a config, a record), as opposed to a failure.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            RouterError::Config { .. } | RouterError::Cluster(_) | RouterError::Endpoint(_)
        )
    }

    pub(crate) fn config(where_: impl Into<String>, what: impl Into<String>) -> RouterError {
        RouterError::Config {
            where_: where_.into(),
            what: what.into(),
        }
    }
}
