//! Attributes against PostgreSQL's own views on real sandbox nodes: every attribute, lag
//! while replay is paused, a stopped server, and that reading stays on the node.

mod common;

use atoll_testkit::{wait_until, TestCluster};
use common::{lsn, start_agent};
use serde_json::Value;
use std::time::Duration;

fn ports(c: &TestCluster) -> (u16, u16) {
    let island = &c.sandbox().islands()[0];
    (island.nodes[0].port, island.nodes[1].port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_match_the_servers_views() {
    let c = TestCluster::setup(1, 1).shards(0..3).start().await.unwrap();
    c.allocate(&atoll_testkit::shards([7]), None, false)
        .await
        .unwrap();
    let (mp, rp) = ports(&c);
    let master = start_agent(&c, mp).await;
    let replica = start_agent(&c, rp).await;

    let before = lsn(&c, mp, "pg_current_wal_lsn()");
    let a = master.attributes().await;
    let after = lsn(&c, mp, "pg_current_wal_lsn()");
    let cluster_id = c.psql(mp, "select value from atoll.meta where key = 'cluster_id'");
    assert_eq!(a["cluster_id"], Value::String(cluster_id.clone()), "{a}");
    assert_eq!(a["node_id"], format!("127.0.0.1:{mp}"));
    assert_eq!(a["island"], 0);
    assert_eq!(a["agent_version"], env!("CARGO_PKG_VERSION"));
    let num: i64 = c.psql(mp, "show server_version_num").parse().unwrap();
    let want = format!("{}.{}.0", num / 10000, num % 10000);
    assert_eq!(a["store_version"], want);
    assert!(semver_ok(a["store_version"].as_str().unwrap()));
    assert_eq!(a["status"], "HEALTHY", "{a}");
    assert_eq!(a["role"], "master");

    // Shards: every shNNNN schema, active as the registry says.
    let rows = c.psql(
        mp,
        "select n.nspname || ':' || coalesce(s.active, false) from pg_namespace n
         left join atoll.shards s on s.shard = substr(n.nspname, 3)::int
         where n.nspname ~ '^sh[0-9]{4}$' order by 1",
    );
    let want: Vec<String> = rows.lines().map(str::to_string).collect();
    let got: Vec<String> = a["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{}:{}", s["id"].as_str().unwrap(), s["state"] == "PRIMARY"))
        .collect();
    assert_eq!(got, want);
    let inactive = a["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "sh0007")
        .unwrap();
    assert_eq!(inactive["state"], "INACTIVE");
    for s in a["shards"].as_array().unwrap() {
        let off = s["commit_offset"]["value"].as_i64().unwrap();
        assert!(
            (before..=after).contains(&off),
            "{off} not in {before}..={after}"
        );
        assert_eq!(s["commit_offset"]["unit"], "bytes");
        assert!(s["replication_lag"].is_null());
    }

    // The maps, against pg_settings and the slot views.
    let st = &a["store_attributes"];
    for (name, kind) in [
        ("max_replication_slots", "int"),
        ("max_wal_senders", "int"),
        ("wal_level", "text"),
        ("synchronous_standby_names", "text"),
    ] {
        let setting = c.psql(
            mp,
            &format!("select setting from pg_settings where name = '{name}'"),
        );
        let got = &st[format!("postgresql.{name}")];
        match kind {
            "int" => assert_eq!(got.as_i64().unwrap().to_string(), setting, "{name}"),
            _ => assert_eq!(got.as_str().unwrap(), setting, "{name}"),
        }
    }
    let slots: i64 = c
        .psql(mp, "select count(*) from pg_replication_slots")
        .parse()
        .unwrap();
    assert_eq!(st["postgresql.replication_slots.used"], slots);
    let senders: i64 = c
        .psql(
            mp,
            "select count(*) from pg_stat_replication where state = 'streaming'",
        )
        .parse()
        .unwrap();
    assert_eq!(st["postgresql.wal_senders.streaming"], senders);
    let tli: i64 = c
        .psql(mp, "select timeline_id from pg_control_checkpoint()")
        .parse()
        .unwrap();
    assert_eq!(st["postgresql.timeline"], tli);
    // Every other store attribute, against the view it comes from: the settings map
    // entry by entry against pg_settings, the rest against their functions.
    let mut checked = 0;
    for (key, got) in st.as_object().unwrap() {
        let name = key.strip_prefix("postgresql.").unwrap();
        // Derived ones (slots, senders, receiver, lag) and functions' results: below.
        if name.contains('.')
            || ["in_recovery", "replay_paused", "timeline", "wal_lsn"].contains(&name)
        {
            continue;
        }
        let row = c.psql(
            mp,
            &format!("select count(*) || ':' || coalesce(max(setting), '') from pg_settings where name = '{name}'"),
        );
        let setting = row
            .strip_prefix("1:")
            .unwrap_or_else(|| panic!("{key}: no such setting"));
        let got = match got {
            Value::Bool(b) => (if *b { "on" } else { "off" }).to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(got, setting, "{key}");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} settings in the map: {st}");
    assert_eq!(st["postgresql.in_recovery"], false);
    assert_eq!(st["postgresql.replay_paused"], false);
    assert_eq!(st["postgresql.server_version_num"], num);
    let wal = st["postgresql.wal_lsn"].as_i64().unwrap();
    assert!(
        (before..=after).contains(&wal),
        "{wal} not in {before}..={after}"
    );
    let ag = &a["agent_attributes"];
    assert_eq!(
        ag["atoll.agent.data_directory"],
        c.psql(mp, "show data_directory")
    );
    assert!(ag["atoll.agent.uptime_ms"].as_u64().is_some());
    assert_eq!(ag["atoll.agent.binaries.pg_ctl"], true);

    // The replica: SECONDARY copies, replayed offset, lag 0 when caught up.
    wait_until("the replica caught up", Duration::from_secs(30), || async {
        let v = replica.attributes().await;
        Ok(v["shards"][0]["replication_lag"]["bytes"] == 0)
    })
    .await
    .unwrap();
    let r = replica.attributes().await;
    assert_eq!(r["role"], "replica");
    assert_eq!(r["status"], "HEALTHY", "{r}");
    assert_eq!(r["cluster_id"], Value::String(cluster_id));
    let states: Vec<&str> = r["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["SECONDARY", "SECONDARY", "SECONDARY", "INACTIVE"]);
    let replayed = lsn(&c, rp, "pg_last_wal_replay_lsn()");
    let off = r["shards"][0]["commit_offset"]["value"].as_i64().unwrap();
    assert!(off <= replayed, "{off} > {replayed}");
    let lag = &r["shards"][0]["replication_lag"];
    assert_eq!(
        (lag["bytes"].as_i64(), lag["ms"].as_i64()),
        (Some(0), Some(0)),
        "{lag}"
    );
    assert!(lag["age_ms"].as_i64().is_some(), "{lag}");
    let rs = &r["store_attributes"];
    assert_eq!(rs["postgresql.wal_receiver.status"], "streaming");
    assert_eq!(
        c.psql(rp, "select status from pg_stat_wal_receiver"),
        "streaming"
    );
    assert_eq!(rs["postgresql.in_recovery"], true);
    assert_eq!(
        (
            rs["postgresql.lag.bytes"].as_i64(),
            rs["postgresql.lag.ms"].as_i64()
        ),
        (Some(0), Some(0)),
        "{rs}"
    );
    let wal = rs["postgresql.wal_lsn"].as_i64().unwrap();
    assert!(wal <= lsn(&c, rp, "pg_last_wal_replay_lsn()"), "{rs}");

    // Reading stays on the node: the replica's agent has no session on the master.
    let on_master = c.psql(
        mp,
        "select count(*) from pg_stat_activity where application_name = 'atoll-agent'",
    );
    let on_replica = c.psql(
        rp,
        "select count(*) from pg_stat_activity where application_name = 'atoll-agent'",
    );
    assert_eq!((on_master.as_str(), on_replica.as_str()), ("1", "1"));
}

fn semver_ok(s: &str) -> bool {
    s.split('.').count() == 3 && s.split('.').all(|p| p.parse::<u64>().is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_in_bytes_and_ms_while_replay_is_paused() {
    let c = TestCluster::setup(1, 1).shards([1]).start().await.unwrap();
    let (mp, rp) = ports(&c);
    let replica = start_agent(&c, rp).await;
    wait_until(
        "the replica has the shard",
        Duration::from_secs(30),
        || async { Ok(replica.attributes().await["shards"][0]["state"] == "SECONDARY") },
    )
    .await
    .unwrap();
    c.psql(rp, "select pg_wal_replay_pause()");
    c.psql(
        mp,
        "create table sh0001.t (id int); insert into sh0001.t select generate_series(1, 1000)",
    );
    wait_until(
        "WAL received but not replayed",
        Duration::from_secs(30),
        || async {
            Ok(lsn(&c, rp, "pg_last_wal_receive_lsn()") > lsn(&c, rp, "pg_last_wal_replay_lsn()"))
        },
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let a = replica.attributes().await;
    let diff = lsn(&c, rp, "pg_last_wal_receive_lsn()") - lsn(&c, rp, "pg_last_wal_replay_lsn()");
    let lag = &a["shards"][0]["replication_lag"];
    let (bytes, ms) = (lag["bytes"].as_i64().unwrap(), lag["ms"].as_i64().unwrap());
    assert!(
        bytes > 0 && bytes <= diff,
        "lag {bytes} bytes, views say {diff}: {a}"
    );
    assert!(ms >= 50, "lag {ms} ms: {a}");
    assert_eq!(a["status"], "UNHEALTHY");
    assert_eq!(a["status_reasons"], serde_json::json!(["replay_paused"]));
    assert_eq!(a["store_attributes"]["postgresql.replay_paused"], true);

    c.psql(rp, "select pg_wal_replay_resume()");
    wait_until("the lag is back to 0", Duration::from_secs(30), || async {
        let a = replica.attributes().await;
        let lag = &a["shards"][0]["replication_lag"];
        Ok(lag["bytes"] == 0 && lag["ms"] == 0 && a["status"] == "HEALTHY")
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_unavailable_and_agent_attributes_remain() {
    let c = TestCluster::setup(1, 1).start().await.unwrap();
    let (_, rp) = ports(&c);
    let replica = start_agent(&c, rp).await;
    let data_dir = c.psql(rp, "show data_directory");
    assert_eq!(
        replica.attributes().await["agent_attributes"]["atoll.agent.data_directory"],
        data_dir
    );
    c.sandbox().stop_node(0, 1).unwrap();
    let a = replica.attributes().await;
    assert_eq!(a["status"], "UNAVAILABLE", "{a}");
    assert!(a["status_message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(a["store_version"].is_null() && a["role"].is_null());
    assert_eq!(a["store_attributes"], serde_json::json!({}));
    assert_eq!(
        a["agent_attributes"]["atoll.agent.data_directory"],
        data_dir
    );
    c.sandbox().start_node(0, 1).unwrap();
    wait_until("the replica is back", Duration::from_secs(30), || async {
        Ok(replica.attributes().await["status"] == "HEALTHY")
    })
    .await
    .unwrap();
}
