//! What a running proxy says about itself, read from its shared state: served as JSON at
//! `GET /status` (next to `/metrics`; `atoll proxy status` reads it) and as rows by the
//! admin database (`admin.rs`).

use crate::hold::quantile;
use crate::shared::Shared;
use atoll_core::proxy_config::ProxyPoolMode;
use atoll_core::IslandId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A proxy's state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Client connections open.
    pub clients: u64,
    /// How long a client keeps a server connection.
    pub pool_mode: ProxyPoolMode,
    /// The database name clients connect to.
    pub database: String,
    /// Per node connected to, its server connections.
    pub pools: Vec<PoolStatus>,
    /// Transactions held through moves.
    pub holds: HoldStatus,
    /// Per configured island, its master and how many shards are active there (as the
    /// proxy's snapshot of the cluster says).
    pub islands: Vec<IslandStatus>,
}

/// One node's server connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// `host:port`.
    pub node: String,
    /// Leased to a client now.
    pub leased: usize,
    /// Idle, kept for the next transaction.
    pub idle: usize,
    /// The most open at once.
    pub limit: usize,
}

/// Transactions held through moves, since the proxy started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldStatus {
    /// Held now.
    pub holding: u64,
    /// Held, then run where the shard went.
    pub released: u64,
    /// Held past the hold timeout (the client got 57P03).
    pub expired: u64,
    /// First exchanges run again after a node said the shard was gone.
    pub rerun: u64,
    /// Recent hold times, in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

/// One island as the proxy routes to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IslandStatus {
    /// Its number.
    pub island: IslandId,
    /// Its master's `host:port`; `None` while no node is known to be the master.
    pub master: Option<String>,
    /// Shards active on it.
    pub shards: usize,
}

/// The state of the proxy `shared` belongs to.
pub fn status(shared: &Shared) -> Status {
    Status {
        clients: shared.stats.clients.load(Ordering::Relaxed),
        pool_mode: shared.pool_mode,
        database: shared.database.clone(),
        pools: pools(shared),
        holds: holds(shared),
        islands: islands(shared),
    }
}

/// Per node connected to, its server connections.
pub fn pools(shared: &Shared) -> Vec<PoolStatus> {
    shared
        .pools
        .stats()
        .into_iter()
        .map(|p| PoolStatus {
            node: p.addr,
            leased: p.leased,
            idle: p.idle,
            limit: p.limit,
        })
        .collect()
}

/// The holds so far.
pub fn holds(shared: &Shared) -> HoldStatus {
    let h = &shared.holds;
    let times = h.recent_sorted();
    let ms = |q: f64| quantile(&times, q).as_secs_f64() * 1e3;
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    HoldStatus {
        holding: count(&h.holding),
        released: count(&h.released),
        expired: count(&h.expired),
        rerun: count(&h.rerun),
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        max_ms: ms(1.0),
    }
}

fn islands(shared: &Shared) -> Vec<IslandStatus> {
    let snapshot = shared.cluster.snapshot();
    let mut counts: BTreeMap<IslandId, usize> = BTreeMap::new();
    for (_, island) in snapshot.active_shards() {
        *counts.entry(island).or_default() += 1;
    }
    snapshot
        .islands
        .iter()
        .map(|i| IslandStatus {
            island: i.id,
            master: i.master().map(|m| m.addr.clone()),
            shards: counts.get(&i.id).copied().unwrap_or(0),
        })
        .collect()
}
