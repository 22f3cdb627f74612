//! `node.switchover`: refusals with their reason codes and figures (a candidate with replay
//! paused, behind by more than `max_lag_bytes`, a stopped candidate, no candidate), then a
//! switchover under an atoll-client writer that loses no acknowledged write and follows
//! the new master; the old master streams from the new one.

mod common;

use atoll_testkit::{shard, wait_until, writer, TestCluster};
use common::{start_agent, start_with};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_refusals_then_a_switchover_under_a_writer() {
    let c = TestCluster::setup(1, 1).shards([1]).start().await.unwrap();
    let island = &c.sandbox().islands()[0];
    let (mp, rp) = (island.nodes[0].port, island.nodes[1].port);
    c.psql(mp, "create table sh0001.items (id bigint primary key default sh0001.id_gen(), payload bigint not null)");
    let master = start_agent(&c, mp).await;
    let replica = start_agent(&c, rp).await;
    let cand = format!("127.0.0.1:{rp}");

    // Replay paused, behind: refused with the figures.
    c.psql(rp, "select pg_wal_replay_pause()");
    c.psql(
        mp,
        "insert into sh0001.items (payload) select -g from generate_series(1, 2000) g",
    );
    wait_until(
        "the candidate received the rows",
        Duration::from_secs(30),
        || async {
            Ok(common::lsn(&c, rp, "pg_last_wal_receive_lsn()")
                > common::lsn(&c, rp, "pg_last_wal_replay_lsn()"))
        },
    )
    .await
    .unwrap();
    master
        .schedule(
            "so-lag",
            "node.switchover",
            json!({"candidate": cand, "max_lag_bytes": 0}),
        )
        .await;
    let r = master.finished("so-lag", Duration::from_secs(30)).await;
    let e = &r["error"];
    assert_eq!(e["code"], "candidate_lag_bytes", "{r}");
    let lag = e["candidate_lag_bytes"].as_i64().unwrap();
    assert!(lag > 0 && e["max_lag_bytes"] == 0, "{r}");
    assert_eq!(
        e["master_lsn"].as_i64().unwrap() - e["candidate_replay_lsn"].as_i64().unwrap(),
        lag
    );
    // Within the bound, a paused replay is still refused.
    master
        .schedule("so-paused", "node.switchover", json!({"candidate": cand}))
        .await;
    let r = master.finished("so-paused", Duration::from_secs(30)).await;
    assert_eq!(r["error"]["code"], "candidate_replay_paused", "{r}");
    master
        .schedule("so-any", "node.switchover", json!({"max_lag_bytes": 0}))
        .await;
    let r = master.finished("so-any", Duration::from_secs(30)).await;
    assert_eq!(r["error"]["code"], "no_candidate", "{r}");
    assert_eq!(
        r["error"]["candidates"][0]["reason"]["code"], "candidate_lag_bytes",
        "{r}"
    );
    // Nothing changed.
    assert_eq!(c.psql(mp, "select pg_is_in_recovery()"), "f");

    c.psql(rp, "select pg_wal_replay_resume()");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(writer::run(c.config().clone(), shard(1), stop.clone()));
    wait_until("the writer writes", Duration::from_secs(30), || async {
        Ok(c.psql(mp, "select count(*) from sh0001.items where payload > 0") != "0")
    })
    .await
    .unwrap();

    // Now the switchover, under the writer.
    master
        .schedule("so-1", "node.switchover", json!({"candidate": cand}))
        .await;
    let r = master.finished("so-1", Duration::from_secs(120)).await;
    assert_eq!(r["state"], "DONE", "{r}");
    let out = &r["output"];
    assert_eq!(out["new_master"], cand);
    let refusal_ms = out["write_refusal_ms"].as_u64().unwrap();
    eprintln!("switchover: writes refused for {refusal_ms} ms");
    assert_eq!(c.psql(rp, "select pg_is_in_recovery()"), "f");
    wait_until(
        "the old master streams from the new one",
        Duration::from_secs(30),
        || async {
            Ok(c.sandbox()
                .psql(mp, "select status from pg_stat_wal_receiver")
                .ok()
                .as_deref()
                == Some("streaming"))
        },
    )
    .await
    .unwrap();
    // The client follows: acknowledged writes continue on the new master.
    let acked_before = c.psql(rp, "select count(*) from sh0001.items where payload > 0");
    wait_until(
        "the writer writes on the new master",
        Duration::from_secs(30),
        || async {
            Ok(c.psql(rp, "select count(*) from sh0001.items where payload > 0") != acked_before)
        },
    )
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let stats = writer.await.unwrap();
    writer::check_acked(c.config(), shard(1), &stats.acked).await;
    eprintln!(
        "writer: {} acked, {} errors, max gap {:?}",
        stats.acked.len(),
        stats.errors.len(),
        stats.max_gap
    );
    // The client retries everything that provably did not run; what may reach a
    // non-idempotent writer is a connection lost under a statement at the shutdown
    // (it may have run; the agent benchmark's audit reports whether it did).
    for e in &stats.errors {
        // tokio-postgres' words for a connection that ended (closed, or an I/O error).
        let lost = e.message.ends_with("connection closed")
            || e.message.contains("error communicating with the server");
        assert!(
            lost,
            "an error other than a lost connection reached the writer: {}",
            e.message
        );
    }

    let ma = master.attributes().await;
    assert_eq!(ma["role"], "replica", "{ma}");
    let ra = replica.attributes().await;
    assert_eq!(
        (ra["role"].as_str(), ra["shards"][0]["state"].as_str()),
        (Some("master"), Some("PRIMARY")),
        "{ra}"
    );

    // The new master's replica stopped: candidate_not_streaming.
    let back = start_with(&c, rp, |_| {}).await;
    c.sandbox().stop_node(0, 0).unwrap();
    back.schedule(
        "so-stopped",
        "node.switchover",
        json!({"candidate": format!("127.0.0.1:{mp}")}),
    )
    .await;
    let r = back.finished("so-stopped", Duration::from_secs(30)).await;
    assert_eq!(r["error"]["code"], "candidate_not_streaming", "{r}");
    // On a replica: not the master.
    c.sandbox().start_node(0, 0).unwrap();
    master
        .schedule("so-replica", "node.switchover", json!({}))
        .await;
    assert_eq!(
        master.finished("so-replica", Duration::from_secs(30)).await["error"]["code"],
        "not_master"
    );
}
