//! A move killed at every step can be resumed or aborted; every safety check refuses with
//! its problem's name; verification failure rolls back.

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo};
use atoll_move::{MoveError, MoveOptions};
use atoll_testkit::TestSandbox;
use common::{assert_settled, discover, master, setup, shard};
use std::time::Duration;

const ROWS: i64 = 200;

async fn start(
    config: &Config,
    s: ShardNo,
    to: IslandId,
    opts: &MoveOptions,
) -> Result<(), MoveError> {
    let snap = discover(config).await;
    atoll_move::start_move(config, &snap, s, to, opts, atoll_move::no_progress())
        .await
        .map(|_| ())
}

fn other(i: IslandId) -> IslandId {
    IslandId(1 - i.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_moves_resume_or_abort_and_safety_checks_refuse() {
    tokio::time::timeout(Duration::from_secs(480), scenario())
        .await
        .expect("the scenario finishes within 8 minutes");
}

async fn scenario() {
    let tc = setup(2, 1, &[1, 2, 3], ROWS, None).await;
    let (sb, config) = (tc.sandbox(), tc.config().clone());
    let s = shard(1);

    // Kill at each step; abort (where allowed), then kill again and resume.
    for step in MoveStep::ALL {
        let home = discover(&config).await.active_island(s).unwrap();
        let opts = MoveOptions {
            stop_after: Some(step),
            ..MoveOptions::default()
        };
        let e = start(&config, s, other(home), &opts).await.unwrap_err();
        assert!(matches!(e, MoveError::Stopped { .. }), "{step}: {e}");
        // A second move over the leftovers is refused.
        let again = start(&config, s, other(home), &MoveOptions::default())
            .await
            .unwrap_err();
        assert!(
            again.to_string().contains("unfinished move"),
            "{step}: {again}"
        );

        // The hook at cleaned_up fires between the destination's and the source's
        // records, so the source still says activated.
        let persisted = if step == MoveStep::CleanedUp {
            MoveStep::Activated
        } else {
            step.persisted_after_crash()
        };
        let snap = discover(&config).await;
        if step == MoveStep::Subscribed {
            // While another process holds the shard's move lock, abort and resume refuse.
            let holder = master(&config, &snap, home).await;
            // The subscription's oid is recorded (table-sync slots are named after it).
            let recorded: bool = holder
                .query_one(
                    "select subscription_oid is not null and destination_sysid is not null
                       from atoll.moves where role = 'source' and step = 'subscribed'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(recorded);
            holder
                .execute(
                    "select pg_advisory_lock($1)",
                    &[&atoll_pg::locks::move_of(s)],
                )
                .await
                .unwrap();
            let e = atoll_move::abort_move(&config, &snap, Some(s))
                .await
                .unwrap_err();
            assert!(
                matches!(e, MoveError::Busy { .. }) && e.to_string().contains("another process"),
                "{e}"
            );
            let e = atoll_move::resume_move(
                &config,
                &snap,
                Some(s),
                &MoveOptions::default(),
                atoll_move::no_progress(),
            )
            .await
            .unwrap_err();
            assert!(matches!(e, MoveError::Busy { .. }), "{e}");
            // Release explicitly: dropping the client ends the session asynchronously, so
            // the abort below could still find the lock held.
            let released: bool = holder
                .query_one(
                    "select pg_advisory_unlock($1)",
                    &[&atoll_pg::locks::move_of(s)],
                )
                .await
                .unwrap()
                .get(0);
            assert!(released);
            drop(holder);
        }
        match atoll_move::abort_move(&config, &snap, Some(s)).await {
            Ok(r) => {
                assert_eq!(r.from_step, persisted, "{step}");
                assert_settled(&config, s, home, Some(ROWS)).await;
                // Kill again at the same step, then resume this time.
                let e = start(&config, s, other(home), &opts).await.unwrap_err();
                assert!(matches!(e, MoveError::Stopped { .. }), "{step}: {e}");
            }
            Err(e) => {
                assert!(step >= MoveStep::Activated, "{step}: abort refused: {e}");
                assert!(e.to_string().contains("run --resume"), "{e}");
            }
        }
        let snap = discover(&config).await;
        let r = atoll_move::resume_move(
            &config,
            &snap,
            Some(s),
            &MoveOptions::default(),
            atoll_move::no_progress(),
        )
        .await
        .unwrap_or_else(|e| panic!("resume after {step}: {e}"));
        assert_eq!(r.resumed_from, Some(persisted), "{step}");
        assert_settled(&config, s, other(home), Some(ROWS)).await;
    }
    // Killed in the middle of a step (its work done, not yet recorded): resume redoes it.
    for step in [
        MoveStep::SchemaCopied,
        MoveStep::Subscribed,
        MoveStep::CaughtUp,
        MoveStep::Activated,
    ] {
        let home = discover(&config).await.active_island(s).unwrap();
        let opts = MoveOptions {
            stop_before_record: Some(step),
            ..MoveOptions::default()
        };
        let e = start(&config, s, other(home), &opts).await.unwrap_err();
        assert!(matches!(e, MoveError::Stopped { .. }), "mid {step}: {e}");
        let snap = discover(&config).await;
        atoll_move::resume_move(
            &config,
            &snap,
            Some(s),
            &MoveOptions::default(),
            atoll_move::no_progress(),
        )
        .await
        .unwrap_or_else(|e| panic!("resume after a crash inside {step}: {e}"));
        assert_settled(&config, s, other(home), Some(ROWS)).await;
    }
    // --clean-leftovers aborts an unfinished move and starts afresh.
    let home = discover(&config).await.active_island(s).unwrap();
    let stop = MoveOptions {
        stop_after: Some(MoveStep::Subscribed),
        ..MoveOptions::default()
    };
    start(&config, s, other(home), &stop).await.unwrap_err();
    let clean = MoveOptions {
        clean_leftovers: true,
        ..MoveOptions::default()
    };
    let seq_before: i64 = master(&config, &discover(&config).await, home)
        .await
        .query_one("select nextval('sh0001.id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    start(&config, s, other(home), &clean).await.unwrap();
    assert_settled(&config, s, other(home), Some(ROWS)).await;
    // The sequence moved with a margin, so values handed out during the pause are skipped.
    let seq_after: i64 = master(&config, &discover(&config).await, other(home))
        .await
        .query_one("select nextval('sh0001.id_seq')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        seq_after > seq_before + 1_000_000,
        "{seq_before} -> {seq_after}"
    );

    safety_checks(sb, &config).await;
    strong_lock_holders_are_waited_out_without_queueing(&config).await;
    verification_failure_rolls_back(&config).await;
    security_changes_during_the_move(&config).await;
}

/// A REVOKE (and other changes) on the source after the move read its security settings
/// is not lost: made during the copy it is replayed; made after the replay the check in
/// the pause fails the move and the source stays active.
async fn security_changes_during_the_move(config: &Config) {
    let s = shard(2);
    let snap = discover(config).await;
    let home = snap.active_island(s).unwrap();
    for island in [home, other(home)] {
        common::create_test_roles(&master(config, &snap, island).await).await;
    }
    let src = master(config, &snap, home).await;
    src.batch_execute(
        "grant usage on schema sh0002 to atoll_t_reader;
         grant select on sh0002.items to atoll_t_reader;",
    )
    .await
    .unwrap();
    // A grant by a non-owner is replayed as that role, which needs USAGE on the schema.
    src.batch_execute(
        "grant select on sh0002.children to atoll_t_reader with grant option;
         set role atoll_t_reader; grant select on sh0002.children to atoll_t_app; reset role;
         revoke usage on schema sh0002 from atoll_t_reader;",
    )
    .await
    .unwrap();
    let e = start(config, s, other(home), &MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(check_name(&e), "unsupported_object", "{e}");
    assert!(e.to_string().contains("role atoll_t_reader"), "{e}");
    src.batch_execute("grant usage on schema sh0002 to atoll_t_reader")
        .await
        .unwrap();
    let stop = |step| MoveOptions {
        stop_after: Some(step),
        ..MoveOptions::default()
    };
    start(config, s, other(home), &stop(MoveStep::Subscribed))
        .await
        .unwrap_err();
    src.batch_execute(
        "revoke select on sh0002.items from atoll_t_reader;
         grant insert on sh0002.items to atoll_t_app;
         comment on table sh0002.items is 'changed during the copy';",
    )
    .await
    .unwrap();
    let want = common::security_fingerprint(&src, "sh0002").await;
    assert!(
        want.iter().any(|l| l.contains("atoll_t_app=a/")),
        "{want:?}"
    );
    atoll_move::resume_move(
        config,
        &discover(config).await,
        Some(s),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .unwrap();
    assert_settled(config, s, other(home), Some(ROWS)).await;
    let snap = discover(config).await;
    let dst = master(config, &snap, other(home)).await;
    assert_eq!(common::security_fingerprint(&dst, "sh0002").await, want);

    // Back, changed after the replay: refused in the pause, the source stays active.
    start(config, s, home, &stop(MoveStep::CaughtUp))
        .await
        .unwrap_err();
    dst.batch_execute("revoke insert on sh0002.items from atoll_t_app")
        .await
        .unwrap();
    let e = atoll_move::resume_move(
        config,
        &discover(config).await,
        Some(s),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, MoveError::SecurityDiffers { .. }), "{e}");
    assert!(e.to_string().contains("atoll_t_app=a/"), "{e}");
    assert_settled(config, s, other(home), Some(ROWS)).await;
}

async fn strong_lock_holders_are_waited_out_without_queueing(config: &Config) {
    let s = shard(3);
    let snap = discover(config).await;
    let home = snap.active_island(s).unwrap();
    // Copied and caught up first: CREATE PUBLICATION takes SHARE UPDATE EXCLUSIVE itself,
    // so a holder present from the start would stop the move there instead of at the lock.
    let caught_up = MoveOptions {
        stop_after: Some(MoveStep::CaughtUp),
        ..MoveOptions::default()
    };
    let e = start(config, s, other(home), &caught_up).await.unwrap_err();
    assert!(matches!(e, MoveError::Stopped { .. }), "{e}");
    let holder = master(config, &snap, home).await;
    let writer = master(config, &snap, home).await;
    // A session holding SHARE UPDATE EXCLUSIVE (what a manual VACUUM or ANALYZE takes)
    // would make a LOCK request queue, and writers behind it.
    holder
        .batch_execute("begin; lock table sh0003.items in share update exclusive mode")
        .await
        .unwrap();
    let mover = {
        let config = config.clone();
        tokio::spawn(async move {
            let snap = discover(&config).await;
            atoll_move::resume_move(
                &config,
                &snap,
                Some(s),
                &MoveOptions::default(),
                atoll_move::no_progress(),
            )
            .await
            .map(|_| ())
        })
    };
    // Wait until the mover polls for strong holders: pg_stat_activity keeps a session's
    // last statement, and only that poll names ShareRowExclusiveLock.
    let waiting = "select count(*) from pg_stat_activity
         where pid <> pg_backend_pid() and query like '%''ShareRowExclusiveLock''%'";
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = writer.query_one(waiting, &[]).await.unwrap().get(0);
        if n > 0 {
            break;
        }
        assert!(!mover.is_finished(), "the move ended before waiting");
        assert!(
            std::time::Instant::now() < deadline,
            "the move never started waiting for the strong lock holder"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The move is waiting for the holder, but not in the lock queue: writes go through.
    // Were the insert queued behind the move's lock request it would hang until the holder
    // commits, which happens only after it returns.
    tokio::time::timeout(
        Duration::from_secs(10),
        writer.batch_execute("insert into sh0003.items (payload) values (-424242)"),
    )
    .await
    .expect("the insert is not queued behind the waiting move")
    .unwrap();
    assert!(!mover.is_finished());
    holder.batch_execute("commit").await.unwrap();
    mover.await.unwrap().unwrap();
    assert_settled(config, s, other(home), Some(ROWS + 1)).await;
}

fn check_name(e: &MoveError) -> &'static str {
    match e {
        MoveError::Unsafe { check, .. } => check,
        MoveError::Refused(atoll_core::move_plan::StartRefused::DestinationHasSchema {
            ..
        }) => "destination_has_schema",
        _ => "other",
    }
}

async fn safety_checks(sb: &TestSandbox, config: &Config) {
    let s = shard(2);
    let snap = discover(config).await;
    let home = snap.active_island(s).unwrap();
    let src = master(config, &snap, home).await;
    let dst = master(config, &snap, other(home)).await;
    let opts = MoveOptions::default();

    // A large object column: the objects live in pg_largeobject, outside the schema, and
    // logical replication does not carry them (issue 9, item 1).
    src.batch_execute("create table sh0002.blobs (id int primary key, data oid)")
        .await
        .unwrap();
    let e = start(config, s, other(home), &opts).await.unwrap_err();
    assert_eq!(check_name(&e), "unsupported_object", "{e}");
    assert!(
        e.to_string()
            .contains("large object column sh0002.blobs.data (oid)"),
        "{e}"
    );
    src.batch_execute("drop table sh0002.blobs").await.unwrap();

    // A table without a primary key or replica identity.
    src.batch_execute("create table sh0002.loose (a int)")
        .await
        .unwrap();
    let e = start(config, s, other(home), &opts).await.unwrap_err();
    assert_eq!(check_name(&e), "table_without_primary_key", "{e}");
    assert!(e.to_string().contains("sh0002.loose"), "{e}");
    // The refusal names both ways out (issue 9, item 4).
    assert!(e.to_string().contains("--replica-identity-full"), "{e}");
    assert!(
        e.to_string().contains("REPLICA IDENTITY USING INDEX"),
        "{e}"
    );
    // Replica identity full is enough.
    src.batch_execute("alter table sh0002.loose replica identity full")
        .await
        .unwrap();

    // The destination already has the schema.
    dst.batch_execute("create schema sh0002").await.unwrap();
    let e = start(config, s, other(home), &opts).await.unwrap_err();
    assert_eq!(check_name(&e), "destination_has_schema", "{e}");
    dst.batch_execute("drop schema sh0002").await.unwrap();

    // Stray replication objects of an earlier move.
    src.batch_execute("create publication atoll_move_sh0002_1")
        .await
        .unwrap();
    let e = start(config, s, other(home), &opts).await.unwrap_err();
    assert_eq!(check_name(&e), "leftovers", "{e}");
    assert!(
        e.to_string().contains("publication atoll_move_sh0002_1"),
        "{e}"
    );
    src.batch_execute("drop publication atoll_move_sh0002_1")
        .await
        .unwrap();

    // Too few free replication slots on the source.
    let free: i64 = src
        .query_one(
            "select current_setting('max_replication_slots')::int8 - count(*) from pg_replication_slots",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    src.batch_execute(&format!(
        "select pg_create_physical_replication_slot('filler_' || i) from generate_series(1, {}) g(i)",
        free - 1
    ))
    .await
    .unwrap();
    let e = start(config, s, other(home), &opts).await.unwrap_err();
    assert_eq!(check_name(&e), "replication_slots", "{e}");
    src.batch_execute(
        "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name like 'filler\\_%'",
    )
    .await
    .unwrap();

    // A destination replica that is down (its lag is unknown).
    sb.stop_node(other(home).0, 1).unwrap();
    let e = start(config, s, other(home), &opts).await.unwrap_err();
    assert_eq!(check_name(&e), "replica_lag", "{e}");
    // Lag beyond the threshold.
    sb.start_node(other(home).0, 1).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let strict = MoveOptions {
        max_replica_lag_bytes: 0,
        ..MoveOptions::default()
    };
    // Replay paused on the replica: it lags deterministically once the master writes.
    let replica_node = config
        .islands
        .iter()
        .find(|i| i.id == other(home))
        .unwrap()
        .nodes[1]
        .clone();
    let replica = atoll_pg::connect(&replica_node).await.unwrap();
    replica
        .batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap();
    dst.batch_execute("create table public.burst as select g from generate_series(1, 1000) g")
        .await
        .unwrap();
    let snap = discover(config).await;
    let lag = snap
        .island(other(home))
        .unwrap()
        .replicas()
        .map(|n| n.lag_bytes.unwrap_or(0))
        .max()
        .unwrap_or(0);
    assert!(lag > 0, "replay is paused, the replica must lag");
    let e = atoll_move::start_move(
        config,
        &snap,
        s,
        other(home),
        &strict,
        atoll_move::no_progress(),
    )
    .await
    .unwrap_err();
    assert_eq!(check_name(&e), "replica_lag", "{e}");
    replica
        .batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap();
    dst.batch_execute("drop table public.burst").await.unwrap();

    // Nothing was created by the refused moves; after the fixes the move goes through.
    assert!(common::replication_leftovers(config).await.is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    start(config, s, other(home), &opts).await.unwrap();
    assert_settled(config, s, other(home), Some(ROWS)).await;
}

async fn verification_failure_rolls_back(config: &Config) {
    let s = shard(3);
    let rows = ROWS + 1;
    let home = discover(config).await.active_island(s).unwrap();
    let stop = MoveOptions {
        stop_after: Some(MoveStep::CaughtUp),
        ..MoveOptions::default()
    };
    start(config, s, other(home), &stop).await.unwrap_err();
    // Damage the inactive copy behind replication's back.
    let snap = discover(config).await;
    let dst = master(config, &snap, other(home)).await;
    dst.batch_execute(
        "set session_replication_role = replica;
         delete from sh0003.children; delete from sh0003.items where id in (select id from sh0003.items limit 3)",
    )
    .await
    .unwrap();
    let e = atoll_move::resume_move(
        &config.clone(),
        &snap,
        Some(s),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, MoveError::VerifyFailed { .. }), "{e}");
    assert!(e.to_string().contains("rows on the source"), "{e}");
    assert_settled(config, s, home, Some(rows)).await;
}
