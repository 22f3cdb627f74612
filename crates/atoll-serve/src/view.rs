//! What the API and `/metrics` show: the cluster's snapshot (kept fresh by the
//! `atoll_client::Cluster`) and, read every period by one background task so a burst of
//! requests costs the islands nothing, the catalog's unfinished moves, the latest
//! migration runs with the newest one's per-schema progress, and the action log.

use crate::move_stats::MoveStats;
use atoll_client::Cluster;
use atoll_core::move_plan::MoveRecord;
use atoll_migrate::{RunStatus, RunView};
use atoll_move::FinishedMove;
use atoll_pg::catalog::action_log::{self, Entry};
use atoll_pg::catalog::migration_runs::RunRow;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The catalog as last read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatalogView {
    /// Moves not cleaned up yet, on every island.
    pub moves: Vec<MoveRecord>,
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
}

/// Runs listed; finished moves listed; the action log's entries listed.
const RUNS_SHOWN: i64 = 10;
const FINISHED_SHOWN: i64 = 50;
const ACTIONS_SHOWN: i64 = 50;

impl CatalogView {
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
    let read = atoll_move::unfinished_and_finished(&config, &snapshot, FINISHED_SHOWN).await;
    let mut next = CatalogView::clone(&catalog.load());
    match read {
        Ok((moves, finished)) => {
            next.move_stats.observe(&finished);
            (next.moves, next.finished) = (moves, finished);
            next.error = None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "atoll-serve: reading the moves failed");
            next.error = Some(e.to_string());
        }
    }
    read_migrations(&config, &snapshot, &mut next).await;
    match read_actions(&config, &snapshot).await {
        Ok(a) => (next.actions, next.actions_error) = (a, None),
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

async fn read_actions(
    config: &atoll_core::Config,
    snapshot: &atoll_core::Snapshot,
) -> Result<Vec<Entry>, atoll_pg::PgError> {
    let (node, client) = crate::actions::run::log_client(config, snapshot).await?;
    action_log::list(&client, &node, ACTIONS_SHOWN).await
}
