//! Node choice without a database: snapshots built from observations, then `plan`.

use crate::attempt::{plan, FaultKind, Target};
use crate::cluster::{Shared, State};
use crate::options::ClusterOptions;
use crate::timeline::{Freshness, Timeline};
use atoll_core::*;
use std::collections::HashMap;
use std::sync::Arc;

fn node(port: u16, recovery: bool, lsn: u64) -> NodeObservation {
    NodeObservation {
        island: IslandId(0),
        addr: format!("127.0.0.1:{port}"),
        outcome: Ok(NodeFacts {
            in_recovery: recovery,
            server_version: "15".into(),
            lsn: Lsn(lsn),
            replay_lag_seconds: recovery.then_some(0.0),
        }),
    }
}

fn down(port: u16) -> NodeObservation {
    NodeObservation {
        island: IslandId(0),
        addr: format!("127.0.0.1:{port}"),
        outcome: Err("connection refused".into()),
    }
}

fn state(nodes: Vec<NodeObservation>, active: bool) -> State {
    let catalog = IslandCatalog {
        cluster_id: Some("c".into()),
        catalog_island: Some(IslandId(0)),
        shards: vec![ShardObservation {
            shard: sh(1),
            schema_exists: true,
            active,
            size_bytes: None,
            gen: 0,
            rows_estimate: None,
            weight: None,
        }],
        global_copy: None,
    };
    let snap = Snapshot::build(0, vec![(IslandId(0), nodes, Some(catalog))]);
    let config = Config::parse(
        "[cluster]\nname = \"t\"\n[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 1, user = \"u\", database = \"d\" }]\n",
        ConfigSource::Inline,
    )
    .unwrap();
    State::new(Arc::new(config), Arc::new(snap), Arc::new(HashMap::new()))
}

fn shared(s: State) -> Shared {
    Shared::new(s, ClusterOptions::default(), crate::cluster::IdSource::None)
}

fn install(sh: &Shared, s: State, covers: u64) {
    sh.install(s.config, (*s.snapshot).clone(), s.pools, covers);
}

fn sh(n: i64) -> ShardNo {
    ShardNo::new(n).unwrap()
}

fn now() -> u64 {
    crate::attempt::now_ms()
}

#[test]
fn master_and_stale_reads() {
    let st = state(vec![node(10, false, 1000), node(11, true, 900)], true);
    let sh_ = shared(state(vec![], true));
    let p = plan(&sh_, &st, sh(1), Target::Master, None).ok().unwrap();
    assert_eq!((p.addr, p.check), ("127.0.0.1:10", None));
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::StaleReplica),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!(p.addr, "127.0.0.1:11");
    // The replica failed: the next attempt avoids it and uses the master.
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::StaleReplica),
        Some("127.0.0.1:11"),
    )
    .ok()
    .unwrap();
    assert_eq!(p.addr, "127.0.0.1:10");
}

#[test]
fn timeline_reads_need_a_caught_up_replica() {
    let st = state(vec![node(10, false, 1000), node(11, true, 900)], true);
    let sh_ = shared(state(vec![], true));
    let t = Timeline::new();
    // Behind the write per the snapshot: check the replica directly, master as fallback.
    t.record(sh(1), IslandId(0), Lsn(950), now() + 60_000);
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::Timeline(&t)),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!(
        (p.addr, p.check, p.master),
        ("127.0.0.1:11", Some(Lsn(950)), Some("127.0.0.1:10"))
    );
    // A direct check saw it replay further: no check needed any more.
    sh_.note_replayed("127.0.0.1:11", Lsn(960));
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::Timeline(&t)),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!((p.addr, p.check), ("127.0.0.1:11", None));
    // Written to before the snapshot: the replica qualifies as it is.
    let old = Timeline::new();
    old.record(sh(1), IslandId(0), Lsn(800), now() + 60_000);
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::Timeline(&old)),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!((p.addr, p.check), ("127.0.0.1:11", None));
    // Expired entries do not matter.
    let expired = Timeline::new();
    expired.record(sh(1), IslandId(0), Lsn(5000), now() - 1);
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::Timeline(&expired)),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!((p.addr, p.check), ("127.0.0.1:11", None));
}

#[test]
fn a_write_on_another_island_is_read_from_the_master() {
    // Shard 1 is now on island 0; the caller wrote to it on island 1 before a move, at a
    // position island 0's replica has long passed. That position is another WAL's: only
    // the master is sure to have the (copied) row.
    let st = state(vec![node(10, false, 1000), node(11, true, 900)], true);
    let sh_ = shared(state(vec![], true));
    let t = Timeline::new();
    t.record(sh(1), IslandId(1), Lsn(5), now() + 60_000);
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::Timeline(&t)),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!((p.addr, p.check), ("127.0.0.1:10", None));
    // Once expired, replicas are fine again.
    let t = Timeline::new();
    t.record(sh(1), IslandId(1), Lsn(5), now() - 1);
    let p = plan(
        &sh_,
        &st,
        sh(1),
        Target::Read(Freshness::Timeline(&t)),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!(p.addr, "127.0.0.1:11");
}

#[test]
fn absent_shards_and_missing_masters_are_faults() {
    let sh_ = shared(state(vec![], true));
    let inactive = state(vec![node(10, false, 1000)], false);
    let f = plan(&sh_, &inactive, sh(1), Target::Master, None)
        .err()
        .unwrap();
    assert!(matches!(f.fault, FaultKind::ShardNotActive));
    let f = plan(&sh_, &inactive, sh(2), Target::Master, None)
        .err()
        .unwrap();
    assert!(matches!(f.fault, FaultKind::ShardNotActive));
    // Master down: reads may use the replica, writes have nowhere to go.
    let headless = state(vec![down(10), node(11, true, 900)], true);
    let f = plan(&sh_, &headless, sh(1), Target::Master, None)
        .err()
        .unwrap();
    assert!(matches!(f.fault, FaultKind::NoMaster));
    let p = plan(
        &sh_,
        &headless,
        sh(1),
        Target::Read(Freshness::StaleReplica),
        None,
    )
    .ok()
    .unwrap();
    assert_eq!(p.addr, "127.0.0.1:11");
    // Avoiding the master (it just refused a connection) is treated as no master.
    let st = state(vec![node(10, false, 1000)], true);
    let f = plan(&sh_, &st, sh(1), Target::Master, Some("127.0.0.1:10"))
        .err()
        .unwrap();
    assert!(matches!(f.fault, FaultKind::NoMaster));
}

#[tokio::test]
async fn a_refresh_waits_for_a_round_started_after_the_request() {
    let sh_ = Arc::new(shared(state(vec![], true)));
    // A round is already reading the nodes when the caller hits a routing error.
    let in_flight = sh_.round_start();
    let waiter = tokio::spawn({
        let sh_ = sh_.clone();
        async move {
            sh_.refresh_and_wait(std::time::Duration::from_secs(10))
                .await
        }
    });
    while sh_.requested.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    // It finishes: it may have read the nodes before the change the caller saw.
    install(&sh_, state(vec![], true), in_flight);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !waiter.is_finished(),
        "a round started before the request satisfied it"
    );
    // The next round starts after the request and satisfies it.
    let next = sh_.round_start();
    install(&sh_, state(vec![], true), next);
    assert!(waiter.await.unwrap(), "the refresh was not published");
}

#[test]
fn replay_positions_are_forgotten_at_each_snapshot() {
    let sh_ = shared(state(vec![], true));
    sh_.note_replayed("127.0.0.1:11", Lsn(960));
    assert_eq!(sh_.replayed("127.0.0.1:11"), Some(Lsn(960)));
    // The address may now be another node (rebuilt, another island): a new snapshot's
    // positions are the ones to trust.
    let covers = sh_.round_start();
    install(&sh_, state(vec![], true), covers);
    assert_eq!(sh_.replayed("127.0.0.1:11"), None);
}
