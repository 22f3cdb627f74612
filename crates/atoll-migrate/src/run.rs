//! A migration run: lock, read, plan, canary, fan-out per island, finalizer, record.
//!
//! Resuming needs no bookkeeping of its own: every schema records each version in the same
//! transaction as the change, so a re-run plans exactly what is still missing.

use crate::error::MigrateError;
use crate::exec::{Direction, LockPolicy};
use crate::lock::RunLock;
use crate::state::{finalizer_island, read_states, Masters};
use crate::workers::{run_jobs, Job, Shared};
use atoll_core::migration::{check_applicable, plan, plan_undo, MigrationSet, Plan};
use atoll_core::{Config, IslandId, NodeConfig, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a run proceeds.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Shards migrated first, one at a time; the run stops if one fails.
    pub canary: usize,
    /// Concurrent schemas per island (one connection each).
    pub parallelism: usize,
    pub allow_unsafe: bool,
    pub policy: LockPolicy,
    /// Only these schemas (`allocate --migrate`); `None` means every schema.
    pub only: Option<BTreeSet<String>>,
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
            },
            only: None,
        }
    }
}

/// What the caller is told while a run goes on.
#[derive(Debug, Clone)]
pub enum Event {
    /// `schemas` schemas will be migrated; the canary phase starts.
    Start { schemas: usize, canary: usize },
    /// A phase begins: "canary", "fan-out", "finalizer".
    Phase(&'static str),
    /// One schema finished (its whole chain), with the error if it failed.
    Done {
        schema: String,
        error: Option<String>,
    },
}

/// One schema whose chain stopped.
#[derive(Debug, Clone, Serialize)]
pub struct SchemaFailure {
    pub schema: String,
    pub island: IslandId,
    pub version: String,
    pub file: String,
    pub error: String,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub kind: &'static str,
    /// `done`, `failed` (some schemas failed), `canary_failed` or `nothing_to_do`.
    pub status: &'static str,
    pub schemas_total: usize,
    pub schemas_ok: usize,
    pub versions_applied: usize,
    pub canary: Vec<String>,
    pub failures: Vec<SchemaFailure>,
    /// Schemas not started because the canary failed.
    pub not_started: usize,
    pub finalizer: Vec<String>,
    /// True when non-shard targets were not run because shards failed.
    pub finalizer_skipped: bool,
    pub elapsed_ms: u64,
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
    let lock = take_lock(config, &masters, "apply").await?;
    let planned = async {
        let mut states = read_states(config, &masters, set).await?;
        if let Some(only) = &opts.only {
            states.retain(|s| only.contains(&s.schema));
        }
        let p = plan(set, &states);
        check_applicable(&p, opts.allow_unsafe)?;
        let jobs: Vec<Job> = p
            .pending_schemas()
            .map(|s| Job {
                schema: s.schema.clone(),
                island: s.island,
                steps: s
                    .pending
                    .iter()
                    .filter_map(|v| set.migrations.iter().find(|m| &m.version == v))
                    .collect(),
            })
            .collect();
        Ok::<_, MigrateError>(jobs)
    }
    .await;
    let jobs = match planned {
        Ok(j) => j,
        Err(e) => {
            let _ = lock.finish("failed", &e.to_string()).await;
            return Err(e);
        }
    };
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
    let lock = take_lock(config, &masters, "undo").await?;
    let planned = async {
        let states = read_states(config, &masters, set).await?;
        let (m, targets) = plan_undo(set, &states, version)?;
        Ok::<_, MigrateError>(
            targets
                .into_iter()
                .map(|t| Job {
                    schema: t.schema,
                    island: t.island,
                    steps: vec![m],
                })
                .collect::<Vec<_>>(),
        )
    }
    .await;
    let jobs = match planned {
        Ok(j) => j,
        Err(e) => {
            let _ = lock.finish("failed", &e.to_string()).await;
            return Err(e);
        }
    };
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

async fn take_lock(
    config: &Config,
    masters: &Masters,
    kind: &str,
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
    let has: bool = client
        .query_one(
            "select to_regclass('atoll.migration_lock') is not null",
            &[],
        )
        .await
        .map_err(|e| atoll_pg::PgError::query(node, e))?
        .get(0);
    if !has {
        return Err(MigrateError::NoCatalog(island));
    }
    RunLock::acquire(node, config.connect_timeout, kind).await
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    config: &Config,
    masters: &Masters,
    lock: RunLock,
    set: &MigrationSet,
    jobs: Vec<Job<'_>>,
    dir: Direction,
    opts: &RunOptions,
    progress: &(dyn Fn(Event) + Sync),
    started: Instant,
) -> Result<RunReport, MigrateError> {
    let kind = if dir == Direction::Up {
        "apply"
    } else {
        "undo"
    };
    let total = jobs.len();
    let (mut shards, finalizer): (Vec<Job>, Vec<Job>) = jobs
        .into_iter()
        .partition(|j| atoll_core::ShardNo::from_schema(&j.schema).is_ok());
    shards.sort_by(|a, b| a.schema.cmp(&b.schema));
    let mut report = RunReport {
        run_id: lock.run_id,
        kind,
        status: "nothing_to_do",
        schemas_total: total,
        schemas_ok: 0,
        versions_applied: 0,
        canary: Vec::new(),
        failures: Vec::new(),
        not_started: 0,
        finalizer: finalizer.iter().map(|j| j.schema.clone()).collect(),
        finalizer_skipped: false,
        elapsed_ms: 0,
    };
    if total == 0 {
        lock.finish("done", "nothing to do").await?;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let islands: BTreeSet<IslandId> = shards.iter().chain(&finalizer).map(|j| j.island).collect();
    let nodes: BTreeMap<IslandId, NodeConfig> =
        masters.nodes.iter().map(|m| (m.0, m.1.clone())).collect();
    if let Err(e) = hooks(masters, &islands, set.before.as_deref(), "before.sql").await {
        let _ = lock.finish("failed", &e.to_string()).await;
        return Err(e);
    }
    let canary_n = opts.canary.min(shards.len());
    progress(Event::Start {
        schemas: total,
        canary: canary_n,
    });
    let shared = Shared {
        done: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        versions: AtomicUsize::new(0),
        failures: Mutex::new(Vec::new()),
        progress,
    };
    let rest = shards.split_off(canary_n);
    report.canary = shards.iter().map(|j| j.schema.clone()).collect();
    let timeout = config.connect_timeout;
    let with_ticks = |fut| tick_progress(&lock, total, &shared, fut);
    if canary_n > 0 {
        progress(Event::Phase("canary"));
        // One at a time: a broken migration fails on one shard, not on `parallelism`.
        with_ticks(run_jobs(
            &nodes,
            shards,
            1,
            dir,
            opts.policy,
            timeout,
            &shared,
        ))
        .await;
    }
    let canary_failed = shared.failed.load(Ordering::Relaxed) > 0;
    if canary_failed {
        report.not_started = rest.len() + finalizer.len();
    } else {
        if !rest.is_empty() {
            progress(Event::Phase("fan-out"));
            let p = opts.parallelism.max(1);
            with_ticks(run_jobs(
                &nodes,
                rest,
                p,
                dir,
                opts.policy,
                timeout,
                &shared,
            ))
            .await;
        }
        if shared.failed.load(Ordering::Relaxed) > 0 {
            report.finalizer_skipped = !finalizer.is_empty();
            report.not_started = finalizer.len();
        } else if !finalizer.is_empty() {
            progress(Event::Phase("finalizer"));
            with_ticks(run_jobs(
                &nodes,
                finalizer,
                1,
                dir,
                opts.policy,
                timeout,
                &shared,
            ))
            .await;
        }
    }
    let after = hooks(masters, &islands, set.after.as_deref(), "after.sql").await;
    let failed = shared.failed.load(Ordering::Relaxed);
    report.schemas_ok = shared.done.load(Ordering::Relaxed) - failed;
    report.versions_applied = shared.versions.load(Ordering::Relaxed);
    report.failures = shared
        .failures
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    report.failures.sort_by(|a, b| a.schema.cmp(&b.schema));
    report.status = match (canary_failed, failed) {
        (true, _) => "canary_failed",
        (false, 0) => "done",
        _ => "failed",
    };
    lock.progress(total, report.schemas_ok + failed, failed)
        .await;
    let message = match report.failures.first() {
        Some(f) => format!("{} failed schemas, first {}: {}", failed, f.schema, f.error),
        None => format!("{} schemas migrated", report.schemas_ok),
    };
    let status = if report.status == "done" {
        "done"
    } else {
        "failed"
    };
    lock.finish(status, &message).await?;
    after?;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Runs `fut`, recording progress in the run record every second meanwhile.
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
                lock.progress(total, done, failed).await;
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
