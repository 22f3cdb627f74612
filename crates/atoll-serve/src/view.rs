//! What the API and `/metrics` show: the cluster's snapshot (kept fresh by the
//! `atoll_client::Cluster`) and, read every period by one background task so a burst of
//! requests costs the islands nothing, the catalog's unfinished moves, the latest
//! migration runs with the newest one's per-schema progress, and the action log.

use crate::move_stats::MoveStats;
use atoll_client::Cluster;
use atoll_core::move_plan::MoveRecord;
use atoll_migrate::{RunStatus, RunView};
use atoll_move::FinishedMove;
use atoll_pg::catalog::action_log::{self, ActionOutcome, Entry};
use atoll_pg::catalog::id_leases::LeaseRow;
use atoll_pg::catalog::migration_runs::RunRow;
use atoll_pg::catalog::move_status::MoveTimes;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The catalog as last read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatalogView {
    /// Moves not cleaned up yet, on every island.
    pub moves: Vec<MoveRecord>,
    /// When each unfinished move started and last changed, by id.
    #[serde(skip)]
    pub move_times: std::collections::BTreeMap<i64, MoveTimes>,
    /// The moves that finished last, newest first, with their timings.
    pub finished: Vec<FinishedMove>,
    /// Histograms of the moves seen finishing since start (for `/metrics`).
    #[serde(skip)]
    pub move_stats: MoveStats,
    /// When the read finished, ms since the Unix epoch (0: never).
    pub read_at_unix_ms: u64,
    /// How long the read took, in seconds.
    pub read_seconds: f64,
    /// Why the last read failed (the moves then are the previous read's).
    pub error: Option<String>,
    /// The newest migration run and where its schemas are.
    pub migration: Option<RunView>,
    /// The latest migration runs, newest first.
    pub runs: Vec<RunRow>,
    /// Why reading the runs failed.
    pub migration_error: Option<String>,
    /// The action log's latest entries, newest first.
    pub actions: Vec<Entry>,
    /// Why reading the action log failed (`atoll init` not run since it arrived, say).
    pub actions_error: Option<String>,
    /// The ID node-id leases (held, expired or released).
    pub leases: Vec<LeaseRow>,
}

/// Runs listed; finished moves listed; the action log's entries listed.
const RUNS_SHOWN: i64 = 10;
const FINISHED_SHOWN: i64 = 50;
const ACTIONS_SHOWN: i64 = 50;

/// An unfinished move with when it started and reached its step, and the last error an
/// action of this control plane met on it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UnfinishedMove {
    /// The move: id, shard, source, destination, step, verify, backup schema.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub record: MoveRecord,
    /// When it was recorded, seconds since the Unix epoch.
    pub started_at_unix: Option<i64>,
    /// When it reached its step (or its abort started), seconds since the Unix epoch.
    pub step_since_unix: Option<i64>,
    /// When an abort of it started, if one did.
    pub abort_started_at_unix: Option<i64>,
    /// The detail of the newest failed or refused action on its shard in the action log.
    pub last_error: Option<String>,
}

impl CatalogView {
    /// The unfinished moves with their times and last errors.
    pub fn unfinished(&self) -> Vec<UnfinishedMove> {
        self.moves
            .iter()
            .map(|m| {
                let t = self.move_times.get(&m.id);
                let schema = m.shard.schema();
                let last_error = self
                    .actions
                    .iter()
                    .filter(|e| e.target.split(' ').next() == Some(schema.as_str()))
                    .find(|e| matches!(e.outcome, ActionOutcome::Failed | ActionOutcome::Refused))
                    .and_then(|e| e.detail.clone());
                UnfinishedMove {
                    record: m.clone(),
                    started_at_unix: t.map(|t| t.started_at_unix),
                    step_since_unix: t.map(|t| t.changed_at_unix),
                    abort_started_at_unix: t.and_then(|t| t.abort_started_at_unix),
                    last_error,
                }
            })
            .collect()
    }

    /// The id of the migration run under way, if one is.
    pub fn migration_running(&self) -> Option<i64> {
        let run = &self.migration.as_ref()?.run;
        (run.status == RunStatus::Running).then_some(run.run_id)
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Reads the catalog every `period` until `stopped` changes.
pub async fn run(
    cluster: Cluster,
    catalog: Arc<arc_swap::ArcSwap<CatalogView>>,
    period: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        read_once(&cluster, &catalog).await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One read of the unfinished moves into `catalog`.
pub async fn read_once(cluster: &Cluster, catalog: &arc_swap::ArcSwap<CatalogView>) {
    let started = Instant::now();
    let snapshot = cluster.snapshot();
    let config = cluster.config();
    let read = atoll_move::read_moves(&config, &snapshot, FINISHED_SHOWN).await;
    let mut next = CatalogView::clone(&catalog.load());
    match read {
        Ok(read) => {
            next.move_stats.observe(&read.finished);
            (next.moves, next.finished) = (read.unfinished, read.finished);
            next.move_times = read.times;
            next.error = None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "atoll-serve: reading the moves failed");
            next.error = Some(e.to_string());
        }
    }
    read_migrations(&config, &snapshot, &mut next).await;
    match read_coordination(&config, &snapshot).await {
        Ok((a, leases)) => (next.actions, next.leases, next.actions_error) = (a, leases, None),
        Err(e) => next.actions_error = Some(e.to_string()),
    }
    next.read_at_unix_ms = now_unix_ms();
    next.read_seconds = started.elapsed().as_secs_f64();
    catalog.store(Arc::new(next));
}

async fn read_migrations(
    config: &atoll_core::Config,
    snapshot: &atoll_core::Snapshot,
    next: &mut CatalogView,
) {
    let read = async {
        let latest = atoll_migrate::run_status(config, snapshot, None).await?;
        let runs = atoll_migrate::runs(config, snapshot, RUNS_SHOWN).await?;
        Ok::<_, atoll_migrate::MigrateError>((latest, runs))
    };
    match read.await {
        Ok((latest, runs)) => {
            (next.migration, next.runs, next.migration_error) = (latest, runs, None)
        }
        Err(e) => next.migration_error = Some(e.to_string()),
    }
}

/// The action log and the ID leases, both on the coordination island's master.
async fn read_coordination(
    config: &atoll_core::Config,
    snapshot: &atoll_core::Snapshot,
) -> Result<(Vec<Entry>, Vec<LeaseRow>), atoll_pg::PgError> {
    let (node, client) = crate::actions::run::log_client(config, snapshot).await?;
    let actions = action_log::list(&client, &node, ACTIONS_SHOWN).await?;
    let leases = atoll_pg::catalog::id_leases::list(&client, &node).await?;
    Ok((actions, leases))
}
