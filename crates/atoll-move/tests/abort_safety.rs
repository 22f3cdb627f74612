//! Rolling a switched move back must never drop the only copy of a shard, and cleanup must
//! never drop a backup an unfinished move still needs (issue 8, item 2).

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_move::{MoveError, MoveOptions};
use common::{active_on, assert_settled, discover, master, resume, setup, shard};
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
    stop_after_switch(&config, s, to).await;
    let snap = discover(&config).await;
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
    resume(&config, s).await.unwrap();
    assert_settled(&config, s, to, Some(ROWS)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_abort_is_finished_by_abort_never_by_resume() {
    tokio::time::timeout(Duration::from_secs(300), interrupted_abort())
        .await
        .expect("the scenario finishes within 5 minutes");
}

async fn stop_after_switch(config: &atoll_core::Config, s: atoll_core::ShardNo, to: IslandId) {
    let opts = MoveOptions {
        stop_after: Some(MoveStep::Switched),
        ..MoveOptions::default()
    };
    let snap = discover(config).await;
    let stopped =
        atoll_move::start_move(config, &snap, s, to, &opts, atoll_move::no_progress()).await;
    assert!(
        matches!(stopped, Err(MoveError::Stopped { .. })),
        "{stopped:?}"
    );
}

async fn interrupted_abort() {
    let tc = setup(2, 0, &[1, 2], ROWS, Some(IslandId(0))).await;
    let config = tc.config().clone();
    let (from, to) = (IslandId(0), IslandId(1));
    let s = shard(1);
    stop_after_switch(&config, s, to).await;
    let snap = discover(&config).await;
    let dst = master(&config, &snap, to).await;

    // The abort is killed right after it reactivated the source: a session holding a lock
    // on the destination's copy makes it wait in its next action (dropping that copy).
    let blocker = master(&config, &snap, to).await;
    blocker
        .batch_execute(&format!(
            "begin; lock table {}.items in access share mode",
            s.schema()
        ))
        .await
        .unwrap();
    let abort = {
        let (config, snap) = (config.clone(), snap.clone());
        tokio::spawn(async move { atoll_move::abort_move(&config, &snap, Some(s)).await })
    };
    let waiting = "select count(*) from pg_stat_activity
                    where pid <> pg_backend_pid() and wait_event_type = 'Lock'
                      and query like 'drop schema%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dst.query_one(waiting, &[]).await.unwrap().get::<_, i64>(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the abort never reached the drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    abort.abort();
    let _ = abort.await;
    // As when its process is killed: its waiting statement ends with its session.
    dst.execute(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where pid <> pg_backend_pid() and query like 'drop schema%'",
        &[],
    )
    .await
    .unwrap();
    blocker.batch_execute("rollback").await.unwrap();
    assert_eq!(
        active_on(&config, s).await,
        [from],
        "the abort reactivated the source"
    );

    // A resume (or `rebalance --resume`) would activate the destination too: refused,
    // naming the command that finishes the abort.
    let snap = discover(&config).await;
    let resumed = resume(&config, s).await;
    match &resumed {
        Err(
            e @ MoveError::Unsafe {
                check: "abort_in_progress",
                ..
            },
        ) => {
            assert!(
                e.to_string().contains("atoll move --abort --shard 1"),
                "{e}"
            );
        }
        other => panic!("expected an abort_in_progress refusal, got {other:?}"),
    }
    assert_eq!(
        active_on(&config, s).await,
        [from],
        "never active on two islands"
    );
    atoll_move::abort_move(&config, &snap, Some(s))
        .await
        .unwrap();
    assert_settled(&config, s, from, Some(ROWS)).await;

    // After a switch, the source reactivated by hand (its backup renamed back and flagged
    // active): resuming would make the shard active twice, so it refuses.
    let s = shard(2);
    stop_after_switch(&config, s, to).await;
    let snap = discover(&config).await;
    let rec = atoll_move::unfinished(&config, &snap)
        .await
        .unwrap()
        .remove(0);
    let backup = rec.backup_schema.expect("backup named");
    let src = master(&config, &snap, from).await;
    src.batch_execute(&format!(
        "alter schema {backup} rename to {}; update atoll.shards set active = true where shard = 2",
        s.schema()
    ))
    .await
    .unwrap();
    let resumed = resume(&config, s).await;
    assert!(
        matches!(
            &resumed,
            Err(MoveError::Unsafe {
                check: "source_not_switched_off",
                ..
            })
        ),
        "{resumed:?}"
    );
    assert_eq!(active_on(&config, s).await, [from]);
    atoll_move::abort_move(&config, &snap, Some(s))
        .await
        .unwrap();
    assert_settled(&config, s, from, Some(ROWS)).await;
}
