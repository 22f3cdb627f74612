//! The switch and the activation under a hostile network and a concurrent abort (issue 8,
//! items 4 and 5): a COMMIT of the switch whose answer is lost is settled by asking the
//! source, and an activation still retrying when an abort starts is fenced off by the
//! destination's move row, whatever became of the move lock.

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo};
use atoll_move::{MoveError, MoveOptions};
use atoll_testkit::fault_proxy::{Cut, FaultProxy};
use common::{active_on, assert_settled, discover, master, resume, setup, shard};
use std::time::{Duration, Instant};

const ROWS: i64 = 100;
const FROM: IslandId = IslandId(0);
const TO: IslandId = IslandId(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_of_the_switch_and_a_racing_abort_never_leave_two_copies_active() {
    tokio::time::timeout(Duration::from_secs(300), scenario())
        .await
        .expect("the scenario finishes within 5 minutes");
}

async fn scenario() {
    let tc = setup(2, 0, &[1, 2, 3], ROWS, Some(FROM)).await;
    let config = tc.config().clone();
    // Island 0's master behind the hostile network, for the mover only.
    let src = &config.islands[0].nodes[0];
    let proxy = FaultProxy::start(format!("{}:{}", src.host, src.port).parse().unwrap())
        .await
        .unwrap();
    let mut proxied = config.clone();
    proxied.islands[0].nodes[0].port = proxy.port();

    // The switch commits, its answer is lost: the move asks the source and goes on.
    proxy.arm("commit", Cut::After);
    let report = start(&proxied, shard(1)).await;
    assert_eq!(
        proxy.fired(),
        1,
        "the switch's COMMIT went through the proxy"
    );
    report.expect("the move settles a committed switch and activates");
    assert_settled(&config, shard(1), TO, Some(ROWS)).await;

    // The COMMIT never reaches the source: it rolls back, the move says so, the shard
    // stays active on the source, and a resume finishes the move.
    proxy.arm("commit", Cut::Before);
    let failed = start(&proxied, shard(2)).await;
    assert_eq!(proxy.fired(), 2);
    let text = failed.expect_err("an uncommitted switch fails").to_string();
    assert!(text.contains("did not commit"), "{text}");
    assert!(text.contains("--resume --shard 2"), "{text}");
    assert_eq!(active_on(&config, shard(2)).await, [FROM]);
    let snap = discover(&config).await;
    let rec = atoll_move::unfinished(&config, &snap).await.unwrap();
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].step, MoveStep::CaughtUp);
    resume(&config, shard(2)).await.unwrap();
    assert_settled(&config, shard(2), TO, Some(ROWS)).await;

    racing_abort(&config, shard(3)).await;
}

/// A resume blocked in activation loses its move lock (its session is ended, as when the
/// source master restarts); an abort then runs and reactivates the source. When the
/// activation goes on, the destination's move row (marked by the abort) rolls it back, so
/// the shard ends active on exactly one island.
async fn racing_abort(config: &Config, s: ShardNo) {
    let stopped = start_with(config, s, Some(MoveStep::Switched)).await;
    assert!(
        matches!(stopped, Err(MoveError::Stopped { .. })),
        "{stopped:?}"
    );
    let snap = discover(config).await;
    let dst = master(config, &snap, TO).await;
    let src = master(config, &snap, FROM).await;
    // Holds the destination's registry still (the shard has no row there yet), so the
    // activation waits right before it writes its move row.
    let registry = master(config, &snap, TO).await;
    registry
        .batch_execute("begin; lock table atoll.shards in share mode")
        .await
        .unwrap();
    let resumed = {
        let config = config.clone();
        tokio::spawn(async move { resume(&config, s).await })
    };
    wait_for(&dst, "insert into atoll.shards").await;
    // The move lock's session ends; the blocked activation does not notice.
    let ended: i64 = src
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_locks
              where locktype = 'advisory' and pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1, "one session held the move lock");
    // The abort reactivates the source, then waits to drop the destination's copy.
    let copy = master(config, &snap, TO).await;
    copy.batch_execute(&format!(
        "begin; lock table {}.items in access share mode",
        s.schema()
    ))
    .await
    .unwrap();
    let aborted = {
        let (config, snap) = (config.clone(), snap.clone());
        tokio::spawn(async move { atoll_move::abort_move(&config, &snap, Some(s)).await })
    };
    wait_for(&dst, "drop schema").await;
    assert_eq!(active_on(config, s).await, [FROM]);

    // The activation goes on now, the abort still waiting.
    registry.batch_execute("commit").await.unwrap();
    let resumed = resumed.await.unwrap();
    match &resumed {
        Err(
            e @ MoveError::Unsafe {
                check: "activation_fenced",
                ..
            },
        ) => assert!(e.to_string().contains("--abort --shard 3"), "{e}"),
        other => panic!("expected the activation to be fenced off, got {other:?}"),
    }
    assert_eq!(active_on(config, s).await, [FROM], "never active twice");
    copy.batch_execute("commit").await.unwrap();
    aborted.await.unwrap().expect("the abort finishes");
    assert_settled(config, s, FROM, Some(ROWS)).await;
}

async fn start(config: &Config, s: ShardNo) -> Result<atoll_move::MoveReport, MoveError> {
    start_with(config, s, None).await
}

async fn start_with(
    config: &Config,
    s: ShardNo,
    stop_after: Option<MoveStep>,
) -> Result<atoll_move::MoveReport, MoveError> {
    let opts = MoveOptions {
        stop_after,
        ..MoveOptions::default()
    };
    let snap = discover(config).await;
    atoll_move::start_move(config, &snap, s, TO, &opts, atoll_move::no_progress()).await
}

/// Waits until a session waits on a lock in a statement starting with `prefix`.
async fn wait_for(c: &tokio_postgres::Client, prefix: &str) {
    let sql = "select count(*) from pg_stat_activity
                where pid <> pg_backend_pid() and wait_event_type = 'Lock'
                  and ltrim(query) like $1 || '%'";
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.query_one(sql, &[&prefix]).await.unwrap().get::<_, i64>(0) == 0 {
        if Instant::now() > deadline {
            let seen: Vec<String> = c
                .query(
                    "select coalesce(wait_event_type, '-') || ' ' || state || ': ' || query
                       from pg_stat_activity where pid <> pg_backend_pid() and backend_type = 'client backend'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!("no session waits in `{prefix}`; sessions: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
