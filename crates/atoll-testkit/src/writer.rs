//! A writer that inserts continuously into one shard through atoll-client, which retries
//! "shard absent" (SQLSTATE 3F000 / 42P01, or no active island) within its
//! `shard_absent_window` with rediscovery — so every error counted here reached the
//! application. The shard needs `items (payload bigint not null, ...)` with a default id.

use atoll_client::{Cluster, ClusterOptions, Write};
use atoll_core::{Config, IslandId, ShardNo};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Route {
    cluster: Cluster,
    /// Node port -> island, to tell which island acknowledged a write.
    islands: HashMap<u16, IslandId>,
}

impl Route {
    pub async fn new(config: &Config) -> anyhow::Result<Route> {
        let cluster = Cluster::connect(config.clone(), ClusterOptions::default()).await?;
        let islands = config
            .islands
            .iter()
            .flat_map(|i| i.nodes.iter().map(move |n| (n.port, i.id)))
            .collect();
        Ok(Route { cluster, islands })
    }

    /// The client the writes go through (a clone: same snapshot, same counters).
    pub fn cluster(&self) -> Cluster {
        self.cluster.clone()
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

    /// Runs `sql` (one bigint parameter, returning a bigint and `inet_server_port()`) on
    /// the shard, once: the value and the island that answered (`None`: a port not in
    /// the config).
    async fn write_where(
        &mut self,
        shard: ShardNo,
        sql: &str,
        p: i64,
        idempotent: bool,
    ) -> Result<(i64, Option<IslandId>), String> {
        let how = if idempotent {
            Write::idempotent()
        } else {
            Write::once()
        };
        let rows = self
            .cluster
            .shard(shard)
            .write(sql, &[&p], how)
            .await
            .map_err(|e| e.to_string())?;
        let row = rows.first().ok_or_else(|| "no row returned".to_string())?;
        let port: Option<i32> = row.get(1);
        let island = port.and_then(|p| self.islands.get(&(p as u16)).copied());
        Ok((row.get(0), island))
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
    /// Every write tried, acknowledged or not, in order.
    pub attempts: Vec<Attempt>,
    /// Where the writer's client routed the shard and its counters, each time one of them
    /// changed (the first entry: at the start).
    pub routes: Vec<RouteChange>,
}

/// An error that reached the writer, and when.
#[derive(Debug, Clone)]
pub struct WriterError {
    pub at: Instant,
    pub message: String,
}

/// One write the writer tried: its payload, when it was sent and answered, and the answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub payload: i64,
    pub started: Instant,
    pub ended: Instant,
    /// The island that acknowledged it, or the error that reached the writer.
    pub outcome: Result<Option<IslandId>, String>,
}

/// The writer's client changed its route for the shard, applied a notice or installed a
/// discovery round.
#[derive(Debug, Clone)]
pub struct RouteChange {
    /// When the watcher saw it (polled every millisecond).
    pub at: Instant,
    /// Where the snapshot routes the shard now (`None`: active nowhere it knows).
    pub island: Option<IslandId>,
    /// The client's counters then: a change with `notices_applied` up came from a shard
    /// notice, one with `discovery_rounds` up from a discovery round.
    pub notices_applied: u64,
    pub discovery_rounds: u64,
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
    paced_as(config, shard, stop, rate, false).await
}

/// The writer as an application that makes its inserts idempotent (`items.payload` must
/// be unique: a retried insert of a payload that committed updates nothing and returns
/// it), so the client may retry them through a connection lost mid-statement.
pub async fn run_idempotent(config: Config, shard: ShardNo, stop: Arc<AtomicBool>) -> WriterStats {
    paced_as(config, shard, stop, None, true).await.0
}

async fn paced_as(
    config: Config,
    shard: ShardNo,
    stop: Arc<AtomicBool>,
    rate: Option<u64>,
    idempotent: bool,
) -> (WriterStats, f64) {
    let mut route = Route::new(&config)
        .await
        .unwrap_or_else(|e| panic!("writer: connect: {e}"));
    let watch = tokio::spawn(watch_route(route.cluster(), shard, stop.clone()));
    let conflict = if idempotent {
        " on conflict (payload) do update set payload = excluded.payload"
    } else {
        ""
    };
    let sql = format!(
        "insert into {}.items (payload) values ($1){conflict} returning payload, inet_server_port()",
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
        let started = Instant::now();
        let outcome = route.write_where(shard, &sql, n, idempotent).await;
        let now = Instant::now();
        match &outcome {
            Ok((p, _)) => {
                stats.acked.push(*p);
                stats.acked_at.push(now);
                stats.max_gap = stats.max_gap.max(now - last);
                last = now;
            }
            Err(message) => stats.errors.push(WriterError {
                at: now,
                message: message.clone(),
            }),
        }
        stats.attempts.push(Attempt {
            payload: n,
            started,
            ended: now,
            outcome: outcome.map(|(_, island)| island),
        });
    }
    stats.routes = watch.await.unwrap_or_default();
    (stats, start.elapsed().as_secs_f64())
}

/// Polls `cluster`'s route for `shard` every millisecond until `stop`; the changes.
async fn watch_route(cluster: Cluster, shard: ShardNo, stop: Arc<AtomicBool>) -> Vec<RouteChange> {
    let mut changes: Vec<RouteChange> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let stats = cluster.stats();
        let now = RouteChange {
            at: Instant::now(),
            island: cluster.snapshot().active_island(shard).ok(),
            notices_applied: stats.notices_applied,
            discovery_rounds: stats.discovery_rounds,
        };
        let same = changes.last().is_some_and(|c| {
            (c.island, c.notices_applied, c.discovery_rounds)
                == (now.island, now.notices_applied, now.discovery_rounds)
        });
        if !same {
            changes.push(now);
        }
    }
    changes
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
    /// Payloads present that the writer never tried (only [`audit_writes`] tells them
    /// from `unacknowledged`): a row nobody wrote.
    pub unattempted: Vec<i64>,
    /// Writes that failed and are absent, as they should be (only [`audit_writes`]).
    pub failed_absent: usize,
}

impl Audit {
    /// No row lost, duplicated or present unacknowledged.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty()
            && self.duplicated.is_empty()
            && self.duplicated_ids == 0
            && self.unacknowledged.is_empty()
            && self.unattempted.is_empty()
    }
}

/// [`audit`] against everything the writer tried: payloads present but never acknowledged
/// are split into those it tried (`unacknowledged`: a write reported failed that committed)
/// and those it never tried (`unattempted`).
pub async fn audit_writes(
    config: &Config,
    shard: ShardNo,
    stats: &WriterStats,
) -> anyhow::Result<Audit> {
    let mut a = audit(config, shard, &stats.acked).await?;
    let tried: HashSet<i64> = stats.attempts.iter().map(|t| t.payload).collect();
    let present: HashSet<i64> = a.unacknowledged.iter().copied().collect();
    let (tried_present, never): (Vec<i64>, Vec<i64>) =
        a.unacknowledged.iter().partition(|p| tried.contains(p));
    a.unacknowledged = tried_present;
    a.unattempted = never;
    a.failed_absent = stats
        .attempts
        .iter()
        .filter(|t| t.outcome.is_err() && !present.contains(&t.payload))
        .count();
    Ok(a)
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
        unattempted: Vec::new(),
        failed_absent: 0,
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
