//! App-side ID generation through `Cluster::try_new_id` with a leased node id against a
//! fixed one, in the same run: what the lease check (the packed node id and monotonic
//! deadline, the wall deadline, a coarse monotonic clock read) costs per ID. Brings up its own sandbox (one island).
//!
//! ```sh
//! cargo bench -p atoll-client --bench lease_ids
//! ```

use anyhow::{ensure, Result};
use atoll_client::{Cluster, ClusterOptions, IdNode, ShardNo};
use atoll_testkit::TestCluster;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// IDs per sample: 500 per shard over all 10 000 shards, well inside the 3 100 a generator
/// may hand out per shard ahead of its clock. Each sample uses fresh clusters.
const IDS: u64 = 5_000_000;
const SAMPLES: usize = 7;

fn time_ids(cluster: &Cluster) -> Result<Duration> {
    let start = Instant::now();
    for i in 0..IDS {
        let shard = ShardNo::new((i % 10_000) as i64)?;
        black_box(cluster.try_new_id(shard)?);
    }
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let tc = rt.block_on(TestCluster::new(1, 0))?;
    let config = tc.config().clone();
    let connect = |id_node: IdNode| {
        let options = ClusterOptions {
            id_node,
            ..Default::default()
        };
        rt.block_on(Cluster::connect(config.clone(), options))
    };
    let (mut fixed, mut leased) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        // Alternating, so drift on the shared machine hits both alike.
        let f = connect(IdNode::Fixed(999))?;
        fixed.push(time_ids(&f)?);
        let l = connect(IdNode::lease())?;
        ensure!(l.id_lease().and_then(|s| s.node).is_some());
        leased.push(time_ids(&l)?);
        rt.block_on(l.close());
    }
    let per_id = |d: Duration| d.as_nanos() as f64 / IDS as f64;
    let (f, l) = (per_id(median(fixed)), per_id(median(leased)));
    println!("try_new_id, {IDS} IDs per sample over 10 000 shards, median of {SAMPLES}:");
    println!("  fixed node id : {f:.1} ns/ID ({:.1} M IDs/s)", 1e3 / f);
    println!("  leased node id: {l:.1} ns/ID ({:.1} M IDs/s)", 1e3 / l);
    println!("  leased / fixed: {:.2}", l / f);
    Ok(())
}
