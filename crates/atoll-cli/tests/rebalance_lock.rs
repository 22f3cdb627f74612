//! `atoll rebalance` takes the cluster-wide rebalance lock before it plans: a second
//! rebalance is refused (exit 2) naming the holder, a dry run is not, and once the holder
//! is gone the rebalance runs.

use atoll_core::IslandId;
use atoll_testkit::cli::{stderr, Cli};
use atoll_testkit::TestCluster;
use std::time::Duration;

#[test]
fn a_second_rebalance_is_refused_naming_the_holder() {
    let cluster = TestCluster::setup(2, 0)
        .shards(1..=4)
        .on_island(IslandId(0))
        .start_blocking()
        .expect("cluster");
    let cli = Cli::new(env!("CARGO_BIN_EXE_atoll"), cluster.config_path());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Another rebalance, as the lock's holder session: named like one.
    let holder = rt.block_on(async {
        let snapshot = cluster.discover().await;
        let island = atoll_pg::coordination::coordination_island(cluster.config()).expect("island");
        let node = atoll_pg::master_node(cluster.config(), &snapshot, island).expect("master");
        let c = atoll_pg::connect_as(&node, "rebalance-test-holder", Duration::from_secs(5))
            .await
            .expect("connect");
        assert!(
            atoll_pg::locks::try_take(&c, &node, atoll_pg::locks::REBALANCE)
                .await
                .expect("lock")
        );
        c
    });

    let refused = cli.run(&["rebalance", "--yes"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(text.contains("another rebalance is running"), "{text}");
    assert!(text.contains("rebalance-test-holder"), "{text}");
    // Nothing moved: every shard is still on island 0.
    let status = atoll_testkit::cli::json(&cli.run(&["--json", "status"]));
    for n in 1..=4 {
        assert_eq!(status["shards"][n.to_string()][0]["island"], 0, "{status}");
    }
    // Planning alone changes nothing and needs no lock.
    let dry = cli.run(&["rebalance", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));

    drop(holder);
    // The server ends the holder's session a moment after the client closes it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let ran = loop {
        let out = cli.run(&["--json", "rebalance", "--yes"]);
        if out.status.code() != Some(2) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let v: serde_json::Value = serde_json::from_slice(&ran.stdout).expect("json");
    let moved = v["outcomes"].as_array().map(Vec::len).unwrap_or(0);
    assert!(moved >= 1, "the rebalance moved shards: {v}");
    drop(rt);
}
