//! The agent's one error type. Messages name the node as `user@host:port/database` and
//! never hold the token or a password.

use atoll_pg::PgError;
use std::path::PathBuf;

/// An error of the agent library.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A setting is wrong; names the setting.
    #[error("{field}: {msg}")]
    Config {
        /// The setting (flag or config field) at fault.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The token reference could not be resolved (the reference is named, never the token).
    #[error("token: {0}")]
    Token(#[source] atoll_core::SecretError),
    /// The durable state (the queue's SQLite file) failed.
    #[error("state {path}: {source}")]
    State {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file or process operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The path concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PostgreSQL binary (`pg_ctl`, `pg_basebackup`, `pg_rewind`) failed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line (no secret is ever passed on a command line).
        command: String,
        /// Its exit status.
        status: String,
        /// The last of its output, on one line.
        output: String,
    },
    /// A statement or connection to a node failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The PostgreSQL binaries could not be found.
    #[error(transparent)]
    Binaries(#[from] atoll_sandbox::SandboxError),
    /// The server answered in a way the agent cannot use (the text says what).
    #[error("{0}")]
    Unexpected(String),
}

impl AgentError {
    pub(crate) fn io(what: impl Into<String>, path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        AgentError::Io {
            what: what.into(),
            path: path.into(),
            source: e,
        }
    }

    pub(crate) fn query(node: &atoll_core::NodeConfig, e: tokio_postgres::Error) -> Self {
        AgentError::Pg(PgError::query(node, e))
    }
}
