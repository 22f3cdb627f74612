//! Where new microshards go: each to the island with the least total size, ties broken by
//! the fewest shards, shard 0 on island 0 unless told otherwise. Every shard planned adds
//! its expected size ([`expected_shard_bytes`]) to its island, so the shards of one request
//! fill the lighter islands up and are then spread evenly. Pure: planned from a
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
    /// The island forced for every shard is also excluded.
    #[error("island {0} is both the island asked for and excluded")]
    ForcedAndExcluded(IslandId),
    /// Every island is excluded, so a new shard has nowhere to go.
    #[error("every island is excluded, so the new shards have nowhere to go")]
    NoIslandLeft,
}

/// What a new shard is expected to weigh at least, in bytes. A new schema is empty and
/// weighs next to nothing; counting it as 0 would let the lightest island take every
/// shard of a request, so the planner counts at least this much per planned shard.
pub const MIN_EXPECTED_SHARD_BYTES: u64 = 1 << 20;

/// The size a new microshard is expected to grow to: the mean measured size of the existing
/// microshards (shard 0 left out: it holds the global tables, it is no sample of a
/// microshard), at least [`MIN_EXPECTED_SHARD_BYTES`]. The mean, not the median: new shards
/// receive data like the existing ones on average, so counting each at the mean keeps the
/// islands' expected totals equal; a few big tenants do not make a new shard small.
pub fn expected_shard_bytes(snapshot: &Snapshot) -> u64 {
    let (total, n) = snapshot
        .shards
        .iter()
        .filter(|(shard, _)| **shard != ShardNo::GLOBAL)
        .flat_map(|(_, copies)| copies.iter().filter_map(|c| c.size_bytes))
        .fold((0u128, 0u128), |(t, n), b| (t + u128::from(b), n + 1));
    let mean = total.checked_div(n).unwrap_or(0);
    u64::try_from(mean)
        .unwrap_or(u64::MAX)
        .max(MIN_EXPECTED_SHARD_BYTES)
}

/// Plans `shards` onto the islands of `snapshot`; `island` forces one island for all.
pub fn plan(
    snapshot: &Snapshot,
    shards: &[ShardNo],
    island: Option<IslandId>,
) -> Result<Vec<Placement>, AllocationError> {
    plan_excluding(snapshot, shards, island, &[])
}

/// One island's load while a plan is made: what it holds, plus what the plan put there.
struct Load {
    island: IslandId,
    bytes: u64,
    shards: usize,
    /// False for an excluded island: it keeps its load but receives nothing.
    eligible: bool,
}

/// Every island's load; each planned shard adds its expected size, so a request of many
/// shards is spread instead of piled onto the island that was lightest at its start.
struct Loads(Vec<Load>);

impl Loads {
    fn new(snapshot: &Snapshot, exclude: &[IslandId]) -> Loads {
        let mut loads: Vec<Load> = snapshot
            .islands
            .iter()
            .map(|i| Load {
                island: i.id,
                bytes: 0,
                shards: 0,
                eligible: !exclude.contains(&i.id),
            })
            .collect();
        for c in snapshot.shards.values().flatten() {
            if let Some(l) = loads.iter_mut().find(|l| l.island == c.island) {
                l.bytes = l.bytes.saturating_add(c.size_bytes.unwrap_or(0));
                l.shards += 1;
            }
        }
        Loads(loads)
    }

    /// The eligible island with the least bytes, then the fewest shards, then the lowest id.
    fn lightest(&self) -> Option<IslandId> {
        self.0
            .iter()
            .filter(|l| l.eligible)
            .min_by_key(|l| (l.bytes, l.shards, l.island))
            .map(|l| l.island)
    }

    fn is_eligible(&self, island: IslandId) -> bool {
        self.0.iter().any(|l| l.island == island && l.eligible)
    }

    fn add(&mut self, island: IslandId, bytes: u64) {
        if let Some(l) = self.0.iter_mut().find(|l| l.island == island) {
            l.bytes = l.bytes.saturating_add(bytes);
            l.shards += 1;
        }
    }
}

/// Like [`plan`], and no new shard goes to an island of `exclude` (one being emptied, say);
/// the shards that already exist there stay as they are.
pub fn plan_excluding(
    snapshot: &Snapshot,
    shards: &[ShardNo],
    island: Option<IslandId>,
    exclude: &[IslandId],
) -> Result<Vec<Placement>, AllocationError> {
    for i in island.iter().chain(exclude) {
        if snapshot.island(*i).is_none() {
            return Err(AllocationError::UnknownIsland(*i));
        }
    }
    if let Some(i) = island.filter(|i| exclude.contains(i)) {
        return Err(AllocationError::ForcedAndExcluded(i));
    }
    // Every island must be readable: a shard we cannot see might already exist there.
    if let Some(i) = snapshot.islands.iter().find(|i| !i.shards_known) {
        return Err(AllocationError::IslandUnreadable(i.id));
    }
    let expected = expected_shard_bytes(snapshot);
    let mut loads = Loads::new(snapshot, exclude);
    let mut out = Vec::with_capacity(shards.len());
    for &shard in shards {
        if let Some(existing) = existing(snapshot, shard, island)? {
            out.push(existing);
            continue;
        }
        let target = match island {
            Some(i) => i,
            None if shard == ShardNo::GLOBAL && loads.is_eligible(IslandId(0)) => IslandId(0),
            None => loads.lightest().ok_or(AllocationError::NoIslandLeft)?,
        };
        loads.add(target, expected);
        out.push(Placement::Create {
            shard,
            island: target,
        });
    }
    Ok(out)
}

/// The placement of a shard that already has a schema; `None` when it has none.
fn existing(
    snapshot: &Snapshot,
    shard: ShardNo,
    island: Option<IslandId>,
) -> Result<Option<Placement>, AllocationError> {
    let copies = snapshot
        .shards
        .get(&shard)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    match copies {
        [] => Ok(None),
        [c] => match island.filter(|w| *w != c.island) {
            Some(wanted) => Err(AllocationError::ExistsElsewhere {
                shard,
                on: c.island,
                wanted,
            }),
            None => Ok(Some(Placement::Exists {
                shard,
                island: c.island,
                active: c.active,
            })),
        },
        many => Err(AllocationError::OnSeveralIslands {
            shard,
            islands: many.iter().map(|c| c.island).collect(),
        }),
    }
}
