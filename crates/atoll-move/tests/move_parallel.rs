//! Moves started together from one island, with free replication slots for only some of
//! them: the capacity check and the subscription's creation are serialised per island, so
//! each move either finishes or is refused by the check before it creates anything.

mod common;

use atoll_core::rebalance::PlannedMove;
use atoll_core::IslandId;
use atoll_move::MoveOptions;
use common::{discover, master, setup, shard};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_moves_share_the_free_slots_without_half_created_subscriptions() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario finishes within 4 minutes");
}

async fn scenario() {
    let (from, to) = (IslandId(0), IslandId(1));
    let shards = [1, 2, 3];
    let tc = setup(2, 0, &shards, 20, Some(from)).await;
    let config = tc.config().clone();
    let snap = discover(&config).await;
    let src = master(&config, &snap, from).await;
    let dst = master(&config, &snap, to).await;

    // What one move of these shards needs (3 tables each): its slot plus one per
    // parallel table sync, as the check counts it.
    let sync: i64 = dst
        .query_one(
            "select current_setting('max_sync_workers_per_subscription')::int8",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let need = 1 + (3 + 1).min(sync.max(1));
    // Leave room for exactly one move: started together without the lock and the
    // reservations, all three would pass the check and then run out of slots (a
    // subscription or a table sync failing half-way).
    let free: i64 = src
        .query_one(
            "select current_setting('max_replication_slots')::int8 - count(*) from pg_replication_slots",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let fillers = free - need;
    assert!(fillers > 0, "the sandbox has {free} free slots");
    src.batch_execute(&format!(
        "select pg_create_physical_replication_slot('filler_' || i) from generate_series(1, {fillers}) g(i)"
    ))
    .await
    .unwrap();

    let moves: Vec<PlannedMove> = shards
        .iter()
        .map(|n| PlannedMove {
            shard: shard(*n),
            from,
            to,
            weight: 0.0,
        })
        .collect();
    let outcomes = atoll_move::run_moves(
        &config,
        &snap,
        &moves,
        moves.len(),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await;
    for o in &outcomes {
        eprintln!("{}: {}", o.shard, o.error.as_deref().unwrap_or("moved"));
    }
    let mut moved = 0;
    for o in &outcomes {
        match &o.error {
            None => moved += 1,
            // A refusal by the check is the only acceptable failure; it names the move
            // whose reservation left too little.
            Some(e) => assert!(
                e.contains("unsafe to move: replication_slots")
                    && e.contains("moves holding reservations: sh"),
                "{}: {e}",
                o.shard
            ),
        }
    }
    // One fits at once; others may fit if one finished before they were checked.
    assert!(moved >= 1, "{outcomes:?}");

    // Nothing half-made: no unfinished move, no replication object, every shard active on
    // exactly one island (the moved ones on the destination).
    src.batch_execute(
        "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name like 'filler\\_%'",
    )
    .await
    .unwrap();
    let snap = discover(&config).await;
    assert!(atoll_move::unfinished(&config, &snap)
        .await
        .unwrap()
        .is_empty());
    for o in &outcomes {
        let island = if o.error.is_none() { to } else { from };
        common::assert_settled(&config, o.shard, island, Some(20)).await;
    }
}
