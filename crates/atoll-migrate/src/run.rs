//! A migration run: lock, read, plan, canary, fan-out per island, finalizer, record.
//!
//! Resuming needs no bookkeeping of its own: every schema records each version in the same
//! transaction as the change, so a re-run plans exactly what is still missing.

use crate::book::Book;
use crate::error::MigrateError;
use crate::exec::{Direction, LockPolicy};
use crate::jobs::{apply_jobs, scoped, undo_jobs, Jobs, ReviewedPlan};
use crate::phases::{close, Phases};
use crate::report::{Event, RunOutcome, RunReport};
use crate::run_lock::RunLock;
use crate::state::{finalizer_island, read_states, Masters};
use crate::workers::{FailurePolicy, Job, Shared};
use atoll_core::global_copy::CopyHook;
use atoll_core::migration::ShardState;
use atoll_core::migration::{plan, MigrationSet, Plan, PlanFile, Scope};
use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_pg::catalog::migration_runs::{self, RunKind, RunStatus};
use atoll_pg::catalog::moves::{self, MoveRole};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a run proceeds.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Shards migrated first, one at a time; the run stops if one fails.
    pub canary: usize,
    /// Concurrent schemas per island (one connection each).
    pub parallelism: usize,
    /// Run files with destructive statements (`DROP TABLE`, `DROP COLUMN`...) instead of
    /// refusing the plan.
    pub allow_unsafe: bool,
    /// Lock timeout, retries and the wait for other index builds, for every file.
    pub policy: LockPolicy,
    /// Only these schemas (`allocate --migrate`); `None` means every schema.
    pub only: Option<BTreeSet<String>>,
    /// Only the shards in this scope (`--shards`, `--island`); the default is every shard.
    pub scope: Scope,
    /// Apply exactly this reviewed plan (`apply --plan`) instead of planning anew.
    pub plan: Option<ReviewedPlan>,
    /// What a failed schema does to the run.
    pub on_failure: OnFailure,
    /// Halt once this many schemas failed.
    pub max_failures: Option<usize>,
    /// What runs around shard 0's own migration when it has read-only copies on other
    /// islands (`atoll_move::global_copy::MigrationHook`); a run that would change shard 0
    /// while copies exist is refused without it.
    pub global_copies: Option<Arc<dyn CopyHook>>,
}

/// What a failed schema does to the run (`--on-failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    /// The other schemas go on; the run ends failed.
    #[default]
    Continue,
    /// No further schema starts; the running ones finish; the run ends halted.
    Halt,
}

impl OnFailure {
    /// `continue` or `halt`, as the flag and the run record say it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Continue => "continue",
            OnFailure::Halt => "halt",
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            canary: 1,
            parallelism: 8,
            allow_unsafe: false,
            policy: LockPolicy {
                lock_timeout: Duration::from_secs(5),
                retries: 3,
                build_wait: Duration::from_secs(30),
            },
            only: None,
            scope: Scope::default(),
            plan: None,
            on_failure: OnFailure::Continue,
            max_failures: None,
            global_copies: None,
        }
    }
}

/// A plan without touching anything: the dry run.
pub async fn plan_only(
    config: &Config,
    snapshot: &Snapshot,
    set: &MigrationSet,
) -> Result<Plan, MigrateError> {
    let masters = Masters::connect(config, snapshot).await?;
    let states = read_states(config, &masters, set).await?;
    Ok(plan(set, &states))
}

/// A plan within `scope`, and the plan file for it (`migrate plan [--out]`); the file is
/// an error when the plan cannot be applied as is (drift).
pub async fn plan_scoped(
    config: &Config,
    snapshot: &Snapshot,
    set: &MigrationSet,
    scope: &Scope,
) -> Result<(Plan, Result<PlanFile, MigrateError>), MigrateError> {
    let masters = Masters::connect(config, snapshot).await?;
    let states = read_states(config, &masters, set).await?;
    scope.check(&states, &islands(config))?;
    let mut whole = plan(set, &states);
    let mut shown = scoped(&states, scope);
    if !scope.finalizer_allowed(&whole) {
        shown.retain(|s| atoll_core::ShardNo::from_schema(&s.schema).is_ok());
    }
    let mut scoped_plan = plan(set, &shown);
    crate::disclosure::disclose(&masters, &mut scoped_plan).await?;
    whole.unsafe_shards = scoped_plan.unsafe_shards.clone();
    let cluster = snapshot.cluster_id().unwrap_or_default();
    let file = PlanFile::build(cluster, scope, set, &whole, &states).map_err(MigrateError::from);
    Ok((scoped_plan, file))
}

/// The run's scope as its record says it.
fn scope_text(opts: &RunOptions) -> String {
    match &opts.plan {
        Some(p) => format!("plan {} ({})", p.path, p.file.scope),
        None => opts.scope.describe(),
    }
}

/// The run's failure policy as its record says it: `halt`, `continue, max 5 failures`.
fn policy_text(opts: &RunOptions) -> String {
    match opts.max_failures {
        Some(n) => format!("{}, max {n} failures", opts.on_failure.as_str()),
        None => opts.on_failure.as_str().to_string(),
    }
}

fn islands(config: &Config) -> Vec<IslandId> {
    config.islands.iter().map(|i| i.id).collect()
}

/// `migrate apply`.
pub async fn apply(
    config: &Config,
    snapshot: &Snapshot,
    set: &MigrationSet,
    opts: &RunOptions,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<RunReport, MigrateError> {
    let started = Instant::now();
    let masters = Masters::connect(config, snapshot).await?;
    let lock = take_lock(config, &masters, RunKind::Apply).await?;
    let planned = async {
        let mut states = read_states(config, &masters, set).await?;
        if let Some(only) = &opts.only {
            states.retain(|s| only.contains(&s.schema));
        }
        let digest = opts.plan.as_ref().map(|p| p.file.digest.as_str());
        lock.describe(&scope_text(opts), digest, &policy_text(opts))
            .await?;
        let done = match digest {
            Some(d) => lock.done_by_plan(d).await?,
            None => BTreeSet::new(),
        };
        let jobs = apply_jobs(
            set,
            &states,
            snapshot,
            &opts.scope,
            opts.plan.as_ref(),
            &done,
            opts.allow_unsafe,
            &islands(config),
        )?;
        copies_followed(snapshot, opts, &jobs)?;
        Ok(jobs)
    }
    .await;
    let (lock, jobs) = settle(lock, planned).await?;
    execute(
        config,
        &masters,
        lock,
        set,
        jobs,
        Direction::Up,
        opts,
        progress,
        started,
    )
    .await
}

/// `migrate undo VERSION`: the down file wherever `version` is the latest applied.
pub async fn undo(
    config: &Config,
    snapshot: &Snapshot,
    set: &MigrationSet,
    version: &str,
    opts: &RunOptions,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<RunReport, MigrateError> {
    let started = Instant::now();
    let masters = Masters::connect(config, snapshot).await?;
    let lock = take_lock(config, &masters, RunKind::Undo).await?;
    let planned = async {
        lock.describe(&scope_text(opts), None, &policy_text(opts))
            .await?;
        let states = read_states(config, &masters, set).await?;
        let jobs = undo_jobs(
            set,
            &states,
            version,
            &opts.scope,
            opts.allow_unsafe,
            &islands(config),
        )?;
        copies_followed(snapshot, opts, &jobs)?;
        Ok(jobs)
    }
    .await;
    let (lock, jobs) = settle(lock, planned).await?;
    execute(
        config,
        &masters,
        lock,
        set,
        jobs,
        Direction::Down,
        opts,
        progress,
        started,
    )
    .await
}

/// Refuses a run that would change shard 0 while it has copies, unless the run follows
/// them ([`RunOptions::global_copies`]): they would stop replicating.
fn copies_followed(
    snapshot: &Snapshot,
    opts: &RunOptions,
    jobs: &Jobs<'_>,
) -> Result<(), MigrateError> {
    let zero = ShardNo::GLOBAL.schema();
    let changes_zero = jobs
        .jobs
        .iter()
        .any(|j| j.schema == zero && !j.steps.is_empty());
    let copies = snapshot.islands.iter().any(|i| i.global_copy.is_some());
    if changes_zero && copies && opts.global_copies.is_none() {
        return Err(MigrateError::Input(atoll_core::migration::MigrationError::BadScope(
            "shard 0 has read-only copies on other islands and this run was not given them to follow (RunOptions::global_copies); nothing was applied".into(),
        )));
    }
    Ok(())
}

/// A plan that could not be made ends the run it locked, recording why.
async fn settle<'a>(
    lock: RunLock,
    planned: Result<Jobs<'a>, MigrateError>,
) -> Result<(RunLock, Jobs<'a>), MigrateError> {
    match planned {
        Ok(jobs) => Ok((lock, jobs)),
        Err(e) => {
            let _ = lock.finish(RunStatus::Failed, &e.to_string()).await;
            Err(e)
        }
    }
}

async fn take_lock(
    config: &Config,
    masters: &Masters,
    kind: RunKind,
) -> Result<RunLock, MigrateError> {
    let island = finalizer_island(config).ok_or_else(|| MigrateError::Dir {
        dir: "config".into(),
        msg: "no islands configured".into(),
    })?;
    let (_, node, client) = masters
        .nodes
        .iter()
        .find(|m| m.0 == island)
        .ok_or(atoll_pg::PgError::NoMaster(island))?;
    if !migration_runs::installed(client, node).await?
        || !atoll_pg::catalog::migration_shards::installed(client, node).await?
    {
        return Err(MigrateError::NoCatalog(island));
    }
    let lock = RunLock::acquire(node, config.connect_timeout, kind).await?;
    // Holding the lock, no new move can start; one already under way must finish first
    // (DDL does not travel through its logical replication).
    // One line per shard, with the source row's step when both sides are recorded.
    let mut moving: std::collections::BTreeMap<ShardNo, (MoveStep, IslandId, MoveRole)> =
        Default::default();
    for (island, node, client) in &masters.nodes {
        for m in moves::unfinished(client, node).await? {
            let seen = moving
                .get(&m.record.shard)
                .is_some_and(|e| e.2 == MoveRole::Source);
            if !seen {
                moving.insert(m.record.shard, (m.record.step, *island, m.role));
            }
        }
    }
    if !moving.is_empty() {
        let list: Vec<String> = moving
            .iter()
            .map(|(shard, (step, island, _))| format!("{shard} ({step}, island {island})"))
            .collect();
        let e = MigrateError::MoveInProgress(list.join(", "));
        let _ = lock.finish(RunStatus::Refused, &e.to_string()).await;
        return Err(e);
    }
    Ok(lock)
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    config: &Config,
    masters: &Masters,
    lock: RunLock,
    set: &MigrationSet,
    jobs: Jobs<'_>,
    dir: Direction,
    opts: &RunOptions,
    progress: &(dyn Fn(Event) + Sync),
    started: Instant,
) -> Result<RunReport, MigrateError> {
    let kind = if dir == Direction::Up {
        RunKind::Apply
    } else {
        RunKind::Undo
    };
    let Jobs {
        jobs,
        finalizer_held,
    } = jobs;
    let total = jobs.len();
    let (mut shards, finalizer): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| atoll_core::ShardNo::from_schema(&j.schema).is_ok());
    shards.sort_by(|a, b| run_order(&a.schema).cmp(&run_order(&b.schema)));
    let mut report = RunReport {
        run_id: lock.run_id,
        kind,
        status: RunOutcome::NothingToDo,
        schemas_total: total,
        schemas_ok: 0,
        versions_applied: 0,
        canary: Vec::new(),
        failures: Vec::new(),
        not_started: 0,
        finalizer: finalizer.iter().map(|j| j.schema.clone()).collect(),
        finalizer_skipped: false,
        finalizer_held,
        elapsed_ms: 0,
    };
    if total == 0 {
        lock.finish(RunStatus::Done, "nothing to do").await?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let islands: BTreeSet<IslandId> = shards.iter().chain(&finalizer).map(|j| j.island).collect();
    let shared = Shared {
        done: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        versions: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
        progress,
        stop: AtomicBool::new(false),
        lock_lost: Mutex::new(None),
        limits: Default::default(),
        book: Book::default(),
        failure_policy: FailurePolicy {
            halt_on_failure: opts.on_failure == OnFailure::Halt,
            max_failures: opts.max_failures,
        },
        halt: AtomicBool::new(false),
        stop_requested: AtomicBool::new(false),
    };
    let canary_n = opts.canary.min(shards.len());
    for (n, j) in shards.iter().enumerate() {
        let state = if n < canary_n || canary_n == 0 {
            ShardState::Pending
        } else {
            ShardState::WaitingForCanary
        };
        shared.book.set(&j.schema, j.island, state, None);
    }
    for j in &finalizer {
        shared
            .book
            .set(&j.schema, j.island, ShardState::Pending, None);
    }
    let recorded = shared.book.flush(&lock).await;
    let before = match recorded {
        Ok(()) => hooks(masters, &islands, set.before.as_deref(), "before.sql").await,
        Err(why) => Err(MigrateError::Dir {
            dir: "catalog".into(),
            msg: why,
        }),
    };
    if let Err(e) = before {
        let _ = lock.finish(RunStatus::Failed, &e.to_string()).await;
        return Err(e);
    }
    let phases = Phases {
        nodes: masters.nodes.iter().map(|m| (m.0, m.1.clone())).collect(),
        dir,
        opts,
        timeout: config.connect_timeout,
        lock: &lock,
        total,
        shared: &shared,
    };
    let canary_failed = phases.run(shards, finalizer, &mut report).await;
    // Without the lock, nothing more runs on the islands, `after.sql` neither.
    let after = if shared.stop.load(Ordering::Relaxed) {
        Ok(())
    } else {
        hooks(masters, &islands, set.after.as_deref(), "after.sql").await
    };
    close(lock, shared, canary_failed, &mut report).await?;
    after?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Shards in run order: by name, but the global shard sh0000 (tenants, settings) last,
/// so that it is never the canary while other shards can be.
fn run_order(schema: &str) -> (bool, &str) {
    (schema == "sh0000", schema)
}

/// `before.sql` / `after.sql`, once on each island master the run touches.
async fn hooks(
    masters: &Masters,
    islands: &BTreeSet<IslandId>,
    sql: Option<&str>,
    file: &str,
) -> Result<(), MigrateError> {
    let Some(sql) = sql else { return Ok(()) };
    for (island, _, client) in masters.nodes.iter().filter(|m| islands.contains(&m.0)) {
        client
            .batch_execute(sql)
            .await
            .map_err(|e| MigrateError::Hook {
                island: *island,
                file: file.to_string(),
                msg: crate::error::pg_message(&e),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::run_order;

    #[test]
    fn the_global_shard_is_never_first() {
        let mut names = vec!["sh0002", "sh0000", "sh0001", "sh0010"];
        names.sort_by(|a, b| run_order(a).cmp(&run_order(b)));
        assert_eq!(names, ["sh0001", "sh0002", "sh0010", "sh0000"]);
        // Alone, it is still migrated (and is the canary only then).
        let mut alone = vec!["sh0000"];
        alone.sort_by(|a, b| run_order(a).cmp(&run_order(b)));
        assert_eq!(alone, ["sh0000"]);
    }
}
