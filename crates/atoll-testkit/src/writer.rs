//! A writer that inserts continuously into one shard through atoll-client, which retries
//! "shard absent" (SQLSTATE 3F000 / 42P01, or no active island) within its
//! `shard_absent_window` with rediscovery — so every error counted here reached the
//! application. The shard needs `items (payload bigint not null, ...)` with a default id.

use atoll_client::{Cluster, ClusterOptions, Write};
use atoll_core::{Config, ShardNo};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Route {
    cluster: Cluster,
}

impl Route {
    pub async fn new(config: &Config) -> anyhow::Result<Route> {
        let cluster = Cluster::connect(config.clone(), ClusterOptions::default()).await?;
        Ok(Route { cluster })
    }

    /// Runs `sql` (one bigint parameter, returning one bigint) on the shard, once.
    pub async fn write(&mut self, shard: ShardNo, sql: &str, p: i64) -> Result<i64, String> {
        let rows = self
            .cluster
            .shard(shard)
            .write(sql, &[&p], Write::once())
            .await
            .map_err(|e| e.to_string())?;
        rows.first()
            .map(|r| r.get(0))
            .ok_or_else(|| "no row returned".to_string())
    }
}

#[derive(Debug, Default)]
pub struct WriterStats {
    pub acked: Vec<i64>,
    pub errors: Vec<String>,
    pub max_gap: Duration,
}

/// Inserts `payload = 1, 2, 3, ...` into `shard.items` until `stop` is set, as fast as
/// acknowledgements come back.
pub async fn run(config: Config, shard: ShardNo, stop: Arc<AtomicBool>) -> WriterStats {
    paced(config, shard, stop, None).await.0
}

/// The same writer, at most `rate` inserts per second when given (the benchmark's
/// condition); also returns how long it ran, in seconds. Panics when it cannot connect
/// (the test cannot go on without it).
pub async fn paced(
    config: Config,
    shard: ShardNo,
    stop: Arc<AtomicBool>,
    rate: Option<u64>,
) -> (WriterStats, f64) {
    let mut route = Route::new(&config)
        .await
        .unwrap_or_else(|e| panic!("writer: connect: {e}"));
    let sql = format!(
        "insert into {}.items (payload) values ($1) returning payload",
        shard.schema()
    );
    let mut stats = WriterStats::default();
    let start = Instant::now();
    let mut last = start;
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(n as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        match route.write(shard, &sql, n).await {
            Ok(p) => {
                stats.acked.push(p);
                let now = Instant::now();
                stats.max_gap = stats.max_gap.max(now - last);
                last = now;
            }
            Err(e) => stats.errors.push(e),
        }
    }
    (stats, start.elapsed().as_secs_f64())
}

/// Every acknowledged payload is present exactly once in the active copy (panics, as an
/// assertion, when one is not).
pub async fn check_acked(config: &Config, shard: ShardNo, acked: &[i64]) {
    let snap = crate::discover(config).await;
    let island = snap
        .active_island(shard)
        .unwrap_or_else(|e| panic!("{shard}: {e}"));
    let c = crate::master(config, &snap, island)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let rows = c
        .query(
            &format!(
                "select payload, count(*) from {}.items where payload > 0 group by payload",
                shard.schema()
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("read {shard}.items: {e}"));
    let found: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for p in acked {
        assert_eq!(found.get(p), Some(&1), "payload {p} present exactly once");
    }
}
