//! A migration run: lock, read, plan, canary, fan-out per island, finalizer, record.
//!
//! Resuming needs no bookkeeping of its own: every schema records each version in the same
//! transaction as the change, so a re-run plans exactly what is still missing.

use crate::error::MigrateError;
use crate::exec::{Direction, LockPolicy};
use crate::jobs::{apply_jobs, scoped, undo_jobs, Jobs, ReviewedPlan};
use crate::report::{Event, Phase, RunOutcome, RunReport};
use crate::run_lock::RunLock;
use crate::state::{finalizer_island, read_states, Masters};
use crate::workers::{run_jobs, Job, Settings, Shared};
use atoll_core::migration::{plan, MigrationSet, Plan, PlanFile, Scope};
use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, NodeConfig, ShardNo, Snapshot};
use atoll_pg::catalog::migration_runs::{self, RunKind, RunStatus};
use atoll_pg::catalog::moves::{self, MoveRole};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
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
    let whole = plan(set, &states);
    let cluster = snapshot.cluster_id().unwrap_or_default();
    let file = PlanFile::build(cluster, scope, set, &whole, &states).map_err(MigrateError::from);
    let mut shown = scoped(&states, scope);
    if !scope.finalizer_allowed(&whole) {
        shown.retain(|s| atoll_core::ShardNo::from_schema(&s.schema).is_ok());
    }
    Ok((plan(set, &shown), file))
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
        let done = BTreeSet::new();
        apply_jobs(
            set,
            &states,
            snapshot,
            &opts.scope,
            opts.plan.as_ref(),
            &done,
            opts.allow_unsafe,
            &islands(config),
        )
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
        let states = read_states(config, &masters, set).await?;
        undo_jobs(
            set,
            &states,
            version,
            &opts.scope,
            opts.allow_unsafe,
            &islands(config),
        )
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
    if !migration_runs::installed(client, node).await? {
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
    if let Err(e) = hooks(masters, &islands, set.before.as_deref(), "before.sql").await {
        let _ = lock.finish(RunStatus::Failed, &e.to_string()).await;
        return Err(e);
    }
    let shared = Shared {
        done: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        versions: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
        progress,
        stop: AtomicBool::new(false),
        lock_lost: Mutex::new(None),
        limits: Default::default(),
    };
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

/// What the phases of one run share.
struct Phases<'a, 'p> {
    nodes: BTreeMap<IslandId, NodeConfig>,
    dir: Direction,
    opts: &'a RunOptions,
    timeout: Duration,
    lock: &'a RunLock,
    total: usize,
    shared: &'a Shared<'p>,
}

impl Phases<'_, '_> {
    /// Canary, fan-out, finalizer, each only if the one before succeeded and the lock is
    /// held. Returns whether the canary failed; `report` gets the canary and what was not
    /// started.
    async fn run(
        &self,
        mut shards: Vec<Job<'_>>,
        finalizer: Vec<Job<'_>>,
        report: &mut RunReport,
    ) -> bool {
        let canary_n = self.opts.canary.min(shards.len());
        (self.shared.progress)(Event::Start {
            schemas: self.total,
            canary: canary_n,
        });
        let rest = shards.split_off(canary_n);
        report.canary = shards.iter().map(|j| j.schema.clone()).collect();
        if canary_n > 0 {
            // One at a time: a broken migration fails on one shard, not on `parallelism`.
            self.phase(Phase::Canary, shards, 1).await;
        }
        let canary_failed = self.shared.failed.load(Ordering::Relaxed) > 0;
        // A lost lock (`shared.stop`) starts no further phase; the caller's error says so.
        let stopped = || self.shared.stop.load(Ordering::Relaxed);
        if stopped() || canary_failed {
            report.not_started = rest.len() + finalizer.len();
            return canary_failed;
        }
        if !rest.is_empty() {
            self.phase(Phase::FanOut, rest, self.opts.parallelism.max(1))
                .await;
        }
        if stopped() {
            report.not_started = finalizer.len();
        } else if self.shared.failed.load(Ordering::Relaxed) > 0 {
            report.finalizer_skipped = !finalizer.is_empty();
            report.not_started = finalizer.len();
        } else if !finalizer.is_empty() {
            self.phase(Phase::Finalizer, finalizer, 1).await;
        }
        false
    }

    /// Runs `jobs` with `parallelism` workers per island, recording progress every second.
    async fn phase(&self, phase: Phase, jobs: Vec<Job<'_>>, parallelism: usize) {
        (self.shared.progress)(Event::Phase(phase));
        let settings = Settings {
            dir: self.dir,
            policy: self.opts.policy,
            timeout: self.timeout,
            lock: self.lock,
        };
        let work = run_jobs(&self.nodes, jobs, parallelism, &settings, self.shared);
        tick_progress(self.lock, self.total, self.shared, work).await;
    }
}

/// Fills in the report's counts and outcome, records them in the run record and releases
/// the lock; a lost lock is an error.
async fn close(
    lock: RunLock,
    shared: Shared<'_>,
    canary_failed: bool,
    report: &mut RunReport,
) -> Result<(), MigrateError> {
    let total = report.schemas_total;
    let failed = shared.failed.load(Ordering::Relaxed);
    report.schemas_ok = shared.done.load(Ordering::Relaxed) - failed;
    report.versions_applied = shared.versions.load(Ordering::Relaxed);
    report.failures = shared
        .failures
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    report.failures.sort_by(|a, b| a.schema.cmp(&b.schema));
    report.status = match (canary_failed, failed) {
        (true, _) => RunOutcome::CanaryFailed,
        (false, 0) => RunOutcome::Done,
        _ => RunOutcome::Failed,
    };
    let lost = shared
        .lock_lost
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(why) = lost {
        // Another run may hold the lock by now: record what we can, and say so.
        let done = shared.done.load(Ordering::Relaxed);
        let _ = lock
            .finish(RunStatus::Failed, &format!("lost the cluster lock: {why}"))
            .await;
        return Err(MigrateError::LockLost {
            why,
            done,
            not_started: total - done,
        });
    }
    // A failure here shows again in `finish`.
    let _ = lock
        .progress(total, report.schemas_ok + failed, failed)
        .await;
    let message = match report.failures.first() {
        Some(f) => format!("{} failed schemas, first {}: {}", failed, f.schema, f.error),
        None => format!("{} schemas migrated", report.schemas_ok),
    };
    let status = if report.status == RunOutcome::Done {
        RunStatus::Done
    } else {
        RunStatus::Failed
    };
    lock.finish(status, &message).await
}

/// Shards in run order: by name, but the global shard sh0000 (tenants, settings) last,
/// so that it is never the canary while other shards can be.
fn run_order(schema: &str) -> (bool, &str) {
    (schema == "sh0000", schema)
}

/// Runs `fut`, recording progress in the run record every second meanwhile. The record
/// update doubles as the lock check: if the lock's session is gone, the workers are told
/// to start no more schemas (those running finish) and the run ends with an error.
async fn tick_progress<F: std::future::Future<Output = ()>>(
    lock: &RunLock,
    total: usize,
    shared: &Shared<'_>,
    fut: F,
) {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            () = &mut fut => return,
            _ = tick.tick() => {
                let done = shared.done.load(Ordering::Relaxed);
                let failed = shared.failed.load(Ordering::Relaxed);
                if shared.stop.load(Ordering::Relaxed) {
                    continue;
                }
                if let Err(why) = lock.progress(total, done, failed).await {
                    shared.lose_lock(why);
                }
            }
        }
    }
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
