//! One error type for the PostgreSQL layer. Messages name the node as
//! `user@host:port/database` (never a password) and keep PostgreSQL's own text.

use atoll_core::{IslandId, ShardNo};
use tokio_postgres::error::SqlState;

/// An error of the PostgreSQL layer; the message names the node, island or shard concerned.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// Could not connect to a node (network, authentication, timeout, or an unresolvable password
    /// reference).
    #[error("node {node}: {msg}")]
    Connect {
        /// The node as `user@host:port/database`.
        node: String,
        /// What went wrong.
        msg: String,
    },
    /// A statement failed on a node, or the connection broke during it.
    #[error("node {node}: {msg}")]
    Query {
        /// The node as `user@host:port/database`.
        node: String,
        /// PostgreSQL's message with SQLSTATE and detail, or the driver's error chain.
        msg: String,
        /// The SQLSTATE, when the server answered with an error.
        code: Option<SqlState>,
        /// The driver's error. atoll-pg sends no secret in SQL text, so its text is safe
        /// to show; `msg` already holds what it says.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The island has no single reachable master in the snapshot.
    #[error("island {0} has no reachable master")]
    NoMaster(IslandId),
    /// The catalog or a request is refused as is (wrong cluster or island, a newer catalog, a
    /// malformed row); the text says why.
    #[error("{0}")]
    Refused(String),
    /// An endpoint record's credential cannot be had (`[endpoints]`, [`crate::endpoints`]).
    #[error(transparent)]
    Keychain(#[from] crate::endpoints::KeychainError),
    /// Creating a shard's schema failed.
    #[error("{shard}: {msg}")]
    Shard {
        /// The shard.
        shard: ShardNo,
        /// What went wrong, naming the island.
        msg: String,
    },
}

impl PgError {
    /// A driver error on `node`, keeping the SQLSTATE for [`PgError::code`].
    pub fn query(node: &impl std::fmt::Display, e: tokio_postgres::Error) -> PgError {
        PgError::Query {
            node: node.to_string(),
            code: e.code().cloned(),
            msg: describe(&e),
            source: e,
        }
    }

    /// Whether the request is refused as it stands (wrong cluster or island, a malformed
    /// catalog row, a shard that cannot be created or flipped), rather than a failure of
    /// a node: the user must change something before retrying.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PgError::Refused(_) | PgError::Shard { .. } | PgError::Keychain(_)
        )
    }

    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            PgError::Query { code, .. } => code.as_ref(),
            _ => None,
        }
    }
}

/// PostgreSQL's own message with its SQLSTATE and detail (`ERROR: ... [42P01] (detail)`),
/// rather than tokio-postgres' generic "db error"; for other errors, the whole source chain.
/// Shared by every crate that reports a driver error.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{}: {} [{}]", db.severity(), db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}
