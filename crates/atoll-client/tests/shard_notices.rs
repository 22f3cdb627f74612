//! Shard notices against a real sandbox (2 islands): clients whose discovery period is an
//! hour, so only a notice can explain a snapshot that follows a change. A shard is moved
//! there and back with atoll-move under a continuous writer (the observer's snapshot shows
//! the destination within 100 ms of the switch's commit, with no discovery round; no write
//! fails and every acknowledged one is there once); a client started between a move's
//! switch and its activation ends up routing to the destination; `shard deactivate` and
//! `activate` are followed; a listener whose connection is killed reconnects and
//! rediscovers.

use anyhow::{ensure, Context, Result};
use atoll_client::{Cluster, ClusterOptions, Write};
use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo};
use atoll_move::{MoveError, MoveEvent, MoveOptions};
use atoll_testkit::{discover, shard, TestCluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Discovery only at start and when something asks for it.
fn options() -> ClusterOptions {
    ClusterOptions {
        refresh_period: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// A client listening on every island's master, its discovery rounds settled.
async fn listening_client(config: &Config) -> Result<Cluster> {
    let c = Cluster::connect(config.clone(), options()).await?;
    let started = Instant::now();
    while c.stats().listening.len() < config.islands.len() {
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "not listening: {:?}",
            c.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The round each `Listening` asks for.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(c)
}

/// When `cluster`'s snapshot first routes `s` to `island`, polled every millisecond.
fn watch_for(cluster: &Cluster, s: ShardNo, island: IslandId) -> tokio::task::JoinHandle<Instant> {
    watch_until(cluster, s, move |i| i == Some(island))
}

/// When `cluster`'s snapshot first places `s` so that `until` holds.
fn watch_until(
    cluster: &Cluster,
    s: ShardNo,
    until: impl Fn(Option<IslandId>) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<Instant> {
    let cluster = cluster.clone();
    tokio::spawn(async move {
        loop {
            if until(cluster.snapshot().active_island(s).ok()) {
                return Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
}

#[derive(Default)]
struct Written {
    acked: Vec<i64>,
    errors: Vec<String>,
    longest_gap: Duration,
}

/// Inserts payload 1, 2, 3... into `s.items` through `cluster` until `stop`.
async fn write_until(cluster: Cluster, s: ShardNo, stop: Arc<AtomicBool>) -> Written {
    let sql = format!("insert into {}.items (payload) values ($1)", s.schema());
    let mut w = Written::default();
    let mut last = Instant::now();
    let mut n = 0i64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match cluster.shard(s).write(&sql, &[&n], Write::once()).await {
            Ok(_) => {
                w.acked.push(n);
                w.longest_gap = w.longest_gap.max(last.elapsed());
                last = Instant::now();
            }
            Err(e) => w.errors.push(e.to_string()),
        }
    }
    w
}

/// Moves `s` to `to` and returns when its switch committed (the move's `Switched` event).
async fn move_timed(config: &Config, s: ShardNo, to: IslandId) -> Result<Instant> {
    let switched = Arc::new(Mutex::new(None));
    let progress = {
        let switched = switched.clone();
        Arc::new(move |_: ShardNo, e: &MoveEvent| {
            if matches!(e, MoveEvent::Step(MoveStep::Switched)) {
                *switched.lock().unwrap() = Some(Instant::now());
            }
        })
    };
    let snap = discover(config).await;
    let report = atoll_move::start_move(config, &snap, s, to, &MoveOptions::default(), progress)
        .await
        .with_context(|| format!("move {s} to island {to}"))?;
    eprintln!("move to island {to}: pause {:.1} ms", report.pause_ms);
    let at = switched.lock().unwrap().context("no Switched event")?;
    Ok(at)
}

async fn moves_under_a_writer(config: &Config, observer: &Cluster) -> Result<Vec<f64>> {
    let s = shard(1);
    let home = observer.snapshot().active_island(s)?;
    let away = IslandId(1 - home.0);
    let writer = listening_client(config).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let w = tokio::spawn(write_until(writer.clone(), s, stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rounds = observer.stats().discovery_rounds;
    let mut lags = Vec::new();
    for to in [away, home] {
        let from = IslandId(1 - to.0);
        let seen = watch_for(observer, s, to);
        let gone = watch_until(observer, s, move |i| i != Some(from));
        let switched = move_timed(config, s, to).await?;
        let seen = tokio::time::timeout(Duration::from_secs(5), seen).await??;
        let gone = tokio::time::timeout(Duration::from_secs(5), gone).await??;
        let lag = seen.saturating_duration_since(switched);
        eprintln!(
            "switch commit -> observer's snapshot: off island {from} {:?}, on island {to} {lag:?}",
            gone.saturating_duration_since(switched)
        );
        lags.push(lag.as_secs_f64() * 1e3);
        ensure!(
            lag < Duration::from_millis(100),
            "{lag:?} from switch to snapshot"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let written = w.await?;
    let stats = observer.stats();
    ensure!(
        stats.discovery_rounds == rounds,
        "the observer ran discovery rounds: {stats:?} (had {rounds})"
    );
    // Two notices per move; a switch's may come after its activation's, and is then stale.
    ensure!(
        stats.notices_applied >= 2 && stats.notices_applied + stats.notices_ignored >= 4,
        "{stats:?}"
    );
    eprintln!(
        "writer: {} acked, {} errors, longest gap {:?}; writer's client {:?}",
        written.acked.len(),
        written.errors.len(),
        written.longest_gap,
        writer.stats()
    );
    ensure!(written.errors.is_empty(), "{:?}", written.errors);
    ensure!(written.acked.len() > 20, "the writer kept writing");
    atoll_testkit::writer::check_acked(config, s, &written.acked).await;
    Ok(lags)
}

/// A client connected after the switch (the shard active nowhere) follows the activation.
async fn started_mid_move(config: &Config) -> Result<()> {
    let s = shard(2);
    let snap = discover(config).await;
    let from = snap.active_island(s)?;
    let to = IslandId(1 - from.0);
    let opts = MoveOptions {
        stop_after: Some(MoveStep::Switched),
        ..MoveOptions::default()
    };
    let stopped =
        atoll_move::start_move(config, &snap, s, to, &opts, atoll_move::no_progress()).await;
    ensure!(
        matches!(stopped, Err(MoveError::Stopped { .. })),
        "{stopped:?}"
    );
    let late = listening_client(config).await?;
    ensure!(
        late.snapshot().active_island(s).is_err(),
        "active before the activation"
    );
    let rounds = late.stats().discovery_rounds;
    // A write waiting for the shard (within its 5 s window) goes through once it arrives;
    // on a client of its own, whose error path runs discovery rounds.
    let late_writer = listening_client(config).await?;
    let write = {
        let late = late_writer.clone();
        tokio::spawn(async move {
            let sql = format!("insert into {}.items (payload) values (-1)", s.schema());
            late.shard(s).write(&sql, &[], Write::once()).await
        })
    };
    let seen = watch_for(&late, s, to);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let snap = discover(config).await;
    atoll_move::resume_move(
        config,
        &snap,
        Some(s),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .context("resume")?;
    tokio::time::timeout(Duration::from_secs(1), seen).await??;
    write.await?.context("the waiting write")?;
    ensure!(
        late.stats().discovery_rounds == rounds,
        "{:?}",
        late.stats()
    );
    Ok(())
}

/// `shard deactivate` and `activate` by hand reach the observer's snapshot.
async fn by_hand(config: &Config, observer: &Cluster) -> Result<()> {
    let s = shard(1);
    let island = observer.snapshot().active_island(s)?;
    let rounds = observer.stats().discovery_rounds;
    atoll_pg::shard_state::set_active(config, &discover(config).await, s, None, false).await?;
    let started = Instant::now();
    while observer.snapshot().active_island(s).is_ok() {
        ensure!(
            started.elapsed() < Duration::from_millis(500),
            "deactivation not seen"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eprintln!("shard deactivate -> observer: {:?}", started.elapsed());
    let gen_off = observer.snapshot().shard_gen(s);
    atoll_pg::shard_state::set_active(config, &discover(config).await, s, None, true).await?;
    tokio::time::timeout(Duration::from_millis(500), watch_for(observer, s, island)).await??;
    ensure!(observer.snapshot().shard_gen(s) > gen_off);
    ensure!(
        observer.stats().discovery_rounds == rounds,
        "{:?}",
        observer.stats()
    );
    Ok(())
}

/// A listener whose session is ended reconnects, and a discovery round follows.
async fn listener_reconnects(config: &Config, observer: &Cluster) -> Result<()> {
    let rounds = observer.stats().discovery_rounds;
    let snap = discover(config).await;
    let c = atoll_testkit::master(config, &snap, IslandId(0)).await?;
    let ended: i64 = c
        .query_one(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity
              where application_name = 'atoll-client notices'",
            &[],
        )
        .await?
        .get(0);
    ensure!(ended >= 1, "no listener session on island 0");
    let started = Instant::now();
    loop {
        let stats = observer.stats();
        if stats.discovery_rounds > rounds && stats.listening.len() == 2 {
            return Ok(());
        }
        ensure!(started.elapsed() < Duration::from_secs(5), "{stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn clients_follow_shard_notices() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(240), async {
            let tc = TestCluster::setup(2, 0)
                .shards(1..=2)
                .on_island(IslandId(0))
                .start()
                .await?;
            tc.on_each_shard(&atoll_testkit::shards(1..=2), |sc| {
                format!(
                    "create table {sc}.items (id bigint primary key default {sc}.id_gen(),
                                              payload bigint not null)"
                )
            })
            .await?;
            let config = tc.config().clone();
            let observer = listening_client(&config).await?;
            let lags = moves_under_a_writer(&config, &observer)
                .await
                .context("moves")?;
            started_mid_move(&config).await.context("mid-move client")?;
            by_hand(&config, &observer).await.context("by hand")?;
            listener_reconnects(&config, &observer)
                .await
                .context("reconnect")?;
            eprintln!("switch -> snapshot (ms): {lags:?}");
            Ok::<_, anyhow::Error>(())
        })
        .await
        .context("the scenario finishes within 4 minutes")?
    })?;
    drop(rt);
    Ok(())
}
