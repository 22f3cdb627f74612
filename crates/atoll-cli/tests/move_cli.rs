//! `atoll move`, `atoll rebalance` and `atoll cleanup` through the built binary.

use atoll_testkit::cli::{json, stderr, Cli};
use atoll_testkit::TestSandbox;
use std::process::{Command, Output};

fn atoll(sb: &TestSandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    Cli::new(env!("CARGO_BIN_EXE_atoll"), sb.config_path()).run_with_env(args, env)
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

    // A table without a primary key (issue 9, item 4): refused naming both ways out, then
    // moved with --replica-identity-full, which the resume knows from the move's record.
    let port = sb
        .islands()
        .iter()
        .find(|i| u64::from(i.id) == home)
        .unwrap()
        .nodes[0]
        .port;
    sb.psql(
        port,
        "create table sh0001.keyless (v int); insert into sh0001.keyless values (1)",
    )
    .unwrap();
    let out = atoll(&sb, &["move", "--shard", "1", "--to", &to], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for needle in ["sh0001.keyless", "--replica-identity-full", "primary key"] {
        assert!(stderr(&out).contains(needle), "{}", stderr(&out));
    }

    // Killed after `subscribed`, listed, then resumed.
    let out = atoll(
        &sb,
        &[
            "move",
            "--shard",
            "1",
            "--to",
            &to,
            "--replica-identity-full",
        ],
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
    assert_eq!(
        report["replica_identity_full"][0], "keyless (was default)",
        "{report}"
    );
    // Rebalances below move shards with the default options.
    let to_port = sb
        .islands()
        .iter()
        .find(|i| i.id.to_string() == to)
        .unwrap()
        .nodes[0]
        .port;
    sb.psql(to_port, "drop table sh0001.keyless").unwrap();
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
    let stopped = String::from_utf8_lossy(&out.stdout)
        .matches("stopped after step caught_up")
        .count()
        + stderr(&out).matches("stopped after step caught_up").count();
    assert_eq!(
        stopped,
        2,
        "both moves stop after caught_up: {}",
        stderr(&out)
    );
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
    migrations_and_moves_keep_apart(&sb, &home);
}

/// A migration run refuses to start while a move is unfinished (DDL does not travel
/// through logical replication), and a move refuses to start while a run holds the lock.
fn migrations_and_moves_keep_apart(sb: &TestSandbox, to: &str) {
    let dir = sb.dir().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("1.t.sh.up.sql"),
        "create table t (id int primary key);",
    )
    .unwrap();
    std::fs::write(dir.join("1.t.sh.dn.sql"), "drop table t;").unwrap();
    let dir = dir.to_string_lossy().to_string();
    let apply = ["migrate", "apply", "--dir", dir.as_str()];

    let out = atoll(
        sb,
        &["move", "--shard", "1", "--to", to],
        &[("ATOLL_MOVE_STOP_AFTER", "subscribed")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let out = atoll(sb, &apply, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("moves are unfinished: sh0001 (subscribed"),
        "{}",
        stderr(&out)
    );
    json(&atoll(
        sb,
        &["--json", "move", "--abort", "--shard", "1"],
        &[],
    ));

    // A run in progress is the session holding the lock on the first island's master.
    let port = sb.islands()[0].nodes[0].port.to_string();
    let key = atoll_pg::locks::MIGRATION_RUN.to_string();
    let mut holder = Command::new(sb.pg_bin().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-Atq"])
        .args([
            "-c",
            &format!("select pg_advisory_lock({key})"),
            "-c",
            "select pg_sleep(60)",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = "select count(*) from pg_locks where locktype = 'advisory' and granted";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sb.psql(sb.islands()[0].nodes[0].port, held).unwrap() == "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "lock holder never got the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = atoll(sb, &["move", "--shard", "1", "--to", to], &[]);
    // End the holder's session on the server (a killed psql leaves pg_sleep running).
    let release =
        "select count(pg_terminate_backend(pid)) from pg_locks where locktype = 'advisory'";
    sb.psql(sb.islands()[0].nodes[0].port, release).unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    // A deadline of its own: the move above may have taken most of the first one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sb.psql(sb.islands()[0].nodes[0].port, held).unwrap() != "0" {
        assert!(std::time::Instant::now() < deadline, "lock never released");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("migration_running"),
        "{}",
        stderr(&out)
    );
    assert!(json(&atoll(sb, &["--json", "move", "--list"], &[]))
        .as_array()
        .unwrap()
        .is_empty());
    // Neither waits on the other any more.
    let out = atoll(sb, &apply, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
