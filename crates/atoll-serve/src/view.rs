//! What the API and `/metrics` show: the cluster's snapshot (kept fresh by the
//! `atoll_client::Cluster`) and the catalog's unfinished moves, read every period by one
//! background task so a burst of requests costs the islands nothing.

use atoll_client::Cluster;
use atoll_core::move_plan::MoveRecord;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// The catalog as last read.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatalogView {
    /// Moves not cleaned up yet, on every island.
    pub moves: Vec<MoveRecord>,
    /// When the read finished, ms since the Unix epoch (0: never).
    pub read_at_unix_ms: u64,
    /// How long the read took, in seconds.
    pub read_seconds: f64,
    /// Why the last read failed (the moves then are the previous read's).
    pub error: Option<String>,
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
    let read = atoll_move::unfinished(&config, &snapshot).await;
    let mut next = CatalogView::clone(&catalog.load());
    match read {
        Ok(moves) => {
            next.moves = moves;
            next.error = None;
        }
        Err(e) => {
            tracing::warn!(error = %e, "atoll-serve: reading the moves failed");
            next.error = Some(e.to_string());
        }
    }
    next.read_at_unix_ms = now_unix_ms();
    next.read_seconds = started.elapsed().as_secs_f64();
    catalog.store(Arc::new(next));
}
