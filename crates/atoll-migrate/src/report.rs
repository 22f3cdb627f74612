//! What a migration run tells its caller: events while it goes on, and the report at its
//! end (the CLI's `--json` output of `migrate apply|undo`).

use atoll_core::IslandId;
use atoll_pg::catalog::migration_runs::RunKind;
use serde::Serialize;

/// What the caller is told while a run goes on.
#[derive(Debug, Clone)]
pub enum Event {
    /// `schemas` schemas will be migrated; the canary phase starts.
    Start {
        /// Schemas with something to run (shards and non-shard schemas).
        schemas: usize,
        /// Shards run in the canary phase, one at a time.
        canary: usize,
    },
    /// A phase begins.
    Phase(Phase),
    /// One schema finished (its whole chain), with the error if it failed.
    Done {
        /// The schema's name (`shNNNN` or a non-shard schema).
        schema: String,
        /// `file: message` of the step that failed; `None` when the whole chain ran.
        error: Option<String>,
    },
}

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The first shard alone; a failure stops the run before the others.
    Canary,
    /// Every other shard, in parallel per island.
    FanOut,
    /// The non-shard schemas, once every shard is done.
    Finalizer,
}

impl Phase {
    /// The phase's name as in JSON and progress output: `canary`, `fan-out`, `finalizer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Canary => "canary",
            Phase::FanOut => "fan-out",
            Phase::Finalizer => "finalizer",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run ended (`status` in its JSON report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every schema migrated.
    Done,
    /// Some schemas failed (listed in the report).
    Failed,
    /// The canary failed; the other shards were not started.
    CanaryFailed,
    /// A failure halted the run (`--on-failure halt`, `--max-failures`): no schema was
    /// started after it, the running ones finished.
    Halted,
    /// `migrate stop` stopped the run: the running schemas finished, the others were not
    /// started; `apply` again resumes.
    Stopped,
    /// Nothing was pending.
    NothingToDo,
}

impl RunOutcome {
    /// Whether every schema is now where the run was to take it.
    pub fn is_success(self) -> bool {
        matches!(self, RunOutcome::Done | RunOutcome::NothingToDo)
    }
}

/// One schema whose chain stopped.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaFailure {
    /// The schema's name.
    pub schema: String,
    /// The island whose master holds the schema.
    pub island: IslandId,
    /// The version of the step that failed; its earlier versions stay applied.
    pub version: String,
    /// The file that failed (`<version>.<name>.<target>.up.sql` or `.dn.sql`); empty when
    /// the island master could not be reached.
    pub file: String,
    /// PostgreSQL's message, or why the master could not be reached.
    pub error: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The run's id in `atoll.migration_runs` on the coordination island's master.
    pub run_id: i64,
    /// Apply or undo.
    pub kind: RunKind,
    /// How the run ended.
    pub status: RunOutcome,
    /// Schemas with something to run (shards and non-shard schemas); 0 when nothing was
    /// pending.
    pub schemas_total: usize,
    /// Schemas whose whole chain ran.
    pub schemas_ok: usize,
    /// Files run across all schemas (files found already done by an earlier run are not
    /// counted).
    pub versions_applied: usize,
    /// The shards run in the canary phase, in order.
    pub canary: Vec<String>,
    /// Every schema whose chain stopped, by schema name.
    pub failures: Vec<SchemaFailure>,
    /// Schemas not started because the canary failed, the run halted or was stopped.
    pub not_started: usize,
    /// The non-shard schemas the run had to migrate last (run or not).
    pub finalizer: Vec<String>,
    /// True when non-shard targets were not run because shards failed.
    pub finalizer_skipped: bool,
    /// Why the non-shard schemas were left out of a scoped run although pending (shards
    /// outside the scope are not up to date yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalizer_held: Option<String>,
    /// Wall-clock time of the run, from connecting to the masters to the end, in ms.
    pub elapsed_ms: u64,
}
