//! Zero errors through moves: pgbench (16 clients, simple, extended and prepared protocols in turn, one script per shard,
//! each a transaction inserting a unique row and bumping its shard's counter) runs through
//! `atoll proxy` while 10 moves run back and forth between two islands. Every pgbench run
//! must end with every client's transactions done and none failed; afterwards every
//! acknowledged row is on its shard's island exactly once, and each shard's counter equals
//! its row count (no transaction ran twice). Meanwhile psql loads batches of rows into
//! shard 2 with `COPY ... FROM STDIN` through the proxy: every batch succeeds, each row
//! once. The proxy's hold times are printed.

mod proxy_kit;

use anyhow::Result;
use atoll_core::{IslandId, ShardNo};
use atoll_testkit::cli::Cli;
use atoll_testkit::TestCluster;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDS: [i64; 4] = [1, 2, 3, 4];
const MOVES: usize = 10;

#[test]
fn pgbench_through_ten_moves_without_an_error() -> Result<()> {
    let tc = TestCluster::setup(2, 0).shards(0..=4).start_blocking()?;
    let rt = tokio::runtime::Runtime::new()?;
    let snap = rt.block_on(tc.discover());
    let island_of =
        |snap: &atoll_core::Snapshot, n: i64| snap.active_island(ShardNo::new(n).unwrap()).unwrap();
    let dir = tc.sandbox().dir().to_path_buf();
    let mut scripts = Vec::new();
    for n in SHARDS {
        let port = tc.master_ports()[island_of(&snap, n).0 as usize];
        tc.psql(
            port,
            &format!(
                "create table sh{n:04}.ledger (r bigint primary key, at timestamptz not null default now());
                 create table sh{n:04}.counter (id int primary key, n bigint not null);
                 insert into sh{n:04}.counter values (1, 0);
                 create table sh{n:04}.bulk (b bigint primary key);"
            ),
        );
        let path = dir.join(format!("w{n}.sql"));
        std::fs::write(
            &path,
            format!(
                "\\set r random(1, 9000000000000000000)\nbegin;\ninsert into sh{n:04}.ledger (r) values (:r);\nupdate sh{n:04}.counter set n = n + 1 where id = 1;\ncommit;\n"
            ),
        )?;
        scripts.push(path);
    }
    let p = proxy_kit::start(&tc, &["--pool-size", "24", "--hold-timeout-ms", "5000"])?;

    // The moves, one after another, in a thread: shard 1, 2, 3, 4, 1, ... each to the
    // island it is not on.
    let atoll = Cli::new(env!("CARGO_BIN_EXE_atoll"), tc.config_path());
    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let done = done.clone();
        let mut islands: Vec<IslandId> = SHARDS.iter().map(|n| island_of(&snap, *n)).collect();
        std::thread::spawn(move || -> Result<Vec<Duration>> {
            let mut took = Vec::new();
            // Let pgbench get going first.
            std::thread::sleep(Duration::from_secs(2));
            for i in 0..MOVES {
                let k = i % SHARDS.len();
                let to = if islands[k] == IslandId(0) { 1 } else { 0 };
                let started = Instant::now();
                let out = atoll
                    .command()
                    .args([
                        "move",
                        "--shard",
                        &SHARDS[k].to_string(),
                        "--to",
                        &to.to_string(),
                    ])
                    .output()?;
                anyhow::ensure!(
                    out.status.success(),
                    "move {i}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                took.push(started.elapsed());
                islands[k] = IslandId(to);
            }
            done.store(true, Ordering::SeqCst);
            Ok(took)
        })
    };

    // COPY FROM STDIN batches of 500 rows into shard 2 until the moves are done.
    const BATCH: u64 = 500;
    // Also stopped when pgbench gives up waiting for the moves.
    let stop = AtomicBool::new(false);
    let loader = {
        let (done, stop, p) = (done.clone(), &stop, &p);
        move || -> u64 {
            let mut batches = 0u64;
            while !done.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                let data: String = (0..BATCH)
                    .map(|j| format!("{}\n", batches * BATCH + j))
                    .collect();
                let out = p.copy_in("copy sh0002.bulk (b) from stdin", &data);
                assert!(
                    out.status.success(),
                    "COPY batch {batches}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                batches += 1;
            }
            batches
        }
    };
    let loaded = std::thread::scope(|s| -> Result<(u64, u64, usize)> {
        let loader = s.spawn(loader);
        let (acknowledged, runs) = pgbench_until(&p, &done, &scripts);
        stop.store(true, Ordering::SeqCst);
        let batches = loader.join().expect("COPY thread");
        Ok((batches, acknowledged, runs))
    })?;
    let (batches, acknowledged, runs) = loaded;
    let took = mover.join().expect("mover thread")?;
    assert_eq!(took.len(), MOVES);

    // Every acknowledged row exactly once, on the shard's island; no transaction twice.
    let snap = rt.block_on(tc.discover());
    let port = tc.master_ports()[island_of(&snap, 2).0 as usize];
    let bulk = tc.psql(
        port,
        "select count(*), count(distinct b), coalesce(max(b) + 1, 0) from sh0002.bulk",
    );
    let want = batches * BATCH;
    assert_eq!(
        bulk,
        format!("{want}|{want}|{want}"),
        "COPY rows vs batches acknowledged"
    );

    let (mut rows, mut distinct) = (0i64, 0i64);
    for n in SHARDS {
        let port = tc.master_ports()[island_of(&snap, n).0 as usize];
        let line = tc.psql(
            port,
            &format!(
                "select count(*), count(distinct r), (select n from sh{n:04}.counter) from sh{n:04}.ledger"
            ),
        );
        let v: Vec<i64> = line.split('|').map(|x| x.trim().parse().unwrap()).collect();
        assert_eq!(v[0], v[2], "sh{n:04}: rows and counter differ: {line}");
        rows += v[0];
        distinct += v[1];
    }
    assert_eq!(rows, distinct);
    assert_eq!(
        rows as u64, acknowledged,
        "rows on the islands vs acknowledged"
    );

    let out = p.psql_db(proxy_kit::PASSWORD, "app", "atoll", &["show atoll.holds"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let holds = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let fields: Vec<&str> = holds.split('|').collect();
    // Nothing held any more, nothing expired.
    assert_eq!((fields[0], fields[2]), ("0", "0"), "{holds}");
    // /metrics agrees, and counted no error.
    let released: f64 = fields[1].parse()?;
    assert_eq!(
        p.sample("atoll_proxy_holds_total{outcome=\"released\"}"),
        Some(released)
    );
    assert!(released > 0.0, "{holds}");
    let metrics = p.metrics();
    assert!(!metrics.contains("atoll_proxy_errors_total{"), "{metrics}");
    eprintln!(
        "{MOVES} moves ({:?} each), {runs} pgbench runs, {acknowledged} transactions, {batches} COPY batches, 0 errors; holds: {holds}",
        took
    );
    assert_eq!(p.server.terminate()?, Some(0));
    Ok(())
}

/// pgbench in short runs until the moves are done (and one more run after them): the
/// transactions acknowledged and the runs.
fn pgbench_until(
    p: &proxy_kit::Proxied,
    done: &AtomicBool,
    scripts: &[std::path::PathBuf],
) -> (u64, usize) {
    let script_refs: Vec<&std::path::Path> = scripts.iter().map(|p| p.as_path()).collect();
    let mut acknowledged = 0u64;
    let mut runs = 0;
    loop {
        let last = done.load(Ordering::SeqCst);
        // The simple, extended and prepared protocols, in turn.
        let mode = ["simple", "extended", "prepared"][runs % 3];
        let out = p.pgbench(
            &["-c", "16", "-j", "2", "-T", "4", "-M", mode],
            &script_refs,
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "pgbench run {runs}: {text}\n{err}");
        assert!(!err.contains("ERROR"), "pgbench run {runs}: {err}");
        assert!(
            text.contains("number of failed transactions: 0"),
            "pgbench run {runs}: {text}"
        );
        acknowledged += proxy_kit::processed(&text).expect("processed count");
        runs += 1;
        if last || runs > 120 {
            break;
        }
    }
    (acknowledged, runs)
}
