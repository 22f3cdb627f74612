//! End-to-end tests of the cluster commands against a real sandbox: init, allocate,
//! status, shard activate/deactivate, and every kind of bad input the issue lists.
//! One sandbox for the whole file (starting PostgreSQL is the expensive part).

use atoll_testkit::cli::Cli;
use atoll_testkit::TestSandbox;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn atoll(config: &Path, args: &[&str]) -> Run {
    let out: Output = Cli::new(env!("CARGO_BIN_EXE_atoll"), config).run(args);
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", r.stdout, r.stderr))
}

fn psql(sb: &TestSandbox, port: u16, sql: &str) -> String {
    sb.psql(port, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn master_port(sb: &TestSandbox, island: u16) -> u16 {
    sb.islands()[island as usize].nodes[0].port
}

/// Shards per island in a `status --json` document.
fn shards_on(status: &Value, island: u64) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (shard, copies) in status["shards"].as_object().expect("shards") {
        for c in copies.as_array().expect("copies") {
            if c["island"] == island {
                let n: u16 = shard.parse().expect("shard keys are numbers");
                out.push((format!("sh{n:04}"), c["active"].as_bool().unwrap_or(false)));
            }
        }
    }
    out
}

#[test]
fn init_allocate_status_and_shard_flags() {
    let sb = TestSandbox::new(2, 1).expect("sandbox");
    let cfg = sb.config_path();

    // Before init: status works but reports the missing catalog; allocate refuses.
    let r = atoll(&cfg, &["status", "--json"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stdout.contains("not_initialized"), "{}", r.stdout);
    let r = atoll(&cfg, &["allocate", "--shards", "1-4"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("atoll init"), "{}", r.stderr);

    // init is idempotent and gives both islands one cluster id.
    let r = atoll(&cfg, &["init", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let first = json(&r);
    assert_eq!(first[0]["cluster_id"], first[1]["cluster_id"]);
    assert_eq!(first[0]["steps_applied"][0], "core");
    let r = atoll(&cfg, &["init", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let again = json(&r);
    assert_eq!(again[0]["cluster_id"], first[0]["cluster_id"]);
    assert_eq!(again[0]["steps_applied"].as_array().map(Vec::len), Some(0));

    // allocate spreads 64 shards evenly; re-running creates nothing.
    let r = atoll(&cfg, &["allocate", "--shards", "1-64", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let done = json(&r);
    assert_eq!(done.as_array().map(Vec::len), Some(64));
    let r = atoll(&cfg, &["allocate", "--shards", "1-64", "--json"]);
    let again = json(&r);
    assert!(again
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["created"] == false));
    // Shard 0 goes to island 0 even though island 0 is not emptier.
    let r = atoll(&cfg, &["allocate", "--shards", "0", "--activate", "--json"]);
    assert_eq!(json(&r)[0]["island"], 0, "{}", r.stdout);

    let status = json(&atoll(&cfg, &["status", "--json"]));
    let (on0, on1) = (shards_on(&status, 0), shards_on(&status, 1));
    assert_eq!(on0.len() + on1.len(), 65);
    assert!(
        on0.len().abs_diff(on1.len()) <= 1,
        "{} vs {}",
        on0.len(),
        on1.len()
    );
    assert!(
        on0.iter().any(|(s, a)| s == "sh0000" && *a),
        "shard 0 active on island 0"
    );
    assert!(
        on1.iter().all(|(_, a)| !a),
        "allocated without --activate: inactive"
    );
    assert_eq!(status["healthy"], true, "{status}");
    // Roles, versions and WAL positions come from the nodes themselves.
    for island in status["islands"].as_array().unwrap() {
        let nodes = island["nodes"].as_array().unwrap();
        assert_eq!(nodes[0]["role"], "master");
        assert_eq!(nodes[1]["role"], "replica");
        assert!(nodes[1]["lag_bytes"].is_u64());
        assert!(nodes[0]["server_version"]
            .as_str()
            .unwrap()
            .starts_with(char::is_numeric));
    }
    // The ID generator travels inside each shard.
    let id = psql(&sb, master_port(&sb, 0), "select sh0000.id_gen()");
    assert_eq!(id, "1000000000000000001");

    // Sizes are measured from the shard's relations.
    psql(&sb, master_port(&sb, 0), "create table sh0000.t (id bigint primary key, v text); insert into sh0000.t select g, repeat('x', 100) from generate_series(1, 2000) g");
    let status = json(&atoll(&cfg, &["status", "--json"]));
    let size = status["shards"]["0"][0]["size_bytes"].as_u64().unwrap_or(0);
    assert!(size > 200_000, "sh0000 size {size}");

    // One request is spread, not piled onto the lighter island: island 0 carries 2 MB
    // more, which the first new shards even out, then the islands alternate.
    let heavy = &on0.iter().find(|(s, _)| s != "sh0000").unwrap().0;
    psql(&sb, master_port(&sb, 0), &format!("create table {heavy}.t (id bigint primary key, v text); insert into {heavy}.t select g, repeat('x', 1000) from generate_series(1, 2000) g"));
    let r = atoll(&cfg, &["allocate", "--shards", "100-199", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let placed = json(&r);
    let on = |i: u64| {
        placed
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["island"] == i)
            .count()
    };
    assert!(on(0) >= 45 && on(1) >= 45, "{} vs {}", on(0), on(1));
    // --exclude: no new shard on island 1.
    let r = atoll(
        &cfg,
        &[
            "allocate",
            "--shards",
            "200-209",
            "--exclude",
            "1",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        json(&r)
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["island"] == 0),
        "{}",
        r.stdout
    );
    let r = atoll(&cfg, &["allocate", "--shards", "210", "--exclude", "0,1"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("every island is excluded"),
        "{}",
        r.stderr
    );

    // Bad input: nothing is created.
    let r = atoll(&cfg, &["allocate", "--shards", "9990-10000"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("10000") && r.stderr.contains("0..=9999"),
        "{}",
        r.stderr
    );
    let r = atoll(&cfg, &["allocate", "--shards", "70", "--island", "7"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("island 7 is not in the configuration"),
        "{}",
        r.stderr
    );
    let (sh_on_1, _) = on1[0].clone();
    let r = atoll(
        &cfg,
        &[
            "allocate",
            "--shards",
            &format!("{},70", &sh_on_1[2..]),
            "--island",
            "0",
        ],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("already exists on island 1"),
        "{}",
        r.stderr
    );
    assert_eq!(
        psql(
            &sb,
            master_port(&sb, 0),
            "select count(*) from pg_namespace where nspname = 'sh0070'"
        ),
        "0"
    );

    // shard activate / deactivate.
    let r = atoll(&cfg, &["shard", "activate", &sh_on_1]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("active on island 1"), "{}", r.stdout);
    let r = atoll(&cfg, &["shard", "deactivate", &sh_on_1, "--json"]);
    assert_eq!(json(&r)["active"], false);
    let r = atoll(&cfg, &["shard", "activate", "9999"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("sh9999: does not exist on any island"),
        "{}",
        r.stderr
    );

    // A shard active on two islands is reported naming both, and activation refuses it.
    let (sh_on_0, _) = on0.iter().find(|(s, _)| s != "sh0000").cloned().unwrap();
    atoll(&cfg, &["shard", "activate", &sh_on_0]);
    let n: u16 = sh_on_0[2..].parse().unwrap();
    psql(
        &sb,
        master_port(&sb, 1),
        &format!(
            "create schema {sh_on_0}; insert into atoll.shards (shard, active) values ({n}, true)"
        ),
    );
    let r = atoll(&cfg, &["status"]);
    assert_eq!(r.code, 3);
    assert!(
        r.stdout.contains(&format!(
            "{sh_on_0} is active on more than one island: island 0 and island 1"
        )),
        "{}",
        r.stdout
    );
    let r = atoll(&cfg, &["shard", "activate", &sh_on_0, "--island", "1"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is active on island 0"), "{}", r.stderr);
    psql(
        &sb,
        master_port(&sb, 1),
        &format!("drop schema {sh_on_0}; delete from atoll.shards where shard = {n}"),
    );

    // A node down is reported, not fatal.
    sb.stop_node(1, 1).expect("stop replica");
    let r = atoll(&cfg, &["status", "--json"]);
    assert_eq!(r.code, 3);
    let status = json(&r);
    let down = &status["islands"][1]["nodes"][1];
    assert!(down["error"].is_string(), "{down}");
    assert_eq!(status["islands"][0]["nodes"][1]["role"], "replica");
    sb.start_node(1, 1).expect("start replica");

    // A master down: allocation refuses with the island named.
    sb.stop_node(1, 0).expect("stop master");
    let r = atoll(&cfg, &["allocate", "--shards", "80"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("island 1"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    sb.start_node(1, 0).expect("start master");
}

#[test]
fn bad_config_is_one_line_naming_field_and_line() {
    let dir = std::env::temp_dir().join(format!("atoll-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("atoll.toml");
    std::fs::write(&cfg, "[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 5432, pasword = \"env:X\" }]\n").unwrap();
    let r = atoll(&cfg, &["status"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("atoll.toml:3:") && r.stderr.contains("pasword"),
        "{}",
        r.stderr
    );
    let r = atoll(&dir.join("missing.toml"), &["status"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing.toml"), "{}", r.stderr);
    // A password in plain text is refused and not echoed back.
    std::fs::write(&cfg, "[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 5432, password = \"hunter2\" }]\n").unwrap();
    let r = atoll(&cfg, &["status"]);
    assert_eq!(r.code, 2);
    assert!(
        !r.stderr.contains("hunter2") && r.stderr.contains("password"),
        "{}",
        r.stderr
    );
    // An unreachable cluster: status reports every node down and exits 3, no crash.
    std::fs::write(&cfg, "[cluster]\nconnect_timeout_ms = 300\n[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 1 }]\n").unwrap();
    let r = atoll(&cfg, &["status"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stdout.contains("down") && r.stdout.contains("127.0.0.1:1"),
        "{}",
        r.stdout
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sandbox_refuses_a_port_in_use() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("atoll-portcheck-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_atoll"))
        .args([
            "sandbox",
            "up",
            "--islands",
            "1",
            "--replicas",
            "0",
            "--base-port",
            &port.to_string(),
            "--dir",
        ])
        .arg(&dir)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port}")) && stderr.contains("already in use"),
        "{stderr}"
    );
    assert!(!dir.join("sandbox.json").exists(), "nothing half-made");
    let _ = std::fs::remove_dir_all(&dir);
}
