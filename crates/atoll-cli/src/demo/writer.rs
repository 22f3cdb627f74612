//! The demo's application: one writer that inserts rows round-robin into every shard
//! through atoll-client, as an application would, while the story moves shards under it.
//! It counts what was acknowledged per shard and the longest time between two
//! acknowledgements, then checks every acknowledged row is there exactly once.

use atoll_client::{Cluster, Freshness, Write};
use atoll_core::ShardNo;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The table the demo's migration creates in every shard.
pub const TABLE: &str = "demo_events";

/// What the writer saw.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Written {
    /// Acknowledged inserts per shard.
    pub acked: BTreeMap<ShardNo, u64>,
    /// Errors that reached the writer (each insert is tried once by the writer; the
    /// client retries inside its bounds).
    pub errors: Vec<String>,
    /// The longest time between two acknowledged inserts, in ms.
    pub longest_gap_ms: f64,
}

impl Written {
    /// Acknowledged inserts in all.
    pub fn rows(&self) -> u64 {
        self.acked.values().sum()
    }
}

/// Writes until `stop` is set; rows carry `run` so a re-run of the demo counts its own.
pub async fn write(
    cluster: Cluster,
    shards: Vec<ShardNo>,
    run: i64,
    stop: Arc<AtomicBool>,
) -> Written {
    let mut out = Written::default();
    let mut last: Option<Instant> = None;
    let mut seq = 0i64;
    while !stop.load(Ordering::Relaxed) {
        for &shard in &shards {
            seq += 1;
            let sql = format!(
                "insert into {}.{TABLE} (run, seq) values ($1, $2)",
                shard.schema()
            );
            match cluster
                .shard(shard)
                .write(&sql, &[&run, &seq], Write::once())
                .await
            {
                Ok(_) => {
                    *out.acked.entry(shard).or_default() += 1;
                    let now = Instant::now();
                    if let Some(prev) = last {
                        out.longest_gap_ms = out.longest_gap_ms.max(ms(now - prev));
                    }
                    last = Some(now);
                }
                Err(e) => out.errors.push(format!("{shard}: {e}")),
            }
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        // A little air for the two cores the demo shares with its servers.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    out
}

/// What the shards hold of this run, compared with what was acknowledged.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Checked {
    /// Acknowledged rows not found.
    pub lost: u64,
    /// Rows found more than once (the same `seq`).
    pub duplicated: u64,
    /// Rows found whose insert reported an error to the writer (it may have committed
    /// before its answer was lost); never more than the errors.
    pub unacknowledged: u64,
}

/// Counts this run's rows in every shard, on its master wherever it lives now.
pub async fn check(cluster: &Cluster, written: &Written, run: i64) -> Result<Checked, String> {
    let mut out = Checked::default();
    for (&shard, &acked) in &written.acked {
        let sql = format!(
            "select count(*), count(distinct seq) from {}.{TABLE} where run = $1",
            shard.schema()
        );
        let rows = cluster
            .shard(shard)
            .query(&sql, &[&run], Freshness::Master)
            .await
            .map_err(|e| format!("counting {shard}: {e}"))?;
        let (all, distinct): (i64, i64) = rows
            .first()
            .map(|r| (r.get(0), r.get(1)))
            .ok_or_else(|| format!("counting {shard}: no row"))?;
        let (all, distinct) = (all as u64, distinct as u64);
        out.duplicated += all - distinct;
        out.lost += acked.saturating_sub(distinct);
        out.unacknowledged += distinct.saturating_sub(acked);
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
