//! Failover benchmark (`docs/benchmarks.md`): an island of 1 master + 2 replicas, one
//! `atoll agent` process per node (release build), `[ha]` with the given TTL (default 10 s,
//! the default of `atoll.toml`), an atoll-client writer inserting idempotently as fast as
//! it is acknowledged, and a probe asking every node every 20 ms whether it takes writes.
//! Each round kills the master's host (kill -9 of its agent, postmaster and backends),
//! measures the time to the writer's first acknowledged write after the kill (on the new
//! master: the old one is dead), then restarts the dead node's agent, which rejoins it as
//! a replica, before the next round. At the end: p50/p99 of that time, the promotions'
//! own figures from etcd, acknowledged writes lost (must be 0 in synchronous mode), and
//! probe rounds with two writable masters (must be 0).
//!
//! `cargo bench -p atoll-cli --bench failover -- [--failovers 10] [--ttl 10] [--synchronous]`

use atoll_agent::ha::read_status;
use atoll_sandbox::SandboxHa;
use atoll_testkit::agent::AgentProcess;
use atoll_testkit::failover::{island_follows, signal_server, WritableProbe};
use atoll_testkit::{shard, writer, TestCluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    failovers: usize,
    ttl: u64,
    synchronous: bool,
}

fn args() -> Args {
    let mut a = Args {
        failovers: 10,
        ttl: 10,
        synchronous: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        match f.as_str() {
            "--failovers" => {
                a.failovers = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--failovers N")
            }
            "--ttl" => a.ttl = it.next().and_then(|v| v.parse().ok()).expect("--ttl S"),
            "--synchronous" => a.synchronous = true,
            // cargo bench passes --bench.
            _ => {}
        }
    }
    a
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn leader(c: &TestCluster) -> Option<String> {
    read_status(c.config())
        .await
        .ok()??
        .remove(0)
        .leader
        .map(|l| l.node)
}

async fn wait_leader(c: &TestCluster, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(l) = leader(c).await.filter(|l| ok(l)) {
            return l;
        }
        assert!(Instant::now() < deadline, "no new leader within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where the lost rows were acknowledged: per round, how many, and their acknowledgement
/// times relative to that round's kill (negative: before it).
fn lost_by_round(stats: &writer::WriterStats, kills: &[Instant], lost: &[i64]) {
    let at: std::collections::HashMap<i64, Instant> = stats
        .acked
        .iter()
        .copied()
        .zip(stats.acked_at.iter().copied())
        .collect();
    for (round, k) in kills.iter().enumerate() {
        let next = kills.get(round + 1);
        let offsets: Vec<f64> = lost
            .iter()
            .filter_map(|p| at.get(p))
            .filter(|t| {
                let after_prev = round == 0 || **t >= kills[round - 1] + Duration::from_secs(5);
                let before_next = next.is_none_or(|n| **t < *n - Duration::from_secs(5));
                after_prev && before_next
            })
            .map(|t| {
                if *t >= *k {
                    (*t - *k).as_secs_f64()
                } else {
                    -(*k - *t).as_secs_f64()
                }
            })
            .collect();
        if !offsets.is_empty() {
            let lo = offsets.iter().copied().fold(f64::MAX, f64::min);
            let hi = offsets.iter().copied().fold(f64::MIN, f64::max);
            println!(
                "round {round}: {} acknowledged rows lost, acknowledged {lo:.3} s .. {hi:.3} s from the kill",
                offsets.len()
            );
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let mut c = TestCluster::setup(1, 2).shards([1]).start().await.unwrap();
    let island = c.sandbox().islands()[0].clone();
    let ports: Vec<u16> = island.nodes.iter().map(|n| n.port).collect();
    c.psql(ports[0], "create table sh0001.items (id bigint primary key default sh0001.id_gen(), payload bigint not null unique)");
    c.sandbox()
        .enable_ha(SandboxHa {
            ttl_s: a.ttl,
            loop_ms: None,
            synchronous: a.synchronous,
        })
        .unwrap();
    c.reload_config().unwrap();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_atoll"));
    let states = c.sandbox().dir().join("agents");
    std::fs::create_dir_all(&states).unwrap();
    let mut agents: Vec<AgentProcess> = island
        .nodes
        .iter()
        .map(|n| {
            let node = format!("127.0.0.1:{}", n.port);
            AgentProcess::start(
                &bin,
                &c.config_path(),
                &node,
                &states.join(n.port.to_string()),
                &n.data_dir,
            )
            .unwrap()
        })
        .collect();
    let first = wait_leader(&c, |_| true).await;
    island_follows(&ports, &first).await;
    let probe = WritableProbe::start(ports.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer::run_idempotent(
        c.config().clone(),
        shard(1),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut kills = Vec::new();
    let mut records = Vec::new();
    for round in 0..a.failovers {
        let old = wait_leader(&c, |_| true).await;
        let i = ports
            .iter()
            .position(|p| format!("127.0.0.1:{p}") == old)
            .unwrap();
        agents[i].kill9();
        signal_server(&island.nodes[i].data_dir, libc::SIGKILL);
        // Counted from the server's kill: until then its writes still succeed.
        let killed = Instant::now();
        kills.push(killed);
        let new = wait_leader(&c, |l| l != old).await;
        let took = killed.elapsed();
        // The winner records the failover once its promotion is done.
        let mut rec = None;
        for _ in 0..100 {
            rec = read_status(c.config())
                .await
                .ok()
                .flatten()
                .and_then(|mut s| s.remove(0).last_failover)
                .filter(|f| f.to == new);
            if rec.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("failover {round}: {old} -> {new}, leader after {took:?}, {rec:?}");
        records.push(rec);
        // The dead node comes back and rejoins before the next round.
        agents[i].restart().unwrap();
        island_follows(&ports, &new).await;
    }
    stop.store(true, Ordering::Relaxed);
    let stats = w.await.unwrap();
    let (two, rounds) = probe.finish().await;
    let audit = writer::audit(c.config(), shard(1), &stats.acked)
        .await
        .unwrap();
    // A write started after the kill can only be acknowledged by the new master.
    let mut to_ack: Vec<f64> = kills
        .iter()
        .filter_map(|k| {
            stats
                .attempts
                .iter()
                .find(|t| t.started > *k && t.outcome.is_ok())
                .map(|t| (t.ended - *k).as_secs_f64())
        })
        .collect();
    lost_by_round(&stats, &kills, &audit.lost);
    to_ack.sort_by(|x, y| x.total_cmp(y));
    let lags: Vec<u64> = records.iter().flatten().map(|r| r.lag_bytes).collect();
    println!(
        "failover ({} mode, TTL {} s, {} failovers): kill -9 -> first acknowledged write p50 {:.2} s, p99 {:.2} s, min {:.2} s, max {:.2} s; target p50 <= {} s",
        if a.synchronous { "synchronous" } else { "asynchronous" },
        a.ttl,
        to_ack.len(),
        pct(&to_ack, 0.5),
        pct(&to_ack, 0.99),
        to_ack[0],
        to_ack[to_ack.len() - 1],
        a.ttl + 2
    );
    println!(
        "writer: {} acknowledged, {} errors, {} lost, {} duplicated; lag at promotion (bytes): {lags:?}; probe: {two} of {rounds} rounds with two writable masters",
        stats.acked.len(),
        stats.errors.len(),
        audit.lost.len(),
        audit.duplicated.len()
    );
    drop(agents);
}
