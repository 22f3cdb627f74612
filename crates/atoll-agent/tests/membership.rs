//! Node membership: `cluster.add` on the master + `cluster.join` on a new node gives a
//! streaming replica that serves reads; `cluster.remove` forgets it, and a second remove
//! is a no-op that says so.

mod common;

use atoll_agent::{Agent, AgentConfig};
use atoll_testkit::{wait_until, TestCluster};
use common::{config_with_node, free_port, ServerGuard, TempDir, TestAgent, TOKEN};
use serde_json::json;
use std::time::Duration;

async fn agent_for(
    config: atoll_core::Config,
    port: u16,
    tweak: impl FnOnce(&mut AgentConfig),
) -> TestAgent {
    let state = TempDir::new("member");
    let token_file = state.0.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let mut cfg = AgentConfig::for_node(
        config,
        &format!("127.0.0.1:{port}"),
        "127.0.0.1:0".parse().unwrap(),
        state.0.join("state"),
    )
    .unwrap();
    cfg.token = Some(format!("file:{}", token_file.display()).parse().unwrap());
    tweak(&mut cfg);
    let agent = Agent::start(cfg).await.unwrap();
    TestAgent {
        url: format!("http://{}", agent.addr()),
        agent: Some(agent),
        state,
        http: reqwest::Client::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_join_serves_reads_and_remove_is_idempotent() {
    let c = TestCluster::setup(1, 0).shards([3]).start().await.unwrap();
    let mp = c.master_ports()[0];
    c.psql(
        mp,
        "create table sh0003.t (id int primary key); insert into sh0003.t values (1), (2)",
    );
    let new_port = free_port();
    let config = config_with_node(&c, new_port);
    let island_dir = c.sandbox().islands()[0].nodes[0]
        .data_dir
        .parent()
        .unwrap()
        .to_path_buf();
    let data_dir = island_dir.join("joined");
    let master = agent_for(config.clone(), mp, |_| {}).await;
    let joiner = agent_for(config, new_port, |cfg| {
        cfg.data_dir = Some(data_dir.clone())
    })
    .await;
    let _server = ServerGuard(data_dir.clone());
    let before = joiner.attributes().await;
    assert_eq!(before["status"], "UNAVAILABLE", "{before}");

    // Joining without being added first is refused with a code.
    let (s, _) = joiner.schedule("join-0", "cluster.join", json!({})).await;
    assert_eq!(s, 201);
    let r = joiner.finished("join-0", Duration::from_secs(30)).await;
    assert_eq!(r["error"]["code"], "not_added", "{r}");

    let node = format!("127.0.0.1:{new_port}");
    let (s, v) = master
        .schedule(
            "add-1",
            "cluster.add",
            json!({"node": node, "auth": "trust"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let added = master.finished("add-1", Duration::from_secs(30)).await;
    assert_eq!(added["state"], "DONE", "{added}");
    assert_eq!(added["output"]["slot_created"], true);
    let slot = added["output"]["slot"].as_str().unwrap().to_string();
    assert_eq!(
        c.psql(
            mp,
            &format!("select count(*) from pg_replication_slots where slot_name = '{slot}'")
        ),
        "1"
    );
    // The rule is the first one the server reads, as the server itself parses it.
    let first = c.psql(mp, "select array_to_string(database, ',') || ' ' || address || ' ' || netmask || ' ' || auth_method
                            from pg_hba_file_rules where error is null order by line_number limit 1");
    assert_eq!(first, "replication 127.0.0.1 255.255.255.255 trust");
    // Adding again changes nothing.
    master
        .schedule(
            "add-2",
            "cluster.add",
            json!({"node": node, "auth": "trust"}),
        )
        .await;
    let again = master.finished("add-2", Duration::from_secs(30)).await;
    assert_eq!(
        (
            again["output"]["slot_created"].as_bool(),
            again["output"]["access_rule_added"].as_bool()
        ),
        (Some(false), Some(false)),
        "{again}"
    );

    let (s, _) = joiner.schedule("join-1", "cluster.join", json!({})).await;
    assert_eq!(s, 201);
    let joined = joiner.finished("join-1", Duration::from_secs(120)).await;
    assert_eq!(joined["state"], "DONE", "{joined}");
    assert_eq!(joined["output"]["master"], format!("127.0.0.1:{mp}"));

    // The new replica serves reads, including writes made after the join.
    c.psql(mp, "insert into sh0003.t values (3)");
    wait_until(
        "the new replica has the new row",
        Duration::from_secs(30),
        || async {
            Ok(c.sandbox()
                .psql(new_port, "select count(*) from sh0003.t")
                .ok()
                .as_deref()
                == Some("3"))
        },
    )
    .await
    .unwrap();
    assert_eq!(c.psql(new_port, "select pg_is_in_recovery()"), "t");
    let a = joiner.attributes().await;
    assert_eq!(
        (a["role"].as_str(), a["status"].as_str()),
        (Some("replica"), Some("HEALTHY")),
        "{a}"
    );
    assert_eq!(a["shards"][0]["state"], "SECONDARY");
    let streaming = c.psql(
        mp,
        &format!("select count(*) from pg_replication_slots where slot_name = '{slot}' and active"),
    );
    assert_eq!(streaming, "1");

    // Remove: stop the node first (a removed node must not come back), then twice.
    drop(_server);
    master
        .schedule("rm-1", "cluster.remove", json!({"node": node}))
        .await;
    let rm = master.finished("rm-1", Duration::from_secs(30)).await;
    assert_eq!(rm["state"], "DONE", "{rm}");
    assert_eq!(
        (
            rm["output"]["was_member"].as_bool(),
            rm["output"]["slot_dropped"].as_bool()
        ),
        (Some(true), Some(true)),
        "{rm}"
    );
    assert_eq!(rm["output"]["access_rules_removed"], 1);
    assert_eq!(
        c.psql(
            mp,
            &format!("select count(*) from pg_replication_slots where slot_name = '{slot}'")
        ),
        "0"
    );
    master
        .schedule("rm-2", "cluster.remove", json!({"node": node}))
        .await;
    let rm2 = master.finished("rm-2", Duration::from_secs(30)).await;
    assert_eq!(rm2["state"], "DONE");
    assert_eq!(rm2["output"]["was_member"], false);
    assert!(
        rm2["output"]["message"]
            .as_str()
            .unwrap()
            .contains("not a member"),
        "{rm2}"
    );
    // A node never heard of is the same no-op.
    master
        .schedule("rm-3", "cluster.remove", json!({"node": "10.9.9.9:5432"}))
        .await;
    assert_eq!(
        master.finished("rm-3", Duration::from_secs(30)).await["output"]["was_member"],
        false
    );
    let hba = std::fs::read_to_string(c.psql(mp, "show hba_file")).unwrap();
    assert!(!hba.contains("atoll-agent member"), "{hba}");
}
