//! Moving atoll microshards between islands while the application keeps writing, with
//! PostgreSQL's logical replication orchestrated from Rust (no psql or shell; the schema's
//! DDL comes from `pg_dump --schema-only`, PostgreSQL's own account of a schema);
//! rebalancing islands by running planned moves in parallel; dropping the backups that
//! moves leave behind.
//!
//! A move ([`start_move`]): safety checks; the schema created on the destination from the
//! source's dump with primary keys only; a publication on the source and a subscription
//! copying the data on the destination; secondary indexes and constraints after the copy;
//! catch-up; a short write-blocking window in which the destination is proven to have
//! applied everything, sequences are copied and the copies are compared; then the shard is
//! switched off and renamed to a backup on the source and switched on at the destination;
//! replication objects are dropped. Every step is persisted in `atoll.moves`, so a killed
//! move can be resumed ([`resume_move`]) or rolled back ([`abort_move`]).
//!
//! Decisions (step order, what resume and abort do, rebalance plans) are made by
//! `atoll_core::move_plan` and `atoll_core::rebalance`; this crate only carries them out. It
//! must not depend on the CLI, on terminal output or on process management (the sandbox).
//!
//! The subscription's connection string carries the source master's password when the
//! config has one: PostgreSQL stores it in `pg_subscription` (readable by superusers only)
//! for the minutes the move lasts; it is masked in every error this crate builds, and
//! `CREATE SUBSCRIPTION` runs alone on a connection of its own whose statement logging and
//! statistics are switched off first, so no server log, `pg_stat_activity` or
//! `pg_stat_statements` gets it (a mover whose role may not switch them off is refused up
//! front: `password_logging`).

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod activate;
mod apply_health;
mod capacity;
mod catch_up;
mod cleanup;
mod context;
mod copy;
mod cutover;
mod db;
mod ddl;
mod debris;
mod error;
pub mod global_copy;
mod leftovers;
mod masters;
mod move_lock;
mod pause;
mod quiet;
mod rebalance;
mod rebalance_lock;
mod rebalance_prepare;
mod replica_identity;
mod replication;
mod resume;
mod run;
mod safety;
mod schema_copy;
mod security;
mod sequences;
mod start;
mod store;
mod subscribe;
mod undo;
mod verify;

pub use atoll_pg::catalog::moves::{FinishedMove, MoveTimings};
pub use cleanup::{cleanup, DroppedBackup};
pub use debris::{move_debris, MoveBackup, MoveDebris, UnfinishedMove, UnreadIsland};
pub use error::MoveError;
pub use leftovers::{ReplicationKind, ReplicationLeftover};
pub use rebalance::{load_weights, plan_rebalance, run_moves, RebalanceOutcome, Weights};
pub use rebalance_lock::{RebalanceLock, RebalanceLockError};
pub use rebalance_prepare::{
    prepare_rebalance, PreparedRebalance, RebalanceError, RebalanceRequest,
};
pub use resume::{abort_move, abort_move_with, resume_move};
pub use start::start_move;
pub use store::{read_moves, unfinished, MovesRead};
pub use undo::AbortReport;

use atoll_core::move_plan::{AbortAction, MoveStep, TableDigest, VerifyMode};
use atoll_core::{IslandId, ShardNo};
use std::sync::Arc;
use std::time::Duration;

/// How a move behaves. `Default` is what `atoll move` uses.
#[derive(Debug, Clone)]
pub struct MoveOptions {
    /// How the two copies are compared before the switch: row counts, or counts and
    /// checksums.
    pub verify: VerifyMode,
    /// Abort unfinished moves of the shard and drop stray replication objects first.
    pub clean_leftovers: bool,
    /// Refuse when a destination replica lags more than this (or is unreachable).
    pub max_replica_lag_bytes: u64,
    /// Test hook (the CLI's hidden `--test-stop-after`, sandbox configs only): stop right
    /// after this step as if killed.
    pub stop_after: Option<MoveStep>,
    /// Test hook: stop after this step's work is done but before it is recorded on the
    /// source, as if killed in the middle of the step.
    pub stop_before_record: Option<MoveStep>,
    /// Test hook: stop an abort (`--abort`, or the roll-back of a failed move) right after
    /// this action, as if killed there.
    pub stop_abort_after: Option<AbortAction>,
    /// Per attempt at locking the source tables; writers queue behind a waiting lock, so
    /// this bounds the write gap an unlucky attempt causes, and attempts are repeated.
    pub lock_timeout: Duration,
    /// How many times the table lock is tried (each bounded by `lock_timeout`) before the
    /// move fails.
    pub lock_attempts: u32,
    /// The longest one attempt at the pause waits for the destination to apply; past it
    /// the lock is released, replication catches up, and the pause is tried again.
    pub pause_budget: Duration,
    /// The longest the last attempt waits before the move gives up (and rolls back).
    pub pause_timeout: Duration,
    /// The longest the source's tables stay locked whatever happens: a destination that
    /// stops answering, or a mover that stalls or dies inside the pause. Enforced on the
    /// source (`statement_timeout` and `idle_in_transaction_session_timeout` of the pause's
    /// transaction) and on every destination call inside the pause; past it the pause is
    /// rolled back and the move stays at `caught_up`. Raise it with `verify_in_pause` on a
    /// large shard (the comparison runs inside the pause).
    pub pause_bound: Duration,
    /// Enter the pause once one replication round trip takes at most this.
    pub catch_up_within: Duration,
    /// Polling interval inside the pause.
    pub poll: Duration,
    /// Bound on the initial copy.
    pub copy_timeout: Duration,
    /// Bound on catching up after the copy (and on each wait for a tick outside the pause).
    pub catch_up_timeout: Duration,
    /// Compare the copies inside the final pause (exact at the switch point; the pause
    /// then grows with the shard's size) instead of at a frozen point just before it.
    pub verify_in_pause: bool,
    /// Tables without a primary key or replica identity get `REPLICA IDENTITY FULL` for
    /// the move (persisted with it, restored after the switch or the abort) instead of
    /// refusing the move; updates and deletes on them then scan the table on the
    /// destination while the move catches up.
    pub replica_identity_full: bool,
}

impl Default for MoveOptions {
    fn default() -> Self {
        MoveOptions {
            verify: VerifyMode::Counts,
            clean_leftovers: false,
            max_replica_lag_bytes: 64 << 20,
            stop_after: None,
            stop_before_record: None,
            stop_abort_after: None,
            lock_timeout: Duration::from_millis(100),
            lock_attempts: 50,
            pause_budget: Duration::from_millis(150),
            pause_timeout: Duration::from_secs(5),
            pause_bound: Duration::from_secs(10),
            catch_up_within: Duration::from_millis(50),
            poll: Duration::from_millis(2),
            copy_timeout: Duration::from_secs(24 * 3600),
            catch_up_timeout: Duration::from_secs(10 * 60),
            verify_in_pause: false,
            replica_identity_full: false,
        }
    }
}

/// What a move reports while it runs.
#[derive(Debug, Clone)]
pub enum MoveEvent {
    /// The move reached this step.
    Step(MoveStep),
    /// Bytes on the destination so far vs. the source's size.
    Copy {
        /// Size of the shard's tables on the destination so far, in bytes.
        done: u64,
        /// Size of the shard's tables on the source, in bytes.
        total: u64,
    },
    /// A free-text remark worth showing (table states, lock retries, cancelled autovacuum
    /// workers...).
    Note(String),
}

/// Receives progress; called from the move's task, must not block.
pub type Progress = Arc<dyn Fn(ShardNo, &MoveEvent) + Send + Sync>;

/// A progress sink that ignores everything.
pub fn no_progress() -> Progress {
    Arc::new(|_, _| {})
}

/// The outcome of a finished move, with its timings.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MoveReport {
    /// The move's id in `atoll.moves` (milliseconds since the Unix epoch × 1000 plus a
    /// random part).
    pub id: i64,
    /// The shard moved (`None` only in `Default`).
    pub shard: Option<ShardNo>,
    /// The source island (`None` only in `Default`).
    pub from: Option<IslandId>,
    /// The destination island (`None` only in `Default`).
    pub to: Option<IslandId>,
    /// How the copies were compared.
    pub verify: VerifyMode,
    /// The persisted step a resumed move started from; `None` for a move run from the start.
    pub resumed_from: Option<MoveStep>,
    /// Tables the move gave `REPLICA IDENTITY FULL` for its length (`--replica-identity-full`),
    /// with the identity each had and got back.
    pub replica_identity_full: Vec<String>,
    /// The source's old copy, renamed `shNNNN_moved_<unix secs>` on the source island;
    /// `None` until the switch.
    pub backup_schema: Option<String>,
    /// Wall-clock time of the whole move (of this run, when resumed), in ms.
    pub total_ms: u64,
    /// Time of the initial copy, from creating the subscription (or from the resume) to
    /// every table being copied (secondary indexes are built afterwards), in ms (0 when
    /// this run did no copy).
    pub copy_ms: u64,
    /// Size of the shard's tables on the source when the copy began, in bytes (0 when
    /// this run did no copy).
    pub copy_bytes: u64,
    /// From the lock request to the destination's activation: the longest a writer waits.
    pub pause_ms: f64,
    /// Part of the pause spent getting the lock on the source tables (the last attempt),
    /// in ms.
    pub lock_ms: f64,
    /// Part of the pause spent, once locked, waiting for the destination to apply
    /// everything committed on the source, in ms.
    pub apply_wait_ms: f64,
    /// Part of the pause spent after that, up to the source's commit: sequences, the
    /// owners/privileges comparison, the copies' comparison with `verify_in_pause`,
    /// switching the shard off and renaming it to the backup on the source, in ms.
    pub verify_and_switch_ms: f64,
    /// The brief write block that froze both copies for the comparison (0 when compared
    /// inside the pause).
    pub verify_block_ms: f64,
    /// The source's digest of every table of the shard, as compared (empty when this run
    /// did not compare).
    pub tables: Vec<TableDigest>,
}
