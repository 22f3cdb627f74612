//! Errors of a move. Messages name the shard, the island or node, and the step; a
//! password that PostgreSQL might echo back is masked before a message is built.

use atoll_core::move_plan::{AbortAction, AbortRefused, Mismatch, MoveStep, StartRefused};
use atoll_core::ShardNo;
use tokio_postgres::error::SqlState;

/// An error of a move, a resume, an abort, a cleanup or a rebalance; the message names the
/// shard, the island or node, and the step.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// An error of the PostgreSQL layer (connecting, discovery, the catalog, locks).
    #[error(transparent)]
    Pg(#[from] atoll_pg::PgError),
    /// A statement of the move failed on a node, or the connection broke during it.
    #[error("node {node}: {msg}")]
    Query {
        /// The node as `user@host:port/database`.
        node: String,
        /// PostgreSQL's message (or the driver's error), with the password masked.
        msg: String,
        /// The SQLSTATE, when the server answered with an error.
        code: Option<SqlState>,
    },
    /// The move may not start: the shard is active nowhere or already on the destination,
    /// the destination island is unknown, the shard has an unfinished move, or the
    /// destination already has the shard's schema.
    #[error(transparent)]
    Refused(#[from] StartRefused),
    /// A safety check failed; `check` is the problem's name.
    #[error("{shard}: unsafe to move: {check}: {detail}")]
    Unsafe {
        /// The shard that was to move.
        shard: ShardNo,
        /// The failed check, e.g. `leftovers` or `migration_running`.
        check: &'static str,
        /// What was found and how to fix it.
        detail: String,
    },
    /// The copies on the source and the destination differ (row counts, or checksums with
    /// `full`); the move was rolled back and the shard stays active on the source.
    #[error("{shard}: verification failed, the move was aborted and the source stays active: {}", list(.mismatches))]
    VerifyFailed {
        /// The shard that was moving.
        shard: ShardNo,
        /// Every table whose digests differ.
        mismatches: Vec<Mismatch>,
    },
    /// Owners, privileges, policies or comments of the two copies differ (e.g. changed on
    /// the source during the move); the move is rolled back like [`MoveError::VerifyFailed`].
    #[error("{shard}: owners, privileges, policies or comments differ between source and destination, the move was aborted and the source stays active (retry it): {detail}")]
    SecurityDiffers {
        /// The shard that was moving.
        shard: ShardNo,
        /// Which objects differ.
        detail: String,
    },
    /// The move can no longer be rolled back (the destination is already active); it can
    /// only be resumed.
    #[error("{shard}: {source}")]
    AbortRefused {
        /// The shard of the move.
        shard: ShardNo,
        /// The step that makes the abort impossible.
        #[source]
        source: AbortRefused,
    },
    /// No unfinished move to resume or abort (or several, and no shard was named), a move
    /// record missing on an island, or an island without a connection; the text says which.
    #[error("{0}")]
    NotFound(String),
    /// Rebalance weights are incomplete (they would mix with sizes).
    #[error("{0}")]
    MissingWeights(String),
    /// Another session holds the shard's move lock (or finished a move meanwhile).
    #[error("another process is working on the move of {shard} (it holds the move lock on the source master); wait for it to end or stop it, then retry")]
    Busy {
        /// The shard whose move lock is held.
        shard: ShardNo,
    },
    /// A wait of the move (copy, catch-up, the pause, other sessions' locks) ran past its
    /// bound.
    #[error("{shard}: timed out after {secs} s while {what}")]
    Timeout {
        /// The shard that was moving.
        shard: ShardNo,
        /// What the move was waiting for, naming the island.
        what: String,
        /// The bound that was exceeded, in seconds.
        secs: u64,
    },
    /// The test hook (`--test-stop-after`) stopped the move as if it had been killed.
    #[error("{shard}: stopped after step {step} (test hook --test-stop-after)")]
    Stopped {
        /// The shard that was moving.
        shard: ShardNo,
        /// The last step carried out (recorded, or not with `stop_before_record`).
        step: MoveStep,
    },
    /// The test hook (`--test-stop-after abort:ACTION`) stopped an abort right after this
    /// action, as if it had been killed there.
    #[error("{shard}: abort stopped after {action} (test hook --test-stop-after); finish it with `atoll move --abort --shard {}`", .shard.get())]
    AbortStopped {
        /// The shard of the move being aborted.
        shard: ShardNo,
        /// The last action carried out.
        action: AbortAction,
    },
    /// Any other failure of a move (replication errors, a missing subscription, a failed
    /// activation...); the text says what happened and what to run next.
    #[error("{shard}: {msg}")]
    Other {
        /// The shard that was moving.
        shard: ShardNo,
        /// What went wrong, naming the island.
        msg: String,
    },
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
