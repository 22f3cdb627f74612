//! Actions through `atoll serve` against a real sandbox (2 islands, 4 shards): refusals
//! without or with a wrong token, bad bodies and fields (nothing changes); a migration
//! planned then applied from its reviewed plan, a move refused while it runs; a move
//! started and finished on the other island; an interrupted move resumed and another
//! aborted; a rebalance planned, refused with another plan's digest, then run; every
//! action in the action log with who, what and how it ended.

use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_serve::{start, ServeConfig, ServeHandle, WriteToken};
use atoll_testkit::TestCluster;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const TOKEN: &str = "test-token-0123456789abcdef";

async fn serve(tc: &TestCluster, stop_after: Option<MoveStep>) -> (ServeHandle, String) {
    std::env::set_var("ATOLL_SERVE_ACTIONS_TOKEN", TOKEN);
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), tc.config().clone());
    config.period = Duration::from_millis(200);
    config.write_tokens = vec!["alice=env:ATOLL_SERVE_ACTIONS_TOKEN"
        .parse::<WriteToken>()
        .unwrap()];
    config.migrations = Some(migrations_dir(tc));
    config.move_options.stop_after = stop_after;
    let handle = start(config).await.expect("atoll serve starts");
    let base = format!("http://{}", handle.addr);
    (handle, base)
}

fn migrations_dir(tc: &TestCluster) -> std::path::PathBuf {
    let dir = tc.config_path().parent().unwrap().join("migrations");
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        // Slow enough that a move can be tried while the run holds the cluster lock.
        let up = "create table slow_marker (id bigint primary key); select pg_sleep(1.5);";
        std::fs::write(dir.join("20260101000000.slow.sh.up.sql"), up).unwrap();
        std::fs::write(
            dir.join("20260101000000.slow.sh.dn.sql"),
            "drop table slow_marker;",
        )
        .unwrap();
    }
    dir
}

async fn post(base: &str, path: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> Value {
    reqwest::get(format!("{base}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The island shard `n` is active on, per the API.
async fn island_of(base: &str, n: u64) -> Option<u64> {
    let shards = get(base, "/api/v1/shards").await;
    shards
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard"] == n)?["island"]
        .as_u64()
}

async fn until(what: &str, secs: u64, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The action log's entry `id`, once closed.
async fn ended(base: &str, id: u64) -> Value {
    let mut found = Value::Null;
    until(&format!("action {id} closed"), 120, async || {
        let a = get(base, "/api/v1/actions").await;
        found = a["log"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id && e["outcome"] != "running")
            .cloned()
            .unwrap_or(Value::Null);
        !found.is_null()
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_a_token_and_a_confirmation_run_the_libraries_and_are_logged() {
    let tc = TestCluster::setup(2, 0)
        .shards(1..=4)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let (handle, base) = serve(&tc, None).await;
    let tok = Some(TOKEN);
    let move1 = r#"{"shard": 1, "to": 1, "confirm": "sh0001"}"#;

    // Refusals: each one line naming what was wrong; nothing moves.
    let refusals: [(Option<&str>, &str, u16, &str); 9] = [
        (None, move1, 401, "authorization:"),
        (Some("wrong-token-0123456789"), move1, 401, "not accepted"),
        (tok, "{\"shard\": 1,", 400, "body:"),
        (
            tok,
            r#"{"shard": 1, "to": 1, "confirm": "sh0001", "force": true}"#,
            400,
            "unknown field `force`",
        ),
        (
            tok,
            r#"{"shard": 1, "to": 1}"#,
            400,
            "missing field `confirm`",
        ),
        (
            tok,
            r#"{"shard": 4242, "to": 1, "confirm": "sh4242"}"#,
            400,
            "shard: sh4242 is not in the cluster",
        ),
        (
            tok,
            r#"{"shard": 1, "to": 7, "confirm": "sh0001"}"#,
            400,
            "to: island 7 is not in the config",
        ),
        (
            tok,
            r#"{"shard": 1, "to": 0, "confirm": "sh0001"}"#,
            400,
            "to: sh0001 is already active",
        ),
        (
            tok,
            r#"{"shard": 1, "to": 1, "confirm": "yes"}"#,
            400,
            "confirm: must be \"sh0001\"",
        ),
    ];
    for (token, body, status, says) in refusals {
        let (s, v) = post(&base, "/api/v1/actions/move", token, body).await;
        assert_eq!(s, status, "{body}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(says), "{body}: {e}");
        assert!(
            !e.contains(TOKEN) && !e.contains("wrong-token"),
            "no token echoed: {e}"
        );
    }
    let huge = format!("{{\"shard\": \"{}\"}}", "x".repeat(5 << 20));
    let (s, v) = post(&base, "/api/v1/actions/move", tok, &huge).await;
    assert_eq!(s, 413, "{v}");
    let (s, _) = post(
        &base,
        "/api/v1/actions/move/abort",
        tok,
        r#"{"shard": 1, "confirm": "sh0001"}"#,
    )
    .await;
    assert_eq!(s, 400, "no unfinished move to abort");
    assert_eq!(island_of(&base, 1).await, Some(0), "nothing moved");
    assert_eq!(
        get(&base, "/api/v1/actions").await["log"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Migrate: plan (one group of 4 shards), apply exactly it; a move meanwhile is refused.
    let (s, plan) = post(&base, "/api/v1/actions/migrate/plan", tok, "{}").await;
    assert_eq!(s, 200, "{plan}");
    assert_eq!(plan["groups"][0]["count"], 4, "{plan}");
    assert_eq!(plan["drift"].as_array().unwrap().len(), 0, "{plan}");
    let digest = plan["file"]["digest"].as_str().unwrap().to_string();
    let wrong = json!({ "plan": plan["file"], "confirm": "0000" }).to_string();
    let (s, v) = post(&base, "/api/v1/actions/migrate/apply", tok, &wrong).await;
    assert_eq!(s, 400, "{v}");
    let mut tampered = plan["file"].clone();
    tampered["scope"] = json!("shards 1-2");
    let body = json!({ "plan": tampered, "confirm": digest }).to_string();
    let (s, v) = post(&base, "/api/v1/actions/migrate/apply", tok, &body).await;
    assert_eq!(s, 400, "a plan that is not what was reviewed: {v}");
    let body = json!({ "plan": plan["file"], "confirm": digest }).to_string();
    let (s, v) = post(&base, "/api/v1/actions/migrate/apply", tok, &body).await;
    assert!(s == 202 || s == 200, "{s}: {v}");
    let migrate_id = v["action"].as_u64().unwrap();
    until("the run shows as running", 20, async || {
        get(&base, "/api/v1/migrations").await["latest"]["run"]["status"] == "running"
    })
    .await;
    let (s, v) = post(&base, "/api/v1/actions/move", tok, move1).await;
    assert_eq!(s, 409, "a move while a migration runs: {v}");
    assert!(
        v["error"].as_str().unwrap().contains("migration run"),
        "{v}"
    );
    let e = ended(&base, migrate_id).await;
    assert_eq!(e["outcome"], "succeeded", "{e}");
    assert_eq!(e["actor"], "alice", "{e}");
    // The view reads the catalog every period: it shows the end a period later at most.
    until("the run shows as done", 20, async || {
        get(&base, "/api/v1/migrations").await["latest"]["run"]["status"] == "done"
    })
    .await;
    let m = get(&base, "/api/v1/migrations").await;
    assert_eq!(m["latest"]["run"]["schemas_done"], 4, "{m}");
    assert_eq!(
        island_of(&base, 1).await,
        Some(0),
        "the refused move changed nothing"
    );

    // A move, run to the end.
    let (s, v) = post(&base, "/api/v1/actions/move", tok, move1).await;
    assert!(s == 202 || s == 200, "{s}: {v}");
    let id = v["action"].as_u64().unwrap();
    let e = ended(&base, id).await;
    assert_eq!(e["outcome"], "succeeded", "{e}");
    assert_eq!(e["kind"], "move", "{e}");
    assert_eq!(e["target"], "sh0001 to island 1", "{e}");
    assert!(
        e["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{e}"
    );
    until("sh0001 on island 1", 20, async || {
        island_of(&base, 1).await == Some(1)
    })
    .await;
    handle.shutdown().await;

    // Interrupted moves (a server whose moves stop once subscribed): one resumed, one aborted.
    let (handle, base) = serve(&tc, Some(MoveStep::Subscribed)).await;
    for n in [2, 3] {
        let body = format!(r#"{{"shard": {n}, "to": 1, "confirm": "sh000{n}"}}"#);
        let (_, v) = post(&base, "/api/v1/actions/move", tok, &body).await;
        let e = ended(&base, v["action"].as_u64().unwrap()).await;
        assert_eq!(e["outcome"], "failed", "stopped by the test hook: {e}");
    }
    until("two unfinished moves at subscribed", 20, async || {
        let moves = get(&base, "/api/v1/moves").await["moves"].clone();
        let steps: Vec<&str> = moves
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["step"].as_str().unwrap())
            .collect();
        steps == ["subscribed", "subscribed"]
    })
    .await;
    let moves = get(&base, "/api/v1/moves").await;
    for m in moves["moves"].as_array().unwrap() {
        let (since, start) = (m["step_since_unix"].as_i64(), m["started_at_unix"].as_i64());
        assert!(since.unwrap() >= start.unwrap(), "{m}");
        let error = m["last_error"].as_str().unwrap_or_default();
        assert!(error.contains("stopped"), "the failed action's error: {m}");
    }
    assert!(get(&base, "/api/v1/leases").await["leases"].is_array());
    let (s, v) = post(
        &base,
        "/api/v1/actions/move/abort",
        tok,
        r#"{"shard": 2, "confirm": "sh0002"}"#,
    )
    .await;
    assert!(s == 200 || s == 202, "{s}: {v}");
    assert_eq!(
        ended(&base, v["action"].as_u64().unwrap()).await["outcome"],
        "succeeded"
    );
    let (s, v) = post(
        &base,
        "/api/v1/actions/move/resume",
        tok,
        r#"{"shard": "sh0003", "confirm": "sh0003"}"#,
    )
    .await;
    assert!(s == 200 || s == 202, "{s}: {v}");
    assert_eq!(
        ended(&base, v["action"].as_u64().unwrap()).await["outcome"],
        "succeeded"
    );
    until("sh0003 on island 1, sh0002 still on 0", 20, async || {
        island_of(&base, 3).await == Some(1) && island_of(&base, 2).await == Some(0)
    })
    .await;
    let log = get(&base, "/api/v1/actions").await["log"].clone();
    let kinds: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "move_resume",
            "move_abort",
            "move",
            "move",
            "move",
            "migrate_apply"
        ],
        "newest first: {log}"
    );
    handle.shutdown().await;
}
