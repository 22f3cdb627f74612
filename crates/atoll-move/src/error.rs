//! Errors of a move. Messages name the shard, the island or node, and the step; a
//! password that PostgreSQL might echo back is masked before a message is built.

use atoll_core::move_plan::{AbortRefused, Mismatch, MoveStep, StartRefused};
use atoll_core::ShardNo;
use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Pg(#[from] atoll_pg::PgError),
    #[error("node {node}: {msg}")]
    Query {
        node: String,
        msg: String,
        code: Option<SqlState>,
    },
    #[error(transparent)]
    Refused(#[from] StartRefused),
    /// A safety check failed; `check` is the problem's name.
    #[error("{shard}: unsafe to move: {check}: {detail}")]
    Unsafe {
        shard: ShardNo,
        check: &'static str,
        detail: String,
    },
    #[error("{shard}: verification failed, the move was aborted and the source stays active: {}", list(.mismatches))]
    VerifyFailed {
        shard: ShardNo,
        mismatches: Vec<Mismatch>,
    },
    /// Owners, privileges, policies or comments of the two copies differ (e.g. changed on
    /// the source during the move); the move is rolled back like [`MoveError::VerifyFailed`].
    #[error("{shard}: owners, privileges, policies or comments differ between source and destination, the move was aborted and the source stays active (retry it): {detail}")]
    SecurityDiffers { shard: ShardNo, detail: String },
    #[error("{shard}: {source}")]
    AbortRefused {
        shard: ShardNo,
        #[source]
        source: AbortRefused,
    },
    #[error("{0}")]
    NotFound(String),
    /// Rebalance weights are incomplete (they would mix with sizes).
    #[error("{0}")]
    MissingWeights(String),
    /// Another session holds the shard's move lock (or finished a move meanwhile).
    #[error("another process is working on the move of {shard} (it holds the move lock on the source master); wait for it to end or stop it, then retry")]
    Busy { shard: ShardNo },
    #[error("{shard}: timed out after {secs} s while {what}")]
    Timeout {
        shard: ShardNo,
        what: String,
        secs: u64,
    },
    /// The test hook (`--test-stop-after`) stopped the move as if it had been killed.
    #[error("{shard}: stopped after step {step} (test hook --test-stop-after)")]
    Stopped { shard: ShardNo, step: MoveStep },
    #[error("{shard}: {msg}")]
    Other { shard: ShardNo, msg: String },
}

fn list(m: &[Mismatch]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

impl MoveError {
    /// The SQLSTATE of a server error.
    pub fn code(&self) -> Option<&SqlState> {
        match self {
            MoveError::Query { code, .. } => code.as_ref(),
            MoveError::Pg(e) => e.code(),
            _ => None,
        }
    }

    /// Whether the error is bad input or a refusal (exit code 2) rather than a failure.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            MoveError::Refused(_)
                | MoveError::Unsafe { .. }
                | MoveError::AbortRefused { .. }
                | MoveError::NotFound(_)
                | MoveError::Busy { .. }
                | MoveError::MissingWeights(_)
        )
    }
}
