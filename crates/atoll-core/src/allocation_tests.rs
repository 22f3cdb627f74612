//! Tests of the allocation planner: where new shards go, and that a request's shards are
//! spread rather than piled onto one island.

use crate::allocation::*;
use crate::island::IslandId;
use crate::shard::ShardNo;
use crate::snapshot::Snapshot;
use crate::snapshot::{IslandCatalog, NodeFacts, NodeObservation, ShardObservation};
use crate::Lsn;

/// (shard, active, size) per island.
type IslandShards<'a> = (u16, &'a [(u16, bool, u64)]);

fn snap(islands: &[IslandShards]) -> Snapshot {
    Snapshot::build(
        0,
        islands
            .iter()
            .map(|(id, shards)| {
                let node = NodeObservation {
                    island: IslandId(*id),
                    addr: format!("h:{id}"),
                    outcome: Ok(NodeFacts {
                        in_recovery: false,
                        server_version: "15".into(),
                        lsn: Lsn(0),
                        replay_lag_seconds: None,
                    }),
                };
                let cat = IslandCatalog {
                    cluster_id: Some("c".into()),
                    catalog_island: Some(IslandId(*id)),
                    shards: shards
                        .iter()
                        .map(|(s, active, size)| ShardObservation {
                            shard: ShardNo::new(*s as i64).unwrap(),
                            schema_exists: true,
                            active: *active,
                            size_bytes: Some(*size),
                            gen: 0,
                            rows_estimate: None,
                            weight: None,
                        })
                        .collect(),
                    global_copy: None,
                };
                (IslandId(*id), vec![node], Some(cat))
            })
            .collect(),
    )
}

fn sh(r: std::ops::RangeInclusive<u16>) -> Vec<ShardNo> {
    r.map(|n| ShardNo::new(n as i64).unwrap()).collect()
}

#[test]
fn least_size_then_fewest_shards() {
    // Island 1 is bigger, so the first new shard goes to island 0; each new shard counts
    // as at least MIN_EXPECTED_SHARD_BYTES, so the next ones alternate.
    let s = snap(&[(0, &[(1, true, 100)]), (1, &[(2, true, 5000)])]);
    let p = plan(&s, &sh(3..=5), None).unwrap();
    assert_eq!(islands_of(&p), [0, 1, 0]);
    // Equal sizes: spread by count.
    let s = snap(&[(0, &[]), (1, &[])]);
    let p = plan(&s, &sh(1..=4), None).unwrap();
    assert_eq!(islands_of(&p), [0, 1, 0, 1]);
}

#[test]
fn shard_zero_goes_to_island_zero() {
    let s = snap(&[(0, &[(1, true, 10_000)]), (1, &[])]);
    let p = plan(&s, &sh(0..=0), None).unwrap();
    assert_eq!(
        p[0],
        Placement::Create {
            shard: ShardNo::GLOBAL,
            island: IslandId(0)
        }
    );
    let p = plan(&s, &sh(0..=0), Some(IslandId(1))).unwrap();
    assert_eq!(p[0].island(), IslandId(1));
}

#[test]
fn existing_is_noop_and_elsewhere_is_refused() {
    let s = snap(&[(0, &[(1, false, 0)]), (1, &[])]);
    let p = plan(&s, &sh(1..=1), None).unwrap();
    assert_eq!(
        p[0],
        Placement::Exists {
            shard: sh(1..=1)[0],
            island: IslandId(0),
            active: false
        }
    );
    let e = plan(&s, &sh(1..=2), Some(IslandId(1))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "sh0001 already exists on island 0; refusing to create it on island 1"
    );
    assert_eq!(
        plan(&s, &sh(1..=1), Some(IslandId(7))).unwrap_err(),
        AllocationError::UnknownIsland(IslandId(7))
    );
}

#[test]
fn shard_on_two_islands_is_refused() {
    let s = snap(&[(0, &[(1, true, 0)]), (1, &[(1, false, 0)])]);
    assert!(matches!(
        plan(&s, &sh(1..=1), None),
        Err(AllocationError::OnSeveralIslands { .. })
    ));
}

const GIB: u64 = 1 << 30;

fn islands_of(p: &[Placement]) -> Vec<u16> {
    p.iter().map(|p| p.island().0).collect()
}

fn count_on(p: &[Placement], island: u16) -> usize {
    p.iter().filter(|p| p.island() == IslandId(island)).count()
}

#[test]
fn hundred_new_shards_on_two_empty_islands_go_fifty_fifty() {
    let s = snap(&[(0, &[]), (1, &[])]);
    let p = plan(&s, &sh(1..=100), None).unwrap();
    assert_eq!((count_on(&p, 0), count_on(&p, 1)), (50, 50));
}

#[test]
fn the_lighter_island_fills_up_first_then_they_alternate() {
    // 10 GiB in ten 1 GiB shards against an empty island: a new shard is expected to weigh
    // 1 GiB, so island 1 takes ten, then the two alternate.
    let heavy: Vec<(u16, bool, u64)> = (1..=10).map(|n| (n, true, GIB)).collect();
    let s = snap(&[(0, &heavy), (1, &[])]);
    let p = plan(&s, &sh(100..=199), None).unwrap();
    assert!(p[..10].iter().all(|p| p.island() == IslandId(1)));
    let rest = islands_of(&p[10..]);
    assert!(rest.windows(2).all(|w| w[0] != w[1]), "{rest:?}");
    assert_eq!((count_on(&p, 0), count_on(&p, 1)), (45, 55));
    // One 10 GiB shard: a new shard is expected to weigh 10 GiB, so one shard evens it out.
    let s = snap(&[(0, &[(1, true, 10 * GIB)]), (1, &[])]);
    let p = plan(&s, &sh(100..=199), None).unwrap();
    assert_eq!(p[0].island(), IslandId(1));
    assert_eq!((count_on(&p, 0), count_on(&p, 1)), (50, 50));
}

#[test]
fn excluded_islands_get_no_new_shard() {
    let s = snap(&[(0, &[(1, true, 0)]), (1, &[]), (2, &[])]);
    let p = plan_excluding(&s, &sh(0..=100), None, &[IslandId(0)]).unwrap();
    // Shard 1 exists on island 0 and stays; shard 0 goes elsewhere, as every new shard.
    assert_eq!(p[1].island(), IslandId(0));
    assert!(matches!(p[1], Placement::Exists { .. }));
    let created: Vec<_> = p
        .iter()
        .filter(|p| matches!(p, Placement::Create { .. }))
        .collect();
    assert_eq!(created.len(), 100);
    assert!(created.iter().all(|p| p.island() != IslandId(0)));
    assert_eq!((count_on(&p, 1), count_on(&p, 2)), (50, 50));
    assert_eq!(
        plan_excluding(
            &s,
            &sh(2..=2),
            None,
            &[IslandId(0), IslandId(1), IslandId(2)]
        ),
        Err(AllocationError::NoIslandLeft)
    );
    // Only existing shards: nothing needs an island, so excluding all is no error.
    assert!(plan_excluding(
        &s,
        &sh(1..=1),
        None,
        &[IslandId(0), IslandId(1), IslandId(2)]
    )
    .is_ok());
    assert_eq!(
        plan_excluding(&s, &sh(2..=2), None, &[IslandId(9)]),
        Err(AllocationError::UnknownIsland(IslandId(9)))
    );
    let e = plan_excluding(&s, &sh(2..=2), Some(IslandId(1)), &[IslandId(1)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "island 1 is both the island asked for and excluded"
    );
}

#[test]
fn expected_size_is_the_mean_of_the_microshards_at_least_the_minimum() {
    let s = snap(&[(0, &[]), (1, &[])]);
    assert_eq!(expected_shard_bytes(&s), MIN_EXPECTED_SHARD_BYTES);
    // Shard 0 (the global tables) is no sample of a microshard.
    let s = snap(&[
        (0, &[(0, true, 100 * GIB), (1, true, GIB)]),
        (1, &[(2, true, 3 * GIB)]),
    ]);
    assert_eq!(expected_shard_bytes(&s), 2 * GIB);
    let s = snap(&[(0, &[(1, true, 10)]), (1, &[(2, true, 20)])]);
    assert_eq!(expected_shard_bytes(&s), MIN_EXPECTED_SHARD_BYTES);
    let s = snap(&[(0, &[(1, true, u64::MAX), (2, true, u64::MAX)])]);
    assert_eq!(expected_shard_bytes(&s), u64::MAX);
    assert_eq!(count_on(&plan(&s, &sh(3..=9), None).unwrap(), 0), 7);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Islands that start equal end with planned counts at most one apart.
        #[test]
        fn equal_islands_get_equal_shares(
            islands in 1u16..8, existing in 0u16..5, size in 0u64..(4 * GIB), new in 1u16..400,
        ) {
            let per: Vec<Vec<(u16, bool, u64)>> = (0..islands)
                .map(|i| (0..existing).map(|k| (1 + i * existing + k, true, size)).collect())
                .collect();
            let spec: Vec<IslandShards> = per.iter().enumerate().map(|(i, v)| (i as u16, v.as_slice())).collect();
            let s = snap(&spec);
            let p = plan(&s, &sh(5000..=5000 + new - 1), None).unwrap();
            let counts: Vec<usize> = (0..islands).map(|i| count_on(&p, i)).collect();
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            prop_assert!(max - min <= 1, "{:?}", counts);
        }

        /// Whatever the islands hold, an island got its last new shard only while it was the
        /// lightest: its load without that shard is at most any eligible island's final load.
        /// Excluded islands get nothing.
        #[test]
        fn every_new_shard_went_to_a_lightest_island(
            sizes in proptest::collection::vec(proptest::collection::vec(0u64..(8 * GIB), 0..6), 1..6),
            excluded in proptest::collection::vec(any::<bool>(), 6),
            new in 1u16..300,
        ) {
            let mut next = 1u16;
            let per: Vec<Vec<(u16, bool, u64)>> = sizes.iter().map(|v| v.iter().map(|b| {
                next += 1;
                (next, true, *b)
            }).collect()).collect();
            let spec: Vec<IslandShards> = per.iter().enumerate().map(|(i, v)| (i as u16, v.as_slice())).collect();
            let s = snap(&spec);
            let exclude: Vec<IslandId> = (0..sizes.len() as u16).filter(|i| excluded[*i as usize]).map(IslandId).collect();
            let r = plan_excluding(&s, &sh(5000..=5000 + new - 1), None, &exclude);
            if exclude.len() == sizes.len() {
                prop_assert_eq!(r, Err(AllocationError::NoIslandLeft));
                return Ok(());
            }
            let p = r.unwrap();
            let e = u128::from(expected_shard_bytes(&s));
            let load = |i: usize| -> u128 {
                sizes[i].iter().map(|b| u128::from(*b)).sum::<u128>() + e * count_on(&p, i as u16) as u128
            };
            for i in 0..sizes.len() {
                let got = count_on(&p, i as u16);
                if exclude.contains(&IslandId(i as u16)) {
                    prop_assert_eq!(got, 0);
                    continue;
                }
                if got == 0 {
                    continue;
                }
                for j in (0..sizes.len()).filter(|j| !exclude.contains(&IslandId(*j as u16))) {
                    prop_assert!(load(i) - e <= load(j), "island {} vs {}: {:?}", i, j, islands_of(&p));
                }
            }
        }
    }
}
