//! The action queue over HTTP: refusals that name the field, 409 with the existing record,
//! 429 when full, and strict one-at-a-time execution in acceptance order under concurrent
//! scheduling from several clients.

mod common;

use atoll_testkit::TestCluster;
use common::{start_agent, start_with, TOKEN};
use serde_json::{json, Value};
use std::time::Duration;

fn ports(c: &TestCluster) -> (u16, u16) {
    let island = &c.sandbox().islands()[0];
    (island.nodes[0].port, island.nodes[1].port)
}

fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_4xx_naming_the_field() {
    let c = TestCluster::setup(1, 1).start().await.unwrap();
    let (mp, _) = ports(&c);
    let a = start_agent(&c, mp).await;
    let cases: &[(&str, u16, &str, &str)] = &[
        ("{not json", 400, "bad_request", "body"),
        ("[1]", 400, "bad_request", "body"),
        (r#"{"kind": "node.restart"}"#, 400, "bad_request", "id"),
        (
            r#"{"id": "a", "kind": "node.restart", "extra": 1}"#,
            400,
            "bad_request",
            "extra",
        ),
        (
            r#"{"id": "a b", "kind": "node.restart"}"#,
            400,
            "bad_request",
            "id",
        ),
        (
            r#"{"id": "a", "kind": "cluster.nuke"}"#,
            400,
            "unknown_kind",
            "kind",
        ),
        (
            r#"{"id": "a", "kind": "shard.activate", "args": {"shard": 10000}}"#,
            400,
            "bad_args",
            "args.shard",
        ),
        (
            r#"{"id": "a", "kind": "shard.activate", "args": {"shard": 1, "x": 2}}"#,
            400,
            "bad_args",
            "args.x",
        ),
        (
            r#"{"id": "a", "kind": "shard.activate", "args": {}}"#,
            400,
            "bad_args",
            "args.shard",
        ),
        (
            r#"{"id": "a", "kind": "node.switchover", "args": {"candidate": "nohost"}}"#,
            400,
            "bad_args",
            "args.candidate",
        ),
    ];
    for (body, status, code, f) in cases {
        let (s, v) = a.post_raw(body, Some(TOKEN)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str().unwrap(), field(&v)),
            (*status, *code, *f),
            "{body}: {v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(f),
            "{v}"
        );
    }
    let ok = r#"{"id": "a", "kind": "node.restart"}"#;
    let (s, v) = a.post_raw(ok, None).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("token_missing"))
    );
    let (s, v) = a.post_raw(ok, Some("wrong")).await;
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("token_wrong")));
    assert!(!v.to_string().contains(TOKEN));
    let (s, v) = a.get("/v1/actions?state=SLEEPING").await;
    assert_eq!((s, field(&v)), (400, "state"));
    let (s, v) = a.get("/v1/actions?colour=red").await;
    assert_eq!((s, field(&v)), (400, "colour"));
    let (s, _) = a.get("/v1/actions/nope").await;
    assert_eq!(s, 404);
    let (s, v) = a.get("/v2/attributes").await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    // Nothing was accepted.
    let (_, v) = a.get("/v1/actions").await;
    assert_eq!(v["actions"], json!([]));

    // Without a token the agent takes no action; with token reads, reads need it too.
    let open = start_with(&c, mp, |cfg| cfg.token = None).await;
    let (s, v) = open.post_raw(ok, Some(TOKEN)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("writes_disabled"))
    );
    let closed = start_with(&c, mp, |cfg| cfg.reads = atoll_agent::ReadAccess::Token).await;
    let (s, _) = closed.get("/v1/attributes").await;
    assert_eq!(s, 401);
    let r = closed
        .http
        .get(format!("{}/v1/attributes", closed.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_conflict_and_a_full_queue_is_429() {
    let c = TestCluster::setup(1, 1).shards([1]).start().await.unwrap();
    let (_, rp) = ports(&c);
    let a = start_with(&c, rp, |cfg| cfg.queue_limit = 1).await;
    a.attributes().await; // learns the data directory
    let (s, first) = a.schedule("restart-1", "node.restart", json!({})).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!(first["state"], "NEW");
    assert_eq!(first["args"], json!({"mode": "fast"}));
    let (s, dup) = a
        .schedule("restart-1", "shard.activate", json!({"shard": 1}))
        .await;
    assert_eq!(
        (s, dup["error"]["code"].as_str(), field(&dup)),
        (409, Some("duplicate_id"), "id")
    );
    assert_eq!(dup["action"]["kind"], "node.restart");
    assert_eq!(dup["action"]["seq"], first["seq"]);
    // The restart runs; one more waits; the next is refused.
    common::wait_running(&a, "restart-1").await;
    let (s, _) = a.schedule("w1", "node.restart", json!({})).await;
    assert_eq!(s, 201);
    let (s, full) = a.schedule("w2", "node.restart", json!({})).await;
    assert_eq!(
        (s, full["error"]["code"].as_str()),
        (429, Some("queue_full")),
        "{full}"
    );
    let done = a.finished("restart-1", Duration::from_secs(60)).await;
    assert_eq!(done["state"], "DONE", "{done}");
    assert_eq!(
        a.finished("w1", Duration::from_secs(60)).await["state"],
        "DONE"
    );
    let (_, got) = a.get("/v1/actions/w2").await;
    assert_eq!(got["error"]["code"], "not_found");

    // A master-only kind on a replica fails with a code, and the queue moves on.
    let (s, _) = a
        .schedule("act", "shard.activate", json!({"shard": 1}))
        .await;
    assert_eq!(s, 201);
    let r = a.finished("act", Duration::from_secs(30)).await;
    assert_eq!(
        (r["state"].as_str(), r["error"]["code"].as_str()),
        (Some("FAILED"), Some("not_master")),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_run_one_at_a_time_in_acceptance_order() {
    let c = TestCluster::setup(1, 1).shards([1]).start().await.unwrap();
    let (mp, _) = ports(&c);
    let a = std::sync::Arc::new(start_agent(&c, mp).await);
    let mut clients = Vec::new();
    for client in 0..3 {
        let a = a.clone();
        clients.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..6 {
                let kind = if i % 2 == 0 {
                    "shard.deactivate"
                } else {
                    "shard.activate"
                };
                let (s, v) = a
                    .schedule(&format!("c{client}-{i}"), kind, json!({"shard": 1}))
                    .await;
                assert_eq!(s, 201, "{v}");
                seqs.push(v["seq"].as_i64().unwrap());
            }
            seqs
        }));
    }
    for cl in clients {
        let seqs = cl.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one client's order kept: {seqs:?}"
        );
    }
    let mut records = Vec::new();
    for client in 0..3 {
        for i in 0..6 {
            records.push(
                a.finished(&format!("c{client}-{i}"), Duration::from_secs(60))
                    .await,
            );
        }
    }
    records.sort_by_key(|r| r["seq"].as_i64().unwrap());
    for r in &records {
        assert_eq!(r["state"], "DONE", "{r}");
        assert_eq!(r["attempts"], 1);
    }
    for w in records.windows(2) {
        let (prev_end, next_start) = (
            w[0]["finished_at_ms"].as_i64().unwrap(),
            w[1]["started_at_ms"].as_i64().unwrap(),
        );
        assert!(
            prev_end <= next_start,
            "overlap or out of order: {} then {}",
            w[0],
            w[1]
        );
    }
    // The last one accepted decides the flag.
    let last = records.last().unwrap();
    let want = last["kind"] == "shard.activate";
    assert_eq!(
        c.psql(mp, "select active from atoll.shards where shard = 1"),
        if want { "t" } else { "f" }
    );
    let (_, hist) = a.get("/v1/actions?state=DONE&limit=5").await;
    let listed: Vec<i64> = hist["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    let newest: Vec<i64> = records
        .iter()
        .rev()
        .take(5)
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, newest, "history newest first");
    let (s, metrics) = a.get("/metrics").await;
    assert_eq!(s, 200);
    let text = metrics.as_str().unwrap();
    assert!(text.contains("atoll_agent_action_pickup_seconds"), "{text}");
    assert!(
        text.contains("atoll_agent_actions_finished_total"),
        "{text}"
    );
}
