//! Rolling a switched move back must never drop the only copy of a shard, and cleanup must
//! never drop a backup an unfinished move still needs (issue 8, item 2).

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_move::{MoveError, MoveOptions};
use common::{assert_settled, discover, master, setup, shard};
use std::time::Duration;

const ROWS: i64 = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_of_a_switched_move_keeps_the_only_copy() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario finishes within 4 minutes");
}

async fn scenario() {
    let tc = setup(2, 0, &[1], ROWS, Some(IslandId(0))).await;
    let config = tc.config().clone();
    let s = shard(1);
    let (from, to) = (IslandId(0), IslandId(1));
    let opts = MoveOptions {
        stop_after: Some(MoveStep::Switched),
        ..MoveOptions::default()
    };
    let snap = discover(&config).await;
    let stopped =
        atoll_move::start_move(&config, &snap, s, to, &opts, atoll_move::no_progress()).await;
    assert!(
        matches!(stopped, Err(MoveError::Stopped { .. })),
        "{stopped:?}"
    );
    let rec = atoll_move::unfinished(&config, &snap)
        .await
        .unwrap()
        .remove(0);
    let backup = rec
        .backup_schema
        .clone()
        .expect("a switched move names its backup");

    // Cleanup right now must keep the backup the unfinished move needs, whatever its age.
    let snap = discover(&config).await;
    let dropped = atoll_move::cleanup(&config, &snap, 0, false).await.unwrap();
    assert!(dropped.is_empty(), "{dropped:?}");

    // The source loses its backup (an operator's mistake): the abort must refuse, name the
    // missing backup, and leave the destination's copy and the move's record in place.
    let src = master(&config, &snap, from).await;
    src.batch_execute(&format!("drop schema {backup} cascade"))
        .await
        .unwrap();
    let refused = atoll_move::abort_move(&config, &snap, Some(s)).await;
    match &refused {
        Err(
            e @ MoveError::Unsafe {
                check: "backup_missing",
                ..
            },
        ) => {
            let text = e.to_string();
            assert!(text.contains(&backup), "{text}");
            assert!(text.contains("--resume --shard 1"), "{text}");
            assert!(e.is_refusal());
        }
        other => panic!("expected a backup_missing refusal, got {other:?}"),
    }
    let dst = master(&config, &snap, to).await;
    let n: i64 = dst
        .query_one(&format!("select count(*) from {}.items", s.schema()), &[])
        .await
        .expect("the destination keeps its copy")
        .get(0);
    assert_eq!(n, ROWS);
    let still = atoll_move::unfinished(&config, &snap).await.unwrap();
    assert_eq!(still.len(), 1, "the move is still recorded: {still:?}");
    assert_eq!(still[0].step, MoveStep::Switched);

    // The command the refusal names finishes the move on the destination.
    let snap = discover(&config).await;
    atoll_move::resume_move(
        &config,
        &snap,
        Some(s),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .unwrap();
    assert_settled(&config, s, to, Some(ROWS)).await;
}
