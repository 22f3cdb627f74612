//! Pure hot paths (no database): app-side ID generation, `Cluster::shard_for_id`, key routing.
//!
//! `cargo bench -p atoll-client --bench client_pure`
//!
//! The cluster for `shard_for_id` points at a closed port: routing by ID needs no node.

use atoll_client::{Cluster, ClusterOptions, IdGenerator, IdNode, KeyRouter, ShardNo};
use atoll_core::{Config, ConfigSource, Id};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Instant;

/// A new generator (a new process, in effect) every 10 M IDs: 1 000 per shard, well inside
/// the 3 100 a generator may hand out per shard ahead of its clock, so a long benchmark
/// never hits the lead limit. Creating one costs ~10 µs, counted in the time.
const FRESH_EVERY: u64 = 10_000_000;

fn id_generation(c: &mut Criterion) {
    let mut g = c.benchmark_group("app_id_generation");
    g.throughput(Throughput::Elements(1));
    // By the system clock, round-robin over all 10 000 shards.
    g.bench_function("next_system_clock_10000_shards", |b| {
        b.iter_custom(|iters| {
            let mut gen = IdGenerator::new(1, 1).unwrap();
            let start = Instant::now();
            for i in 0..iters {
                if i % FRESH_EVERY == FRESH_EVERY - 1 {
                    gen = IdGenerator::new(1, 1).unwrap();
                }
                let shard = ShardNo::new((i % 10_000) as i64).unwrap();
                black_box(gen.next(shard).unwrap());
            }
            start.elapsed()
        })
    });
    // The generator's own cost, at a fixed clock reading.
    g.bench_function("next_at_fixed_clock_10000_shards", |b| {
        b.iter_custom(|iters| {
            let mut gen = IdGenerator::new(1, 1).unwrap();
            let now = 1_763_700_000_000;
            let start = Instant::now();
            for i in 0..iters {
                if i % FRESH_EVERY == FRESH_EVERY - 1 {
                    gen = IdGenerator::new(1, 1).unwrap();
                }
                let shard = ShardNo::new((i % 10_000) as i64).unwrap();
                black_box(gen.next_at(shard, now).unwrap());
            }
            start.elapsed()
        })
    });
    // What an application calls: `Cluster::try_new_id` (coarse clock, through the handle).
    g.bench_function("cluster_try_new_id_10000_shards", |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let options = ClusterOptions {
            id_node: IdNode::Fixed(1),
            ..Default::default()
        };
        let connect = || {
            rt.block_on(Cluster::connect(unreachable(), options.clone()))
                .unwrap()
        };
        b.iter_custom(|iters| {
            let mut cluster = connect();
            let mut elapsed = std::time::Duration::ZERO;
            let mut start = Instant::now();
            for i in 0..iters {
                if i % FRESH_EVERY == FRESH_EVERY - 1 {
                    // A new process, in effect; connecting is not part of generating IDs.
                    elapsed += start.elapsed();
                    cluster = connect();
                    start = Instant::now();
                }
                let shard = ShardNo::new((i % 10_000) as i64).unwrap();
                black_box(cluster.try_new_id(shard).unwrap());
            }
            elapsed + start.elapsed()
        })
    });
    g.finish();
}

/// A cluster config whose only node refuses connections: routing and IDs need no node.
fn unreachable() -> Config {
    Config::parse(
        "[cluster]\nname = \"bench\"\n[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 1, user = \"u\", database = \"d\" }]\n",
        ConfigSource::Inline,
    )
    .unwrap()
}

fn routing(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = rt
        .block_on(Cluster::connect(unreachable(), ClusterOptions::default()))
        .unwrap();
    let ids: Vec<i64> = (0..1024)
        .map(|i| {
            Id::new(1, ShardNo::new(i % 10_000).unwrap(), i * 7)
                .unwrap()
                .get()
        })
        .collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("cluster_shard_for_id", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(cluster.shard_for_id(black_box(ids[i])).unwrap());
        })
    });
    let router = KeyRouter::new((1..=64).map(|n| ShardNo::new(n).unwrap()).collect()).unwrap();
    let keys: Vec<String> = (0..1024).map(|i| format!("user-{i}@example.com")).collect();
    g.bench_function("key_router_string_64_shards", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(router.shard_for(black_box(keys[i].as_str())));
        })
    });
    g.finish();
    drop(cluster);
}

criterion_group!(benches, id_generation, routing);
criterion_main!(benches);
