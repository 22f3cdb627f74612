//! `atoll.migration_runs`, `atoll.migration_lock` and `atoll.migration_state()` (catalog
//! step 2), on the coordination island's master. A run's exclusion is the advisory lock
//! [`crate::locks::MIGRATION_RUN`]; the `migration_lock` row only names its holder for the
//! error a second run gets. The versions applied to a schema live inside that schema
//! (`<schema>.atoll_migrations`), so they move with it; `migration_state()` reads them for
//! every schema in one call.
//!
//! Writer and reader: `atoll-migrate`, through these functions.

use crate::error::PgError;
use atoll_core::NodeConfig;
use tokio_postgres::GenericClient;

/// The status a run record ends with (or has while it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// The run holds the lock and is applying migrations.
    Running,
    /// Every schema was migrated.
    Done,
    /// Some schemas failed, or the run lost its lock.
    Failed,
    /// A failure stopped it (`--on-failure halt`, `--max-failures`, a failed canary): no
    /// schema was started after it, the running ones finished.
    Halted,
    /// `migrate stop` stopped it: the running schemas finished, nothing else started; a
    /// new `apply` resumes.
    Stopped,
    /// The run refused to start (a move was unfinished).
    Refused,
    /// Its process ended without finishing; set by the next run.
    Interrupted,
}

impl RunStatus {
    /// The `status` column's value (`running`, `done`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Halted => "halted",
            RunStatus::Stopped => "stopped",
            RunStatus::Refused => "refused",
            RunStatus::Interrupted => "interrupted",
        }
    }

    /// Reads the `status` column; `None` for anything else.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Done,
            RunStatus::Failed,
            RunStatus::Halted,
            RunStatus::Stopped,
            RunStatus::Refused,
            RunStatus::Interrupted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

impl serde::Serialize for RunStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a run does: apply pending versions, or undo applied ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `atoll migrate apply`.
    Apply,
    /// `atoll migrate undo`.
    Undo,
}

impl RunKind {
    /// The name stored in `atoll.migration_runs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Apply => "apply",
            RunKind::Undo => "undo",
        }
    }
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds the run lock, as its row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunHolder {
    /// The run's id in `atoll.migration_runs`.
    pub run_id: i64,
    /// Host name of the machine the run's process is on.
    pub host: String,
    /// Process id of the run on that host.
    pub pid: i32,
    /// When the run took the lock, as PostgreSQL prints a `timestamptz`.
    pub started_at: String,
}

/// Whether the migrate catalog step is installed on this master.
pub async fn installed(client: &impl GenericClient, node: &NodeConfig) -> Result<bool, PgError> {
    super::has_table(client, node, "atoll.migration_lock").await
}

/// The holder row, `None` when there is none (no run, or one that has the advisory lock
/// but has not written its row yet).
pub async fn holder(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Option<RunHolder>, PgError> {
    let q = |e| PgError::query(node, e);
    let row = client
        .query_opt(
            "select run_id, host, pid, started_at::text from atoll.migration_lock",
            &[],
        )
        .await
        .map_err(q)?;
    row.map(|r| {
        Ok(RunHolder {
            run_id: r.try_get(0).map_err(q)?,
            host: r.try_get(1).map_err(q)?,
            pid: r.try_get(2).map_err(q)?,
            started_at: r.try_get(3).map_err(q)?,
        })
    })
    .transpose()
}

/// Records a new run of `kind` (`apply`/`undo`) and names it as the lock's holder; a run
/// still marked running (its process died: the caller holds the lock now) is marked
/// [`RunStatus::Interrupted`]. Call only while holding [`crate::locks::MIGRATION_RUN`].
pub async fn start(
    client: &impl GenericClient,
    node: &NodeConfig,
    kind: RunKind,
    host: &str,
    pid: i32,
) -> Result<i64, PgError> {
    let q = |e| PgError::query(node, e);
    let run_id: i64 = client
        .query_one(
            "with stale as (
                 update atoll.migration_runs set status = 'interrupted', finished_at = now(),
                        changed_at = now(), message = 'its process ended without finishing'
                 where status = 'running' returning run_id)
             insert into atoll.migration_runs (kind, host, pid)
             select $1, $2, $3 from (select count(*) from stale) s
             returning run_id",
            &[&kind.as_str(), &host, &pid],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)?;
    client
        .execute(
            "insert into atoll.migration_lock (run_id, host, pid) values ($1, $2, $3)
             on conflict (singleton) do update set run_id = excluded.run_id,
                 host = excluded.host, pid = excluded.pid, started_at = now()",
            &[&run_id, &host, &pid],
        )
        .await
        .map_err(q)?;
    Ok(run_id)
}

/// Records a run's progress in schemas; returns whether `migrate stop` asked it to stop
/// (catalog step 7).
pub async fn progress(
    client: &impl GenericClient,
    node: &NodeConfig,
    run_id: i64,
    total: usize,
    done: usize,
    failed: usize,
) -> Result<bool, PgError> {
    let q = |e| PgError::query(node, e);
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    let row = client
        .query_opt(
            "update atoll.migration_runs set schemas_total = $2, schemas_done = $3,
                    schemas_failed = $4, changed_at = now() where run_id = $1
             returning stop_requested",
            &[&run_id, &n(total), &n(done), &n(failed)],
        )
        .await
        .map_err(q)?;
    match row {
        Some(r) => r.try_get(0).map_err(q),
        None => Ok(false),
    }
}

/// Records what a run was asked to do: its scope, the digest of the reviewed plan it
/// applies, its failure policy (catalog step 7).
pub async fn describe(
    client: &impl GenericClient,
    node: &NodeConfig,
    run_id: i64,
    scope: &str,
    plan_digest: Option<&str>,
    policy: &str,
) -> Result<(), PgError> {
    client
        .execute(
            "update atoll.migration_runs set scope = $2, plan_digest = $3, policy = $4
             where run_id = $1",
            &[&run_id, &scope, &plan_digest, &policy],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// Asks the running run to stop (`migrate stop`): it starts no further schema. Returns
/// its id, `None` when no run is running.
pub async fn request_stop(
    client: &impl GenericClient,
    node: &NodeConfig,
) -> Result<Option<i64>, PgError> {
    let q = |e| PgError::query(node, e);
    let row = client
        .query_opt(
            "update atoll.migration_runs set stop_requested = true
             where status = 'running' returning run_id",
            &[],
        )
        .await
        .map_err(q)?;
    row.map(|r| r.try_get(0).map_err(q)).transpose()
}

/// One run as `migrate runs` and `migrate status` show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRow {
    /// The run's id.
    pub run_id: i64,
    /// `apply` or `undo`.
    pub kind: String,
    /// Its status.
    pub status: RunStatus,
    /// Host and pid of its process.
    pub host: String,
    /// Process id on that host.
    pub pid: i32,
    /// When it started and (if it did) finished, as PostgreSQL prints a `timestamptz`.
    pub started_at: String,
    /// When it finished.
    pub finished_at: Option<String>,
    /// Schemas to migrate, ended, failed (from its progress updates).
    pub schemas_total: i32,
    /// Schemas whose chain ended.
    pub schemas_done: i32,
    /// Schemas that failed.
    pub schemas_failed: i32,
    /// Its last message (the outcome).
    pub message: Option<String>,
    /// What it was scoped to.
    pub scope: Option<String>,
    /// The digest of the reviewed plan it applied.
    pub plan_digest: Option<String>,
    /// Its failure policy.
    pub policy: Option<String>,
    /// Whether `migrate stop` asked it to stop.
    pub stop_requested: bool,
}

const RUN_COLUMNS: &str = "run_id, kind, status, host, pid, started_at::text, finished_at::text,
    schemas_total, schemas_done, schemas_failed, message, scope, plan_digest, policy,
    stop_requested";

fn run_row(node: &NodeConfig, r: &tokio_postgres::Row) -> Result<RunRow, PgError> {
    let q = |e| PgError::query(node, e);
    let status: String = r.try_get(2).map_err(q)?;
    Ok(RunRow {
        run_id: r.try_get(0).map_err(q)?,
        kind: r.try_get(1).map_err(q)?,
        status: RunStatus::parse(&status).ok_or_else(|| {
            PgError::Refused(format!("node {node}: run status {status:?} is unknown"))
        })?,
        host: r.try_get(3).map_err(q)?,
        pid: r.try_get(4).map_err(q)?,
        started_at: r.try_get(5).map_err(q)?,
        finished_at: r.try_get(6).map_err(q)?,
        schemas_total: r.try_get(7).map_err(q)?,
        schemas_done: r.try_get(8).map_err(q)?,
        schemas_failed: r.try_get(9).map_err(q)?,
        message: r.try_get(10).map_err(q)?,
        scope: r.try_get(11).map_err(q)?,
        plan_digest: r.try_get(12).map_err(q)?,
        policy: r.try_get(13).map_err(q)?,
        stop_requested: r.try_get(14).map_err(q)?,
    })
}

/// The latest `limit` runs, newest first.
pub async fn list(
    client: &impl GenericClient,
    node: &NodeConfig,
    limit: i64,
) -> Result<Vec<RunRow>, PgError> {
    let rows = client
        .query(
            &format!(
                "select {RUN_COLUMNS} from atoll.migration_runs order by run_id desc limit $1"
            ),
            &[&limit],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    rows.iter().map(|r| run_row(node, r)).collect()
}

/// Run `run_id`, or the latest run when `None`.
pub async fn get(
    client: &impl GenericClient,
    node: &NodeConfig,
    run_id: Option<i64>,
) -> Result<Option<RunRow>, PgError> {
    let row = client
        .query_opt(
            &format!(
                "select {RUN_COLUMNS} from atoll.migration_runs
                 where $1::bigint is null or run_id = $1 order by run_id desc limit 1"
            ),
            &[&run_id],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    row.map(|r| run_row(node, &r)).transpose()
}

/// Records a run's outcome and removes its holder row (the caller then releases the lock).
pub async fn finish(
    client: &impl GenericClient,
    node: &NodeConfig,
    run_id: i64,
    status: RunStatus,
    message: &str,
) -> Result<(), PgError> {
    let q = |e| PgError::query(node, e);
    client
        .execute(
            "update atoll.migration_runs set status = $2, message = $3, finished_at = now(),
                    changed_at = now() where run_id = $1",
            &[&run_id, &status.as_str(), &message],
        )
        .await
        .map_err(q)?;
    client
        .execute(
            "delete from atoll.migration_lock where run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(q)?;
    Ok(())
}

/// One row of `atoll.migration_state()`: a schema with no version (one per schema), or one
/// version applied to it with its checksum (none for pg-mig's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRow {
    /// The schema's name.
    pub schema: String,
    /// A version applied to it; `None` on the one row of a schema with no version applied.
    pub version: Option<String>,
    /// The checksum recorded with that version; `None` for a version applied by pg-mig (or when
    /// `version` is `None`).
    pub checksum: Option<String>,
}

/// Every shard schema, and every schema starting with one of `prefixes`, with its applied
/// versions, in one call; `None` when the migrate catalog step is not installed.
pub async fn schema_states(
    client: &impl GenericClient,
    node: &NodeConfig,
    prefixes: &[String],
) -> Result<Option<Vec<StateRow>>, PgError> {
    let q = |e| PgError::query(node, e);
    let has: bool = client
        .query_one(
            "select to_regprocedure('atoll.migration_state(text[])') is not null",
            &[],
        )
        .await
        .map_err(q)?
        .try_get(0)
        .map_err(q)?;
    if !has {
        return Ok(None);
    }
    let rows = client
        .query(
            "select schema_name, version, checksum from atoll.migration_state($1)",
            &[&prefixes],
        )
        .await
        .map_err(q)?;
    rows.iter()
        .map(|r| {
            Ok(StateRow {
                schema: r.try_get(0).map_err(q)?,
                version: r.try_get(1).map_err(q)?,
                checksum: r.try_get(2).map_err(q)?,
            })
        })
        .collect::<Result<Vec<_>, PgError>>()
        .map(Some)
}
