//! `atoll serve` against a real sandbox: 2 islands of a master and a replica each, 8
//! shards. The API and `/metrics` show the islands, nodes, lag and shards; a shard
//! deactivated on its master shows within seconds; unknown paths answer 404 in JSON; an
//! event stream starts with the overview; a shutdown with a stream open stops the listener.

use atoll_core::IslandId;
use atoll_serve::{start, ServeConfig};
use atoll_testkit::TestCluster;
use serde_json::Value;
use std::time::{Duration, Instant};

async fn get_json(base: &str, path: &str) -> Value {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// The values of `name`'s samples in a Prometheus text.
fn samples_of(text: &str, name: &str) -> Vec<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_metrics_show_the_cluster_and_follow_a_change() {
    let tc = TestCluster::setup(2, 1)
        .shards(1..=8)
        .start()
        .await
        .expect("sandbox");
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), tc.config().clone());
    config.period = Duration::from_millis(200);
    let handle = start(config).await.expect("atoll serve starts");
    let base = format!("http://{}", handle.addr);

    let cluster = get_json(&base, "/api/v1/cluster").await;
    assert_eq!(cluster["islands"], 2, "{cluster}");
    assert_eq!(cluster["shards_active"], 8, "{cluster}");
    assert!(cluster["cluster_id"].is_string(), "{cluster}");
    assert_eq!(cluster["moves_unfinished"], 0, "{cluster}");
    assert!(cluster["catalog_error"].is_null(), "{cluster}");

    let islands = get_json(&base, "/api/v1/islands").await;
    let islands = islands.as_array().unwrap();
    assert_eq!(islands.len(), 2);
    let mut carried = 0;
    for i in islands {
        let roles: Vec<&str> = i["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["role"].as_str().unwrap_or("unreadable"))
            .collect();
        assert_eq!(roles, ["master", "replica"], "{i}");
        assert!(i["master"].is_string(), "{i}");
        carried += i["shards_active"].as_u64().unwrap();
    }
    assert_eq!(carried, 8);

    let shards = get_json(&base, "/api/v1/shards").await;
    assert_eq!(shards.as_array().unwrap().len(), 8, "{shards}");
    assert!(
        shards
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["island"].is_u64()
                && s["copies"].as_array().unwrap().len() == 1
                && s["copies"][0]["size_bytes"].is_u64()),
        "every shard placed, with its size measured: {shards}"
    );

    let moves = get_json(&base, "/api/v1/moves").await;
    assert_eq!(moves["moves"].as_array().unwrap().len(), 0, "{moves}");
    assert!(moves["read_at_unix_ms"].as_u64().unwrap() > 0, "{moves}");

    // A replica reports its lag in seconds once it has replayed a transaction: write on
    // both masters, then wait for both samples.
    for i in 0..2 {
        tc.master(IslandId(i))
            .await
            .unwrap()
            .batch_execute("create table public.serve_tick (); drop table public.serve_tick")
            .await
            .unwrap();
    }
    let t = Instant::now();
    let metrics = loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if samples_of(&text, "pg_replication_lag_seconds").len() == 2 {
            break text;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no lag in seconds: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let samples = |name: &str| samples_of(&metrics, name);
    assert_eq!(samples("atoll_node_up"), [1.0; 4], "{metrics}");
    assert_eq!(samples("atoll_node_is_master").iter().sum::<f64>(), 2.0);
    assert_eq!(samples("atoll_replication_lag_bytes").len(), 2, "{metrics}");
    assert_eq!(samples("atoll_island_shards").iter().sum::<f64>(), 8.0);
    assert_eq!(samples("atoll_island_bytes").len(), 2, "{metrics}");
    assert_eq!(samples("atoll_moves").iter().sum::<f64>(), 0.0);
    assert_eq!(samples("atoll_moves").len(), 10, "one sample per move step");

    // A shard deactivated on its master: the notice (or the next round) reaches the API.
    let (shard, island) = {
        let s = &shards.as_array().unwrap()[2];
        (s["shard"].as_u64().unwrap(), s["island"].as_u64().unwrap())
    };
    let master = tc.master(IslandId(island as u16)).await.unwrap();
    master
        .execute(
            "update atoll.shards set active = false where shard = $1",
            &[&(shard as i32)],
        )
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        let shards = get_json(&base, "/api/v1/shards").await;
        let s = shards
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["shard"] == shard)
            .cloned()
            .unwrap();
        if s["island"].is_null() {
            assert_eq!(s["copies"][0]["active"], false, "{s}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "still active: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("deactivation shown after {:?}", t.elapsed());

    let r = reqwest::get(format!("{base}/api/v1/nothing"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");

    // An open event stream gets the overview at once and does not hold up the shutdown.
    let mut events = reqwest::get(format!("{base}/api/v1/events")).await.unwrap();
    let mut first = String::new();
    while !first.contains("\n\n") {
        let chunk = events.chunk().await.unwrap().expect("an event");
        first.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(first.starts_with("event: overview\ndata: {"), "{first}");
    let addr = handle.addr;
    let t = Instant::now();
    handle.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed after shutdown"
    );
}
