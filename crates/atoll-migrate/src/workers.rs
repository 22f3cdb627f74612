//! The fan-out: per island, a queue of schemas and up to `parallelism` workers, each with
//! its own connection, taking the next schema when done with one. A schema's versions run
//! in order; a failure stops that schema's chain and the worker takes the next schema.

use crate::book::Book;
use crate::exec::{run_step, Direction, LockPolicy, Outcome, StepError};
use crate::limits::Limits;
use crate::report::{Event, SchemaFailure};
use crate::run_lock::RunLock;
use atoll_core::global_copy::CopyHook;
use atoll_core::migration::Migration;
use atoll_core::migration::ShardState;
use atoll_core::{IslandId, NodeConfig, ShardNo};
use futures::future::join_all;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio_postgres::Client;

/// One schema and the versions it needs, in order.
pub(crate) struct Job<'a> {
    pub schema: String,
    pub island: IslandId,
    pub steps: Vec<&'a Migration>,
}

/// Counters and failures shared by every worker of a run.
pub(crate) struct Shared<'p> {
    pub done: AtomicUsize,
    pub failed: AtomicUsize,
    pub versions: AtomicUsize,
    pub failures: Mutex<Vec<SchemaFailure>>,
    pub progress: &'p (dyn Fn(Event) + Sync),
    /// Set when the cluster lock is lost: workers take no further schema.
    pub stop: AtomicBool,
    /// Why the lock was lost.
    pub lock_lost: Mutex<Option<String>>,
    /// The files' own parallelism limits (pg-mig's directives).
    pub limits: Limits,
    /// Every schema's state, written to the catalog in batches.
    pub book: Book,
    /// When a failure halts the run.
    pub failure_policy: FailurePolicy,
    /// Set by a failure under the policy: no further schema starts, running ones finish.
    pub halt: AtomicBool,
    /// Set when `migrate stop` asked: no further schema starts, running ones finish.
    pub stop_requested: AtomicBool,
}

/// When failures halt a run (`--on-failure`, `--max-failures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailurePolicy {
    /// Halt at the first failure.
    pub halt_on_failure: bool,
    /// Halt once this many schemas failed.
    pub max_failures: Option<usize>,
}

impl Shared<'_> {
    /// Whether a worker may start another schema: the lock is held, the run neither
    /// halted nor asked to stop.
    pub fn may_start(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
            && !self.halt.load(Ordering::Relaxed)
            && !self.stop_requested.load(Ordering::Relaxed)
    }

    /// Counts a failed schema, halting the run if the policy says so.
    fn fail(&self, f: SchemaFailure) {
        let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
        let p = self.failure_policy;
        let halts = p.halt_on_failure || p.max_failures.is_some_and(|m| failed >= m);
        if halts && !self.halt.swap(true, Ordering::Relaxed) {
            tracing::warn!(schema = %f.schema, failed, "halting the run: no further schema starts");
        }
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
    }

    /// Marks the cluster lock lost: the workers take no further schema and start no
    /// further step. Stop first, then say so: whoever reacts to the message finds the run
    /// already stopping. The first reason is kept.
    pub fn lose_lock(&self, why: String) {
        self.stop.store(true, Ordering::Relaxed);
        let mut lost = self.lock_lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            tracing::error!(why = %why, "cluster lock lost; starting no more schemas");
            *lost = Some(why);
        }
    }
}

/// What every worker of a phase runs with.
pub(crate) struct Settings<'a> {
    pub dir: Direction,
    pub policy: LockPolicy,
    /// The connect timeout for the workers' connections.
    pub timeout: Duration,
    /// The run's cluster lock, probed before every step.
    pub lock: &'a RunLock,
    /// Shard 0's copies, held before its own migration and following it after.
    pub copies: Option<&'a dyn CopyHook>,
}

/// Runs jobs with up to `parallelism` workers (connections) per island, all islands at
/// once. A failing file stops its schema's chain; the other schemas go on.
pub(crate) async fn run_jobs(
    nodes: &BTreeMap<IslandId, NodeConfig>,
    jobs: Vec<Job<'_>>,
    parallelism: usize,
    settings: &Settings<'_>,
    shared: &Shared<'_>,
) {
    let mut by_island: BTreeMap<IslandId, VecDeque<Job>> = BTreeMap::new();
    for j in jobs {
        by_island.entry(j.island).or_default().push_back(j);
    }
    let queues: Vec<(IslandId, Mutex<VecDeque<Job>>, usize)> = by_island
        .into_iter()
        .map(|(i, q)| {
            let n = q.len().min(parallelism);
            (i, Mutex::new(q), n)
        })
        .collect();
    let mut workers = Vec::new();
    for (island, queue, n) in &queues {
        for _ in 0..*n {
            workers.push(worker(nodes.get(island), *island, queue, settings, shared));
        }
    }
    join_all(workers).await;
}

// One worker's loop: take a job, run its chain, record the outcome; kept whole so the
// order of those steps (and where the stop flags are read) is visible.
async fn worker(
    node: Option<&NodeConfig>,
    island: IslandId,
    queue: &Mutex<VecDeque<Job<'_>>>,
    settings: &Settings<'_>,
    shared: &Shared<'_>,
) {
    let mut client: Option<Client> = None;
    loop {
        if !shared.may_start() {
            return;
        }
        // Never held across an await.
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(job) = job else { return };
        shared
            .book
            .set(&job.schema, island, ShardState::Running, None);
        let Some((failure, applied_any)) =
            run_job(&mut client, node, island, &job, settings, shared).await
        else {
            return;
        };
        let error = failure.as_ref().map(|f| format!("{}: {}", f.file, f.error));
        match failure {
            Some(f) => {
                let why = (f.file.clone(), f.error.clone());
                shared.fail(f);
                shared
                    .book
                    .set(&job.schema, island, ShardState::Failed, Some(why));
            }
            None => {
                let state = if applied_any || job.steps.is_empty() {
                    ShardState::Done
                } else {
                    ShardState::Skipped
                };
                shared.book.set(&job.schema, island, state, None);
            }
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
        (shared.progress)(Event::Done {
            schema: job.schema.clone(),
            error,
        });
    }
}

/// One schema's chain, shard 0's wrapped in its copies' hold and follow. `None`: the
/// lock is lost, stop (its versions applied so far are recorded, so the next run
/// resumes); else the failure if any, and whether a version was applied.
async fn run_job(
    client: &mut Option<Client>,
    node: Option<&NodeConfig>,
    island: IslandId,
    job: &Job<'_>,
    settings: &Settings<'_>,
    shared: &Shared<'_>,
) -> Option<(Option<SchemaFailure>, bool)> {
    let fail = |version: &str, file: String, error: String| SchemaFailure {
        schema: job.schema.clone(),
        island,
        version: version.to_string(),
        file,
        error,
    };
    let copies = settings
        .copies
        .filter(|_| job.schema == ShardNo::GLOBAL.schema() && !job.steps.is_empty());
    if let Some(hook) = copies {
        if let Err(e) = hook.hold().await {
            return Some((Some(fail("", COPIES.into(), e)), false));
        }
    }
    let mut failure = None;
    let (mut applied_any, mut lock_lost) = (false, false);
    for (i, m) in job.steps.iter().enumerate() {
        match run_chain_step(client, node, island, job, i, settings, shared).await {
            Ok(Some(Outcome::Applied)) => applied_any = true,
            Ok(Some(Outcome::Skipped)) => {}
            Ok(None) => {
                lock_lost = true;
                break;
            }
            Err(e) => {
                failure = Some(fail(&m.version, e.file, e.msg));
                break;
            }
        }
    }
    // Followed even after a failure or a lost lock: the versions applied before it
    // changed shard 0, and a held copy is stale until it follows.
    if let Some(hook) = copies {
        match hook.follow().await {
            Ok(done) => tracing::info!(%done, "shard 0's copies followed"),
            Err(e) if failure.is_none() => failure = Some(fail("", COPIES.into(), e)),
            Err(e) => tracing::warn!(error = %e, "shard 0's copies did not follow"),
        }
    }
    (!lock_lost).then_some((failure, applied_any))
}

/// The file a failure of shard 0's copies is reported under.
const COPIES: &str = "(shard 0's global copies)";

/// One step of a schema's chain on the worker's connection (made or remade here): the
/// file's limits, the lock probe, the file, retried on a new connection when the old one
/// broke (bounded by the policy's retries). `Ok(None)`: the lock is lost, stop.
async fn run_chain_step(
    client: &mut Option<Client>,
    node: Option<&NodeConfig>,
    island: IslandId,
    job: &Job<'_>,
    i: usize,
    settings: &Settings<'_>,
    shared: &Shared<'_>,
) -> Result<Option<Outcome>, StepError> {
    let m = job.steps[i];
    let file = match settings.dir {
        Direction::Up => &m.up,
        Direction::Down => &m.dn,
    };
    let mut attempts: u32 = 1;
    loop {
        if !matches!(client, Some(c) if !c.is_closed()) {
            *client = None;
            let n = node.ok_or_else(|| StepError {
                file: String::new(),
                msg: "no master configured".into(),
                connection_lost: false,
                attempts: 0,
            })?;
            match atoll_pg::connect_with_timeout(n, settings.timeout).await {
                Ok(c) => *client = Some(c),
                Err(e) => {
                    return Err(StepError {
                        file: String::new(),
                        msg: e.to_string(),
                        connection_lost: false,
                        attempts: 0,
                    })
                }
            }
        }
        let Some(c) = client.as_ref() else {
            continue;
        };
        // The lock may be lost while this step waits for its permits (a capped or
        // run-alone file can keep it waiting for minutes): no DDL without the lock.
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let permits = shared
            .limits
            .enter(island, &m.version, &file.directives)
            .await;
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        // The lock's session may have died since the last step (a restart, a terminated
        // backend): then a move may already be starting on this shard, so no DDL is sent.
        if let Err(why) = settings.lock.alive().await {
            shared.lose_lock(why);
            return Ok(None);
        }
        let on_retry = |n: u32| shared.book.attempt(&job.schema, island, attempts - 1 + n);
        // One budget for the file: retries of retryable errors and of lost connections
        // together make at most `retries` + 1 attempts.
        let budget = LockPolicy {
            retries: settings.policy.retries.saturating_sub(attempts - 1),
            ..settings.policy
        };
        let r = run_step(c, &job.schema, m, settings.dir, budget, i == 0, &on_retry).await;
        match r {
            Ok(Outcome::Applied) => {
                // `$delay`: only after a run that did the file's work.
                permits.release().await;
                shared.versions.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Outcome::Applied));
            }
            // Done by an earlier run (its backend finished after it died): nothing ran,
            // so no `$delay`.
            Ok(Outcome::Skipped) => return Ok(Some(Outcome::Skipped)),
            Err(e) if e.connection_lost && attempts - 1 + e.attempts <= settings.policy.retries => {
                drop(permits);
                attempts += e.attempts;
                shared.book.attempt(&job.schema, island, attempts);
                tracing::info!(schema = %job.schema, file = %e.file, attempts, "connection lost, reconnecting and retrying");
                tokio::time::sleep(std::time::Duration::from_millis(
                    100 * (1 << attempts.min(6)),
                ))
                .await;
            }
            Err(e) => return Err(e),
        }
    }
}
