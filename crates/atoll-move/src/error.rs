//! Errors of a move. Messages name the shard, the island or node, and the step; a
//! password that PostgreSQL might echo back is masked before a message is built.

use atoll_core::move_plan::{AbortAction, AbortRefused, Mismatch, MoveStep, StartRefused};
use atoll_core::{IslandId, ShardNo};
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
    /// The shard's schema differs between source and destination (DDL ran on one of them
    /// during the move: logical replication does not carry it). Nothing was switched: the
    /// shard stays active on the source and the move at `caught_up`, to be aborted.
    #[error("{shard}: the schema changed during the move, so the destination's copy no longer matches (DDL is not replicated): {detail}; nothing was switched, {shard} stays active on the source and the move at caught_up: abort it (`atoll move --abort --shard {}`) and start the move again", .shard.get())]
    SchemaChanged {
        /// The shard that was moving.
        shard: ShardNo,
        /// The first few objects that differ, as each side has them.
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
    /// The shard may be active on no island: switched off on the source, and activating it
    /// on the destination failed, or whether the switch committed is not known (its
    /// COMMIT got no answer and the source could not be asked). `detail` names the command
    /// that ends it, to run at once.
    #[error("{shard}: OFFLINE: {detail}")]
    Offline {
        /// The shard of the move.
        shard: ShardNo,
        /// What happened, and the command that ends it.
        detail: String,
    },
    /// The test hook (`--test-stop-after`) stopped the move as if it had been killed.
    #[error("{shard}: stopped after step {step} (test hook --test-stop-after)")]
    Stopped {
        /// The shard that was moving.
        shard: ShardNo,
        /// The last step carried out (recorded, or not with `stop_before_record`).
        step: MoveStep,
    },
    /// The subscription's worker keeps failing: PostgreSQL restarted it and it failed again
    /// on the same transaction, more often or for longer than a passing conflict would
    /// (see `apply_health.rs`).
    #[error("{shard}: the subscription {subscription} on island {island} failed {errors} times in {:.1} s without getting past the failure (PostgreSQL restarts its worker, which retries the same transaction); the cause is in the server log of island {island}'s master (logical replication worker errors, counted in pg_stat_subscription_stats); fix it, then --resume or --abort", .over.as_secs_f64())]
    ApplyFailing {
        /// The shard that was moving.
        shard: ShardNo,
        /// The destination island.
        island: IslandId,
        /// The subscription's name.
        subscription: String,
        /// Errors since the worker last made progress.
        errors: i64,
        /// From the first of those errors to the last.
        over: std::time::Duration,
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
    /// Dumping the source's schema (`pg_dump`, `pg_restore`) failed; nothing was created.
    #[error("copying the schema from {node} with pg_dump: {detail}")]
    SchemaDump {
        /// The source node as `user@host:port/database`.
        node: String,
        /// What failed, with the tool's own message.
        detail: String,
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
