//! What a scrape of `/metrics` and a read of `/api/v1/snapshot` cost at 10,000 shards, in
//! process (no network, no database): a snapshot of 4 islands (a master and a replica each)
//! carrying 10,000 shards, rendered `--rounds` times (default 200).
//!
//! ```sh
//! cargo bench -p atoll-serve --bench scrape
//! ```

use atoll_client::ClientStats;
use atoll_core::{
    IslandCatalog, IslandId, Lsn, NodeFacts, NodeObservation, ShardNo, ShardObservation, Snapshot,
};
use atoll_serve::{render_metrics, CatalogView};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn node(island: u16, port: u16, in_recovery: bool) -> NodeObservation {
    NodeObservation {
        island: IslandId(island),
        addr: format!("10.0.{island}.1:{port}"),
        outcome: Ok(NodeFacts {
            in_recovery,
            server_version: "150000".into(),
            lsn: Lsn(1 << 30),
            replay_lag_seconds: Some(0.0),
        }),
    }
}

fn snapshot(shards: i64, islands: u16) -> Snapshot {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let obs = (0..islands)
        .map(|i| {
            let mine = (0..shards)
                .filter(|n| n % i64::from(islands) == i64::from(i))
                .map(|n| ShardObservation {
                    shard: ShardNo::new(n).unwrap(),
                    schema_exists: true,
                    active: true,
                    size_bytes: Some(8 << 20),
                    gen: 1,
                    rows_estimate: None,
                    weight: None,
                })
                .collect();
            let catalog = IslandCatalog {
                cluster_id: Some("bench".into()),
                catalog_island: Some(IslandId(0)),
                shards: mine,
                global_copy: None,
            };
            (
                IslandId(i),
                vec![node(i, 5432, false), node(i, 5433, true)],
                Some(catalog),
            )
        })
        .collect();
    Snapshot::build(now, obs)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let s = snapshot(10_000, 4);
    let catalog = CatalogView::default();
    let stats = ClientStats::default();
    let mut scrape = Vec::new();
    let mut json = Vec::new();
    let mut bytes = (0, 0);
    for _ in 0..rounds {
        let t = Instant::now();
        let text = render_metrics(&s, &catalog, &stats);
        scrape.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let body = serde_json::to_vec(&s).unwrap();
        json.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = (text.len(), body.len());
    }
    scrape.sort_by(f64::total_cmp);
    json.sort_by(f64::total_cmp);
    println!(
        "10,000 shards, 4 islands x 2 nodes, {rounds} rounds: /metrics p50 {:.3} ms, p99 {:.3} ms ({} bytes); /api/v1/snapshot JSON p50 {:.2} ms, p99 {:.2} ms ({} bytes)",
        percentile(&scrape, 0.5),
        percentile(&scrape, 0.99),
        bytes.0,
        percentile(&json, 0.5),
        percentile(&json, 0.99),
        bytes.1
    );
}
