//! `atoll serve` over a real sandbox of `--shards` shards (default 1000) on 2 islands: the
//! latency of a `/metrics` scrape and of `/api/v1/overview` over loopback HTTP (`--rounds`,
//! default 50, each), and the time from a shard's state change committed on its island to
//! the console's event stream carrying it (`--changes`, default 20: the shard's `active`
//! flag flipped on its master, timed until an `overview` event shows the tile's new state).
//! Anchor in the same run: a `select 1` round trip to a master.
//!
//! ```sh
//! cargo bench -p atoll-serve --bench live -- --shards 1000
//! ```

use atoll_core::{IslandId, ShardNo};
use atoll_serve::{start, ServeConfig};
use atoll_testkit::TestCluster;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn p(sorted: &mut [f64], q: f64) -> f64 {
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

async fn timed_get(client: &reqwest::Client, url: &str) -> anyhow::Result<f64> {
    let t = Instant::now();
    let r = client.get(url).send().await?;
    anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
    r.bytes().await?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

/// The tile state of `shard` in an overview event's JSON.
fn tile_state(data: &str, shard: u16) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    v["islands"].as_array()?.iter().find_map(|i| {
        i["tiles"].as_array()?.iter().find_map(|t| {
            (t[0].as_u64()? == u64::from(shard)).then(|| t[2].as_str().map(str::to_string))?
        })
    })
}

/// Reads the event stream until an overview shows `shard` in `state`.
async fn wait_for(
    stream: &mut reqwest::Response,
    buf: &mut String,
    shard: u16,
    state: &str,
) -> anyhow::Result<()> {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let data: String = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if tile_state(&data, shard).as_deref() == Some(state) {
                return Ok(());
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await??
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))?;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let shards = arg("--shards", 1000).clamp(2, 9999) as i64;
    let rounds = arg("--rounds", 50).max(1);
    let changes = arg("--changes", 20).max(1);
    let t = Instant::now();
    let tc = TestCluster::setup(2, 0).shards(1..=shards).start().await?;
    eprintln!(
        "sandbox with {shards} shards in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let handle = start(ServeConfig::new(
        "127.0.0.1:0".parse()?,
        tc.config().clone(),
    ))
    .await?;
    let base = format!("http://{}", handle.addr);
    let client = reqwest::Client::new();
    let master = tc.master(IslandId(0)).await?;
    let (mut scrape, mut overview, mut anchor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        scrape.push(timed_get(&client, &format!("{base}/metrics")).await?);
        overview.push(timed_get(&client, &format!("{base}/api/v1/overview")).await?);
        let t = Instant::now();
        master.simple_query("select 1").await?;
        anchor.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let snap = tc.discover().await;
    let on0: Vec<ShardNo> = snap
        .active_shards()
        .filter(|(_, i)| *i == IslandId(0))
        .map(|(s, _)| s)
        .collect();
    let mut stream = client.get(format!("{base}/api/v1/events")).send().await?;
    let mut buf = String::new();
    let mut seen = Vec::new();
    for k in 0..changes {
        let shard = on0[k % on0.len()];
        for (active, state) in [(false, "inactive"), (true, "active")] {
            let t = Instant::now();
            master
                .execute(
                    "update atoll.shards set active = $1 where shard = $2",
                    &[&active, &i32::from(shard.get())],
                )
                .await?;
            wait_for(&mut stream, &mut buf, shard.get(), state).await?;
            seen.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    println!(
        "{shards} shards, 2 islands: /metrics p50 {:.2} ms p99 {:.2} ms; /api/v1/overview p50 {:.2} ms p99 {:.2} ms; change committed -> event on the page's stream p50 {:.0} ms p99 {:.0} ms max {:.0} ms ({} changes); anchor select 1 p50 {:.3} ms",
        p(&mut scrape, 0.5),
        p(&mut scrape, 0.99),
        p(&mut overview, 0.5),
        p(&mut overview, 0.99),
        p(&mut seen, 0.5),
        p(&mut seen, 0.99),
        p(&mut seen, 1.0),
        seen.len(),
        p(&mut anchor, 0.5),
    );
    handle.shutdown().await;
    Ok(())
}
