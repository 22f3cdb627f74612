//! `/metrics` after known changes on a real sandbox (2 islands of a master and a replica,
//! shards 1 and 2 on island 0): a replica whose replay is paused shows lag in bytes and
//! seconds, and none once resumed; a move stopped after a step shows in `atoll_moves` at
//! that step, and once finished leaves it and lands in the pause and duration histograms;
//! a migration run's schemas show by state.

use atoll_core::move_plan::MoveStep;
use atoll_core::{IslandId, ShardNo};
use atoll_move::MoveOptions;
use atoll_serve::{start, ServeConfig};
use atoll_testkit::TestCluster;
use std::time::{Duration, Instant};

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Scrapes until `pred` holds for the text (20 s at most).
async fn scrape_until(base: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let t = Instant::now();
    loop {
        let text = reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if pred(&text) {
            return text;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_paused_replay_and_a_move_step_by_step() {
    let tc = TestCluster::setup(2, 1)
        .shards(1..=2)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let island = &tc.sandbox().islands()[0];
    let (mp, rp) = (island.nodes[0].port, island.nodes[1].port);
    let replica = format!("island=\"0\",node=\"127.0.0.1:{rp}\"");
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), tc.config().clone());
    config.period = Duration::from_millis(200);
    let handle = start(config).await.expect("atoll serve starts");
    let base = format!("http://{}", handle.addr);

    // Replay paused on island 0's replica while the master writes: lag in bytes and seconds
    // (once the replica has replayed a transaction: its lag in seconds counts from that).
    let lag_bytes = format!("atoll_replication_lag_bytes{{{replica}}}");
    let lag_secs = format!("pg_replication_lag_seconds{{{replica}}}");
    tc.psql(mp, "create table sh0002.warm (id int primary key)");
    // On the replica itself: lag in seconds reads 0 whenever nothing is pending, even
    // before any transaction was replayed, so the metric alone does not prove it.
    let t0 = Instant::now();
    while tc
        .psql(rp, "select to_regclass('sh0002.warm') is not null")
        .trim()
        != "t"
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the replica never replayed it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scrape_until(&base, "a replayed transaction", |t| {
        sample(t, &lag_secs).is_some()
    })
    .await;
    tc.psql(rp, "select pg_wal_replay_pause()");
    tc.psql(
        mp,
        "create table sh0001.t (id int primary key); insert into sh0001.t select generate_series(1, 1000)",
    );
    let text = scrape_until(&base, "lag while replay is paused", |t| {
        sample(t, &lag_bytes).is_some_and(|b| b > 0.0)
            && sample(t, &lag_secs).is_some_and(|s| s > 0.0)
    })
    .await;
    eprintln!(
        "paused: {} bytes, {} s behind",
        sample(&text, &lag_bytes).unwrap(),
        sample(&text, &lag_secs).unwrap()
    );
    tc.psql(rp, "select pg_wal_replay_resume()");
    scrape_until(&base, "no lag once replay resumes", |t| {
        sample(t, &lag_bytes) == Some(0.0)
    })
    .await;

    // A move stopped once subscribed, then resumed to the end.
    let one = ShardNo::new(1).unwrap();
    let snapshot = tc.discover().await;
    let stop = MoveOptions {
        stop_after: Some(MoveStep::Subscribed),
        ..MoveOptions::default()
    };
    let none = atoll_move::no_progress();
    let r = atoll_move::start_move(
        tc.config(),
        &snapshot,
        one,
        IslandId(1),
        &stop,
        none.clone(),
    )
    .await;
    let e = r.expect_err("stopped by the test hook");
    assert!(matches!(e, atoll_move::MoveError::Stopped { .. }), "{e}");
    let at = |step: &str| format!("atoll_moves{{step=\"{step}\"}}");
    scrape_until(&base, "the move at subscribed", |t| {
        sample(t, &at("subscribed")) == Some(1.0)
    })
    .await;
    atoll_move::resume_move(
        tc.config(),
        &snapshot,
        Some(one),
        &MoveOptions::default(),
        none,
    )
    .await
    .expect("the move resumes");
    let text = scrape_until(&base, "the move finished and counted", |t| {
        sample(t, "atoll_move_duration_seconds_count") == Some(1.0)
    })
    .await;
    assert_eq!(sample(&text, &at("subscribed")), Some(0.0), "{text}");
    assert_eq!(
        sample(&text, "atoll_move_pause_seconds_count"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "atoll_move_write_block_seconds_count"),
        Some(1.0),
        "{text}"
    );
    let pause = sample(&text, "atoll_move_pause_seconds_sum").unwrap();
    assert!(pause > 0.0 && pause < 10.0, "{pause}");
    assert!(
        sample(&text, "atoll_discovery_seconds").unwrap() > 0.0,
        "{text}"
    );
    let moves = reqwest::get(format!("{base}/api/v1/moves")).await.unwrap();
    let moves: serde_json::Value = moves.json().await.unwrap();
    assert_eq!(moves["finished"][0]["shard"], 1, "{moves}");
    assert!(
        moves["finished"][0]["timings"]["pause_ms"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{moves}"
    );
    handle.shutdown().await;
}
