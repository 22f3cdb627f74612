//! Rebalancing, the I/O half: reading shard weights (custom SQL, the registry's weight
//! column, or sizes), and running planned moves with bounded parallelism. The plan itself
//! is `atoll_core::rebalance::plan`.

use crate::db::Db;
use crate::error::MoveError;
use crate::{start_move, MoveOptions, MoveReport, Progress};
use atoll_core::rebalance::{plan, PlannedMove, RebalanceInput, RebalancePlan, ShardLoad};
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Shards lighter than this count as empty when weights are sizes (an empty table with a
/// primary key still takes a few pages).
const EMPTY_BELOW_BYTES: f64 = 64.0 * 1024.0;

/// The weights a rebalance plans with, and what they are.
#[derive(Debug, Clone)]
pub struct Weights {
    /// Every active shard with its island and weight.
    pub loads: Vec<ShardLoad>,
    /// True when the weights are sizes in bytes (no custom SQL, no registry weights).
    pub sizes: bool,
}

/// The weight of every active shard: from `weight_sql` when given (run on every island
/// master, returning `(shard int, weight float8)` rows), else the registry's `weight`
/// column, else the shard's size from `snapshot` (which must have been taken with sizes).
/// Units are never mixed: custom or registry weights are used only when every active
/// shard has one; otherwise the shards without one are named in the refusal (registry
/// weights are ignored when no shard has one, and sizes are used).
pub async fn load_weights(
    config: &Config,
    snapshot: &Snapshot,
    weight_sql: Option<&str>,
) -> Result<Weights, MoveError> {
    let mut custom: BTreeMap<u16, f64> = BTreeMap::new();
    for island in &snapshot.islands {
        let db = Db::connect(config, snapshot, island.id).await?;
        let sql = weight_sql.unwrap_or(atoll_pg::catalog::registry::WEIGHTS_QUERY);
        for r in db.query(sql, &[]).await? {
            let shard: i32 = r.try_get(0).map_err(|e| db.err(e))?;
            let weight: Option<f64> = r.try_get(1).map_err(|e| db.err(e))?;
            if let (Ok(s), Some(w)) = (u16::try_from(shard), weight) {
                custom.insert(s, w);
            }
        }
    }
    let active: Vec<(ShardNo, IslandId)> = snapshot.active_shards().collect();
    let missing: Vec<String> = active
        .iter()
        .filter(|(s, _)| !custom.contains_key(&s.get()))
        .map(|(s, _)| s.to_string())
        .collect();
    let sizes = weight_sql.is_none() && custom.is_empty();
    if !sizes && !missing.is_empty() {
        let from = if weight_sql.is_some() {
            "the weight SQL"
        } else {
            "atoll.shards.weight"
        };
        return Err(MoveError::MissingWeights(format!(
            "{from} gives no weight for {} of {} active shards: {}; weights must not mix with sizes, give every shard one",
            missing.len(),
            active.len(),
            missing.join(", ")
        )));
    }
    let loads = active
        .into_iter()
        .map(|(shard, island)| {
            let weight = if sizes {
                snapshot
                    .shards
                    .get(&shard)
                    .and_then(|c| c.iter().find(|c| c.island == island))
                    .and_then(|c| c.size_bytes)
                    .unwrap_or(0) as f64
            } else {
                custom.get(&shard.get()).copied().unwrap_or(0.0)
            };
            ShardLoad {
                shard,
                island,
                weight,
            }
        })
        .collect();
    Ok(Weights { loads, sizes })
}

/// Plans a rebalance of `loads` over the islands of `snapshot`.
pub fn plan_rebalance(
    snapshot: &Snapshot,
    loads: Vec<ShardLoad>,
    decommission: &[IslandId],
    sizes: bool,
) -> Result<RebalancePlan, atoll_core::rebalance::RebalanceError> {
    plan(&RebalanceInput {
        islands: snapshot.islands.iter().map(|i| i.id).collect(),
        decommission: decommission.to_vec(),
        shards: loads,
        empty_below: if sizes { EMPTY_BELOW_BYTES } else { 0.0 },
    })
}

/// The outcome of one planned move.
#[derive(Debug, serde::Serialize)]
pub struct RebalanceOutcome {
    /// The shard the plan moves.
    pub shard: ShardNo,
    /// The island it was active on when planned.
    pub from: IslandId,
    /// The island the plan moves it to.
    pub to: IslandId,
    /// The move's report when it finished; `None` when it failed.
    pub report: Option<MoveReport>,
    /// Why the move failed; `None` when it finished.
    pub error: Option<String>,
}

/// Runs `moves`, at most `parallelism` at a time. A failed move does not stop the others;
/// it stays recorded (resumable) unless it rolled itself back.
pub async fn run_moves(
    config: &Config,
    snapshot: &Snapshot,
    moves: &[PlannedMove],
    parallelism: usize,
    opts: &MoveOptions,
    progress: Progress,
) -> Vec<RebalanceOutcome> {
    let gate = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let runs = moves.iter().map(|m| {
        let gate = gate.clone();
        let progress = progress.clone();
        async move {
            let result = match gate.acquire().await {
                Ok(_permit) => start_move(config, snapshot, m.shard, m.to, opts, progress).await,
                Err(e) => Err(MoveError::Other {
                    shard: m.shard,
                    msg: e.to_string(),
                }),
            };
            let (report, error) = match result {
                Ok(r) => (Some(r), None),
                Err(e) => (None, Some(e.to_string())),
            };
            RebalanceOutcome {
                shard: m.shard,
                from: m.from,
                to: m.to,
                report,
                error,
            }
        }
    });
    futures::future::join_all(runs).await
}
