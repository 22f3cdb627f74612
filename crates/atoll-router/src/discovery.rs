//! The router's view of the cluster: an `atoll_client::Cluster` keeps the snapshot fresh
//! (discovery rounds plus shard notices, see atoll-client's `refresh.rs` and `notices.rs`),
//! and the router notices when the snapshot's shard → island map changed, to drop its
//! negative routes.

use crate::cache::RouteCache;
use crate::error::RouterError;
use crate::metrics::{Event, Metrics};
use atoll_client::{Cluster, ClusterOptions};
use atoll_core::{Config, Snapshot};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The cluster and the last shard map seen.
pub struct Discovery {
    cluster: Cluster,
    /// (the last snapshot looked at, fingerprint of its shard map). The snapshot itself,
    /// not its address: a freed snapshot's address is soon reused by a newer one, which
    /// would then pass for the one already seen and hide a shard map change.
    seen: Mutex<(Arc<Snapshot>, u64)>,
}

/// A fingerprint of which island each active shard is on.
pub fn shard_map_fingerprint(s: &Snapshot) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (shard, island) in s.active_shards() {
        (shard.get(), island.0).hash(&mut h);
    }
    h.finish()
}

impl Discovery {
    /// Connects to the cluster named by `atoll_config` (a first discovery round).
    pub async fn connect(atoll_config: &Path, period: Duration) -> Result<Discovery, RouterError> {
        let config = Config::from_file(atoll_config)?;
        let options = ClusterOptions {
            refresh_period: period,
            application_name: "atoll-router".into(),
            ..ClusterOptions::default()
        };
        let cluster = Cluster::connect(config, options).await?;
        let snap = cluster.snapshot();
        let fp = shard_map_fingerprint(&snap);
        let seen = (snap, fp);
        Ok(Discovery {
            cluster,
            seen: Mutex::new(seen),
        })
    }

    /// The current snapshot; when its shard map differs from the last one seen, the
    /// negative routes are dropped first.
    pub fn snapshot(&self, cache: &RouteCache, metrics: &Metrics) -> Arc<Snapshot> {
        let snap = self.cluster.snapshot();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !Arc::ptr_eq(&seen.0, &snap) {
            let fp = shard_map_fingerprint(&snap);
            if fp != seen.1 {
                let dropped = cache.invalidate_negative();
                metrics.add(Event::ShardMapChanged, 1);
                tracing::info!(
                    dropped,
                    "atoll-router: shard map changed; negative routes dropped"
                );
            }
            *seen = (snap.clone(), fp);
        }
        snap
    }

    /// The environment digit of the cluster's IDs.
    pub fn env_digit(&self) -> u8 {
        self.cluster.config().env_digit
    }

    /// The client handle (stats, a forced refresh).
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}
