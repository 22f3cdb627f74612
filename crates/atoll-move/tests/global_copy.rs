//! Shard 0's tables copied read-only to every other island on a real 3-island sandbox:
//! copies created and verified; a write on shard 0's master reaches every copy; a write
//! on a copy is refused; discovery still sees shard 0 on one island only; a disabled
//! subscription and a dropped one are reported with the repairing command, which repairs
//! them; a table without a key and an unknown table are refused before anything is made.

use atoll_core::{IslandId, ShardNo};
use atoll_move::global_copy::{self, CopyHealth, GlobalCopyError, ReplicateRequest};
use atoll_testkit::TestCluster;
use std::time::{Duration, Instant};

async fn count_on(tc: &TestCluster, island: u16, sql: &str) -> i64 {
    let c = tc.master(IslandId(island)).await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t0 = Instant::now();
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_zero_is_copied_read_only_to_every_island_and_repaired() {
    let tc = TestCluster::setup(3, 0)
        .shards(0..=3)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let master = tc.master(IslandId(0)).await.unwrap();
    master
        .batch_execute(
            "create table sh0000.tenants (id bigint primary key, name text not null);
             insert into sh0000.tenants select g, 'tenant ' || g from generate_series(1, 500) g;
             create table sh0000.plans (id int primary key, price numeric);
             insert into sh0000.plans values (1, 0), (2, 10);
             create table sh0000.keyless (x int);",
        )
        .await
        .unwrap();
    let snap = tc.discover().await;
    let quiet = |_: IslandId, _: &str| {};

    // Refused before anything is made: a keyless table, an unknown one.
    for (tables, says) in [
        (None, "sh0000.keyless: no primary key"),
        (
            Some(vec!["nope".to_string()]),
            "--tables: sh0000.nope does not exist",
        ),
    ] {
        let req = ReplicateRequest { tables };
        let e = global_copy::replicate(tc.config(), &snap, &req, &quiet)
            .await
            .unwrap_err();
        assert!(matches!(e, GlobalCopyError::Refused(_)), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    assert_eq!(
        count_on(
            &tc,
            1,
            "select count(*) from pg_namespace where nspname = 'sh0000'"
        )
        .await,
        0
    );

    let req = ReplicateRequest {
        tables: Some(vec!["tenants".into(), "plans".into()]),
    };
    let report = global_copy::replicate(tc.config(), &snap, &req, &quiet)
        .await
        .expect("replicate");
    assert_eq!(report.source, IslandId(0));
    assert_eq!(report.copies.len(), 2);
    assert_eq!(report.capacity.needed, 2, "{:?}", report.capacity);
    for c in &report.copies {
        assert!(c.created);
        assert_eq!(
            c.rows,
            [("plans".to_string(), 2), ("tenants".to_string(), 500)]
        );
    }

    // A write on shard 0's master reaches every copy.
    master
        .execute("insert into sh0000.tenants values (501, 'new')", &[])
        .await
        .unwrap();
    for island in [1, 2] {
        until("the new tenant on the copy", async || {
            count_on(
                &tc,
                island,
                "select count(*) from sh0000.tenants where id = 501",
            )
            .await
                == 1
        })
        .await;
        let copy = tc.master(IslandId(island)).await.unwrap();
        let e = copy
            .execute("update sh0000.tenants set name = 'x' where id = 1", &[])
            .await
            .unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "25006", "{db}");
        assert!(db.message().contains("read-only copy"), "{db}");
        assert!(copy.batch_execute("truncate sh0000.plans").await.is_err());
        let keyless =
            "select count(*) from pg_tables where schemaname = 'sh0000' and tablename = 'keyless'";
        assert_eq!(
            count_on(&tc, island, keyless).await,
            0,
            "a table not copied is not there"
        );
    }

    // Discovery still sees shard 0 on one island, and nothing wrong.
    let snap = tc.discover().await;
    let zero = ShardNo::new(0).unwrap();
    assert_eq!(snap.shards[&zero].len(), 1, "{:?}", snap.shards[&zero]);
    assert!(snap.problems.is_empty(), "{:?}", snap.problems);
    let st = global_copy::status(tc.config(), &snap).await.unwrap();
    assert!(st.iter().all(|c| c.health == CopyHealth::Healthy), "{st:?}");

    // Broken copies: one disabled, one without its subscription; both reported, both
    // repaired by replicating again.
    tc.psql(
        tc.master_ports()[2],
        "alter subscription atoll_global_2 disable",
    );
    tc.psql(tc.master_ports()[1], "drop subscription atoll_global_1");
    let st = global_copy::status(tc.config(), &snap).await.unwrap();
    assert_eq!(
        st[0].health,
        CopyHealth::Broken("its subscription is missing".into()),
        "{st:?}"
    );
    assert_eq!(
        st[1].health,
        CopyHealth::Broken("its subscription is disabled".into()),
        "{st:?}"
    );
    assert!(st
        .iter()
        .all(|c| c.repair.as_deref() == Some("atoll global replicate")));
    master
        .execute(
            "insert into sh0000.tenants values (502, 'while broken')",
            &[],
        )
        .await
        .unwrap();
    let report = global_copy::replicate(tc.config(), &snap, &req, &quiet)
        .await
        .expect("repair");
    for c in &report.copies {
        assert_eq!(c.rows[1], ("tenants".to_string(), 502), "{c:?}");
    }
    let st = global_copy::status(tc.config(), &snap).await.unwrap();
    assert!(st.iter().all(|c| c.health == CopyHealth::Healthy), "{st:?}");
}

/// The port of the server that answered `select inet_server_port()` through `shard`.
async fn answered_by(shard: &atoll_client::Shard, f: atoll_client::Freshness<'_>) -> (i32, String) {
    let rows = shard
        .query(
            "select inet_server_port(), (select name from sh0000.tenants where id = 1)",
            &[],
            f,
        )
        .await
        .unwrap();
    (rows[0].get(0), rows[0].get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_reads_use_the_local_copy_and_never_miss_the_callers_write() {
    let tc = TestCluster::setup(2, 0)
        .shards(0..=1)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let master = tc.master(IslandId(0)).await.unwrap();
    master
        .batch_execute(
            "create table sh0000.tenants (id bigint primary key, name text not null);
             insert into sh0000.tenants values (1, 'v0');",
        )
        .await
        .unwrap();
    let snap = tc.discover().await;
    global_copy::replicate(tc.config(), &snap, &ReplicateRequest::default(), &|_, _| {})
        .await
        .expect("replicate");
    let ports = tc.master_ports();
    let options = atoll_client::ClusterOptions {
        home_island: Some(IslandId(1)),
        ..Default::default()
    };
    let cluster = atoll_client::Cluster::connect(tc.config().clone(), options)
        .await
        .unwrap();
    until("the snapshot knows the copy", async || {
        cluster
            .snapshot()
            .island(IslandId(1))
            .is_some_and(|i| i.global_copy == Some(IslandId(0)))
    })
    .await;
    let global = cluster.global();
    use atoll_client::{Freshness, Timeline, Write};
    let (port, _) = answered_by(&global, Freshness::StaleReplica).await;
    assert_eq!(port, i32::from(ports[1]), "a stale-allowed read is local");
    let (port, _) = answered_by(&global, Freshness::Master).await;
    assert_eq!(
        port,
        i32::from(ports[0]),
        "a master read is shard 0's master"
    );

    // Read-your-writes: right after each write, a timeline read sees it (from the copy
    // once it has applied it, else from shard 0's island).
    let (mut local, mut remote) = (0, 0);
    for i in 1..=50 {
        let t = Timeline::new();
        let name = format!("v{i}");
        global
            .write(
                "update sh0000.tenants set name = $1 where id = 1",
                &[&name],
                Write::once().timeline(&t),
            )
            .await
            .unwrap();
        let (port, seen) = answered_by(&global, Freshness::Timeline(&t)).await;
        assert_eq!(
            seen, name,
            "round {i}: a timeline read returned an older row"
        );
        if port == i32::from(ports[1]) {
            local += 1;
        } else {
            remote += 1;
        }
    }
    eprintln!("timeline reads: {local} from the local copy, {remote} from shard 0's island");
    // Once the copy has applied the write (the sandbox commits asynchronously, so it
    // gets the WAL up to wal_writer_delay later), the same read is local.
    let t = Timeline::new();
    global
        .write(
            "update sh0000.tenants set name = 'last' where id = 1",
            &[],
            Write::once().timeline(&t),
        )
        .await
        .unwrap();
    let copy = tc.master(IslandId(1)).await.unwrap();
    until("the copy applied the write", async || {
        let r = copy
            .query_one("select name from sh0000.tenants where id = 1", &[])
            .await
            .unwrap();
        r.get::<_, String>(0) == "last"
    })
    .await;
    let (port, seen) = answered_by(&global, Freshness::Timeline(&t)).await;
    assert_eq!((port, seen.as_str()), (i32::from(ports[1]), "last"));
    // A table that is not on the copy is read from shard 0's island, not failed.
    master
        .batch_execute(
            "create table sh0000.later (id int primary key); insert into sh0000.later values (7)",
        )
        .await
        .unwrap();
    let rows = global
        .query("select id from sh0000.later", &[], Freshness::StaleReplica)
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 7);
    cluster.close().await;
}

/// A shard whose tables reference shard 0's by foreign key moves to an island that has a
/// copy of them (the key re-created against the copy, enforced there), and back; a key
/// to a table not copied refuses the move by name before anything is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_with_keys_to_global_tables_moves_to_a_copy_island_and_back() {
    let tc = TestCluster::setup(2, 0)
        .shards(0..=2)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let m0 = tc.master(IslandId(0)).await.unwrap();
    m0.batch_execute(
        "create table sh0000.tenants (id bigint primary key, name text);
         insert into sh0000.tenants select g, 'tenant ' || g from generate_series(1, 20) g;
         create table sh0000.audit (id bigint primary key);
         insert into sh0000.audit values (1);
         create table sh0001.orders (id bigint primary key, tenant_id bigint not null references sh0000.tenants (id));
         insert into sh0001.orders select g, g % 20 + 1 from generate_series(1, 100) g;
         create table sh0002.notes (id bigint primary key, audit_id bigint references sh0000.audit (id));",
    )
    .await
    .unwrap();
    let snap = tc.discover().await;
    let req = ReplicateRequest {
        tables: Some(vec!["tenants".into()]),
    };
    global_copy::replicate(tc.config(), &snap, &req, &|_, _| {})
        .await
        .expect("replicate");
    let opts = atoll_move::MoveOptions::default();
    let (one, two) = (ShardNo::new(1).unwrap(), ShardNo::new(2).unwrap());

    let e = atoll_move::start_move(
        tc.config(),
        &tc.discover().await,
        two,
        IslandId(1),
        &opts,
        atoll_move::no_progress(),
    )
    .await
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("sh0002.notes.notes_audit_id_fkey references sh0000.audit"),
        "{text}"
    );
    assert!(text.contains("atoll global replicate"), "{text}");

    atoll_move::start_move(
        tc.config(),
        &tc.discover().await,
        one,
        IslandId(1),
        &opts,
        atoll_move::no_progress(),
    )
    .await
    .expect("move to the copy island");
    let m1 = tc.master(IslandId(1)).await.unwrap();
    let refers: String = m1
        .query_one(
            "select confrelid::regclass::text from pg_constraint where conname = 'orders_tenant_id_fkey'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(refers, "sh0000.tenants");
    m1.execute("insert into sh0001.orders values (101, 7)", &[])
        .await
        .unwrap();
    let e = m1
        .execute("insert into sh0001.orders values (102, 999)", &[])
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    );

    atoll_move::start_move(
        tc.config(),
        &tc.discover().await,
        one,
        IslandId(0),
        &opts,
        atoll_move::no_progress(),
    )
    .await
    .expect("move back");
    let n: i64 = m0
        .query_one("select count(*) from sh0001.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 101);
}

async fn replicate(
    tc: &TestCluster,
    tables: Option<&[&str]>,
) -> Result<global_copy::ReplicateReport, GlobalCopyError> {
    let req = ReplicateRequest {
        tables: tables.map(|t| t.iter().map(|s| s.to_string()).collect()),
    };
    let snap = tc.discover().await;
    global_copy::replicate(tc.config(), &snap, &req, &|_, _| {}).await
}

/// `replicate --tables` changes an existing copy's tables: a table added is created,
/// copied and then follows writes; a table removed leaves the copy; without `--tables`
/// the copies keep what they hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copied_tables_change_with_replicate() {
    let tc = TestCluster::setup(2, 0)
        .shards(0..=1)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let m0 = tc.master(IslandId(0)).await.unwrap();
    m0.batch_execute(
        "create table sh0000.tenants (id bigint primary key, name text);
         insert into sh0000.tenants select g, 't' || g from generate_series(1, 30) g;
         create table sh0000.plans (id int primary key, name text not null);
         create index plans_name_idx on sh0000.plans (name);
         insert into sh0000.plans values (1, 'free'), (2, 'paid');",
    )
    .await
    .unwrap();
    replicate(&tc, Some(&["tenants"])).await.expect("tenants");
    let tables_on_copy = "select string_agg(relname, ',' order by relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace where nspname = 'sh0000' and relkind = 'r' and relname <> 'atoll_migrations'";
    let m1 = tc.master(IslandId(1)).await.unwrap();
    let text = |sql: &'static str| {
        let m1 = &m1;
        async move {
            m1.query_one(sql, &[])
                .await
                .unwrap()
                .get::<_, Option<String>>(0)
        }
    };
    assert_eq!(text(tables_on_copy).await.as_deref(), Some("tenants"));

    // Kept without --tables.
    let report = replicate(&tc, None).await.expect("again");
    assert_eq!(report.tables, ["tenants"]);

    let report = replicate(&tc, Some(&["tenants", "plans"]))
        .await
        .expect("add plans");
    assert_eq!(
        report.copies[0].rows,
        [("plans".to_string(), 2), ("tenants".to_string(), 30)]
    );
    m0.execute("insert into sh0000.plans values (3, 'team')", &[])
        .await
        .unwrap();
    until("the new table follows writes", async || {
        count_on(&tc, 1, "select count(*) from sh0000.plans").await == 3
    })
    .await;
    let idx: bool = m1
        .query_one(
            "select to_regclass('sh0000.plans_name_idx') is not null",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(idx, "the added table's index is on the copy");
    let e = m1
        .execute("delete from sh0000.plans", &[])
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION)
    );

    replicate(&tc, Some(&["plans"]))
        .await
        .expect("drop tenants");
    assert_eq!(text(tables_on_copy).await.as_deref(), Some("plans"));
    let snap = tc.discover().await;
    let status = global_copy::status(tc.config(), &snap).await.unwrap();
    assert_eq!(status[0].health, CopyHealth::Healthy, "{status:?}");
    assert_eq!(status[0].tables, ["plans"]);
}

/// Moving shard 0 hands its copies over: the destination's copy makes room, the other
/// copies follow the new master from the switch on (writes before it, during the move and
/// after it each arrive once), the old master gets a copy of its own; and back again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_shard_zero_hands_the_copies_over() {
    let tc = TestCluster::setup(3, 0)
        .shards(0..=1)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let m0 = tc.master(IslandId(0)).await.unwrap();
    m0.batch_execute(
        "create table sh0000.tenants (id bigint primary key, name text);
         insert into sh0000.tenants select g, 't' || g from generate_series(1, 200) g;",
    )
    .await
    .unwrap();
    replicate(&tc, None).await.expect("copies");
    let opts = atoll_move::MoveOptions::default();
    let zero = ShardNo::GLOBAL;
    // A move stopped once caught up (the handoff prepared on island 1), then aborted:
    // nothing of the handoff stays there (a slot left would keep WAL forever).
    let stopped = atoll_move::MoveOptions {
        stop_after: Some(atoll_core::move_plan::MoveStep::CaughtUp),
        ..Default::default()
    };
    let snap = tc.discover().await;
    let _ = atoll_move::start_move(
        tc.config(),
        &snap,
        zero,
        IslandId(1),
        &stopped,
        atoll_move::no_progress(),
    )
    .await;
    let slots =
        "select count(*) from pg_replication_slots where slot_name like 'atoll\\_global\\_%'";
    assert_eq!(
        count_on(&tc, 1, slots).await,
        1,
        "the handoff's slot for island 2"
    );
    atoll_move::abort_move(tc.config(), &tc.discover().await, Some(zero))
        .await
        .expect("abort");
    assert_eq!(count_on(&tc, 1, slots).await, 0);
    // Island 1 gave up its copy for the move; replicate gives it back.
    replicate(&tc, None).await.expect("copies again");
    let mut next: i64 = 201;
    for (from, to) in [(0u16, 1u16), (1, 0)] {
        // A writer on shard 0 through the move: every row it had acknowledged must reach
        // every copy exactly once.
        let writer = {
            let config = tc.config().clone();
            let first = next;
            tokio::spawn(async move {
                let cluster = atoll_client::Cluster::connect(config, Default::default())
                    .await
                    .unwrap();
                let mut id = first;
                let stop = Instant::now() + Duration::from_secs(4);
                while Instant::now() < stop {
                    let ok = cluster
                        .global()
                        .write(
                            "insert into sh0000.tenants values ($1, 'w') on conflict do nothing",
                            &[&id],
                            atoll_client::Write::idempotent(),
                        )
                        .await
                        .is_ok();
                    if ok {
                        id += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                id
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        atoll_move::start_move(
            tc.config(),
            &tc.discover().await,
            zero,
            IslandId(to),
            &opts,
            atoll_move::no_progress(),
        )
        .await
        .unwrap_or_else(|e| panic!("move {from} -> {to}: {e}"));
        next = writer.await.unwrap();
        let report = replicate(&tc, None).await.expect("hand over");
        assert_eq!(report.source, IslandId(to));
        let total = next - 1;
        for island in [0u16, 1, 2].into_iter().filter(|i| *i != to) {
            until("every acknowledged row on the copy", async || {
                count_on(&tc, island, "select count(*) from sh0000.tenants").await == total
            })
            .await;
            let distinct =
                count_on(&tc, island, "select count(distinct id) from sh0000.tenants").await;
            assert_eq!(distinct, total, "island {island}");
        }
        let snap = tc.discover().await;
        let status = global_copy::status(tc.config(), &snap).await.unwrap();
        assert!(
            status.iter().all(|c| c.health == CopyHealth::Healthy),
            "{status:?}"
        );
        assert_eq!(snap.active_island(zero).unwrap(), IslandId(to));
    }
}
