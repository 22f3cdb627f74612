//! Tests of snapshot building: roles, lag, ownership and every problem it reports.

use crate::*;

fn node(island: u16, port: u16, recovery: bool, lsn: u64) -> NodeObservation {
    NodeObservation {
        island: IslandId(island),
        addr: format!("127.0.0.1:{port}"),
        outcome: Ok(NodeFacts {
            in_recovery: recovery,
            server_version: "15.18".into(),
            lsn: Lsn(lsn),
            replay_lag_seconds: recovery.then_some(1.5),
        }),
    }
}

fn down(island: u16, port: u16) -> NodeObservation {
    NodeObservation {
        island: IslandId(island),
        addr: format!("127.0.0.1:{port}"),
        outcome: Err("connection refused".into()),
    }
}

fn catalog(island: u16, shards: &[(u16, bool)]) -> Option<IslandCatalog> {
    Some(IslandCatalog {
        cluster_id: Some("cid".into()),
        catalog_island: Some(IslandId(island)),
        shards: shards
            .iter()
            .map(|(s, a)| ShardObservation {
                shard: ShardNo::new(*s as i64).unwrap(),
                schema_exists: true,
                active: *a,
                size_bytes: Some(8192),
                gen: 0,
                rows_estimate: None,
                weight: None,
            })
            .collect(),
        global_copy: None,
    })
}

fn sh(n: u16) -> ShardNo {
    ShardNo::new(n as i64).unwrap()
}

#[test]
fn roles_and_lag() {
    let s = Snapshot::build(
        0,
        vec![(
            IslandId(0),
            vec![node(0, 1, true, 100), node(0, 2, false, 1100)],
            catalog(0, &[]),
        )],
    );
    let i = &s.islands[0];
    assert_eq!(i.master().unwrap().addr, "127.0.0.1:2");
    let r = i.replicas().next().unwrap();
    assert_eq!(r.lag_bytes, Some(1000));
    assert_eq!(r.lag_seconds, Some(1.5));
    assert!(s.problems.is_empty(), "{:?}", s.problems);
}

#[test]
fn routes_active_shards_only() {
    let s = Snapshot::build(
        0,
        vec![
            (
                IslandId(0),
                vec![node(0, 1, false, 0)],
                catalog(0, &[(1, true), (2, false)]),
            ),
            (
                IslandId(1),
                vec![node(1, 2, false, 0)],
                catalog(1, &[(2, true), (3, false)]),
            ),
        ],
    );
    assert_eq!(s.active_island(sh(1)), Ok(IslandId(0)));
    assert_eq!(
        s.active_island(sh(2)),
        Ok(IslandId(1)),
        "inactive copy on 0 is ignored"
    );
    assert_eq!(s.active_island(sh(3)), Err(RouteError::NotActive(sh(3))));
    assert_eq!(s.active_island(sh(4)), Err(RouteError::NotActive(sh(4))));
    assert_eq!(s.shards[&sh(2)].len(), 2);
    let active: Vec<_> = s.active_shards().map(|(s, _)| s.get()).collect();
    assert_eq!(active, vec![1, 2]);
}

#[test]
fn duplicate_active_shard_names_both_islands() {
    let s = Snapshot::build(
        0,
        vec![
            (
                IslandId(0),
                vec![node(0, 1, false, 0)],
                catalog(0, &[(5, true)]),
            ),
            (
                IslandId(1),
                vec![node(1, 2, false, 0)],
                catalog(1, &[(5, true)]),
            ),
        ],
    );
    assert_eq!(
        s.problems,
        vec![SnapshotProblem::DuplicateActive {
            shard: sh(5),
            islands: vec![IslandId(0), IslandId(1)]
        }]
    );
    assert_eq!(
        s.problems[0].to_string(),
        "sh0005 is active on more than one island: island 0 and island 1"
    );
    assert!(matches!(
        s.active_island(sh(5)),
        Err(RouteError::Conflict { .. })
    ));
}

#[test]
fn node_down_and_masters() {
    let s = Snapshot::build(
        0,
        vec![
            (IslandId(0), vec![down(0, 1), node(0, 2, true, 0)], None),
            (
                IslandId(1),
                vec![node(1, 3, false, 0), node(1, 4, false, 0)],
                catalog(1, &[]),
            ),
        ],
    );
    assert!(!s.islands[0].shards_known);
    assert_eq!(
        s.islands[0].nodes[0].error.as_deref(),
        Some("connection refused")
    );
    assert!(s.problems.contains(&SnapshotProblem::NoMaster {
        island: IslandId(0)
    }));
    assert!(s
        .problems
        .iter()
        .any(|p| matches!(p, SnapshotProblem::NodeDown { .. })));
    assert!(s
        .problems
        .iter()
        .any(|p| matches!(p, SnapshotProblem::MultipleMasters { .. })));
    assert_eq!(s.islands[1].master, None, "two masters: none is trusted");
}

#[test]
fn catalog_mismatches() {
    let mut other = catalog(1, &[]).unwrap();
    other.cluster_id = Some("other".into());
    other.catalog_island = Some(IslandId(3));
    let mut uninit = catalog(2, &[]).unwrap();
    uninit.cluster_id = None;
    uninit.shards = vec![ShardObservation {
        shard: sh(9),
        schema_exists: false,
        active: true,
        size_bytes: None,
        gen: 0,
        rows_estimate: None,
        weight: None,
    }];
    let s = Snapshot::build(
        0,
        vec![
            (IslandId(0), vec![node(0, 1, false, 0)], catalog(0, &[])),
            (IslandId(1), vec![node(1, 2, false, 0)], Some(other)),
            (IslandId(2), vec![node(2, 3, false, 0)], Some(uninit)),
        ],
    );
    let text: Vec<String> = s.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter().any(|t| t.contains("belongs to cluster other")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.contains("catalog says island 3")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("island 2 has no atoll catalog")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("registers sh0009 but its schema is missing")),
        "{text:?}"
    );
}

#[test]
fn lsn_text_round_trip() {
    let l = Lsn::parse("16/B374D848").unwrap();
    assert_eq!(l.to_string(), "16/B374D848");
    assert!(Lsn::parse("zz").is_none());
}
