//! The worker: one task that takes the next action (a RUNNING one a crash left and that
//! is safe to re-run, else the oldest NEW one), runs it to its end, records the outcome,
//! and sleeps on the queue's wake-up when there is nothing to do.

use super::{execute, ActionCtx};
use crate::attributes::AttributeReader;
use crate::config::AgentConfig;
use crate::ha::HaHandle;
use crate::pg_tools::PgTools;
use crate::queue::{now_ms, ActionRecord, Outcome, Queue};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What actions run with.
pub struct Executor {
    pub(crate) cfg: Arc<AgentConfig>,
    pub(crate) queue: Queue,
    pub(crate) reader: Arc<AttributeReader>,
    pub(crate) tools: PgTools,
    /// Failover's shared part, when `[ha]` is configured (a switchover hands the leader
    /// key over through it).
    pub(crate) ha: Option<Arc<HaHandle>>,
}

impl Executor {
    /// The parts actions use.
    pub fn new(
        cfg: Arc<AgentConfig>,
        queue: Queue,
        reader: Arc<AttributeReader>,
        tools: PgTools,
        ha: Option<Arc<HaHandle>>,
    ) -> Executor {
        Executor {
            cfg,
            queue,
            reader,
            tools,
            ha,
        }
    }
}

/// Runs actions until `shutdown` turns true. A running action gets the configured grace
/// to finish; past it the action stays RUNNING for the next start's recovery.
pub async fn run_worker(ex: Arc<Executor>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        let next = match ex.queue.next().await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "action queue unreadable; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.changed() => break,
                }
            }
        };
        let Some(record) = next else {
            tokio::select! {
                _ = ex.queue.woken() => continue,
                _ = shutdown.changed() => break,
            }
        };
        if !run_one(&ex, record, &mut shutdown).await {
            break;
        }
    }
    tracing::info!("action worker stopped");
}

/// Runs one action; false when shutdown cut it short.
async fn run_one(ex: &Executor, r: ActionRecord, shutdown: &mut watch::Receiver<bool>) -> bool {
    if let Err(e) = ex.queue.start(r.id.clone()).await {
        tracing::error!(action = %r.id, error = %e, "cannot mark the action RUNNING");
        return false;
    }
    if r.attempts == 0 {
        let waited = (now_ms() - r.created_at_ms).max(0) as f64 / 1000.0;
        metrics::histogram!("atoll_agent_action_pickup_seconds").record(waited);
    }
    tracing::info!(action = %r.id, kind = r.kind.as_str(), attempt = r.attempts + 1, "action started");
    ex.reader.set_running(Some((r.kind, r.args.clone())));
    let ctx = ActionCtx {
        ex,
        id: r.id.clone(),
    };
    let work = execute(&ctx, r.kind, &r.args);
    tokio::pin!(work);
    let result = tokio::select! {
        res = &mut work => Some(res),
        _ = wait_true(shutdown) => {
            tracing::info!(action = %r.id, grace = ?ex.cfg.shutdown_grace, "shutting down: waiting for the running action");
            tokio::time::timeout(ex.cfg.shutdown_grace, &mut work).await.ok()
        }
    };
    if result.is_some() && ex.cfg.test_hold_after_work {
        // The record says so, for the test to know when to kill.
        ctx.progress("test hook: work done, outcome held unrecorded")
            .await;
        wait_true(shutdown).await;
        return false;
    }
    ex.reader.set_running(None);
    let Some(result) = result else {
        tracing::warn!(action = %r.id, "left RUNNING at shutdown; the next start settles it");
        return false;
    };
    let (outcome, state) = match result {
        Ok(out) => (Outcome::Done(out), "DONE"),
        Err(e) => {
            tracing::warn!(action = %r.id, code = ?e.code, "action failed: {}", e.message);
            (
                Outcome::Failed {
                    error: e.to_json(),
                    output: e.output.clone(),
                },
                "FAILED",
            )
        }
    };
    metrics::counter!("atoll_agent_actions_finished_total", "kind" => r.kind.as_str(), "state" => state)
        .increment(1);
    if let Err(e) = ex.queue.finish(r.id.clone(), outcome).await {
        tracing::error!(action = %r.id, error = %e, "cannot record the outcome");
        return false;
    }
    tracing::info!(action = %r.id, state, "action finished");
    !*shutdown.borrow()
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: treat as shutdown.
    let _ = rx.wait_for(|v| *v).await;
}
