//! What the move benchmarks share (`move_shard`, `move_soak`): flags, the shard with data,
//! a move to the other island with its step times. The writer and the row audit are
//! atoll-testkit's (`writer`).

#![allow(dead_code)]

pub mod explain;
pub mod phases;
pub mod server_log;

use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo, Snapshot};
use atoll_move::{MoveEvent, MoveOptions, MoveReport, Progress};
use atoll_testkit::writer::{self, WriterStats};
use atoll_testkit::{discover, shard, TestCluster};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The value after `name` on the command line, when present.
pub fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// The value after `name` on the command line parsed, else `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    arg_str(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The benchmarked shard's table, as built by [`build_items`].
#[derive(Debug, Clone, Copy)]
pub struct Items {
    pub rows: u64,
    /// Heap size, MiB.
    pub size_mb: f64,
    /// With its primary key and secondary index, MiB.
    pub total_mb: f64,
}

/// The benchmarks' cluster: two islands (masters only), `shard` active on island 0 with
/// its `items`. Dropping `tc` removes the sandbox.
pub struct Bench {
    pub tc: TestCluster,
    pub config: Config,
    pub shard: ShardNo,
    pub items: Items,
}

/// Starts the [`Bench`] cluster with about `mb` MiB in shard 1.
pub async fn setup(mb: u64) -> anyhow::Result<Bench> {
    let tc = TestCluster::setup(2, 0)
        .shards([1])
        .on_island(IslandId(0))
        .start()
        .await?;
    let config = tc.config().clone();
    let items = build_items(&tc, IslandId(0), shard(1), mb).await?;
    Ok(Bench {
        tc,
        config,
        shard: shard(1),
        items,
    })
}

/// atoll-testkit's paced writer on the bench's shard, in a task of its own.
pub struct Writer {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(WriterStats, f64)>,
}

impl Writer {
    /// Starts writing `rate` inserts/s and returns after a 2 s warm-up.
    pub async fn start(config: &Config, shard: ShardNo, rate: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(writer::paced(
            config.clone(),
            shard,
            stop.clone(),
            Some(rate),
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        Writer { stop, task }
    }

    /// Stops it; what it saw and how long it ran, in seconds.
    pub async fn stop(self) -> anyhow::Result<(WriterStats, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Fills `shard.items (id bigint primary key default id_gen(), payload, note)` on
/// `island` with about `mb` MiB (negative payloads: the writer's are positive), plus an
/// index on `payload`.
pub async fn build_items(
    tc: &TestCluster,
    island: IslandId,
    shard: ShardNo,
    mb: u64,
) -> anyhow::Result<Items> {
    let src = tc.master(island).await?;
    let t = Instant::now();
    // ~182 bytes per row in the heap (measured).
    let rows = mb * 1024 * 1024 / 182;
    let s = shard.schema();
    src.batch_execute(&format!(
        "create table {s}.items (id bigint primary key default {s}.id_gen(),
                                 payload bigint not null, note text);
         insert into {s}.items (payload, note)
           select -g, md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) || md5((g + 3)::text)
           from generate_series(1, {rows}) g;
         create index on {s}.items (payload);"
    ))
    .await?;
    // Apart: VACUUM cannot run inside the implicit transaction of a multi-statement batch.
    src.batch_execute(&format!("vacuum analyze {s}.items"))
        .await?;
    let sizes = src
        .query_one(
            &format!("select pg_table_size('{s}.items'), pg_total_relation_size('{s}.items')"),
            &[],
        )
        .await?;
    let mib = |b: i64| b as f64 / 1048576.0;
    let items = Items {
        rows,
        size_mb: mib(sizes.get(0)),
        total_mb: mib(sizes.get(1)),
    };
    eprintln!(
        "built {rows} rows, table {:.0} MiB (+ indexes) in {:.0} s",
        items.size_mb,
        t.elapsed().as_secs_f64()
    );
    Ok(items)
}

/// Adds `n` copies of `shard.items` (`items_2..=items_{n+1}`, same rows, indexes and
/// default) on `island`: a shard of several big tables, for the parallel copy.
pub async fn big_tables(
    tc: &TestCluster,
    island: IslandId,
    shard: ShardNo,
    n: u32,
) -> anyhow::Result<Vec<String>> {
    let src = tc.master(island).await?;
    let s = shard.schema();
    let mut names = Vec::new();
    for k in 2..=n + 1 {
        src.batch_execute(&format!(
            "create table {s}.items_{k} (like {s}.items including all);
             insert into {s}.items_{k} select * from {s}.items;"
        ))
        .await?;
        src.batch_execute(&format!("vacuum analyze {s}.items_{k}"))
            .await?;
        names.push(format!("items_{k}"));
    }
    Ok(names)
}

/// Adds `n` small tables (`extra_1..`, 10 rows each, a primary key) to `shard` on
/// `island`: more tables for the pause to lock.
pub async fn extra_tables(
    tc: &TestCluster,
    island: IslandId,
    shard: ShardNo,
    n: u32,
) -> anyhow::Result<()> {
    let src = tc.master(island).await?;
    let s = shard.schema();
    for k in 1..=n {
        src.batch_execute(&format!(
            "create table {s}.extra_{k} (id bigint primary key, v int);
             insert into {s}.extra_{k} select g, g from generate_series(1, 10) g;"
        ))
        .await?;
    }
    Ok(())
}

/// The median of `n` `select 1` round trips to `island`'s master, in milliseconds.
pub async fn round_trip_ms(tc: &TestCluster, island: IslandId, n: usize) -> anyhow::Result<f64> {
    let c = tc.master(island).await?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let t = Instant::now();
        c.batch_execute("select 1").await?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(&mut v))
}

/// The median of `v` (the mean of the two middle values for an even count); NaN if empty.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Where `shard` is active now and the other of two islands.
pub async fn ends(
    config: &Config,
    shard: ShardNo,
) -> anyhow::Result<(Snapshot, IslandId, IslandId)> {
    let snap = discover(config).await;
    let from = snap.active_island(shard)?;
    Ok((snap, from, IslandId(1 - from.0)))
}

/// Something that happened during a round, as the timeline records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    /// The move reached this step (its progress callback).
    Step(MoveStep),
    /// A note of the move (`MoveEvent::Note`).
    Note(String),
    /// Something the bench itself did around the move (plain COPY, checkpoint, dropping
    /// the backup...).
    Bench(&'static str),
}

/// The steps a move reached and when, with its notes and the bench's own marks;
/// optionally echoed to stderr.
#[derive(Clone)]
pub struct Timeline {
    t0: Instant,
    echo: bool,
    marks: Arc<Mutex<Vec<(Mark, Instant)>>>,
}

impl Timeline {
    /// A timeline starting now; `echo` prints every step and note with its time.
    pub fn new(echo: bool) -> Timeline {
        Timeline {
            t0: Instant::now(),
            echo,
            marks: Arc::default(),
        }
    }

    pub fn started(&self) -> Instant {
        self.t0
    }

    /// Records `mark` now.
    pub fn mark(&self, mark: Mark) {
        if self.echo {
            eprintln!("{:>8.3} s {mark:?}", self.t0.elapsed().as_secs_f64());
        }
        if let Ok(mut marks) = self.marks.lock() {
            marks.push((mark, Instant::now()));
        }
    }

    pub fn progress(&self) -> Progress {
        let tl = self.clone();
        Arc::new(move |_shard, e| match e {
            MoveEvent::Step(step) => tl.mark(Mark::Step(*step)),
            MoveEvent::Note(n) => tl.mark(Mark::Note(n.clone())),
            MoveEvent::Copy { .. } => {}
        })
    }

    /// Everything recorded so far, in order.
    pub fn marks(&self) -> Vec<(Mark, Instant)> {
        self.marks.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The steps reached so far, in order.
    pub fn steps(&self) -> Vec<(MoveStep, Instant)> {
        self.marks()
            .into_iter()
            .filter_map(|(m, t)| match m {
                Mark::Step(s) => Some((s, t)),
                _ => None,
            })
            .collect()
    }
}

/// Moves `shard` to `to` with default options, then drops the backup (not needed here;
/// keeps the disk small). Returns the report and the wall time of the move itself.
pub async fn move_and_drop_backup(
    config: &Config,
    snap: &Snapshot,
    shard: ShardNo,
    to: IslandId,
    timeline: &Timeline,
) -> anyhow::Result<(MoveReport, Duration)> {
    let t = Instant::now();
    let report = atoll_move::start_move(
        config,
        snap,
        shard,
        to,
        &MoveOptions::default(),
        timeline.progress(),
    )
    .await?;
    let took = t.elapsed();
    timeline.mark(Mark::Bench("dropping the backup"));
    atoll_move::cleanup(config, &discover(config).await, 0, false).await?;
    timeline.mark(Mark::Bench("backup dropped"));
    Ok((report, took))
}
