//! atoll-client against a real sandbox (2 islands × 1 replica), in one test so the
//! sandbox is built once: routing by ID with both generators, a transaction abandoned on a
//! master connection, read-your-writes while a replica's replay is paused, a shard
//! deactivated within and beyond the retry window, scatter-gather, a hand-made move seen by
//! clients with stale snapshots and by a timeline written before it, a pooled connection
//! kept warm to every master, and last (it is
//! destructive) a master failover with a repointed config. Setup helpers: `common`.

mod common;

use anyhow::{anyhow, ensure, Context, Result};
use atoll_client::{ClientError, Cluster, ClusterOptions, Freshness, Timeline, Write};
use atoll_core::{Config, IslandId, SEQUENCE_MAX};
use atoll_testkit::TestSandbox;
use common::*;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn routing_by_id(config: &Config, cluster: &Cluster) -> Result<usize> {
    let mut inserted = 0;
    for n in 1..=SHARDS {
        let s = cluster.shard(shard(n));
        let db_id = s.new_db_id().await?;
        let app_id = cluster.new_id(shard(n)).await?;
        ensure!(db_id.counter() <= SEQUENCE_MAX && app_id.counter() > SEQUENCE_MAX);
        for (id, name) in [(db_id, "db"), (app_id, "app")] {
            ensure!(id.shard() == shard(n), "{id} not in shard {n}");
            let target = cluster.shard_for_id(id.get())?;
            let sql = format!("insert into {}.items values ($1, $2)", target.schema());
            target
                .write(&sql, &[&id.get(), &name], Write::once())
                .await?;
            inserted += 1;
            let expected = cluster.snapshot().active_island(shard(n))?;
            let holders = island_holding(config, cluster, id).await?;
            ensure!(
                holders == vec![expected],
                "{id}: rows on {holders:?}, expected island {expected}"
            );
            let sql = format!("select name from {}.items where id = $1", target.schema());
            let rows = target.query(&sql, &[&id.get()], Freshness::Master).await?;
            ensure!(rows.len() == 1 && rows[0].get::<_, &str>(0) == name);
        }
    }
    // A malformed ID is an error, not a guess.
    ensure!(matches!(cluster.shard_for_id(42), Err(ClientError::Id(_))));
    // Names that do not exist on a shard that did not move: the error at once, not after
    // the absent-shard window.
    let s = cluster.shard(shard(1));
    for (sql, code) in [
        ("select nosuch.f()".to_string(), "3F000"),
        (format!("select * from {}.nosuch", s.schema()), "42P01"),
    ] {
        let started = Instant::now();
        let err = s.query(&sql, &[], Freshness::Master).await.err();
        let code_seen = err.as_ref().and_then(|e| e.code());
        ensure!(code_seen == Some(code), "{sql}: {err:?}");
        ensure!(
            started.elapsed() < Duration::from_secs(2),
            "{sql}: took {:?}",
            started.elapsed()
        );
    }

    // A multi-statement transaction on the master connection, then read-your-writes for it.
    let s = cluster.shard(shard(4));
    let (a, b) = (s.new_db_id().await?, cluster.new_id(shard(4)).await?);
    let mut conn = s.master_connection().await?;
    let tx = conn.transaction().await?;
    let sql = format!("insert into {}.items values ($1, 'tx')", s.schema());
    tx.execute(&sql, &[&a.get()]).await?;
    tx.execute(&sql, &[&b.get()]).await?;
    tx.commit().await?;
    let timeline = Timeline::new();
    s.record_write(&conn, &timeline).await;
    drop(conn);
    inserted += 2;

    // A transaction left open on a master connection (the caller ran "begin" and returned
    // early) must not swallow later autocommit writes that get the same pooled connection.
    {
        let conn = s.master_connection().await?;
        conn.batch_execute("begin").await?;
        let sql = format!("insert into {}.items values ($1, 'abandoned')", s.schema());
        conn.execute(&sql, &[&cluster.new_id(s.no()).await?.get()])
            .await?;
    }
    // Sequential checkouts cycle through every idle pooled connection (FIFO).
    let after = ClusterOptions::default().pool_max_size as i64 + 2;
    let sql = format!("insert into {}.items values ($1, 'after')", s.schema());
    for _ in 0..after {
        let id = cluster.new_id(s.no()).await?;
        s.write(&sql, &[&id.get()], Write::once()).await?;
    }
    inserted += after as usize;
    let snap = cluster.snapshot();
    let master = atoll_pg::master_node(config, &snap, snap.active_island(s.no())?)?;
    let fresh = atoll_pg::connect(&master).await?;
    let sql = format!(
        "select count(*) filter (where name = 'after'), count(*) filter (where name = 'abandoned') from {}.items",
        s.schema()
    );
    let row = fresh.query_one(&sql, &[]).await?;
    let (committed, abandoned): (i64, i64) = (row.get(0), row.get(1));
    ensure!(
        committed == after && abandoned == 0,
        "{committed} of {after} autocommit writes visible, {abandoned} abandoned rows"
    );
    let sql = format!(
        "select count(*) from {}.items where name = 'tx'",
        s.schema()
    );
    let rows = s.query(&sql, &[], Freshness::Timeline(&timeline)).await?;
    ensure!(
        rows[0].get::<_, i64>(0) == 2,
        "transaction's rows not visible"
    );
    Ok(inserted)
}

async fn read_your_writes(config: &Config, cluster: &Cluster) -> Result<()> {
    let s = cluster.shard(shard(3));
    let snapshot = cluster.snapshot();
    let island = snapshot.active_island(s.no())?;
    let rc = pause_replay(config, &snapshot, island).await?;
    let id = cluster.new_id(s.no()).await?;
    let timeline = Timeline::new();
    let sql = format!("insert into {}.items values ($1, 'ryw')", s.schema());
    s.write(&sql, &[&id.get()], Write::once().timeline(&timeline))
        .await?;
    ensure!(timeline.required(s.no(), now_ms()).is_some());
    let probe = format!(
        "select pg_is_in_recovery(), exists(select 1 from {}.items where id = $1)",
        s.schema()
    );
    let served =
        |rows: Vec<atoll_client::Row>| -> (bool, bool) { (rows[0].get(0), rows[0].get(1)) };
    // The replica lags: a stale read does not see the row, the timeline read goes to the master.
    let stale = served(
        s.query(&probe, &[&id.get()], Freshness::StaleReplica)
            .await?,
    );
    ensure!(stale == (true, false), "stale read {stale:?}");
    let carried = cluster.parse_timeline(&timeline.serialize(now_ms()))?;
    for t in [&timeline, &carried] {
        let r = served(
            s.query(&probe, &[&id.get()], Freshness::Timeline(t))
                .await?,
        );
        ensure!(r == (false, true), "timeline read while lagging: {r:?}");
    }
    // Other shards of the timeline-less kind still use the replica.
    let empty = Timeline::new();
    let r = served(
        s.query(&probe, &[&id.get()], Freshness::Timeline(&empty))
            .await?,
    );
    ensure!(
        r.0,
        "a read without a timeline entry should use the replica"
    );
    rc.batch_execute("select pg_wal_replay_resume()").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = served(
            s.query(&probe, &[&id.get()], Freshness::Timeline(&carried))
                .await?,
        );
        ensure!(r.1, "timeline read missed the write: {r:?}");
        if r.0 {
            break; // served by the caught-up replica
        }
        ensure!(
            Instant::now() < deadline,
            "replica never served the timeline read"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn shard_absence(config: &Config, cluster: &Cluster, short: &Cluster) -> Result<()> {
    // Deactivated, and re-activated 800 ms later: the caller sees no error, only a delay.
    set_active(config, cluster, 5, false).await?;
    cluster.refresh().await;
    ensure!(cluster.snapshot().active_island(shard(5)).is_err());
    let reactivate = {
        let (config, cluster) = (config.clone(), cluster.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            set_active(&config, &cluster, 5, true).await
        })
    };
    let started = Instant::now();
    let s = cluster.shard(shard(5));
    let sql = format!("select count(*) from {}.items", s.schema());
    let rows = s.query(&sql, &[], Freshness::Master).await?;
    ensure!(rows[0].get::<_, i64>(0) >= 2);
    let id = s.new_db_id().await?;
    ensure!(id.shard() == shard(5));
    ensure!(
        started.elapsed() >= Duration::from_millis(500),
        "read did not wait for the shard"
    );
    reactivate.await??;

    // Absent for longer than the window: a clear error naming the shard.
    set_active(config, cluster, 6, false).await?;
    short.refresh().await;
    let started = Instant::now();
    let s = short.shard(shard(6));
    let sql = format!("select count(*) from {}.items", s.schema());
    let err = s
        .query(&sql, &[], Freshness::Master)
        .await
        .err()
        .ok_or_else(|| anyhow!("read of an absent shard succeeded"))?;
    let waited = started.elapsed();
    ensure!(matches!(err, ClientError::ShardAbsent { .. }), "{err}");
    let msg = err.to_string();
    ensure!(msg.starts_with("sh0006 is absent"), "{msg}");
    ensure!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );

    // Scatter-gather over a chosen set including the absent shard: its error is reported.
    let chosen = vec![shard(1), shard(2), shard(6)];
    let results: Vec<_> = short
        .scatter(Some(chosen), 2, |s| async move {
            let sql = format!("select count(*) from {}.items", s.schema());
            let rows = s.query(&sql, &[], Freshness::StaleReplica).await?;
            Ok(rows[0].get::<_, i64>(0))
        })
        .collect()
        .await;
    ensure!(results.len() == 3);
    for (no, r) in &results {
        match (no.get(), r) {
            (6, Err(ClientError::ShardAbsent { .. })) => {}
            (1 | 2, Ok(n)) if *n >= 2 => {}
            other => return Err(anyhow!("unexpected scatter result {other:?}")),
        }
    }
    set_active(config, cluster, 6, true).await?;
    Ok(())
}

/// A write that hits a read-only master (25006, what a demoted master answers) is retried
/// after rediscovering the island, and runs exactly once when the node accepts writes again.
async fn write_on_read_only_node(config: &Config, cluster: &Cluster) -> Result<()> {
    let s = cluster.shard(shard(2));
    let snap = cluster.snapshot();
    let node = atoll_pg::master_node(config, &snap, snap.active_island(s.no())?)?;
    let admin = atoll_pg::connect(&node).await?;
    // This session stays writable whatever the server default says. (ALTER SYSTEM must
    // be a statement of its own.)
    for sql in [
        "set default_transaction_read_only = off",
        "alter system set default_transaction_read_only = on",
        "select pg_reload_conf()",
    ] {
        admin.batch_execute(sql).await?;
    }
    // Wait until the server has reloaded: a fresh session starts read-only. The postmaster
    // signals the pooled sessions as it reloads; they apply it before their next statement.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = atoll_pg::connect(&node).await?;
        let ro: String = probe
            .query_one(
                "select current_setting('default_transaction_read_only')",
                &[],
            )
            .await?
            .get(0);
        if ro == "on" {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the server never turned read-only after pg_reload_conf()"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = cluster.new_id(s.no()).await?;
    let sql = format!("insert into {}.items values ($1, 'read-only')", s.schema());
    let undo = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let reset_at = Instant::now();
        admin
            .batch_execute("alter system reset default_transaction_read_only")
            .await?;
        admin.batch_execute("select pg_reload_conf()").await?;
        Ok::<_, tokio_postgres::Error>(reset_at)
    });
    s.write(&sql, &[&id.get()], Write::once()).await?;
    let written = Instant::now();
    let reset_at = undo.await??;
    // The server was read-only until the reset: the write can only have succeeded by
    // retrying until then.
    ensure!(
        written > reset_at,
        "the write did not wait for the server to turn writable"
    );
    let sql = format!("select count(*) from {}.items where id = $1", s.schema());
    let n: i64 = s.query(&sql, &[&id.get()], Freshness::Master).await?[0].get(0);
    ensure!(n == 1, "{n} rows after the retried write");
    Ok(())
}

async fn scatter_all(cluster: &Cluster, expected: i64) -> Result<()> {
    cluster.refresh().await;
    ensure!(cluster.shards().len() == SHARDS as usize);
    // Counts how many shards are in flight at once: never more than the limit.
    let in_flight = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let total: i64 = cluster
        .scatter(None, 3, |s| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let sql = format!("select count(*) from {}.items, pg_sleep(0.05)", s.schema());
                let rows = s.query(&sql, &[], Freshness::Master).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                Ok(rows?[0].get::<_, i64>(0))
            }
        })
        .map(|(no, r)| r.with_context(|| format!("{no}")))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum::<Result<i64>>()?;
    ensure!(
        total == expected,
        "scatter counted {total}, expected {expected}"
    );
    let most = most.load(Ordering::SeqCst);
    ensure!(most == 3, "{most} shards ran at once with a limit of 3");
    Ok(())
}

/// A move done by hand (copy, deactivate, activate elsewhere, drop the source) while two
/// clients hold snapshots from before it: their statements hit the vanished schema (3F000
/// for a function, 42P01 for a table), rediscover, and succeed on the new island.
async fn ride_through_a_move(config: &Config, cluster: &Cluster) -> Result<()> {
    let n = 7;
    // Not listening for shard notices: clients that missed them, which only the error
    // path can teach (tests/shard_notices.rs covers the listening ones).
    let stale_opts = || ClusterOptions {
        refresh_period: Duration::from_secs(600),
        shard_notices: false,
        ..options(5000)
    };
    let stale_fn = Cluster::connect(config.clone(), stale_opts()).await?;
    let stale_table = Cluster::connect(config.clone(), stale_opts()).await?;
    cluster.refresh().await;
    let snap = cluster.snapshot();
    let from = snap.active_island(shard(n))?;
    let to = config
        .islands
        .iter()
        .map(|i| i.id)
        .find(|i| *i != from)
        .unwrap();
    // A write recorded in a timeline before the move: its position is on the old island's
    // WAL and says nothing about the new island's replicas.
    let before = Timeline::new();
    let s7 = cluster.shard(shard(n));
    let moved_id = cluster.new_id(s7.no()).await?;
    let sql = format!(
        "insert into {}.items values ($1, 'before move')",
        s7.schema()
    );
    s7.write(&sql, &[&moved_id.get()], Write::once().timeline(&before))
        .await?;
    let (written_on, written_at) = before
        .required(s7.no(), now_ms())
        .ok_or_else(|| anyhow!("no timeline entry"))?;
    ensure!(written_on == from);
    let (dst_node, copied) = move_by_hand(config, cluster, shard(n), from, to).await?;
    let schema = shard(n).schema();
    // Both stale clients still route shard 7 to the old island.
    ensure!(stale_fn.snapshot().active_island(shard(n)) == Ok(from));
    let id = stale_fn
        .shard(shard(n))
        .new_db_id()
        .await
        .context("id_gen after the move")?;
    ensure!(id.shard() == shard(n));
    // Only the error-triggered rediscovery can have taught it (its period is 10 minutes).
    ensure!(stale_fn.snapshot().active_island(shard(n)) == Ok(to));
    let s = stale_table.shard(shard(n));
    ensure!(stale_table.snapshot().active_island(shard(n)) == Ok(from));
    let sql = format!("select count(*), inet_server_port() from {schema}.items");
    let rows = s
        .query(&sql, &[], Freshness::Master)
        .await
        .context("read after the move")?;
    let (count, port): (i64, i32) = (rows[0].get(0), rows[0].get(1));
    ensure!(
        port == dst_node.port as i32,
        "served by port {port}, not the new island"
    );
    ensure!(
        count == copied as i64,
        "{count} rows after the move, {copied} copied"
    );
    // The timeline entry names the old island: its reads go to the new master until it
    // expires, whatever the new island's replicas have replayed.
    advance_wal_past(config, &cluster.snapshot(), to, written_at).await?;
    cluster.refresh().await;
    ensure!(cluster.snapshot().active_island(shard(n)) == Ok(to));
    let probe =
        format!("select pg_is_in_recovery(), exists(select 1 from {schema}.items where id = $1)");
    let rows = s7
        .query(&probe, &[&moved_id.get()], Freshness::Timeline(&before))
        .await?;
    let served: (bool, bool) = (rows[0].get(0), rows[0].get(1));
    ensure!(
        served == (false, true),
        "timeline read after the move: {served:?}"
    );
    Ok(())
}

async fn failover(sb: Arc<TestSandbox>, cluster: &Cluster) -> Result<()> {
    let island = 1u16;
    let target = (1..=SHARDS)
        .map(shard)
        .find(|s| cluster.snapshot().active_island(*s) == Ok(IslandId(island)))
        .ok_or_else(|| anyhow!("no shard on island {island}"))?;
    let nodes = sb
        .islands()
        .into_iter()
        .find(|i| i.id == island)
        .unwrap()
        .nodes;
    let (old, new) = (nodes[0].clone(), nodes[1].clone());

    // Idempotent reads keep running through the failover; none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reader = {
        let (cluster, stop, ok, failed) =
            (cluster.clone(), stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let s = cluster.shard(target);
            let sql = format!("select count(*) from {}.items", s.schema());
            let (mut errors, mut slowest) = (Vec::new(), Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = s.query(&sql, &[], Freshness::Master).await;
                slowest = slowest.max(started.elapsed());
                match r {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(e.to_string());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (errors, slowest)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    fail_over_and_repoint(sb.clone(), island, old.port).await?;
    let repointed = Instant::now();
    let new_addr = format!("{}:{}", new.host, new.port);
    loop {
        let cfg = cluster.config();
        let snap = cluster.snapshot();
        let nodes = cfg
            .islands
            .iter()
            .find(|i| i.id == IslandId(island))
            .map(|i| i.nodes.len());
        let master = snap
            .island(IslandId(island))
            .and_then(|i| i.master())
            .map(|m| m.addr.clone());
        if nodes == Some(1) && master.as_deref() == Some(new_addr.as_str()) {
            break;
        }
        ensure!(
            repointed.elapsed() < Duration::from_secs(2),
            "config change not picked up within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let picked_up = repointed.elapsed();
    let ok_before = ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (errors, slowest) = reader.await?;
    ensure!(
        errors.is_empty(),
        "idempotent reads failed during failover: {errors:?}"
    );
    ensure!(
        ok.load(Ordering::Relaxed) > ok_before,
        "no read after the failover"
    );
    // Writes go to the new master.
    let s = cluster.shard(target);
    let id = s.new_db_id().await?;
    let sql = format!(
        "insert into {}.items values ($1, 'after failover')",
        s.schema()
    );
    s.write(&sql, &[&id.get()], Write::once()).await?;
    eprintln!(
        "failover: config picked up in {picked_up:?}; {} reads ok, none failed, slowest {slowest:?}",
        ok.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A client that has sent nothing yet holds a pooled connection to every master
/// (`warm_masters`), so its first statement after a move there does not connect.
async fn warm_masters(config: &Config) -> Result<()> {
    let opts = ClusterOptions {
        application_name: "atoll-warm".into(),
        shard_notices: false,
        ..options(5000)
    };
    let cluster = Cluster::connect(config.clone(), opts).await?;
    let snap = cluster.snapshot();
    let deadline = Instant::now() + Duration::from_secs(20);
    for island in &config.islands {
        let c = atoll_testkit::master(config, &snap, island.id).await?;
        loop {
            let n: i64 = c
                .query_one(
                    "select count(*) from pg_stat_activity where application_name = 'atoll-warm'",
                    &[],
                )
                .await?
                .get(0);
            if n >= 1 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "no warm connection to island {}'s master",
                island.id
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

#[test]
fn cluster_end_to_end() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tc = prepare().await.context("prepare")?;
        let (sb, config) = (tc.shared_sandbox(), tc.config().clone());
        let cluster = Cluster::connect(config.clone(), options(5000)).await?;
        let short = Cluster::connect(config.clone(), options(1000)).await?;
        warm_masters(&config).await.context("warm masters")?;
        let inserted = routing_by_id(&config, &cluster).await.context("routing")?;
        read_your_writes(&config, &cluster)
            .await
            .context("read your writes")?;
        write_on_read_only_node(&config, &cluster)
            .await
            .context("read-only node")?;
        scatter_all(&cluster, inserted as i64 + 2)
            .await
            .context("scatter")?;
        shard_absence(&config, &cluster, &short)
            .await
            .context("absence")?;
        drop(short);
        ride_through_a_move(&config, &cluster)
            .await
            .context("move")?;
        // Stopping and promoting a node may take longer than 5 s on a slow machine: reads
        // wait out an absent master for up to 15 s here.
        let patient = Cluster::connect(config.clone(), options(15_000)).await?;
        failover(sb.clone(), &patient).await.context("failover")?;
        drop(cluster);
        Ok::<_, anyhow::Error>(())
    })?;
    drop(rt);
    Ok(())
}
