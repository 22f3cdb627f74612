//! The write pause is bounded whatever the destination does (issue 8, item 3): a
//! destination that stops answering inside the pause (its server frozen with SIGSTOP)
//! keeps the source's writers waiting no longer than `pause_bound` (+ 1 s); the move then
//! fails with the shard still active on the source, and resumes once the destination
//! answers again.

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::IslandId;
use atoll_move::{MoveError, MoveEvent, MoveOptions};
use common::{assert_settled, discover, master, setup, shard};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ROWS: i64 = 100;

/// Every process of the PostgreSQL server whose postmaster is `pid` (it and its children).
fn server_processes(pid: i32) -> Vec<String> {
    let mut out = vec![pid.to_string()];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent pid is the 2nd field after the parenthesised command name.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string));
        if ppid.as_deref() == Some(&pid.to_string()) {
            out.push(name);
        }
    }
    out
}

/// Signals the postmaster (the first pid, which must succeed) and its children; a child
/// may have exited since it was listed (a backend whose client just disconnected), and
/// must not make the signal fail for the others, which would leave them stopped.
fn signal(sig: &str, pids: &[String]) {
    let kill = |pid: &String| {
        std::process::Command::new("kill")
            .args([sig, pid])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = pids.iter().map(kill).collect::<Vec<bool>>();
    assert!(ok.first() == Some(&true), "kill {sig} {pids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_destination_cannot_hold_the_pause() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario finishes within 4 minutes");
}

async fn scenario() {
    let tc = setup(2, 0, &[1], ROWS, Some(IslandId(0))).await;
    let config = tc.config().clone();
    let s = shard(1);
    let (from, to) = (IslandId(0), IslandId(1));
    let postmaster = tc
        .sandbox()
        .status()
        .nodes
        .iter()
        .find(|n| n.island == to.0 && n.index == 0)
        .and_then(|n| n.pid)
        .expect("the destination master runs");
    let frozen: Arc<Mutex<Vec<String>>> = Arc::default();

    // A writer on the source, timing each insert (it waits while the pause holds the lock).
    let snap = discover(&config).await;
    let writer_db = master(&config, &snap, from).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut longest = Duration::ZERO;
            let sql = format!(
                "insert into {}.items (payload) values (1)",
                shard(1).schema()
            );
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                writer_db.execute(sql.as_str(), &[]).await.expect("insert");
                longest = longest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            longest
        })
    };

    // Freeze the destination's server the moment the final pause starts.
    let progress: atoll_move::Progress = {
        let frozen = frozen.clone();
        Arc::new(move |_, e| {
            if matches!(e, MoveEvent::Step(MoveStep::Paused)) {
                let mut f = frozen.lock().unwrap_or_else(|p| p.into_inner());
                if f.is_empty() {
                    *f = server_processes(postmaster);
                    signal("-STOP", &f);
                }
            }
        })
    };
    let bound = Duration::from_secs(2);
    let opts = MoveOptions {
        pause_bound: bound,
        ..MoveOptions::default()
    };
    let moved = atoll_move::start_move(&config, &snap, s, to, &opts, progress).await;
    let pids = frozen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(!pids.is_empty(), "the pause was reached: {moved:?}");
    // Writers already went on; wake the destination before anything else needs it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let longest = writer.await.expect("writer");
    signal("-CONT", &pids);
    eprintln!("longest source write during the frozen pause: {longest:?}; move: {moved:?}");
    assert!(
        matches!(&moved, Err(MoveError::Timeout { .. })),
        "the move gave up at its bound: {moved:?}"
    );
    assert!(
        longest < bound + Duration::from_secs(1),
        "a source writer waited {longest:?}, more than the pause bound {bound:?} + 1 s"
    );
    let snap = discover(&config).await;
    assert_eq!(
        snap.active_island(s),
        Ok(from),
        "the shard stays active on the source"
    );
    let rec = atoll_move::unfinished(&config, &snap)
        .await
        .expect("moves")
        .remove(0);
    assert_eq!(rec.step, MoveStep::CaughtUp);

    // Once the destination answers, the move resumes and finishes.
    let n: i64 = {
        let c = master(&config, &snap, from).await;
        c.query_one(&format!("select count(*) from {}.items", s.schema()), &[])
            .await
            .expect("count")
            .get(0)
    };
    atoll_move::resume_move(
        &config,
        &snap,
        Some(s),
        &MoveOptions::default(),
        atoll_move::no_progress(),
    )
    .await
    .expect("resume");
    assert_settled(&config, s, to, Some(n)).await;
}
