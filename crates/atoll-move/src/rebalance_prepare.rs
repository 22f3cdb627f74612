//! Rebalancing, the decisions before any move starts: what unfinished moves mean for a
//! new rebalance (refused, or finished first), which weights to plan with, and the plan.
//! Running the plan is [`crate::run_moves`]; asking the user is the caller's business.

use crate::error::MoveError;
use crate::rebalance::{load_weights, plan_rebalance};
use crate::rebalance_lock::{self, RebalanceLock, RebalanceLockError};
use crate::{resume_move, MoveOptions, MoveReport, Progress};
use atoll_core::rebalance::RebalancePlan;
use atoll_core::{Config, IslandId, Snapshot};
use atoll_pg::{Discoverer, DiscoveryOptions};

/// What a rebalance is asked to do.
#[derive(Debug, Clone, Default)]
pub struct RebalanceRequest {
    /// Islands to empty.
    pub decommission: Vec<IslandId>,
    /// Custom weight query (see [`load_weights`]).
    pub weight_sql: Option<String>,
    /// Finish unfinished moves (of an interrupted rebalance) first.
    pub resume: bool,
    /// Only plan: unfinished moves then refuse, since nothing would finish them.
    pub dry_run: bool,
}

/// A rebalance ready to run.
#[derive(Debug)]
pub struct PreparedRebalance {
    /// The cluster as it is after the resumed moves: what the plan was made from.
    pub snapshot: Snapshot,
    /// The unfinished moves finished first.
    pub resumed: Vec<MoveReport>,
    /// The moves to run, made from `snapshot`.
    pub plan: RebalancePlan,
    /// True when the plan weighs shards by their size in bytes.
    pub sizes: bool,
    /// The rebalance lock, held from before the plan (unless a dry run) until this is
    /// dropped: keep it until the planned moves have run.
    pub lock: Option<RebalanceLock>,
}

/// Why a rebalance could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum RebalanceError {
    /// Unfinished moves (`shard (step)` each) and the request does not resume them: a plan
    /// made now would count their shards on the wrong island.
    #[error("unfinished moves: {}; run `atoll rebalance --resume` to finish them first, or abort them with `atoll move --abort --shard N`", .0.join(", "))]
    Unfinished(Vec<String>),
    /// No plan can be made: every island decommissioned, an unknown island, an invalid
    /// weight.
    #[error(transparent)]
    Plan(#[from] atoll_core::rebalance::RebalanceError),
    /// Reading the weights or resuming an unfinished move failed.
    #[error(transparent)]
    Move(#[from] MoveError),
    /// Another rebalance holds the rebalance lock (or its island is unreachable).
    #[error(transparent)]
    Lock(#[from] RebalanceLockError),
}

impl RebalanceError {
    /// Whether the error is bad input or a refusal (exit code 2) rather than a failure.
    pub fn is_refusal(&self) -> bool {
        match self {
            RebalanceError::Unfinished(_) | RebalanceError::Plan(_) => true,
            RebalanceError::Move(e) => e.is_refusal(),
            RebalanceError::Lock(e) => matches!(e, RebalanceLockError::Busy { .. }),
        }
    }
}

/// Finishes unfinished moves if `request` says so (refuses otherwise), then plans the
/// rebalance from a fresh discovery. `snapshot` must have been taken with sizes.
pub async fn prepare_rebalance(
    config: &Config,
    snapshot: Snapshot,
    request: &RebalanceRequest,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<PreparedRebalance, RebalanceError> {
    // Taken before anything is read for the plan: a second rebalance must not plan on the
    // state this one is about to change.
    let lock = match request.dry_run {
        true => None,
        false => rebalance_lock::take(config, &snapshot).await?,
    };
    let (snapshot, resumed) = finish_unfinished(config, snapshot, request, opts, progress).await?;
    let weights = load_weights(config, &snapshot, request.weight_sql.as_deref()).await?;
    // What was actually used: sizes only when no shard has a custom or registry weight.
    let sizes = weights.sizes;
    let plan = plan_rebalance(&snapshot, weights.loads, &request.decommission, sizes)?;
    Ok(PreparedRebalance {
        snapshot,
        resumed,
        plan,
        sizes,
        lock,
    })
}

/// Resumes every unfinished move (one after another) and discovers the cluster again, or
/// refuses when the request does not resume.
async fn finish_unfinished(
    config: &Config,
    snapshot: Snapshot,
    request: &RebalanceRequest,
    opts: &MoveOptions,
    progress: Progress,
) -> Result<(Snapshot, Vec<MoveReport>), RebalanceError> {
    let pending = crate::unfinished(config, &snapshot).await?;
    if pending.is_empty() {
        return Ok((snapshot, Vec::new()));
    }
    if !request.resume || request.dry_run {
        let list = pending
            .iter()
            .map(|m| format!("{} ({})", m.shard, m.step))
            .collect();
        return Err(RebalanceError::Unfinished(list));
    }
    let mut resumed = Vec::with_capacity(pending.len());
    for m in &pending {
        let r = resume_move(config, &snapshot, Some(m.shard), opts, progress.clone()).await?;
        resumed.push(r);
    }
    // The resumed shards now live elsewhere, and the plan must see them there.
    let fresh = Discoverer::new(config.clone(), DiscoveryOptions::default())
        .discover()
        .await;
    Ok((fresh, resumed))
}
