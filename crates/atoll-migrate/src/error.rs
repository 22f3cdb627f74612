//! Errors of a migration run. Bad input (files, drift, unsafe statements) is told apart
//! from failures of the cluster, so the CLI can exit with the right code.

use atoll_core::migration::MigrationError;
use atoll_core::IslandId;
use atoll_pg::PgError;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The migration directory or the plan is refused; nothing was applied.
    #[error(transparent)]
    Input(#[from] MigrationError),
    #[error("migration directory {dir}: {msg}")]
    Dir { dir: String, msg: String },
    #[error(transparent)]
    Pg(#[from] PgError),
    #[error("island {0}: the atoll catalog has no migrate step; run `atoll init` to upgrade it")]
    NoCatalog(IslandId),
    #[error("another migration run holds the cluster lock: run {run_id} by {host} pid {pid}, started {started_at}")]
    Locked {
        run_id: i64,
        host: String,
        pid: i32,
        started_at: String,
    },
    #[error("the migration run lost its cluster lock ({why}); it stopped after {done} schemas, {not_started} not started; run apply again to resume")]
    LockLost {
        why: String,
        done: usize,
        not_started: usize,
    },
    /// A move is under way; DDL would not reach its copy. Not an input error: it clears
    /// once the move is finished or aborted.
    #[error(
        "moves are unfinished: {0}; finish them (atoll move --resume or --abort) before migrating"
    )]
    MoveInProgress(String),
    #[error("island {island}: {file} failed: {msg}")]
    Hook {
        island: IslandId,
        file: String,
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
