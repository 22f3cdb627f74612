//! Benchmark: a full rediscovery of 1,000 microshards on 2 islands x (1 master + 1 replica).
//!
//! `cargo bench -p atoll-pg --bench discovery` starts its own sandbox, allocates 1,000 active
//! shards each holding one table, then times 100 rounds of each variant and prints median
//! and p99. The baseline in the same run is the floor any discovery pays: one `select 1` to
//! every node in parallel over the same kind of kept connections.

use atoll_core::Config;
use atoll_pg::{Discoverer, DiscoveryOptions};
use atoll_testkit::TestCluster;
use std::time::{Duration, Instant};

const SHARDS: i64 = 1000;
const ROUNDS: usize = 100;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tc = TestCluster::setup(2, 1).shards(1..=SHARDS).start().await?;
        let config = tc.config().clone();
        // One table per shard, so sizes are measured over real relations.
        let all = atoll_testkit::shards(1..=SHARDS);
        tc.on_each_shard(&all, |sc| {
            format!("create table {sc}.users (id bigint primary key, name text);")
        })
        .await?;
        let clients = connect_all(&config).await;
        let baseline = time(ROUNDS, || async {
            futures::future::join_all(clients.iter().map(|c| c.simple_query("select 1"))).await;
        })
        .await;
        let routing = Discoverer::new(config.clone(), DiscoveryOptions { sizes: false, ..Default::default() });
        let sizes = Discoverer::new(config.clone(), DiscoveryOptions::default());
        let snap = routing.discover().await;
        assert_eq!(snap.active_shards().count(), SHARDS as usize, "all shards discovered");
        assert!(snap.problems.is_empty(), "{:?}", snap.problems);
        sizes.discover().await;
        let warm = time(ROUNDS, || routing.discover()).await;
        let warm_sizes = time(ROUNDS, || sizes.discover()).await;
        let cold = time(ROUNDS, || async {
            Discoverer::new(config.clone(), DiscoveryOptions { sizes: false, ..Default::default() })
                .discover()
                .await
        })
        .await;
        println!("full rediscovery, {SHARDS} shards, 2 islands x (1 master + 1 replica), {ROUNDS} rounds each");
        report("baseline: select 1 on all 4 nodes", &baseline, None);
        report("discovery, kept connections (routing)", &warm, Some(&baseline));
        report("discovery, kept connections, with sizes (status)", &warm_sizes, Some(&baseline));
        report("discovery, new connections each round", &cold, Some(&baseline));
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

async fn connect_all(config: &Config) -> Vec<tokio_postgres::Client> {
    let mut out = Vec::new();
    for n in config.islands.iter().flat_map(|i| &i.nodes) {
        if let Ok(c) = atoll_pg::connect(n).await {
            out.push(c);
        }
    }
    out
}

async fn time<F, Fut, T>(rounds: usize, mut f: F) -> Vec<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        std::hint::black_box(f().await);
        out.push(t.elapsed());
    }
    out.sort();
    out
}

fn report(name: &str, sorted: &[Duration], base: Option<&[Duration]>) {
    let median = sorted[sorted.len() / 2];
    let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
    let ratio = base
        .map(|b| {
            format!(
                "  ({:.1}x baseline median)",
                median.as_secs_f64() / b[b.len() / 2].as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "{name:<50} median {:>7.2} ms  p99 {:>7.2} ms{ratio}",
        median.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}
