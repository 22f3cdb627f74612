//! `atoll move`, `atoll rebalance` and `atoll cleanup` through the built binary.

use atoll_sandbox::TestSandbox;
use serde_json::Value;
use std::process::{Command, Output};

fn atoll(sb: &TestSandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_atoll"));
    c.arg("--config").arg(sb.config_path()).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn move_resume_rebalance_cleanup_via_the_cli() {
    let sb = TestSandbox::new(2, 0).unwrap();
    json(&atoll(&sb, &["--json", "init"], &[]));
    let placed = json(&atoll(
        &sb,
        &["--json", "allocate", "--shards", "1-4", "--activate"],
        &[],
    ));
    let home = placed
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["shard"] == 1)
        .unwrap()["island"]
        .as_u64()
        .unwrap();
    let to = (1 - home).to_string();

    // Killed after `subscribed`, listed, then resumed.
    let out = atoll(
        &sb,
        &["move", "--shard", "1", "--to", &to],
        &[("ATOLL_MOVE_STOP_AFTER", "subscribed")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped after step subscribed"),
        "{}",
        stderr(&out)
    );
    let list = json(&atoll(&sb, &["--json", "move", "--list"], &[]));
    assert_eq!(list[0]["step"], "subscribed");
    let report = json(&atoll(
        &sb,
        &["--json", "move", "--resume", "--shard", "1"],
        &[],
    ));
    assert_eq!(report["resumed_from"], "subscribed");
    assert!(report["pause_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(report["to"].as_u64().unwrap().to_string(), to);

    // Refusals are bad input (exit 2) naming the problem.
    let out = atoll(&sb, &["move", "--shard", "1", "--to", &to], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("already on island"),
        "{}",
        stderr(&out)
    );
    let out = atoll(
        &sb,
        &["move", "--shard", "2", "--to", &to, "--verify", "most"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = atoll(&sb, &["move", "--abort"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no unfinished move"),
        "{}",
        stderr(&out)
    );

    // Rebalance by count (custom weights): 1/3 becomes 2/2.
    let weights = "select shard, 1::float8 from atoll.shards where active";
    let dry = json(&atoll(
        &sb,
        &["--json", "rebalance", "--dry-run", "--weight-sql", weights],
        &[],
    ));
    assert_eq!(dry["plan"]["moves"].as_array().unwrap().len(), 1, "{dry}");
    let done = json(&atoll(
        &sb,
        &["--json", "rebalance", "--yes", "--weight-sql", weights],
        &[],
    ));
    assert!(done["outcomes"][0]["error"].is_null(), "{done}");
    let again = json(&atoll(
        &sb,
        &["--json", "rebalance", "--dry-run", "--weight-sql", weights],
        &[],
    ));
    assert!(again["plan"]["moves"].as_array().unwrap().is_empty());

    // Backups: none young enough to keep with 7d; all dropped with 0.
    assert!(json(&atoll(&sb, &["--json", "cleanup"], &[]))
        .as_array()
        .unwrap()
        .is_empty());
    let dropped = json(&atoll(
        &sb,
        &["--json", "cleanup", "--older-than", "0"],
        &[],
    ));
    assert_eq!(dropped.as_array().unwrap().len(), 2);
    let out = atoll(&sb, &["cleanup", "--older-than", "soon"], &[]);
    assert_eq!(out.status.code(), Some(2));

    // Decommissioning an island, killed mid-way (every move stops after caught_up), is
    // refused until resumed, then finishes: the island ends empty.
    let home = home.to_string();
    let args = [
        "rebalance",
        "--yes",
        "--decommission",
        home.as_str(),
        "--parallelism",
        "2",
    ];
    let out = atoll(&sb, &args, &[("ATOLL_MOVE_STOP_AFTER", "caught_up")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("moves failed"), "{}", stderr(&out));
    let out = atoll(&sb, &args, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unfinished moves"),
        "{}",
        stderr(&out)
    );
    let mut resume = vec!["--json"];
    resume.extend_from_slice(&args);
    resume.push("--resume");
    let done = json(&atoll(&sb, &resume, &[]));
    assert_eq!(done["resumed"].as_array().unwrap().len(), 2, "{done}");
    assert!(
        done["plan"]["moves"].as_array().unwrap().is_empty(),
        "{done}"
    );
    let status = json(&atoll(&sb, &["--json", "status"], &[]));
    let on_home = status["shards"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|copies| copies.as_array().unwrap().iter())
        .filter(|c| c["island"].as_u64().map(|i| i.to_string()).as_deref() == Some(home.as_str()))
        .count();
    assert_eq!(on_home, 0, "{status}");
    assert!(json(&atoll(&sb, &["--json", "move", "--list"], &[]))
        .as_array()
        .unwrap()
        .is_empty());
}
