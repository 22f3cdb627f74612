//! Moves under a continuous writer, forth and back; then an island is added and a
//! rebalance spreads shards onto it; then the backups are cleaned up.

mod common;

use atoll_core::IslandId;
use atoll_move::{MoveOptions, MoveReport};
use atoll_testkit::writer;
use common::{assert_settled, discover, setup, shard};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_under_writes_then_rebalance_onto_a_new_island() {
    tokio::time::timeout(Duration::from_secs(300), scenario())
        .await
        .expect("the scenario finishes within 5 minutes");
}

async fn scenario() {
    let mut tc = setup(2, 0, &[1, 2, 3, 4], 500, None).await;
    let config = tc.config().clone();
    let moved = shard(1);
    let start = discover(&config).await.active_island(moved).unwrap();
    let other = IslandId(1 - start.0);
    // Owners, grants, comments and RLS travel with the shard (roles must exist everywhere).
    let snap = discover(&config).await;
    for island in [start, other] {
        common::create_test_roles(&common::master(&config, &snap, island).await).await;
    }
    let home = common::master(&config, &snap, start).await;
    common::add_security(&home, "sh0001").await;
    let security_before = common::security_fingerprint(&home, "sh0001").await;
    assert!(security_before.len() > 20, "{security_before:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(writer::run(config.clone(), moved, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let opts = MoveOptions::default();
    let mut reports: Vec<MoveReport> = Vec::new();
    for (i, to) in [other, start, other].into_iter().enumerate() {
        let snap = discover(&config).await;
        let opts = MoveOptions {
            // The second move checksums inside the pause; the others compare counts at a
            // frozen point before it.
            verify_in_pause: i == 1,
            verify: if i == 1 {
                atoll_core::move_plan::VerifyMode::Full
            } else {
                atoll_core::move_plan::VerifyMode::Counts
            },
            ..opts.clone()
        };
        let r = atoll_move::start_move(&config, &snap, moved, to, &opts, atoll_move::no_progress())
            .await
            .unwrap_or_else(|e| panic!("move {i} to island {to}: {e}"));
        assert!(r
            .backup_schema
            .as_deref()
            .unwrap()
            .starts_with("sh0001_moved_"));
        assert_eq!(r.tables.len(), 3);
        reports.push(r);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let stats = w.await.unwrap();
    for r in &reports {
        eprintln!(
            "move {:?}->{:?}: total {} ms, pause {:.1} ms (lock {:.1}, apply wait {:.1}, verify+switch {:.1})",
            r.from, r.to, r.total_ms, r.pause_ms, r.lock_ms, r.apply_wait_ms, r.verify_and_switch_ms
        );
    }
    eprintln!(
        "writer: {} acked, {} errors, longest gap {:?}",
        stats.acked.len(),
        stats.errors.len(),
        stats.max_gap
    );
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    // The 250 ms target lives in the release benchmark. A debug build on a shared or slow CI
    // machine only has to keep the pause below the client's shard-absent window: a longer
    // pause would make clients fail writes instead of waiting them out.
    assert!(
        stats.max_gap < Duration::from_secs(5),
        "the write pause {:?} reached the client's 5 s shard-absent window",
        stats.max_gap
    );
    assert!(stats.acked.len() > 50, "the writer kept writing");
    writer::check_acked(&config, moved, &stats.acked).await;
    assert_settled(&config, moved, other, Some(500 + stats.acked.len() as i64)).await;

    // The ID sequence moved with the shard: new ids on the destination do not collide and
    // continue after the source's.
    let snap = discover(&config).await;
    let c = common::master(&config, &snap, other).await;
    let ids: Vec<i64> = c
        .query("select id from sh0001.items order by id desc limit 2", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(ids[0] > ids[1]);
    // Secondary index, foreign key and serial ownership arrived after the copy.
    let n: i64 = c
        .query_one(
            "select (select count(*) from pg_indexes where schemaname = 'sh0001')
                  + (select count(*) from pg_constraint where contype = 'f' and connamespace = 'sh0001'::regnamespace)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 6, "3 primary keys + 1 unique + 1 index + 1 foreign key");
    // Enum, identity (its sequence moved too), generated column, view and trigger arrived.
    let r = c
        .query_one(
            "insert into sh0001.tagged (mood) values ('meh') returning id, doubled,
                    (select count(*) from sh0001.meh),
                    (select note from sh0001.items where payload = 1)",
            &[],
        )
        .await
        .unwrap();
    let (id, doubled, meh, note): (i64, i64, i64, Option<String>) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    // Two rows were inserted before three moves, each of which advances sequences by
    // a margin of 10^6 past the source's position.
    assert_eq!(
        (id, doubled),
        (3_000_003, 6_000_006),
        "identity continues after the source's rows, plus the moves' margins"
    );
    assert_eq!(
        meh, 1,
        "the view sees the copied row (the new one is not yet visible)"
    );
    assert_eq!(
        note.as_deref(),
        Some("touched"),
        "the trigger fired on the source"
    );
    c.batch_execute("insert into sh0001.items (payload) values (-1000000)")
        .await
        .unwrap();
    let note: Option<String> = c
        .query_one(
            "select note from sh0001.items where payload = -1000000",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        note.as_deref(),
        Some("touched"),
        "the trigger exists on the destination"
    );

    // Identical owners, ACLs, column grants, default privileges, comments and policies
    // after three moves (RLS on items did not stop the apply of the writer's rows).
    assert_eq!(
        common::security_fingerprint(&c, "sh0001").await,
        security_before
    );
    let r = c
        .query_one(
            "select has_table_privilege('atoll_t_reader', 'sh0001.items', 'select'),
                    has_table_privilege('atoll_t_app', 'sh0001.items', 'insert'),
                    has_column_privilege('atoll_t_app', 'sh0001.items', 'note', 'update'),
                    has_column_privilege('atoll_t_app', 'sh0001.items', 'note', 'select'),
                    has_function_privilege('public', 'sh0001.touch()', 'execute')",
            &[],
        )
        .await
        .unwrap();
    let privs: (bool, bool, bool, bool, bool) = (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
    assert_eq!(privs, (true, false, true, true, false));
    // The policy filters on the destination: the reader sees only negative payloads.
    let r = c
        .query_one(
            "select count(*) filter (where payload < 0), count(*) from sh0001.items",
            &[],
        )
        .await
        .unwrap();
    let (negative, all): (i64, i64) = (r.get(0), r.get(1));
    assert!(all > negative, "the writer's rows are positive");
    c.batch_execute("set role atoll_t_reader").await.unwrap();
    let seen: i64 = c
        .query_one("select count(*) from sh0001.items", &[])
        .await
        .unwrap()
        .get(0);
    c.batch_execute("reset role").await.unwrap();
    assert_eq!(seen, negative);

    // Add an island and rebalance onto it (weights: custom SQL giving every shard 1).
    let new = tc.add_island(0).await.unwrap().0;
    let config = tc.config().clone();
    let snap = discover(&config).await;
    // The new island lacks the roles sh0001's grants name: refused up front, naming them.
    let e = atoll_move::start_move(
        &config,
        &snap,
        moved,
        IslandId(new),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            atoll_move::MoveError::Unsafe {
                check: "missing_role",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("atoll_t_owner"), "{e}");
    assert!(atoll_move::unfinished(&config, &snap)
        .await
        .unwrap()
        .is_empty());
    common::create_test_roles(&common::master(&config, &snap, IslandId(new)).await).await;
    // Weights missing for some shards are refused, naming them (they would mix units).
    let e = atoll_move::load_weights(
        &config,
        &snap,
        Some("select shard, 1::float8 from atoll.shards where active and shard <> (select min(shard) from atoll.shards where active)"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, atoll_move::MoveError::MissingWeights(_)) && e.to_string().contains("sh0"),
        "{e}"
    );
    let weights = atoll_move::load_weights(
        &config,
        &snap,
        Some("select shard, 1::float8 from atoll.shards where active"),
    )
    .await
    .unwrap();
    assert!(!weights.sizes);
    let loads = weights.loads;
    assert_eq!(loads.len(), 4);
    let plan = atoll_move::plan_rebalance(&snap, loads, &[], false).unwrap();
    assert!(!plan.moves.is_empty());
    assert!(
        plan.moves.iter().all(|m| m.to == IslandId(new)),
        "{:?}",
        plan.moves
    );
    let outcomes = atoll_move::run_moves(
        &config,
        &snap,
        &plan.moves,
        2,
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await;
    for o in &outcomes {
        assert!(o.error.is_none(), "{:?}", o.error);
    }
    let snap = discover(&config).await;
    let on_new = snap.active_shards().filter(|(_, i)| i.0 == new).count();
    assert_eq!(on_new, 1, "4 shards over 3 islands: 2/1/1");
    for island in &snap.islands {
        let n = snap
            .active_shards()
            .filter(|(_, i)| *i == island.id)
            .count();
        assert!((1..=2).contains(&n), "island {} has {n}", island.id);
    }
    assert!(common::replication_leftovers(&config).await.is_empty());

    // Backups: kept by a young-age cleanup, dropped by --older-than 0.
    let kept = atoll_move::cleanup(&config, &snap, 3600, false)
        .await
        .unwrap();
    assert!(kept.is_empty());
    let dry = atoll_move::cleanup(&config, &snap, 0, true).await.unwrap();
    assert_eq!(dry.len(), 3 + outcomes.len());
    assert!(dry.iter().all(|d| !d.dropped));
    let dropped = atoll_move::cleanup(&config, &snap, 0, false).await.unwrap();
    assert_eq!(dropped.len(), dry.len());
    assert!(atoll_move::cleanup(&config, &snap, 0, false)
        .await
        .unwrap()
        .is_empty());
}
