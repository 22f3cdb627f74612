//! The immutable picture of a cluster that discovery produces: islands, node roles, WAL
//! positions, and where each microshard lives. Readers hold an `Arc<Snapshot>`; a new one
//! replaces it whole (docs/architecture.md, principle 3).
//!
//! [`Snapshot::build`] turns raw observations into a snapshot. It is pure, so every
//! judgement (who is master, which island owns a shard, what is inconsistent) is unit-tested.

use crate::island::IslandId;
use crate::shard::ShardNo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

mod lsn;
mod notice;
pub use lsn::Lsn;
pub use notice::{NoticeCounts, NoticeLog, NoticeOutcome};

/// A node's place in its island's streaming replication, from `pg_is_in_recovery()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Not in recovery: the node that takes writes.
    Master,
    /// In recovery: a streaming replica of the island's master, read-only.
    Replica,
}

/// What discovery read from one node, or why it could not.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeObservation {
    /// The configured island the node belongs to.
    pub island: IslandId,
    /// `host:port`.
    pub addr: String,
    /// What the node reported, or the error text when it could not be connected to or queried.
    pub outcome: Result<NodeFacts, String>,
}

/// What a reachable node reported about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    /// `pg_is_in_recovery()`: true on a replica, false on a master.
    pub in_recovery: bool,
    /// The PostgreSQL version number (`server_version`, e.g. `16.2`).
    pub server_version: String,
    /// Current WAL position on a master; replayed position on a replica.
    pub lsn: Lsn,
    /// Replicas: seconds since the last replayed transaction, 0 when fully replayed.
    pub replay_lag_seconds: Option<f64>,
}

/// What an island's master says about one shard schema or registry entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardObservation {
    /// The shard whose schema or registry row this is.
    pub shard: ShardNo,
    /// Whether the `shNNNN` schema exists on the master; false for a registry row without a schema.
    pub schema_exists: bool,
    /// The registry row's flag; false when the schema has no row (a copied schema).
    pub active: bool,
    /// On-disk size of the schema's tables, indexes, materialised views and TOAST, in bytes; `None`
    /// when discovery was asked not to measure sizes.
    pub size_bytes: Option<u64>,
    /// The registry row's generation ([`crate::ShardNotice::gen`]); 0 without a row or on a
    /// catalog older than step 6.
    pub gen: u64,
    /// The planner's estimate of the rows in the schema's tables (`reltuples`), measured
    /// with the sizes; `None` when sizes were not measured or never analysed.
    pub rows_estimate: Option<u64>,
    /// The registry row's rebalancing weight; `None` means "use the size".
    pub weight: Option<f64>,
}

/// What an island's master says about the catalog and its shards; `None` when the master
/// could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct IslandCatalog {
    /// `None` when `atoll init` has not run there.
    pub cluster_id: Option<String>,
    /// The island id recorded in the master's catalog (`atoll.meta`); `None` when the catalog is
    /// missing or records none. Compared with the config's island to catch a misdirected address.
    pub catalog_island: Option<IslandId>,
    /// Every shard schema and every registry row found on the master.
    pub shards: Vec<ShardObservation>,
    /// The master holds a ready read-only copy of shard 0's tables (catalog step 12; that
    /// `sh0000` is not among `shards`) following this island's master.
    pub global_copy: Option<IslandId>,
}

/// One configured node as the snapshot sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeState {
    /// `host:port`, as configured.
    pub addr: String,
    /// Master or replica; `None` when the node could not be read.
    pub role: Option<NodeRole>,
    /// The PostgreSQL version number; `None` when the node could not be read.
    pub server_version: Option<String>,
    /// Current WAL position on a master, replayed position on a replica; `None` when the node could
    /// not be read.
    pub lsn: Option<Lsn>,
    /// Bytes of WAL this node is behind the island's master: 0 on a master; `None` when the node or
    /// the master could not be read.
    pub lag_bytes: Option<u64>,
    /// Seconds since the last replayed transaction, 0 when fully replayed or on a master; `None`
    /// when the node could not be read or PostgreSQL did not say.
    pub lag_seconds: Option<f64>,
    /// Why the node could not be read; the node is then left out of routing.
    pub error: Option<String>,
}

/// One configured island as the snapshot sees it: its nodes, its master and its catalog.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotIsland {
    /// The island's id from the config.
    pub id: IslandId,
    /// Index into `nodes`.
    pub master: Option<usize>,
    /// Every configured node of the island, in config order, reachable or not.
    pub nodes: Vec<NodeState>,
    /// The cluster id in the master's catalog; `None` when the master could not be read or `atoll
    /// init` has not run there.
    pub cluster_id: Option<String>,
    /// False when the master could not be read: its shards are unknown, not absent.
    pub shards_known: bool,
    /// Its master holds a ready read-only copy of shard 0's tables (`atoll global`),
    /// following this island's master: usable while shard 0 is active there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_copy: Option<IslandId>,
}

impl SnapshotIsland {
    /// The island's master; `None` when no node, or more than one, claims to be master.
    pub fn master(&self) -> Option<&NodeState> {
        self.master.and_then(|i| self.nodes.get(i))
    }
    /// The reachable replicas of the island.
    pub fn replicas(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes
            .iter()
            .filter(|n| n.role == Some(NodeRole::Replica) && n.error.is_none())
    }
}

/// One schema of a shard on one island: a shard being moved has a copy on two islands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardCopy {
    /// The island whose master holds the schema.
    pub island: IslandId,
    /// The registry row's flag there; false for a copy without a registry row.
    pub active: bool,
    /// On-disk size of the schema in bytes; `None` when sizes were not measured.
    pub size_bytes: Option<u64>,
    /// The registry row's generation ([`crate::ShardNotice::gen`]) as last read or
    /// announced; 0 without a row.
    pub gen: u64,
    /// The planner's estimate of the schema's rows, when sizes were measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_estimate: Option<u64>,
    /// The registry row's rebalancing weight (`None`: by size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<f64>,
}

/// Something discovery found wrong. `status` prints these; none stops discovery.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SnapshotProblem {
    /// A shard is active on more than one island; routing to it is refused.
    DuplicateActive {
        /// The shard in conflict.
        shard: ShardNo,
        /// Every island where it is active.
        islands: Vec<IslandId>,
    },
    /// No reachable node of the island is master: its shards cannot be written.
    NoMaster {
        /// The island without a master.
        island: IslandId,
    },
    /// More than one node of the island is master (split brain?); no master is picked.
    MultipleMasters {
        /// The island with several masters.
        island: IslandId,
        /// `host:port` of each node that claims to be master.
        nodes: Vec<String>,
    },
    /// A configured node could not be connected to or queried; it is left out of routing.
    NodeDown {
        /// The node's island.
        island: IslandId,
        /// `host:port` of the node.
        addr: String,
        /// Why it could not be read.
        error: String,
    },
    /// The island's master has no atoll catalog: `atoll init` has not run there.
    NotInitialized {
        /// The island without a catalog.
        island: IslandId,
    },
    /// The island's catalog names another cluster than the first initialised island's.
    ClusterIdMismatch {
        /// The island whose cluster id differs.
        island: IslandId,
        /// The cluster id in its catalog.
        cluster_id: String,
        /// The cluster id of the first initialised island.
        expected: String,
    },
    /// The config's address for an island reaches a master whose catalog records another island.
    IslandMismatch {
        /// The island as the config names it.
        island: IslandId,
        /// The island the master's catalog records.
        catalog_says: IslandId,
    },
    /// The registry marks a shard active on an island whose master has no schema for it.
    RegistryWithoutSchema {
        /// The registered shard.
        shard: ShardNo,
        /// The island whose registry row has no schema.
        island: IslandId,
    },
}

impl fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SnapshotProblem::*;
        match self {
            DuplicateActive { shard, islands } => {
                let list: Vec<String> = islands.iter().map(|i| format!("island {i}")).collect();
                write!(f, "{shard} is active on more than one island: {}", list.join(" and "))
            }
            NoMaster { island } => write!(f, "island {island} has no reachable master"),
            MultipleMasters { island, nodes } => write!(
                f,
                "island {island} has more than one master: {} (split brain?)",
                nodes.join(", ")
            ),
            NodeDown { island, addr, error } => {
                write!(f, "island {island} node {addr} is unreachable: {error}")
            }
            NotInitialized { island } => {
                write!(f, "island {island} has no atoll catalog (run `atoll init`)")
            }
            ClusterIdMismatch { island, cluster_id, expected } => write!(
                f,
                "island {island} belongs to cluster {cluster_id}, the others to {expected}"
            ),
            IslandMismatch { island, catalog_says } => write!(
                f,
                "the config's island {island} points at a master whose catalog says island {catalog_says}"
            ),
            RegistryWithoutSchema { shard, island } => write!(
                f,
                "island {island} registers {shard} but its schema is missing"
            ),
        }
    }
}

/// Why a shard cannot be routed to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The shard has no active schema on any island: it does not exist, or every copy is inactive
    /// (as during a move's switch).
    #[error("{0} is not active on any island")]
    NotActive(ShardNo),
    /// The shard is active on more than one island.
    #[error("{shard} is active on more than one island ({islands:?}); refusing to guess")]
    Conflict {
        /// The shard in conflict.
        shard: ShardNo,
        /// Every island where it is active.
        islands: Vec<IslandId>,
    },
}

/// An immutable picture of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// When the discovery round had read every node, in milliseconds since the Unix epoch.
    pub taken_at_unix_ms: u64,
    /// Every configured island, in config order.
    pub islands: Vec<SnapshotIsland>,
    /// Every shard that has a schema somewhere, with one copy per island holding it.
    pub shards: BTreeMap<ShardNo, Vec<ShardCopy>>,
    /// Everything discovery found wrong; empty in a healthy cluster.
    pub problems: Vec<SnapshotProblem>,
    /// Shard number -> the one island where it is active; `None` when absent, inactive or
    /// in conflict. A flat table so routing is one index, whatever the shard count.
    #[serde(skip)]
    active: Vec<Option<IslandId>>,
}

impl Snapshot {
    /// Builds a snapshot from what was observed on every configured island: its nodes, and
    /// (if its master could be read) its catalog.
    pub fn build(
        taken_at_unix_ms: u64,
        islands: Vec<(IslandId, Vec<NodeObservation>, Option<IslandCatalog>)>,
    ) -> Snapshot {
        let mut problems = Vec::new();
        let mut out_islands = Vec::new();
        let mut shards: BTreeMap<ShardNo, Vec<ShardCopy>> = BTreeMap::new();
        let mut expected_cluster: Option<String> = None;
        for (id, nodes, catalog) in islands {
            let island = build_island(id, nodes, catalog.as_ref(), &mut problems);
            if let Some(cat) = catalog {
                match (&cat.cluster_id, &expected_cluster) {
                    (None, _) => problems.push(SnapshotProblem::NotInitialized { island: id }),
                    (Some(c), Some(e)) if c != e => {
                        problems.push(SnapshotProblem::ClusterIdMismatch {
                            island: id,
                            cluster_id: c.clone(),
                            expected: e.clone(),
                        })
                    }
                    (Some(c), None) => expected_cluster = Some(c.clone()),
                    _ => {}
                }
                if let Some(said) = cat.catalog_island.filter(|s| *s != id) {
                    problems.push(SnapshotProblem::IslandMismatch {
                        island: id,
                        catalog_says: said,
                    });
                }
                for s in cat.shards {
                    if !s.schema_exists {
                        if s.active {
                            problems.push(SnapshotProblem::RegistryWithoutSchema {
                                shard: s.shard,
                                island: id,
                            });
                        }
                        continue;
                    }
                    shards.entry(s.shard).or_default().push(ShardCopy {
                        island: id,
                        active: s.active,
                        size_bytes: s.size_bytes,
                        gen: s.gen,
                        rows_estimate: s.rows_estimate,
                        weight: s.weight,
                    });
                }
            }
            out_islands.push(island);
        }
        let mut active = vec![None; ShardNo::MAX.get() as usize + 1];
        for (shard, copies) in &shards {
            match active_of(copies) {
                Ok(one) => active[shard.get() as usize] = one,
                Err(islands) => problems.push(SnapshotProblem::DuplicateActive {
                    shard: *shard,
                    islands,
                }),
            }
        }
        Snapshot {
            taken_at_unix_ms,
            islands: out_islands,
            shards,
            problems,
            active,
        }
    }

    /// The island where `shard` is active. O(1).
    #[inline]
    pub fn active_island(&self, shard: ShardNo) -> Result<IslandId, RouteError> {
        match self.active.get(shard.get() as usize).copied().flatten() {
            Some(i) => Ok(i),
            None => Err(self.route_error(shard)),
        }
    }

    #[cold]
    fn route_error(&self, shard: ShardNo) -> RouteError {
        let on: Vec<IslandId> = self
            .shards
            .get(&shard)
            .map(|c| c.iter().filter(|c| c.active).map(|c| c.island).collect())
            .unwrap_or_default();
        if on.len() > 1 {
            RouteError::Conflict { shard, islands: on }
        } else {
            RouteError::NotActive(shard)
        }
    }

    /// Active shards in order.
    pub fn active_shards(&self) -> impl Iterator<Item = (ShardNo, IslandId)> + '_ {
        self.active
            .iter()
            .enumerate()
            .filter_map(|(n, i)| Some((ShardNo::new(n as i64).ok()?, (*i)?)))
    }

    /// The configured island `id`; `None` when the config has no such island.
    pub fn island(&self, id: IslandId) -> Option<&SnapshotIsland> {
        self.islands.iter().find(|i| i.id == id)
    }

    /// The cluster id the islands agree on (the first initialised island's).
    pub fn cluster_id(&self) -> Option<&str> {
        self.islands.iter().find_map(|i| i.cluster_id.as_deref())
    }

    /// The newest registry generation this snapshot knows for `shard`, over all its copies
    /// (0: none). A [`crate::ShardNotice`] not above it tells nothing new.
    pub fn shard_gen(&self, shard: ShardNo) -> u64 {
        self.shards
            .get(&shard)
            .and_then(|c| c.iter().map(|c| c.gen).max())
            .unwrap_or(0)
    }
}

/// The one island where a shard's copies are active (`None`: none is), or every island
/// where one is when there are several.
fn active_of(copies: &[ShardCopy]) -> Result<Option<IslandId>, Vec<IslandId>> {
    let on: Vec<IslandId> = copies
        .iter()
        .filter(|c| c.active)
        .map(|c| c.island)
        .collect();
    match on.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(on),
    }
}

fn build_island(
    id: IslandId,
    nodes: Vec<NodeObservation>,
    catalog: Option<&IslandCatalog>,
    problems: &mut Vec<SnapshotProblem>,
) -> SnapshotIsland {
    let masters: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(&n.outcome, Ok(f) if !f.in_recovery))
        .map(|(i, _)| i)
        .collect();
    let master_lsn = masters
        .first()
        .and_then(|i| nodes[*i].outcome.as_ref().ok())
        .map(|f| f.lsn);
    match masters.len() {
        0 => problems.push(SnapshotProblem::NoMaster { island: id }),
        1 => {}
        _ => problems.push(SnapshotProblem::MultipleMasters {
            island: id,
            nodes: masters.iter().map(|i| nodes[*i].addr.clone()).collect(),
        }),
    }
    let states = nodes
        .into_iter()
        .map(|n| match n.outcome {
            Ok(f) => NodeState {
                role: Some(if f.in_recovery {
                    NodeRole::Replica
                } else {
                    NodeRole::Master
                }),
                lag_bytes: match (f.in_recovery, master_lsn) {
                    (true, Some(m)) => Some(m.0.saturating_sub(f.lsn.0)),
                    (false, _) => Some(0),
                    _ => None,
                },
                lag_seconds: if f.in_recovery {
                    f.replay_lag_seconds
                } else {
                    Some(0.0)
                },
                server_version: Some(f.server_version),
                lsn: Some(f.lsn),
                error: None,
                addr: n.addr,
            },
            Err(e) => {
                problems.push(SnapshotProblem::NodeDown {
                    island: id,
                    addr: n.addr.clone(),
                    error: e.clone(),
                });
                NodeState {
                    addr: n.addr,
                    role: None,
                    server_version: None,
                    lsn: None,
                    lag_bytes: None,
                    lag_seconds: None,
                    error: Some(e),
                }
            }
        })
        .collect();
    SnapshotIsland {
        id,
        // With two masters, routing writes anywhere would be a guess: report, pick none.
        master: if masters.len() == 1 {
            Some(masters[0])
        } else {
            None
        },
        nodes: states,
        cluster_id: catalog.and_then(|c| c.cluster_id.clone()),
        global_copy: catalog.and_then(|c| c.global_copy),
        shards_known: catalog.is_some(),
    }
}
