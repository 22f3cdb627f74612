use super::*;

fn cfg(sync: bool) -> HaConfig {
    RawHa {
        endpoints: vec!["http://127.0.0.1:2379".into()],
        synchronous: sync,
        max_lag_bytes: Some(1000),
        ..Default::default()
    }
    .validate("c")
    .unwrap()
}

fn member(node: &str, role: MemberRole, position: u64) -> MemberRecord {
    MemberRecord {
        node: node.into(),
        agent: String::new(),
        role,
        position,
        timeline: 1,
        replay_age_ms: None,
        upstream: None,
        at_ms: 0,
    }
}

fn optime(position: u64) -> Optime {
    Optime {
        node: "m:1".into(),
        position,
        timeline: 1,
        at_ms: 0,
    }
}

#[test]
fn defaults_and_derived_bounds() {
    let c = cfg(false);
    assert_eq!(c.prefix, "/atoll/c");
    assert_eq!(c.ttl, Duration::from_secs(10));
    assert_eq!(c.loop_interval, Duration::from_secs(1));
    assert!(c.demote_after() + c.demote_margin() == c.ttl);
    assert!(c.demote_margin() >= c.loop_interval * 2);
    assert_eq!(
        c.keys(IslandId(3)).leader(),
        "/atoll/c/islands/3/leader".to_string()
    );
    assert_eq!(
        c.keys(IslandId(3)).member("h:5"),
        "/atoll/c/islands/3/members/h:5"
    );
}

#[test]
fn bad_fields_are_named() {
    let bad = |raw: RawHa| raw.validate("c").unwrap_err();
    assert!(bad(RawHa::default()).contains("ha.endpoints"));
    let ep = || vec!["http://127.0.0.1:2379".to_string()];
    assert!(bad(RawHa {
        endpoints: vec!["127.0.0.1:2379".into()],
        ..Default::default()
    })
    .contains("not http://"));
    assert!(bad(RawHa {
        endpoints: ep(),
        ttl_s: Some(1),
        ..Default::default()
    })
    .contains("ha.ttl_s = 1"));
    assert!(bad(RawHa {
        endpoints: ep(),
        ttl_s: Some(2),
        loop_ms: Some(1000),
        ..Default::default()
    })
    .contains("fewer than 4 loops"));
    assert!(bad(RawHa {
        endpoints: ep(),
        prefix: Some("atoll/".into()),
        ..Default::default()
    })
    .contains("ha.prefix"));
    assert!(bad(RawHa {
        endpoints: ep(),
        max_lag_bytes: Some(-1),
        ..Default::default()
    })
    .contains("ha.max_lag_bytes = -1"));
}

#[test]
fn the_most_advanced_qualifying_member_wins() {
    let c = cfg(false);
    let fresh = [
        member("b:1", MemberRole::Replica, 900),
        member("a:1", MemberRole::Replica, 950),
        member("c:1", MemberRole::Replica, 10),
        member("d:1", MemberRole::Down, 0),
    ];
    match elect(&c, &fresh, Some(&optime(1000)), None) {
        Election::Winner {
            node,
            lag_bytes,
            refused,
        } => {
            assert_eq!(node, "a:1");
            assert_eq!(lag_bytes, 50);
            assert!(
                refused.contains(&(
                    "c:1".into(),
                    Refusal::LagBytes {
                        lag_bytes: 990,
                        max_lag_bytes: 1000
                    }
                )) || refused.iter().any(|(n, _)| n == "c:1")
            );
            assert!(refused.contains(&("d:1".into(), Refusal::Down)));
            assert!(refused.contains(&(
                "b:1".into(),
                Refusal::NotMostAdvanced {
                    winner: "a:1".into()
                }
            )));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ties_go_to_the_lowest_address() {
    let c = cfg(false);
    let fresh = [
        member("b:1", MemberRole::Replica, 5),
        member("a:1", MemberRole::Replica, 5),
    ];
    assert!(
        matches!(elect(&c, &fresh, None, None), Election::Winner { node, .. } if node == "a:1")
    );
}

#[test]
fn a_member_beyond_the_lag_limit_is_never_promoted() {
    let c = cfg(false);
    let fresh = [member("a:1", MemberRole::Replica, 0)];
    match elect(&c, &fresh, Some(&optime(5000)), None) {
        Election::NoWinner { refused, .. } => assert_eq!(
            refused,
            vec![(
                "a:1".to_string(),
                Refusal::LagBytes {
                    lag_bytes: 5000,
                    max_lag_bytes: 1000
                }
            )]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_older_timeline_is_refused() {
    let c = cfg(false);
    let mut m = member("a:1", MemberRole::Replica, 10_000);
    m.timeline = 1;
    let o = Optime {
        timeline: 2,
        ..optime(10)
    };
    assert!(matches!(
        elect(&c, &[m], Some(&o), None),
        Election::NoWinner { refused, .. } if matches!(refused[0].1, Refusal::TimelineBehind { .. })
    ));
}

#[test]
fn synchronous_mode_waits_for_every_sync_standby() {
    let c = cfg(true);
    let sync = SyncSet {
        master: "m:1".into(),
        standbys: vec!["a:1".into(), "b:1".into()],
    };
    let only_a = [member("a:1", MemberRole::Replica, 10)];
    match elect(&c, &only_a, Some(&optime(10)), Some(&sync)) {
        Election::NoWinner { why, .. } => assert!(why.contains("b:1"), "{why}"),
        other => panic!("{other:?}"),
    }
    let both = [
        member("a:1", MemberRole::Replica, 10),
        member("b:1", MemberRole::Replica, 9),
    ];
    assert!(matches!(
        elect(&c, &both, Some(&optime(10)), Some(&sync)),
        Election::Winner { node, .. } if node == "a:1"
    ));
}

#[test]
fn replay_age_counts_only_when_wal_is_missing() {
    let mut c = cfg(false);
    c.max_lag = Some(Duration::from_millis(100));
    let mut m = member("a:1", MemberRole::Replica, 1000);
    m.replay_age_ms = Some(60_000);
    assert!(matches!(
        elect(&c, std::slice::from_ref(&m), Some(&optime(1000)), None),
        Election::Winner { .. }
    ));
    m.position = 999;
    assert!(matches!(
        elect(&c, &[m], Some(&optime(1000)), None),
        Election::NoWinner { refused, .. } if matches!(refused[0].1, Refusal::LagTime { .. })
    ));
}

#[test]
fn standby_names() {
    assert_eq!(standby_name("127.0.0.1:5432"), "atoll_127_0_0_1_5432");
    assert_eq!(
        standby_names_setting(&["x".into(), "y".into()]),
        "ANY 1 (\"x\", \"y\")"
    );
    assert_eq!(standby_names_setting(&[]), "");
}
