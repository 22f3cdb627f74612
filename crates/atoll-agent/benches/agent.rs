//! The agent's costs, against anchors in the same run (docs/benchmarks.md):
//! - `GET /v1/attributes` latency (HTTP + the node's views + its catalog copy) next to a
//!   plain `select 1` on a kept connection to the same node, interleaved in rounds;
//! - action pickup latency: from acceptance (`created_at_ms`) to start (`started_at_ms`),
//!   for actions scheduled one after the other on an idle queue;
//! - `node.switchover` back and forth under an atoll-client writer: the window in which
//!   writes were refused (the action's `write_refusal_ms`), the writer's longest gap
//!   between acknowledged writes, its errors and an audit of every acknowledged row.
//!
//! `cargo bench -p atoll-agent --bench agent [-- --rounds N --per-round N --actions N
//! --switchovers N]`

use atoll_agent::{Agent, AgentConfig};
use atoll_testkit::{shard, writer, TestCluster};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let (rounds, per_round, actions, switchovers) = (
        arg("--rounds", 20),
        arg("--per-round", 50),
        arg("--actions", 100),
        arg("--switchovers", 6),
    );
    let c = TestCluster::setup(1, 1).shards(0..8).start().await?;
    let port = c.master_ports()[0];
    let state = std::env::temp_dir().join(format!("atoll-agent-bench-{}", std::process::id()));
    let token = state.join("token");
    std::fs::create_dir_all(&state)?;
    // Removed however the benchmark ends (an error returns early).
    let _state = RemoveOnDrop(state.clone());
    std::fs::write(&token, "bench-token")?;
    let agent = start_agent(&c, port, &state.join("master"), &token).await?;
    let url = format!("http://{}/v1/attributes", agent.addr());
    let http = reqwest::Client::new();
    let pg = atoll_pg::connect(&c.config().islands[0].nodes[0]).await?;
    for _ in 0..50 {
        http.get(&url).send().await?.bytes().await?;
        pg.simple_query("select 1").await?;
    }
    let (mut attr, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        for _ in 0..per_round {
            let t = Instant::now();
            let body = http.get(&url).send().await?.bytes().await?;
            attr.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(body.len() > 100);
        }
        for _ in 0..per_round {
            let t = Instant::now();
            pg.simple_query("select 1").await?;
            plain.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (a50, a99, p50, p99) = (
        pct(&mut attr, 0.5),
        pct(&mut attr, 0.99),
        pct(&mut plain, 0.5),
        pct(&mut plain, 0.99),
    );
    println!("attributes: p50 {a50:.3} ms, p99 {a99:.3} ms; select 1: p50 {p50:.3} ms, p99 {p99:.3} ms; ratio p50 {:.1}x, p99 {:.1}x ({} samples each)", a50 / p50, a99 / p99, attr.len());

    let post = format!("http://{}/v1/actions", agent.addr());
    let mut pickup = Vec::new();
    for i in 0..actions {
        let id = format!("bench-{i}");
        let kind = if i % 2 == 0 {
            "shard.deactivate"
        } else {
            "shard.activate"
        };
        let r: serde_json::Value = http
            .post(&post)
            .bearer_auth("bench-token")
            .json(&serde_json::json!({"id": id, "kind": kind, "args": {"shard": 1}}))
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(r["state"], "NEW", "{r}");
        let rec = finished(&http, &format!("{post}/{id}"), Duration::from_millis(2)).await?;
        assert_eq!(rec["state"], "DONE", "{rec}");
        pickup.push(
            (rec["started_at_ms"].as_i64().unwrap_or(0)
                - rec["created_at_ms"].as_i64().unwrap_or(0)) as f64,
        );
    }
    let (k50, k99, kmax) = (
        pct(&mut pickup, 0.5),
        pct(&mut pickup, 0.99),
        pct(&mut pickup, 1.0),
    );
    println!("action pickup: p50 {k50:.0} ms, p99 {k99:.0} ms, max {kmax:.0} ms ({actions} actions; ms resolution)");
    let replica = start_agent(
        &c,
        c.sandbox().islands()[0].nodes[1].port,
        &state.join("replica"),
        &token,
    )
    .await?;
    switchover_rounds(&c, [&agent, &replica], switchovers).await?;
    agent.stop().await?;
    replica.stop().await?;
    Ok(())
}

/// A directory removed when this value is dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start_agent(
    c: &TestCluster,
    port: u16,
    state: &Path,
    token: &Path,
) -> anyhow::Result<Agent> {
    let mut cfg = AgentConfig::for_node(
        c.config().clone(),
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:0".parse()?,
        state.to_path_buf(),
    )?;
    cfg.token = Some(format!("file:{}", token.display()).parse()?);
    Ok(Agent::start(cfg).await?)
}

/// `n` switchovers, each handing the master role to the other node, under a writer.
async fn switchover_rounds(c: &TestCluster, agents: [&Agent; 2], n: usize) -> anyhow::Result<()> {
    let ports = [c.master_ports()[0], c.sandbox().islands()[0].nodes[1].port];
    // Even: each batch ends on the master it began with.
    let n = n + n % 2;
    // `payload` unique: the second batch writes idempotently.
    c.psql(ports[0], "create table sh0001.items (id bigint primary key default sh0001.id_gen(), payload bigint not null unique)");
    for idempotent in [false, true] {
        let stop = Arc::new(AtomicBool::new(false));
        let config = c.config().clone();
        let w = if idempotent {
            tokio::spawn(writer::run_idempotent(config, shard(1), stop.clone()))
        } else {
            tokio::spawn(writer::run(config, shard(1), stop.clone()))
        };
        switchovers(c, agents, ports, n, idempotent, stop, w).await?;
        c.psql(ports[0], "truncate sh0001.items");
    }
    Ok(())
}

/// `n` switchovers under the writer `w`, then its audit; the master ends where it began
/// (`n` even).
async fn switchovers(
    c: &TestCluster,
    agents: [&Agent; 2],
    ports: [u16; 2],
    n: usize,
    idempotent: bool,
    stop: Arc<AtomicBool>,
    w: tokio::task::JoinHandle<writer::WriterStats>,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut refusal = Vec::new();
    for i in 0..n {
        let (from, to) = (i % 2, (i + 1) % 2);
        let post = format!("http://{}/v1/actions", agents[from].addr());
        let id = format!("so-{idempotent}-{i}");
        let body = serde_json::json!({"id": id, "kind": "node.switchover",
            "args": {"candidate": format!("127.0.0.1:{}", ports[to])}});
        http.post(&post)
            .bearer_auth("bench-token")
            .json(&body)
            .send()
            .await?;
        let rec = finished(&http, &format!("{post}/{id}"), Duration::from_millis(20)).await?;
        anyhow::ensure!(rec["state"] == "DONE", "switchover {i}: {rec}");
        refusal.push(
            rec["output"]["write_refusal_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
        );
        // The next round starts once the old master streams from the new one.
        let old = ports[from];
        atoll_testkit::wait_until(
            "the old master streams",
            Duration::from_secs(60),
            || async move {
                Ok(c.sandbox()
                    .psql(old, "select status from pg_stat_wal_receiver")
                    .ok()
                    .as_deref()
                    == Some("streaming"))
            },
        )
        .await?;
    }
    stop.store(true, Ordering::Relaxed);
    let stats = w.await?;
    writer::check_acked(c.config(), shard(1), &stats.acked).await;
    let (r50, rmax) = (pct(&mut refusal, 0.5), pct(&mut refusal, 1.0));
    println!(
        "switchover: writes refused p50 {r50:.0} ms, max {rmax:.0} ms ({n} switchovers); {} writer: {} acked, 0 lost or doubled, {} errors, longest gap {:.0} ms",
        if idempotent { "idempotent" } else { "Write::once" },
        stats.acked.len(),
        stats.errors.len(),
        stats.max_gap.as_secs_f64() * 1e3
    );
    // Only a connection lost under a statement reaches a non-idempotent writer (it may
    // have run); listed, with whether those writes committed after all.
    for e in &stats.errors {
        println!("  writer error: {}", e.message);
    }
    let audit = writer::audit_writes(c.config(), shard(1), &stats).await?;
    println!(
        "  failed writes: {} absent, {} committed all the same",
        audit.failed_absent,
        audit.unacknowledged.len()
    );
    Ok(())
}

/// The action record at `url` once it is DONE or FAILED, polled every `every`.
async fn finished(
    http: &reqwest::Client,
    url: &str,
    every: Duration,
) -> anyhow::Result<serde_json::Value> {
    loop {
        let v: serde_json::Value = http.get(url).send().await?.json().await?;
        if v["state"] == "DONE" || v["state"] == "FAILED" {
            return Ok(v);
        }
        tokio::time::sleep(every).await;
    }
}
