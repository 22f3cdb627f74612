//! Where new microshards go: the island with the least total size, ties broken by the
//! fewest shards, shard 0 on island 0 unless told otherwise. Pure: planned from a
//! [`Snapshot`] before anything is created, so a refused request creates nothing.

use crate::island::IslandId;
use crate::shard::ShardNo;
use crate::snapshot::Snapshot;
use serde::Serialize;

/// What to do for one requested shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Placement {
    /// Create the schema on this island.
    Create {
        /// The shard to create.
        shard: ShardNo,
        /// The island whose master gets the schema.
        island: IslandId,
    },
    /// Already there: nothing to create (activation may still be wanted).
    Exists {
        /// The requested shard.
        shard: ShardNo,
        /// The island whose master already has its schema.
        island: IslandId,
        /// The registry row's flag there; false when the schema is unregistered or inactive.
        active: bool,
    },
}

impl Placement {
    /// The shard this placement is for.
    pub fn shard(&self) -> ShardNo {
        match self {
            Placement::Create { shard, .. } | Placement::Exists { shard, .. } => *shard,
        }
    }
    /// The island the shard is, or will be, on.
    pub fn island(&self) -> IslandId {
        match self {
            Placement::Create { island, .. } | Placement::Exists { island, .. } => *island,
        }
    }
}

/// Why [`plan`] refused a request; nothing is created when it does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The forced island is not in the configuration.
    #[error("island {0} is not in the configuration")]
    UnknownIsland(IslandId),
    /// An island's master could not be read, so a requested shard might already exist there unseen.
    #[error("island {0} has no reachable master, so its shards are unknown; refusing to allocate")]
    IslandUnreadable(IslandId),
    /// The shard already exists on another island than the one forced.
    #[error("{shard} already exists on island {on}; refusing to create it on island {wanted}")]
    ExistsElsewhere {
        /// The requested shard.
        shard: ShardNo,
        /// The island it already exists on.
        on: IslandId,
        /// The island that was asked for.
        wanted: IslandId,
    },
    #[error(
        "{shard} exists on several islands ({islands:?}), a move may be in progress; refusing"
    )]
    /// The shard has a schema on more than one island, as during a move.
    OnSeveralIslands {
        /// The requested shard.
        shard: ShardNo,
        /// Every island with a schema for it.
        islands: Vec<IslandId>,
    },
}

/// Plans `shards` onto the islands of `snapshot`; `island` forces one island for all.
pub fn plan(
    snapshot: &Snapshot,
    shards: &[ShardNo],
    island: Option<IslandId>,
) -> Result<Vec<Placement>, AllocationError> {
    if let Some(i) = island {
        if snapshot.island(i).is_none() {
            return Err(AllocationError::UnknownIsland(i));
        }
    }
    // Every island must be readable: a shard we cannot see might already exist there.
    if let Some(i) = snapshot.islands.iter().find(|i| !i.shards_known) {
        return Err(AllocationError::IslandUnreadable(i.id));
    }
    let mut loads: Vec<(IslandId, u64, usize)> = snapshot
        .islands
        .iter()
        .map(|i| (i.id, 0u64, 0usize))
        .collect();
    for copies in snapshot.shards.values() {
        for c in copies {
            if let Some(l) = loads.iter_mut().find(|l| l.0 == c.island) {
                l.1 += c.size_bytes.unwrap_or(0);
                l.2 += 1;
            }
        }
    }
    let mut out = Vec::with_capacity(shards.len());
    for &shard in shards {
        let copies = snapshot
            .shards
            .get(&shard)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        match copies {
            [] => {}
            [c] => {
                if let Some(wanted) = island.filter(|w| *w != c.island) {
                    return Err(AllocationError::ExistsElsewhere {
                        shard,
                        on: c.island,
                        wanted,
                    });
                }
                out.push(Placement::Exists {
                    shard,
                    island: c.island,
                    active: c.active,
                });
                continue;
            }
            many => {
                return Err(AllocationError::OnSeveralIslands {
                    shard,
                    islands: many.iter().map(|c| c.island).collect(),
                })
            }
        }
        let target = match island {
            Some(i) => i,
            None if shard == ShardNo::GLOBAL && loads.iter().any(|l| l.0 == IslandId(0)) => {
                IslandId(0)
            }
            None => match loads.iter().min_by_key(|l| (l.1, l.2, l.0)) {
                Some(l) => l.0,
                None => return Err(AllocationError::UnknownIsland(IslandId(0))),
            },
        };
        if let Some(l) = loads.iter_mut().find(|l| l.0 == target) {
            l.2 += 1;
        }
        out.push(Placement::Create {
            shard,
            island: target,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{IslandCatalog, NodeFacts, NodeObservation, ShardObservation};
    use crate::Lsn;

    /// (shard, active, size) per island.
    type IslandShards<'a> = (u16, &'a [(u16, bool, u64)]);

    fn snap(islands: &[IslandShards]) -> Snapshot {
        Snapshot::build(
            0,
            islands
                .iter()
                .map(|(id, shards)| {
                    let node = NodeObservation {
                        island: IslandId(*id),
                        addr: format!("h:{id}"),
                        outcome: Ok(NodeFacts {
                            in_recovery: false,
                            server_version: "15".into(),
                            lsn: Lsn(0),
                            replay_lag_seconds: None,
                        }),
                    };
                    let cat = IslandCatalog {
                        cluster_id: Some("c".into()),
                        catalog_island: Some(IslandId(*id)),
                        shards: shards
                            .iter()
                            .map(|(s, active, size)| ShardObservation {
                                shard: ShardNo::new(*s as i64).unwrap(),
                                schema_exists: true,
                                active: *active,
                                size_bytes: Some(*size),
                                gen: 0,
                            })
                            .collect(),
                    };
                    (IslandId(*id), vec![node], Some(cat))
                })
                .collect(),
        )
    }

    fn sh(r: std::ops::RangeInclusive<u16>) -> Vec<ShardNo> {
        r.map(|n| ShardNo::new(n as i64).unwrap()).collect()
    }

    #[test]
    fn least_size_then_fewest_shards() {
        // Island 1 is bigger, so new (empty) shards go to island 0 until counts say otherwise.
        let s = snap(&[(0, &[(1, true, 100)]), (1, &[(2, true, 5000)])]);
        let p = plan(&s, &sh(3..=5), None).unwrap();
        assert!(p.iter().all(|p| p.island() == IslandId(0)));
        // Equal sizes: spread by count.
        let s = snap(&[(0, &[]), (1, &[])]);
        let p = plan(&s, &sh(1..=4), None).unwrap();
        let on0 = p.iter().filter(|p| p.island() == IslandId(0)).count();
        assert_eq!(on0, 2);
    }

    #[test]
    fn shard_zero_goes_to_island_zero() {
        let s = snap(&[(0, &[(1, true, 10_000)]), (1, &[])]);
        let p = plan(&s, &sh(0..=0), None).unwrap();
        assert_eq!(
            p[0],
            Placement::Create {
                shard: ShardNo::GLOBAL,
                island: IslandId(0)
            }
        );
        let p = plan(&s, &sh(0..=0), Some(IslandId(1))).unwrap();
        assert_eq!(p[0].island(), IslandId(1));
    }

    #[test]
    fn existing_is_noop_and_elsewhere_is_refused() {
        let s = snap(&[(0, &[(1, false, 0)]), (1, &[])]);
        let p = plan(&s, &sh(1..=1), None).unwrap();
        assert_eq!(
            p[0],
            Placement::Exists {
                shard: sh(1..=1)[0],
                island: IslandId(0),
                active: false
            }
        );
        let e = plan(&s, &sh(1..=2), Some(IslandId(1))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sh0001 already exists on island 0; refusing to create it on island 1"
        );
        assert_eq!(
            plan(&s, &sh(1..=1), Some(IslandId(7))).unwrap_err(),
            AllocationError::UnknownIsland(IslandId(7))
        );
    }

    #[test]
    fn shard_on_two_islands_is_refused() {
        let s = snap(&[(0, &[(1, true, 0)]), (1, &[(1, false, 0)])]);
        assert!(matches!(
            plan(&s, &sh(1..=1), None),
            Err(AllocationError::OnSeveralIslands { .. })
        ));
    }
}
