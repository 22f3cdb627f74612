//! The phases of a run (canary, fan-out, finalizer), the progress tick that records them
//! and hears `migrate stop`, and the run's end: its outcome, its record, the lock released.

use crate::error::MigrateError;
use crate::exec::Direction;
use crate::report::{Phase, RunOutcome, RunReport};
use crate::run::RunOptions;
use crate::run_lock::RunLock;
use crate::workers::{run_jobs, Job, Settings, Shared};
use atoll_core::migration::ShardState;
use atoll_core::{IslandId, NodeConfig};
use atoll_pg::catalog::migration_runs::RunStatus;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the phases of one run share.
pub(crate) struct Phases<'a, 'p> {
    pub nodes: BTreeMap<IslandId, NodeConfig>,
    pub dir: Direction,
    pub opts: &'a RunOptions,
    pub timeout: Duration,
    pub lock: &'a RunLock,
    pub total: usize,
    pub shared: &'a Shared<'p>,
}

const NOT_STARTED: [ShardState; 2] = [ShardState::Pending, ShardState::WaitingForCanary];

impl Phases<'_, '_> {
    /// Canary, fan-out, finalizer, each only if the one before succeeded, the lock is
    /// held and the run neither halted nor was asked to stop. Returns whether the canary
    /// failed; `report` gets the canary and what was not started.
    pub async fn run(
        &self,
        mut shards: Vec<Job<'_>>,
        finalizer: Vec<Job<'_>>,
        report: &mut RunReport,
    ) -> bool {
        let shared = self.shared;
        let canary_n = self.opts.canary.min(shards.len());
        (shared.progress)(crate::Event::Start {
            schemas: self.total,
            canary: canary_n,
        });
        let rest = shards.split_off(canary_n);
        report.canary = shards.iter().map(|j| j.schema.clone()).collect();
        if canary_n > 0 {
            // One at a time: a broken migration fails on one shard, not on `parallelism`.
            self.phase(Phase::Canary, shards, 1).await;
        }
        let canary_failed = shared.failed.load(Ordering::Relaxed) > 0;
        if canary_failed {
            shared.book.move_all(&NOT_STARTED, ShardState::Halted, None);
        }
        // A lost lock, a halt or a stop starts no further phase; `close` says which.
        if !shared.may_start() || canary_failed {
            report.not_started = rest.len() + finalizer.len();
            return canary_failed;
        }
        shared
            .book
            .move_all(&[ShardState::WaitingForCanary], ShardState::Pending, None);
        if !rest.is_empty() {
            self.phase(Phase::FanOut, rest, self.opts.parallelism.max(1))
                .await;
        }
        if !shared.may_start() {
            report.not_started = finalizer.len();
        } else if shared.failed.load(Ordering::Relaxed) > 0 {
            report.finalizer_skipped = !finalizer.is_empty();
            report.not_started = finalizer.len();
            for j in &finalizer {
                let why = ("".to_string(), "skipped: shards failed".to_string());
                shared
                    .book
                    .set(&j.schema, j.island, ShardState::Skipped, Some(why));
            }
        } else if !finalizer.is_empty() {
            self.phase(Phase::Finalizer, finalizer, 1).await;
        }
        false
    }

    /// Runs `jobs` with `parallelism` workers per island, recording progress meanwhile.
    async fn phase(&self, phase: Phase, jobs: Vec<Job<'_>>, parallelism: usize) {
        (self.shared.progress)(crate::Event::Phase(phase));
        let settings = Settings {
            dir: self.dir,
            policy: self.opts.policy,
            timeout: self.timeout,
            lock: self.lock,
            copies: self.opts.global_copies.as_deref(),
        };
        let work = run_jobs(&self.nodes, jobs, parallelism, &settings, self.shared);
        tick_progress(self.lock, self.total, self.shared, work).await;
        // The phase's last states, before the next phase (or the end) is decided.
        if let Err(why) = self.shared.book.flush(self.lock).await {
            self.shared.lose_lock(why);
        }
    }
}

/// Runs `fut`, recording progress and the schemas' states in the run record every half
/// second meanwhile. The record update doubles as the lock check (if the lock's session
/// is gone, the workers start no more schemas; those running finish, and the run ends
/// with an error) and tells whether `migrate stop` asked the run to stop.
async fn tick_progress<F: std::future::Future<Output = ()>>(
    lock: &RunLock,
    total: usize,
    shared: &Shared<'_>,
    fut: F,
) {
    tokio::pin!(fut);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.tick().await;
    loop {
        tokio::select! {
            () = &mut fut => return,
            _ = tick.tick() => {
                if shared.stop.load(Ordering::Relaxed) {
                    continue;
                }
                let done = shared.done.load(Ordering::Relaxed);
                let failed = shared.failed.load(Ordering::Relaxed);
                match lock.progress(total, done, failed).await {
                    Ok(stop) => {
                        if stop && !shared.stop_requested.swap(true, Ordering::Relaxed) {
                            tracing::warn!("stop requested: no further schema starts");
                        }
                    }
                    Err(why) => shared.lose_lock(why),
                }
                if let Err(why) = shared.book.flush(lock).await {
                    shared.lose_lock(why);
                }
            }
        }
    }
}

/// How the run ended, from its counters and flags.
fn outcome(shared: &Shared<'_>, canary_failed: bool, failed: usize) -> RunOutcome {
    if canary_failed {
        RunOutcome::CanaryFailed
    } else if shared.halt.load(Ordering::Relaxed) {
        RunOutcome::Halted
    } else if shared.stop_requested.load(Ordering::Relaxed) && shared.book.count(&NOT_STARTED) > 0 {
        RunOutcome::Stopped
    } else if failed == 0 {
        RunOutcome::Done
    } else {
        RunOutcome::Failed
    }
}

/// Fills in the report's counts and outcome, records them in the run record and releases
/// the lock; a lost lock is an error.
pub(crate) async fn close(
    lock: RunLock,
    shared: Shared<'_>,
    canary_failed: bool,
    report: &mut RunReport,
) -> Result<(), MigrateError> {
    let total = report.schemas_total;
    let failed = shared.failed.load(Ordering::Relaxed);
    report.schemas_ok = shared.done.load(Ordering::Relaxed) - failed;
    report.versions_applied = shared.versions.load(Ordering::Relaxed);
    report.status = outcome(&shared, canary_failed, failed);
    if report.status == RunOutcome::Halted {
        shared.book.move_all(&NOT_STARTED, ShardState::Halted, None);
    }
    if matches!(report.status, RunOutcome::Halted | RunOutcome::Stopped) {
        report.not_started = shared.book.count(&[
            ShardState::Pending,
            ShardState::WaitingForCanary,
            ShardState::Halted,
        ]);
    }
    report.failures =
        std::mem::take(&mut *shared.failures.lock().unwrap_or_else(|p| p.into_inner()));
    // Recorded in the order they happened: the run record names the one that halted it.
    let first = report
        .failures
        .first()
        .map(|f| format!("{} failed ({}: {})", f.schema, f.file, f.error));
    report.failures.sort_by(|a, b| a.schema.cmp(&b.schema));
    let lost = shared
        .lock_lost
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
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
    let _ = shared.book.flush(&lock).await;
    let _ = lock
        .progress(total, report.schemas_ok + failed, failed)
        .await;
    let (status, message) = record_of(report, failed, first);
    lock.finish(status, &message).await
}

/// The run record's status and message for the report.
/// `first`: the earliest failure (what halted a halted run).
fn record_of(report: &RunReport, failed: usize, first: Option<String>) -> (RunStatus, String) {
    match (report.status, first) {
        (RunOutcome::Done, _) => (
            RunStatus::Done,
            format!("{} schemas migrated", report.schemas_ok),
        ),
        (RunOutcome::Stopped, _) => (
            RunStatus::Stopped,
            format!(
                "stopped by `migrate stop`: {} schemas done, {} not started; run apply again to resume",
                report.schemas_ok, report.not_started
            ),
        ),
        (RunOutcome::Halted, Some(first)) => (
            RunStatus::Halted,
            format!("halted: {first}; {} schemas not started", report.not_started),
        ),
        (RunOutcome::CanaryFailed, Some(first)) => (
            RunStatus::Halted,
            format!(
                "halted: canary {first}; {} schemas not started",
                report.not_started
            ),
        ),
        (_, Some(first)) => (
            RunStatus::Failed,
            format!("{failed} failed schemas, first {first}"),
        ),
        (_, None) => (RunStatus::Failed, "failed".to_string()),
    }
}
