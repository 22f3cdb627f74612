//! One error type for the PostgreSQL layer. Messages name the node as
//! `user@host:port/database` (never a password) and keep PostgreSQL's own text.

use atoll_core::{IslandId, ShardNo};
use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("node {node}: {msg}")]
    Connect { node: String, msg: String },
    #[error("node {node}: {msg}")]
    Query {
        node: String,
        msg: String,
        /// The SQLSTATE, when the server answered with an error.
        code: Option<SqlState>,
    },
    #[error("island {0} has no reachable master")]
    NoMaster(IslandId),
    #[error("{0}")]
    Refused(String),
    #[error("{shard}: {msg}")]
    Shard { shard: ShardNo, msg: String },
}

impl PgError {
    /// A driver error on `node`, keeping the SQLSTATE for [`PgError::code`].
    pub fn query(node: &impl std::fmt::Display, e: tokio_postgres::Error) -> PgError {
        PgError::Query {
            node: node.to_string(),
            code: e.code().cloned(),
            msg: describe(&e),
        }
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
