//! What a client process pays for a cluster's size (scripts/bench-scale, issue 16):
//! connects an atoll-client `Cluster` (which holds the discovery snapshot), then times full
//! rediscoveries the way its background refresh runs them (one `Discoverer` with kept
//! connections, no sizes) and prints the median and p99, the shards found active, and the
//! process's memory (peak and current resident set).
//!
//! ```sh
//! cargo run --release -p atoll-client --example snapshot_scale -- \
//!     --config atoll-sandbox/atoll.toml --rounds 20 [--shards N]
//! ```
//! `--shards N`: fail unless exactly N shards are active (a check that the measured
//! snapshot is the one meant).

use anyhow::{bail, Context, Result};
use atoll_client::{Cluster, ClusterOptions};
use atoll_pg::{Discoverer, DiscoveryOptions};
use std::path::PathBuf;
use std::time::Instant;

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `VmHWM` and `VmRSS` of this process, in MiB.
fn memory_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kib("VmHWM:") / 1024, kib("VmRSS:") / 1024)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let config = flag(&args, "--config").map(PathBuf::from);
    let rounds: usize = flag(&args, "--rounds").map_or(Ok(20), |r| r.parse())?;
    let want: Option<usize> = flag(&args, "--shards").map(|s| s.parse()).transpose()?;
    if rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let t = Instant::now();
    let cluster = Cluster::load(config.as_deref(), ClusterOptions::default())
        .await
        .context("connecting")?;
    let connect_ms = t.elapsed().as_secs_f64() * 1e3;
    let active = cluster.snapshot().active_shards().count();
    if let Some(n) = want {
        if active != n {
            bail!("{active} shards active, expected {n}");
        }
    }
    let options = DiscoveryOptions {
        sizes: false,
        node_timeout: cluster.options().node_timeout,
    };
    let disc = Discoverer::new((*cluster.config()).clone(), options);
    disc.discover().await; // connections opened here, kept for the timed rounds
    let mut ms = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let snap = disc.discover().await;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        if snap.active_shards().count() != active {
            bail!("the cluster changed during the benchmark");
        }
    }
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let (peak, now) = memory_mib();
    println!(
        "{active} shards: connect {connect_ms:.0} ms; rediscovery median {:.1} ms, p99 {:.1} ms ({rounds} rounds); client process RSS peak {peak} MiB, now {now} MiB",
        pct(0.5),
        pct(0.99)
    );
    cluster.close().await;
    Ok(())
}
