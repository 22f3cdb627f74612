//! `atoll demo --story` end to end on a real sandbox: the migration reaches every shard, the
//! application's writes survive a move and a rebalance with nothing lost or doubled, and
//! the summary says so.

use atoll_testkit::cli::ok;
use atoll_testkit::TestSandbox;
use serde_json::Value;
use std::process::Command;

#[test]
fn the_story_moves_shards_under_a_writer_and_loses_nothing() {
    let sb = TestSandbox::new(2, 1).expect("sandbox");
    let dir = sb.dir().to_path_buf();
    // Run from the sandbox's directory: the demo publishes ./atoll.toml when there is none.
    let out = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args(["--json", "demo", "--shards", "0-8", "--story", "--dir"])
        .arg(&dir)
        .current_dir(&dir)
        .env_remove("ATOLL_CONFIG")
        .env_remove("ATOLL_ISLANDS")
        .output()
        .expect("run atoll demo");
    ok(&out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("demo --json prints JSON");
    let story = &v["story"];
    assert_eq!(story["migrated"], 9, "{story}");
    assert_eq!(story["checked"]["lost"], 0, "{story}");
    assert_eq!(story["checked"]["duplicated"], 0, "{story}");
    assert_eq!(
        story["written"]["errors"].as_array().map(Vec::len),
        Some(0),
        "{story}"
    );
    let acked = story["written"]["acked"]
        .as_object()
        .expect("acked per shard");
    assert_eq!(acked.len(), 9, "every shard was written to: {story}");
    assert!(acked.values().all(|n| n.as_u64() > Some(0)), "{story}");
    let moved = &story["moved"];
    assert_ne!(moved["from"], moved["to"], "{story}");
    // The moved shard is active on its destination now, and only there.
    let shard = moved["shard"].as_u64().expect("shard number").to_string();
    let copies = v["status"]["shards"][&shard]
        .as_array()
        .expect("shard in status");
    let active: Vec<&Value> = copies.iter().filter(|c| c["active"] == true).collect();
    let rebalanced_back = story["rebalanced"]
        .as_array()
        .is_some_and(|r| r.iter().any(|m| m["shard"] == moved["shard"]));
    assert_eq!(active.len(), 1, "{copies:?}");
    if !rebalanced_back {
        assert_eq!(active[0]["island"], moved["to"], "{copies:?}");
    }
    // A second run finds the migration applied and writes again.
    let again = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args(["demo", "--shards", "0-8", "--story", "--dir"])
        .arg(&dir)
        .current_dir(&dir)
        .env_remove("ATOLL_CONFIG")
        .env_remove("ATOLL_ISLANDS")
        .output()
        .expect("run atoll demo again");
    ok(&again);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("0 lost, 0 duplicated"), "{text}");
    assert!(text.contains("errors: 0"), "{text}");
}
