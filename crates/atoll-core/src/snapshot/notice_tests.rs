//! Notices applied to snapshots: ordering by generation, discovery rounds interleaved with
//! notices, and every delivery order of a run of moves.

use super::*;
use crate::{IslandCatalog, IslandId, NodeFacts, NodeObservation, ShardObservation, Snapshot};
use proptest::prelude::*;

const SHARD: u16 = 5;

fn sh() -> ShardNo {
    ShardNo::new(SHARD as i64).unwrap()
}

fn notice(island: u16, active: bool, gen: u64) -> ShardNotice {
    ShardNotice {
        shard: sh(),
        island: IslandId(island),
        active,
        gen,
    }
}

/// A snapshot of `islands` islands (all with a master) where island `i` has the shard's
/// row `rows[i]`: `None` for no row (no copy), else (active, gen).
fn snap(rows: &[Option<(bool, u64)>]) -> Snapshot {
    let islands = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let id = IslandId(i as u16);
            let node = NodeObservation {
                island: id,
                addr: format!("127.0.0.1:{}", 100 + i),
                outcome: Ok(NodeFacts {
                    in_recovery: false,
                    server_version: "15".into(),
                    lsn: Default::default(),
                    replay_lag_seconds: None,
                }),
            };
            let shards = row
                .map(|(active, gen)| ShardObservation {
                    shard: sh(),
                    schema_exists: true,
                    active,
                    size_bytes: None,
                    gen,
                    rows_estimate: None,
                    weight: None,
                })
                .into_iter()
                .collect();
            let catalog = IslandCatalog {
                cluster_id: Some("c".into()),
                catalog_island: Some(id),
                shards,
                global_copy: None,
            };
            (id, vec![node], Some(catalog))
        })
        .collect();
    Snapshot::build(0, islands)
}

fn on(s: &Snapshot) -> Option<u16> {
    s.active_island(sh()).ok().map(|i| i.0)
}

#[test]
fn a_move_lands_on_the_destination_whichever_notice_comes_first() {
    let before = snap(&[Some((true, 10)), None]);
    let (off, arrived) = (notice(0, false, 11), notice(1, true, 12));
    let mut s = before.clone();
    assert_eq!(s.apply_notice(&off), NoticeOutcome::Applied);
    assert_eq!(on(&s), None, "switched off, not yet activated");
    assert_eq!(s.apply_notice(&arrived), NoticeOutcome::Applied);
    assert_eq!(on(&s), Some(1));
    let mut s = before.clone();
    assert_eq!(s.apply_notice(&arrived), NoticeOutcome::Applied);
    assert_eq!(on(&s), Some(1), "the activation says the source is off");
    assert_eq!(s.apply_notice(&off), NoticeOutcome::Stale);
    assert_eq!(on(&s), Some(1));
    assert_eq!(s.shard_gen(sh()), 12);
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    // The copy on island 1 was not in the snapshot: the notice added it.
    assert_eq!(s.shards[&sh()].len(), 2);
    assert!(s
        .active_shards()
        .any(|(n, i)| n == sh() && i == IslandId(1)));
}

#[test]
fn old_repeated_and_foreign_notices_change_nothing() {
    let s = snap(&[Some((true, 20)), Some((false, 15))]);
    for n in [
        notice(1, true, 20),
        notice(1, true, 19),
        notice(0, false, 3),
    ] {
        assert!(s.with_shard_notice(&n).is_none(), "{n}");
    }
    assert!(s.with_shard_notice(&notice(7, true, 99)).is_none());
    let mut t = s.clone();
    assert_eq!(
        t.apply_notice(&notice(7, true, 99)),
        NoticeOutcome::UnknownIsland
    );
    assert_eq!(t, s);
    let mut log = NoticeLog::default();
    let (next, counts) = log.apply(&s, &[notice(1, true, 21), notice(1, true, 21)]);
    assert_eq!(
        counts,
        NoticeCounts {
            applied: 1,
            ignored: 1
        }
    );
    assert_eq!(on(&next.unwrap()), Some(1));
    assert_eq!(log.len(), 1);
}

#[test]
fn a_discovery_round_older_than_a_notice_does_not_undo_it() {
    let mut log = NoticeLog::default();
    let first = snap(&[Some((true, 10)), None]);
    let (after, _) = log.apply(&first, &[notice(0, false, 11), notice(1, true, 12)]);
    assert_eq!(on(&after.unwrap()), Some(1));
    // A round that read both islands before the switch.
    let old = log.merge(snap(&[Some((true, 10)), None]));
    assert_eq!(on(&old), Some(1));
    assert_eq!(log.len(), 2, "kept until a round has seen them");
    // A round that read the source after the switch but the destination before.
    let half = log.merge(snap(&[Some((false, 11)), Some((false, 9))]));
    assert_eq!(on(&half), Some(1));
    assert_eq!(log.len(), 1);
    // A round that saw both: the notices are forgotten.
    let new = log.merge(snap(&[Some((false, 11)), Some((true, 12))]));
    assert_eq!(on(&new), Some(1));
    assert!(log.is_empty());
    let later = log.merge(snap(&[Some((true, 30)), Some((false, 31))]));
    assert_eq!(on(&later), Some(0), "nothing kept overrides a newer round");
}

#[test]
fn a_round_torn_across_the_switch_is_settled_once() {
    let mut log = NoticeLog::default();
    log.apply(&snap(&[Some((true, 10)), None]), &[notice(1, true, 12)]);
    // Read the source before the switch and the destination after the activation.
    let torn = || snap(&[Some((true, 10)), Some((true, 12))]);
    assert!(torn().active_island(sh()).is_err());
    let merged = log.merge(torn());
    assert_eq!(on(&merged), Some(1));
    assert!(merged.problems.is_empty(), "{:?}", merged.problems);
    // The next round: if both are still active it is a real duplicate, and it shows.
    assert!(log.is_empty());
    assert!(log.merge(torn()).active_island(sh()).is_err());
    // An active copy newer than the activation is not switched off.
    let mut log = NoticeLog::default();
    log.apply(&snap(&[Some((true, 10)), None]), &[notice(1, true, 12)]);
    let newer = log.merge(snap(&[Some((true, 15)), Some((true, 12))]));
    assert!(newer.active_island(sh()).is_err());
}

/// The placement after the first `gen` events of `history` (event j has generation j + 1).
fn truth(history: &[(u16, bool)], gen: u64) -> Option<u16> {
    let mut active = None;
    for (island, a) in history.iter().take(gen as usize) {
        match (a, active) {
            (true, _) => active = Some(*island),
            (false, Some(i)) if i == *island => active = None,
            _ => {}
        }
    }
    active
}

/// What a consistent discovery round reads after the first `k` events.
fn round(history: &[(u16, bool)], islands: u16, k: usize) -> Snapshot {
    let rows: Vec<Option<(bool, u64)>> = (0..islands)
        .map(|i| {
            history[..k]
                .iter()
                .enumerate()
                .rev()
                .find(|(_, (isl, _))| *isl == i)
                .map(|(j, (_, a))| (*a, j as u64 + 1))
        })
        .collect();
    snap(&rows)
}

proptest! {
    /// A run of moves among three islands; each island's notices arrive in commit order,
    /// the islands' in any interleaving, with consistent discovery rounds (each reading no
    /// earlier than the one before) installed in between. After every step the snapshot
    /// says what was true at the newest generation it knows, and at the end what is true.
    #[test]
    fn every_delivery_order_ends_where_the_moves_did(
        dests in proptest::collection::vec(1u16..3, 1..8),
        steps in proptest::collection::vec((0u8..4, 0usize..100), 1..60),
    ) {
        let islands = 3u16;
        // Event 0 activates the shard on island 0; each move is (off source, on dest).
        let mut history = vec![(0u16, true)];
        let mut at = 0u16;
        for d in dests {
            let to = (at + d) % islands;
            history.push((at, false));
            history.push((to, true));
            at = to;
        }
        let mut queues: Vec<Vec<ShardNotice>> = vec![Vec::new(); islands as usize];
        for (j, (i, a)) in history.iter().enumerate().skip(1) {
            queues[*i as usize].push(notice(*i, *a, j as u64 + 1));
        }
        let mut log = NoticeLog::default();
        let mut read = 1usize;
        let mut view = round(&history, islands, read);
        let check = |view: &Snapshot| -> Result<(), TestCaseError> {
            let known = view.shard_gen(sh());
            prop_assert_eq!(on(view), truth(&history, known), "at generation {}", known);
            Ok(())
        };
        for (what, pick) in steps {
            if what == 3 {
                read += pick % (history.len() + 1 - read);
                view = log.merge(round(&history, islands, read));
            } else {
                let q = &mut queues[what as usize % islands as usize];
                if q.is_empty() {
                    continue;
                }
                let n = q.remove(0);
                if let (Some(next), _) = log.apply(&view, &[n]) {
                    view = next;
                }
            }
            check(&view)?;
        }
        for q in &mut queues {
            for n in q.drain(..) {
                if let (Some(next), _) = log.apply(&view, &[n]) {
                    view = next;
                }
                check(&view)?;
            }
        }
        prop_assert_eq!(on(&view), Some(at));
        let last = log.merge(round(&history, islands, history.len()));
        prop_assert_eq!(on(&last), Some(at));
        prop_assert!(log.is_empty());
    }
}
