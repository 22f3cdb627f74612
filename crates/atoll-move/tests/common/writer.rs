//! A writer that inserts continuously into one shard through the registry, retrying
//! "shard absent" (SQLSTATE 3F000 / 42P01, or no active island) for a bounded window with
//! rediscovery — what atoll-client does. The routing part (`Route`) is isolated so the
//! test can switch to atoll-client once it lands.

use atoll_core::{Config, IslandId, ShardNo};
use atoll_pg::{Discoverer, DiscoveryOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// How long one write may keep retrying before the error reaches the writer.
pub const RETRY_WINDOW: Duration = Duration::from_secs(5);

pub struct Route {
    disc: Discoverer,
    snap: atoll_core::Snapshot,
    clients: HashMap<IslandId, Client>,
}

impl Route {
    pub async fn new(config: &Config) -> Route {
        let disc = Discoverer::new(
            config.clone(),
            DiscoveryOptions {
                sizes: false,
                node_timeout: Duration::from_secs(2),
            },
        );
        let snap = disc.discover().await;
        Route {
            disc,
            snap,
            clients: HashMap::new(),
        }
    }

    /// Runs `sql` (one parameter, returning one bigint) on the shard's active island.
    pub async fn write(&mut self, shard: ShardNo, sql: &str, p: i64) -> Result<i64, String> {
        let deadline = Instant::now() + RETRY_WINDOW;
        loop {
            let err = match self.snap.active_island(shard) {
                Ok(island) => {
                    if !self.clients.contains_key(&island) {
                        let node = atoll_pg::master_node(self.disc.config(), &self.snap, island)
                            .map_err(|e| e.to_string())?;
                        let c = atoll_pg::connect(&node).await.map_err(|e| e.to_string())?;
                        self.clients.insert(island, c);
                    }
                    let c = &self.clients[&island];
                    match c.query_one(sql, &[&p]).await {
                        Ok(r) => return Ok(r.get(0)),
                        Err(e) => {
                            let code = e.code().map(|c| c.code().to_string());
                            if !matches!(code.as_deref(), Some("3F000") | Some("42P01")) {
                                return Err(format!("{e:?}"));
                            }
                            format!("{e}")
                        }
                    }
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!("gave up after {RETRY_WINDOW:?}: {err}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.snap = self.disc.discover().await;
        }
    }
}

#[derive(Debug, Default)]
pub struct WriterStats {
    pub acked: Vec<i64>,
    pub errors: Vec<String>,
    pub max_gap: Duration,
}

/// Inserts `payload = 1, 2, 3, ...` into `shard.items` until `stop` is set.
pub async fn run(config: Config, shard: ShardNo, stop: Arc<AtomicBool>) -> WriterStats {
    let mut route = Route::new(&config).await;
    let sql = format!(
        "insert into {}.items (payload) values ($1) returning payload",
        shard.schema()
    );
    let mut stats = WriterStats::default();
    let mut last = Instant::now();
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
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
    stats
}

/// Every acknowledged payload is present exactly once in the active copy.
pub async fn check_acked(config: &Config, shard: ShardNo, acked: &[i64]) {
    let snap = super::discover(config).await;
    let island = snap.active_island(shard).unwrap();
    let c = super::master(config, &snap, island).await;
    let rows = c
        .query(
            &format!(
                "select payload, count(*) from {}.items where payload > 0 group by payload",
                shard.schema()
            ),
            &[],
        )
        .await
        .unwrap();
    let found: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for p in acked {
        assert_eq!(found.get(p), Some(&1), "payload {p} present exactly once");
    }
}
