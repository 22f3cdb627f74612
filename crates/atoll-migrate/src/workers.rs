//! The fan-out: per island, a queue of schemas and up to `parallelism` workers, each with
//! its own connection, taking the next schema when done with one. A schema's versions run
//! in order; a failure stops that schema's chain and the worker takes the next schema.

use crate::exec::{run_step, Direction, LockPolicy, Outcome};
use crate::limits::Limits;
use crate::report::{Event, SchemaFailure};
use crate::run_lock::RunLock;
use atoll_core::migration::Migration;
use atoll_core::{IslandId, NodeConfig};
use futures::future::join_all;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
}

impl Shared<'_> {
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

// One worker's loop: take a job, honour the file's limits, run its chain, record the
// outcome; kept whole so the order of those steps (and where the stop flag is read) is
// visible.
async fn worker(
    node: Option<&NodeConfig>,
    island: IslandId,
    queue: &Mutex<VecDeque<Job<'_>>>,
    settings: &Settings<'_>,
    shared: &Shared<'_>,
) {
    let (dir, policy, timeout) = (settings.dir, settings.policy, settings.timeout);
    let mut client: Option<tokio_postgres::Client> = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        // Never held across an await.
        let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(job) = job else { return };
        let mut failure: Option<SchemaFailure> = None;
        let fail = |m: &Migration, file: String, error: String| SchemaFailure {
            schema: job.schema.clone(),
            island,
            version: m.version.clone(),
            file,
            error,
        };
        let mut connect_error = String::from("no master configured");
        let usable = matches!(&client, Some(c) if !c.is_closed());
        if !usable {
            client = None;
            if let Some(n) = node {
                match atoll_pg::connect_with_timeout(n, timeout).await {
                    Ok(c) => client = Some(c),
                    Err(e) => connect_error = e.to_string(),
                }
            }
        }
        match &client {
            None => {
                if let Some(m) = job.steps.first() {
                    failure = Some(fail(m, String::new(), connect_error));
                }
            }
            Some(c) => {
                for (i, m) in job.steps.iter().enumerate() {
                    let file = match dir {
                        Direction::Up => &m.up,
                        Direction::Down => &m.dn,
                    };
                    // The lock may be lost while this step waits for its permits (a
                    // capped or run-alone file can keep it waiting for minutes): no DDL
                    // without the lock. The schema ends here, counted as not started;
                    // its versions applied so far are recorded, so the next run resumes.
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let permits = shared
                        .limits
                        .enter(island, &m.version, &file.directives)
                        .await;
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    // The lock's session may have died since the last step (a restart, a
                    // terminated backend): then a move may already be starting on this
                    // shard, so no DDL is sent. One round trip on the lock's connection.
                    if let Err(why) = settings.lock.alive().await {
                        shared.lose_lock(why);
                        return;
                    }
                    let r = run_step(c, &job.schema, m, dir, policy, i == 0).await;
                    match r {
                        Ok(Outcome::Applied) => {
                            shared.versions.fetch_add(1, Ordering::Relaxed);
                            // `$delay`: only after a run that did the file's work.
                            permits.release().await;
                        }
                        // Done by an earlier run (its backend finished after it died):
                        // nothing ran, so no `$delay`.
                        Ok(Outcome::Skipped) => drop(permits),
                        Err(e) => {
                            failure = Some(fail(m, e.file, e.msg));
                            break;
                        }
                    }
                }
            }
        }
        let error = failure.as_ref().map(|f| format!("{}: {}", f.file, f.error));
        if let Some(f) = failure {
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(f);
        }
        shared.done.fetch_add(1, Ordering::Relaxed);
        (shared.progress)(Event::Done {
            schema: job.schema.clone(),
            error,
        });
    }
}
