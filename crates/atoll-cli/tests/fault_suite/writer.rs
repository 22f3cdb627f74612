//! The concurrent writer of a path: inserts `payload = base + 1, base + 2, ...` into shard
//! 1 through atoll-client (on a thread and runtime of its own) from before the kill to the
//! end of the follow-ups, and remembers what was acknowledged. Then every acknowledged
//! payload must be present exactly once where the shard is active, and no payload twice.

use super::world::{World, SHARD};
use atoll_core::Config;
use atoll_testkit::writer::Route;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Payloads of one path lie in `base + 1 .. base + SPAN`.
pub const SPAN: i64 = 10_000_000;

pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Written>,
}

#[derive(Debug, Default)]
pub struct Written {
    pub acked: Vec<i64>,
    pub errors: usize,
    pub first_error: Option<String>,
}

impl Writer {
    /// Starts writing and returns once a few inserts were acknowledged.
    pub fn start(config: Config, base: i64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("writer runtime")
                .block_on(write(config, base, s, a))
        });
        let started = Instant::now();
        while acked.load(Ordering::Relaxed) < 5 && !handle.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the writer acknowledged nothing within 30 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Writer { stop, handle }
    }

    pub fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the writer thread panicked")
    }
}

async fn write(
    config: Config,
    base: i64,
    stop: Arc<AtomicBool>,
    count: Arc<AtomicUsize>,
) -> Written {
    let shard = atoll_testkit::shard(SHARD);
    let mut route = Route::new(&config).await.expect("writer: connect");
    let sql = "insert into sh0001.items (payload) values ($1) returning payload";
    let mut out = Written::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        match route.write(shard, sql, base + n).await {
            Ok(p) => {
                out.acked.push(p);
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert(e);
            }
        }
        // Room for the mover and the servers on a small machine.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out
}

/// Every acknowledged payload of `base` present exactly once on the island `island`,
/// and no payload of `base` there twice.
pub fn check(world: &World, island: u16, base: i64, w: &Written) -> Result<(), String> {
    let found = world.psql(
        world.ports[island as usize],
        &format!(
            "select payload from sh0001.items where payload > {base} and payload < {}",
            base + SPAN
        ),
    );
    let mut counts: HashMap<i64, u32> = HashMap::new();
    for l in found.lines().filter(|l| !l.is_empty()) {
        let p: i64 = l.parse().map_err(|e| format!("payload {l:?}: {e}"))?;
        *counts.entry(p).or_default() += 1;
    }
    let lost: Vec<i64> = w
        .acked
        .iter()
        .copied()
        .filter(|p| !counts.contains_key(p))
        .collect();
    let doubled: Vec<i64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(p, _)| *p)
        .collect();
    if lost.is_empty() && doubled.is_empty() {
        return Ok(());
    }
    Err(format!(
        "writes on island {island}: {} of {} acknowledged lost (first {:?}), {} doubled (first {:?})",
        lost.len(),
        w.acked.len(),
        lost.iter().take(5).collect::<Vec<_>>(),
        doubled.len(),
        doubled.iter().take(5).collect::<Vec<_>>()
    ))
}
