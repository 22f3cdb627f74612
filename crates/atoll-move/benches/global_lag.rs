//! Global copies under a steady write rate (issue 18's benchmark): a sandbox of 3 islands,
//! shard 0 on island 0 with a settings table copied to islands 1 and 2 (`atoll global
//! replicate`). A writer updates one row `--rate` times a second for `--seconds` on shard
//! 0's master with `synchronous_commit = on` (a production setting: the sandbox's default
//! is off, which delays the WAL the copies get by up to `wal_writer_delay`); an observer per
//! copy polls the row every millisecond. Per write and copy: the time from the writer's
//! commit acknowledgement to the copy showing the value (p50, p99, max). Then, in the same
//! run, `--reads` point reads of a global row by an application whose home island is 2:
//! through atoll-client from the local copy (`Freshness::StaleReplica`) and from shard 0's
//! master (`Freshness::Master`). On one machine both are loopback: the ratio shows what
//! going through the copy costs, not the network distance a real deployment saves.
//!
//! ```sh
//! cargo bench -p atoll-move --bench global_lag -- --rate 200 --seconds 20 --reads 2000
//! ```

use atoll_client::{Cluster, ClusterOptions, Freshness};
use atoll_core::IslandId;
use atoll_move::global_copy::{self, ReplicateRequest};
use atoll_testkit::TestCluster;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Commit acknowledgements by value written (index = value).
type Acks = Arc<Mutex<Vec<Option<Instant>>>>;

/// Polls the copy on `island` until it shows `last`; the lag of every value it saw.
async fn observe(tc: &TestCluster, island: u16, acks: Acks, last: i64) -> Vec<f64> {
    let c = tc.master(IslandId(island)).await.expect("copy master");
    let stmt = c
        .prepare("select v from sh0000.settings where id = 1")
        .await
        .expect("prepare");
    let (mut seen, mut lags) = (0_i64, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < last && Instant::now() < deadline {
        let v: i64 = c.query_one(&stmt, &[]).await.expect("poll").get(0);
        if v > seen {
            let now = Instant::now();
            let acks = acks.lock().expect("acks");
            for k in (seen + 1)..=v {
                if let Some(t) = acks[k as usize] {
                    lags.push(now.saturating_duration_since(t).as_secs_f64() * 1e3);
                }
            }
            seen = v;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    lags
}

async fn read_times(cluster: &Cluster, reads: usize, f: Freshness<'_>) -> Vec<f64> {
    let global = cluster.global();
    let mut out = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        global
            .query("select v from sh0000.settings where id = 1", &[], f)
            .await
            .expect("read");
        out.push(t.elapsed().as_secs_f64() * 1e3);
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (rate, seconds, reads) = (
        arg("--rate", 200_u64),
        arg("--seconds", 20_u64),
        arg("--reads", 2000_usize),
    );
    let tc = TestCluster::setup(3, 0)
        .shards(0..=2)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let master = tc.master(IslandId(0)).await.expect("master");
    master
        .batch_execute(
            "create table sh0000.settings (id int primary key, v bigint not null);
             insert into sh0000.settings values (1, 0);",
        )
        .await
        .expect("table");
    let snap = tc.discover().await;
    global_copy::replicate(tc.config(), &snap, &ReplicateRequest::default(), &|_, _| {})
        .await
        .expect("replicate");

    let n = (rate * seconds) as i64;
    let acks: Acks = Arc::new(Mutex::new(vec![None; n as usize + 1]));
    master
        .batch_execute("set synchronous_commit = on")
        .await
        .expect("sync");
    let update = master
        .prepare("update sh0000.settings set v = $1 where id = 1")
        .await
        .expect("prepare");
    let observers = futures::future::join(
        observe(&tc, 1, acks.clone(), n),
        observe(&tc, 2, acks.clone(), n),
    );
    let writer = async {
        let t0 = Instant::now();
        for i in 1..=n {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
            master.execute(&update, &[&i]).await.expect("update");
            acks.lock().expect("acks")[i as usize] = Some(Instant::now());
        }
    };
    let ((mut one, mut two), ()) = futures::future::join(observers, writer).await;

    let options = ClusterOptions {
        home_island: Some(IslandId(2)),
        ..ClusterOptions::default()
    };
    let cluster = Cluster::connect(tc.config().clone(), options)
        .await
        .expect("client");
    let mut local = read_times(&cluster, reads, Freshness::StaleReplica).await;
    let mut remote = read_times(&cluster, reads, Freshness::Master).await;
    cluster.close().await;

    println!("{n} writes at {rate}/s, synchronous_commit on; lag from commit ack to the copy showing it:");
    for (island, lags) in [(1, &mut one), (2, &mut two)] {
        println!(
            "  island {island}: {} values, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lags.len(),
            pct(lags, 0.5),
            pct(lags, 0.99),
            pct(lags, 1.0)
        );
    }
    let (lp50, rp50) = (pct(&mut local, 0.5), pct(&mut remote, 0.5));
    println!(
        "{reads} point reads from island 2's application: local copy p50 {lp50:.3} ms, p99 {:.3} ms; shard 0's master p50 {rp50:.3} ms, p99 {:.3} ms; local/master p50 {:.2}x",
        pct(&mut local, 0.99),
        pct(&mut remote, 0.99),
        lp50 / rp50
    );
}
