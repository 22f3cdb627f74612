//! A writer that inserts continuously into one shard through atoll-client, which retries
//! "shard absent" (SQLSTATE 3F000 / 42P01, or no active island) within its
//! `shard_absent_window` with rediscovery — so every error counted here reached the
//! application. The shard needs `items (payload bigint not null, ...)` with a default id.

use atoll_client::{Cluster, ClusterOptions, Write};
use atoll_core::{Config, ShardNo};
use std::collections::{HashMap, HashSet};
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
    /// The acknowledged payloads (the client-side unique token of each row), in order.
    pub acked: Vec<i64>,
    /// When each of `acked` was acknowledged (same index).
    pub acked_at: Vec<Instant>,
    pub errors: Vec<WriterError>,
    pub max_gap: Duration,
}

/// An error that reached the writer, and when.
#[derive(Debug, Clone)]
pub struct WriterError {
    pub at: Instant,
    pub message: String,
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
                let now = Instant::now();
                stats.acked.push(p);
                stats.acked_at.push(now);
                stats.max_gap = stats.max_gap.max(now - last);
                last = now;
            }
            Err(message) => stats.errors.push(WriterError {
                at: Instant::now(),
                message,
            }),
        }
    }
    (stats, start.elapsed().as_secs_f64())
}

/// What the active copy of a shard holds against what the writer was told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Audit {
    /// Acknowledged payloads.
    pub acked: usize,
    /// Rows the writer wrote that are present (payload > 0), duplicates included.
    pub present: usize,
    /// Acknowledged payloads absent from the active copy.
    pub lost: Vec<i64>,
    /// Payloads present more than once (the payload is the writer's unique token; the
    /// primary key is generated server-side).
    pub duplicated: Vec<i64>,
    /// Rows of the whole table beyond its number of distinct primary keys.
    pub duplicated_ids: i64,
    /// Payloads present that were never acknowledged (a write reported failed, yet
    /// committed).
    pub unacknowledged: Vec<i64>,
}

impl Audit {
    /// No row lost, duplicated or present unacknowledged.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.duplicated_ids == 0
            && self.unacknowledged.is_empty()
    }
}

/// Compares the writer's rows on `shard`'s active copy with the `acked` payloads.
pub async fn audit(config: &Config, shard: ShardNo, acked: &[i64]) -> anyhow::Result<Audit> {
    let snap = crate::discover(config).await;
    let island = snap.active_island(shard)?;
    let c = crate::master(config, &snap, island).await?;
    let schema = shard.schema();
    let rows = c
        .query(
            &format!(
                "select payload, count(*) from {schema}.items where payload > 0 group by payload"
            ),
            &[],
        )
        .await?;
    let found: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let ids: i64 = c
        .query_one(
            &format!("select count(*) - count(distinct id) from {schema}.items"),
            &[],
        )
        .await?
        .get(0);
    let acked_set: HashSet<i64> = acked.iter().copied().collect();
    let mut audit = Audit {
        acked: acked.len(),
        present: found.values().map(|n| *n as usize).sum(),
        lost: acked
            .iter()
            .copied()
            .filter(|p| !found.contains_key(p))
            .collect(),
        duplicated: found
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(p, _)| *p)
            .collect(),
        duplicated_ids: ids,
        unacknowledged: found
            .keys()
            .copied()
            .filter(|p| !acked_set.contains(p))
            .collect(),
    };
    audit.duplicated.sort_unstable();
    audit.unacknowledged.sort_unstable();
    Ok(audit)
}

/// Every acknowledged payload is present exactly once in the active copy (panics, as an
/// assertion, when one is not).
pub async fn check_acked(config: &Config, shard: ShardNo, acked: &[i64]) {
    let audit = audit(config, shard, acked)
        .await
        .unwrap_or_else(|e| panic!("audit {shard}.items: {e:#}"));
    assert!(
        audit.lost.is_empty(),
        "acknowledged payloads lost: {:?}",
        audit.lost
    );
    let twice: Vec<i64> = audit
        .duplicated
        .iter()
        .copied()
        .filter(|p| acked.contains(p))
        .collect();
    assert!(
        twice.is_empty(),
        "acknowledged payloads present more than once: {twice:?}"
    );
}
