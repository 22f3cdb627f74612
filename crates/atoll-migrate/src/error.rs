//! Errors of a migration run. Bad input (files, drift, unsafe statements) is told apart
//! from failures of the cluster, so the CLI can exit with the right code.

use atoll_core::migration::MigrationError;
use atoll_core::IslandId;
use atoll_pg::PgError;

/// An error of reading the migration directory, planning, a run (`apply`, `undo`) or
/// `schema diff`.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The migration directory or the plan is refused; nothing was applied.
    #[error(transparent)]
    Input(#[from] MigrationError),
    /// The migration directory cannot be read or written (`migrate new`), or the config
    /// has no island to run on.
    #[error("migration directory {dir}: {msg}")]
    Dir {
        /// The directory's path (`config` when no islands are configured).
        dir: String,
        /// What went wrong, naming the file when there is one.
        msg: String,
    },
    /// An error of the PostgreSQL layer (connecting to a master, reading the catalog or a
    /// schema's versions, the run record).
    #[error(transparent)]
    Pg(#[from] PgError),
    /// The master of this island has an `atoll` catalog too old for migration runs.
    #[error("island {0}: the atoll catalog has no migrate step; run `atoll init` to upgrade it")]
    NoCatalog(IslandId),
    /// Another run holds the cluster-wide migration lock (on the coordination island's
    /// master); the fields name it as its `atoll.migration_lock` row does.
    #[error("another migration run holds the cluster lock: run {run_id} by {host} pid {pid}, started {started_at}")]
    Locked {
        /// The holder's run id in `atoll.migration_runs`; 0 when it has not written its
        /// row yet.
        run_id: i64,
        /// The host name the holder runs on.
        host: String,
        /// The holder's process id on that host (0 when not known yet).
        pid: i32,
        /// When the holder's run started, as the server wrote it.
        started_at: String,
    },
    /// The lock's connection broke or its run record could not be updated during the run:
    /// no further schema was started. Running `apply` again resumes.
    #[error("the migration run lost its cluster lock ({why}); it stopped after {done} schemas, {not_started} not started; run apply again to resume")]
    LockLost {
        /// Why the lock is considered lost.
        why: String,
        /// Schemas whose chain ended (migrated or failed) before the run stopped.
        done: usize,
        /// Schemas of the plan not (or not completely) run.
        not_started: usize,
    },
    /// A move is under way; DDL would not reach its copy. Not an input error: it clears
    /// once the move is finished or aborted.
    #[error(
        "moves are unfinished: {0}; finish them (atoll move --resume or --abort) before migrating"
    )]
    MoveInProgress(String),
    /// `before.sql` or `after.sql` failed on an island master.
    #[error("island {island}: {file} failed: {msg}")]
    Hook {
        /// The island whose master ran the file.
        island: IslandId,
        /// `before.sql` or `after.sql`.
        file: String,
        /// PostgreSQL's message.
        msg: String,
    },
}

impl MigrateError {
    /// True when the user's input or setup is at fault (exit code 2 in the CLI): bad files,
    /// a refused plan, a catalog `atoll init` has not upgraded yet.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            MigrateError::Input(_) | MigrateError::Dir { .. } | MigrateError::NoCatalog(_)
        )
    }
}

pub(crate) use atoll_pg::describe as pg_message;
