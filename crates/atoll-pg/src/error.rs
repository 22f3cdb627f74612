//! One error type for the PostgreSQL layer. Messages name the node as
//! `user@host:port/database` (never a password) and keep PostgreSQL's own text.

use atoll_core::{IslandId, ShardNo};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("node {node}: {msg}")]
    Connect { node: String, msg: String },
    #[error("node {node}: {msg}")]
    Query {
        node: String,
        msg: String,
        /// The SQLSTATE, when the server answered with an error.
        code: Option<String>,
    },
    #[error("island {0} has no reachable master")]
    NoMaster(IslandId),
    #[error("{0}")]
    Refused(String),
    #[error("{shard}: {msg}")]
    Shard { shard: ShardNo, msg: String },
}

impl PgError {
    pub(crate) fn query(node: &impl std::fmt::Display, e: tokio_postgres::Error) -> PgError {
        PgError::Query {
            node: node.to_string(),
            code: e.code().map(|c| c.code().to_string()),
            msg: describe(&e),
        }
    }

    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// PostgreSQL's message (with detail) rather than tokio-postgres' generic "db error".
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {} ({d})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
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
