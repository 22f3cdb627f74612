//! Rebalancing: which microshards to move so the islands carry equal weight.
//!
//! The weight of a shard is its size by default, or what a custom weight says. The plan:
//! 1. every shard on a decommissioned island goes to the lightest remaining island
//!    (heaviest shards first, so they spread);
//! 2. while moving one shard from the heaviest to the lightest island lowers the larger of
//!    the two, the largest such shard moves (few moves, each one an improvement, so it ends);
//! 3. empty shards (weight at most `empty_below`) are spread so island counts differ by at
//!    most one, since empty shards are where new data will land.
//!
//! Shard 0 (global) stays where it is unless its island is decommissioned. A shard moves at
//! most once per plan: only its original and final islands are compared.

use crate::island::IslandId;
use crate::shard::ShardNo;
use serde::Serialize;
use std::collections::BTreeMap;

/// One shard as the rebalancer sees it: where it is and what it weighs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardLoad {
    /// The shard.
    pub shard: ShardNo,
    /// The island it is active on now.
    pub island: IslandId,
    /// Its weight: its size in bytes by default, or a custom weight; finite and >= 0.
    pub weight: f64,
}

/// One move of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedMove {
    /// The shard to move.
    pub shard: ShardNo,
    /// The island it is on now.
    pub from: IslandId,
    /// The island it goes to.
    pub to: IslandId,
    /// Its weight, as in [`ShardLoad::weight`].
    pub weight: f64,
}

/// The total load of one island, before or after the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IslandLoad {
    /// The island.
    pub island: IslandId,
    /// Sum of its shards' weights.
    pub weight: f64,
    /// How many shards it holds.
    pub shards: usize,
    /// Whether it is being emptied (`--decommission`).
    pub decommissioned: bool,
}

/// The result of [`plan`]: the moves and the loads they lead to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RebalancePlan {
    /// The moves to make; each shard appears at most once.
    pub moves: Vec<PlannedMove>,
    /// Every island's load now, in input order.
    pub before: Vec<IslandLoad>,
    /// Every island's load once all moves are done, in input order.
    pub after: Vec<IslandLoad>,
}

impl RebalancePlan {
    /// A digest of the moves (shard, from, to, in order): what an operator reviewed, so a
    /// run can refuse when the plan made at run time is not the one they saw.
    pub fn digest(&self) -> String {
        let text: String = self
            .moves
            .iter()
            .map(|m| format!("{}:{}>{};", m.shard.get(), m.from.0, m.to.0))
            .collect();
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(text.as_bytes()))
    }
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebalanceError {
    /// Every island is decommissioned.
    #[error("no island would be left to hold the shards: every island is decommissioned")]
    NothingLeft,
    /// A decommissioned island is not in the configuration.
    #[error("island {0} is not in the configuration")]
    UnknownIsland(IslandId),
    /// A shard is on an island that is not in the configuration.
    #[error("{shard} is on island {island}, which is not in the configuration")]
    ShardOnUnknownIsland {
        /// The shard.
        shard: ShardNo,
        /// The island it is said to be on.
        island: IslandId,
    },
    /// A shard's weight is negative, infinite or NaN.
    #[error("{shard} has an invalid weight {weight} (weights must be finite and >= 0)")]
    BadWeight {
        /// The shard.
        shard: ShardNo,
        /// The weight as text.
        weight: String,
    },
}

/// What [`plan`] balances: the islands, those to empty, and every shard's load.
#[derive(Debug, Clone, PartialEq)]
pub struct RebalanceInput {
    /// Every island of the configuration.
    pub islands: Vec<IslandId>,
    /// Islands to empty: all their shards move elsewhere, nothing moves to them.
    pub decommission: Vec<IslandId>,
    /// Every shard, with its island and weight.
    pub shards: Vec<ShardLoad>,
    /// Shards weighing at most this are "empty" and spread by count.
    pub empty_below: f64,
}

/// Plans the moves that balance `input` (see the module docs for the three passes); pure and
/// deterministic.
pub fn plan(input: &RebalanceInput) -> Result<RebalancePlan, RebalanceError> {
    let targets = validate(input)?;
    let mut shards = input.shards.clone();
    // Deterministic plans: heaviest first, then by number.
    shards.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.shard.cmp(&b.shard)));
    let before = loads(input, &shards);
    let mut p = Placement {
        place: shards.iter().map(|s| (s.shard, s.island)).collect(),
        weight_of: shards.iter().map(|s| (s.shard, s.weight)).collect(),
        targets: &targets,
    };
    p.drain(&shards, &input.decommission);
    p.equalise(&shards, input.empty_below);
    p.spread_empty(&shards, input.empty_below);
    let place = p.place;
    let moves: Vec<PlannedMove> = shards
        .iter()
        .filter(|s| place[&s.shard] != s.island)
        .map(|s| PlannedMove {
            shard: s.shard,
            from: s.island,
            to: place[&s.shard],
            weight: s.weight,
        })
        .collect();
    let after_shards: Vec<ShardLoad> = shards
        .iter()
        .map(|s| ShardLoad {
            island: place[&s.shard],
            ..s.clone()
        })
        .collect();
    Ok(RebalancePlan {
        moves,
        before,
        after: loads(input, &after_shards),
    })
}

/// Refuses unknown islands and bad weights; returns the islands that may receive shards.
fn validate(input: &RebalanceInput) -> Result<Vec<IslandId>, RebalanceError> {
    for d in &input.decommission {
        if !input.islands.contains(d) {
            return Err(RebalanceError::UnknownIsland(*d));
        }
    }
    let targets: Vec<IslandId> = input
        .islands
        .iter()
        .copied()
        .filter(|i| !input.decommission.contains(i))
        .collect();
    if targets.is_empty() {
        return Err(RebalanceError::NothingLeft);
    }
    for s in &input.shards {
        if !input.islands.contains(&s.island) {
            return Err(RebalanceError::ShardOnUnknownIsland {
                shard: s.shard,
                island: s.island,
            });
        }
        if !s.weight.is_finite() || s.weight < 0.0 {
            return Err(RebalanceError::BadWeight {
                shard: s.shard,
                weight: s.weight.to_string(),
            });
        }
    }
    Ok(targets)
}

/// Where each shard goes, as the plan is being made.
struct Placement<'a> {
    place: BTreeMap<ShardNo, IslandId>,
    weight_of: BTreeMap<ShardNo, f64>,
    /// The islands that may receive shards (not decommissioned), never empty.
    targets: &'a [IslandId],
}

impl Placement<'_> {
    /// Total weight and number of shards placed on `island`.
    fn load(&self, island: IslandId) -> (f64, usize) {
        self.place
            .iter()
            .filter(|(_, i)| **i == island)
            .fold((0.0, 0), |(w, n), (s, _)| (w + self.weight_of[s], n + 1))
    }

    /// The target with the least weight (then the fewest shards).
    fn lightest(&self) -> IslandId {
        let mut best = self.targets[0];
        let mut best_load = self.load(best);
        for &t in &self.targets[1..] {
            let l = self.load(t);
            if l.0 < best_load.0 || (l.0 == best_load.0 && l.1 < best_load.1) {
                best = t;
                best_load = l;
            }
        }
        best
    }

    /// Phase 1: every shard of a decommissioned island goes to the lightest target.
    fn drain(&mut self, shards: &[ShardLoad], decommission: &[IslandId]) {
        for s in shards {
            if decommission.contains(&self.place[&s.shard]) {
                let to = self.lightest();
                self.place.insert(s.shard, to);
            }
        }
    }

    /// Phase 2: equalise weight among the targets: move the heaviest shard that narrows the gap
    /// between the heaviest and the lightest island, until none does.
    fn equalise(&mut self, shards: &[ShardLoad], empty_below: f64) {
        let movable = |s: &ShardLoad| s.shard != ShardNo::GLOBAL && s.weight > empty_below;
        for _ in 0..shards.len() * self.targets.len() + 1 {
            let by_weight =
                |a: &IslandId, b: &IslandId| self.load(*a).0.total_cmp(&self.load(*b).0);
            let (Some(&heavy), Some(&light)) = (
                self.targets.iter().max_by(|a, b| by_weight(a, b)),
                self.targets.iter().min_by(|a, b| by_weight(a, b)),
            ) else {
                break;
            };
            let gap = self.load(heavy).0 - self.load(light).0;
            // Moving w lowers the larger of the two loads only when w < gap.
            let candidate = shards
                .iter()
                .filter(|s| self.place[&s.shard] == heavy && movable(s) && s.weight < gap)
                .max_by(|a, b| a.weight.total_cmp(&b.weight).then(b.shard.cmp(&a.shard)));
            match candidate {
                Some(s) => {
                    self.place.insert(s.shard, light);
                }
                None => break,
            }
        }
    }

    /// Phase 3: spread empty shards by count, until no two targets differ by more than one.
    fn spread_empty(&mut self, shards: &[ShardLoad], empty_below: f64) {
        let weight_of = self.weight_of.clone();
        let is_empty = |s: &ShardNo| *s != ShardNo::GLOBAL && weight_of[s] <= empty_below;
        for _ in 0..shards.len() + 1 {
            let count = |i: IslandId| {
                self.place
                    .iter()
                    .filter(|(s, p)| **p == i && is_empty(s))
                    .count()
            };
            let (Some(&most), Some(&least)) = (
                self.targets
                    .iter()
                    .max_by_key(|i| (count(**i), std::cmp::Reverse(i.0))),
                self.targets.iter().min_by_key(|i| (count(**i), i.0)),
            ) else {
                break;
            };
            if count(most) <= count(least) + 1 {
                break;
            }
            // Prefer a shard that has not moved yet, then the highest number (stable plans).
            let pick = self
                .place
                .iter()
                .filter(|(s, p)| **p == most && is_empty(s))
                .map(|(s, _)| *s)
                .max_by_key(|s| (shards.iter().any(|x| x.shard == *s && x.island == most), *s));
            match pick {
                Some(s) => {
                    self.place.insert(s, least);
                }
                None => break,
            }
        }
    }
}

fn loads(input: &RebalanceInput, shards: &[ShardLoad]) -> Vec<IslandLoad> {
    input
        .islands
        .iter()
        .map(|&i| IslandLoad {
            island: i,
            weight: shards
                .iter()
                .filter(|s| s.island == i)
                .map(|s| s.weight)
                .sum(),
            shards: shards.iter().filter(|s| s.island == i).count(),
            decommissioned: input.decommission.contains(&i),
        })
        .collect()
}

#[cfg(test)]
#[path = "rebalance_tests.rs"]
mod tests;
