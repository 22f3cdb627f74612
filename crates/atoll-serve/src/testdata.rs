//! Snapshots for the unit tests: one island (a master `m:1` and a replica `r:2`, 1000
//! bytes behind) carrying shards 1..=n of 1000 bytes each, all active.

use crate::view::now_unix_ms;
use atoll_core::{
    IslandCatalog, IslandId, Lsn, NodeFacts, NodeObservation, ShardNo, ShardObservation, Snapshot,
};

fn node(addr: &str, in_recovery: bool, lsn: u64) -> NodeObservation {
    NodeObservation {
        island: IslandId(0),
        addr: addr.into(),
        outcome: Ok(NodeFacts {
            in_recovery,
            server_version: "150000".into(),
            lsn: Lsn(lsn),
            replay_lag_seconds: Some(if in_recovery { 0.5 } else { 0.0 }),
        }),
    }
}

/// The snapshot described above.
pub fn snapshot(n: i64) -> Snapshot {
    let shards = (1..=n)
        .filter_map(|n| ShardNo::new(n).ok())
        .map(|shard| ShardObservation {
            shard,
            schema_exists: true,
            active: true,
            size_bytes: Some(1000),
            gen: 1,
            rows_estimate: None,
            weight: None,
        })
        .collect();
    let catalog = IslandCatalog {
        cluster_id: Some("c".into()),
        catalog_island: Some(IslandId(0)),
        shards,
        global_copy: None,
    };
    let nodes = vec![node("m:1", false, 5000), node("r:2", true, 4000)];
    Snapshot::build(now_unix_ms(), vec![(IslandId(0), nodes, Some(catalog))])
}
