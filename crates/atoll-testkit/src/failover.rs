//! Failover test helpers: signals to a whole server (postmaster and children, as a host
//! death or freeze would), and a probe that counts moments when two nodes take writes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sends `sig` (a `libc` signal number: SIGKILL, SIGSTOP, SIGCONT) to the postmaster of
/// the data directory `dir` and all its children; returns their pids.
pub fn signal_server(dir: &Path, sig: i32) -> Vec<i32> {
    let Some(pid) = std::fs::read_to_string(dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next()?.trim().parse::<i32>().ok())
    else {
        return Vec::new();
    };
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // After the parenthesised command: the state, then the parent's pid.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<i32>().ok());
        if ppid == Some(pid) {
            pids.push(p);
        }
    }
    signal_pids(&pids, sig);
    pids
}

/// Sends `sig` to each of `pids` (gone ones are fine).
pub fn signal_pids(pids: &[i32], sig: i32) {
    for p in pids {
        // SAFETY: kill(2) with a pid and a signal number has no memory effects.
        unsafe {
            libc::kill(*p, sig);
        }
    }
}

/// Asks every node, every 20 ms, whether it takes writes (not in recovery, not made
/// read-only) and counts the rounds in which more than one did.
pub struct WritableProbe {
    stop: Arc<AtomicBool>,
    two_masters: Arc<AtomicUsize>,
    rounds: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl WritableProbe {
    /// Starts probing the nodes on `ports` (127.0.0.1, user postgres).
    pub fn start(ports: Vec<u16>) -> WritableProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let two = Arc::new(AtomicUsize::new(0));
        let rounds = Arc::new(AtomicUsize::new(0));
        let (s, t, r) = (stop.clone(), two.clone(), rounds.clone());
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let mut writable = 0;
                for p in &ports {
                    if takes_writes(*p).await {
                        writable += 1;
                    }
                }
                if writable > 1 {
                    t.fetch_add(1, Ordering::Relaxed);
                }
                r.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        WritableProbe {
            stop,
            two_masters: two,
            rounds,
            task,
        }
    }

    /// Stops; returns (rounds with two writable nodes, rounds).
    pub async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.two_masters.load(Ordering::Relaxed),
            self.rounds.load(Ordering::Relaxed),
        )
    }
}

async fn takes_writes(port: u16) -> bool {
    let conn = format!("host=127.0.0.1 port={port} user=postgres connect_timeout=1");
    let ask = async {
        let (c, conn) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(conn);
        let r = c
            .query_one(
                "select not pg_is_in_recovery() and current_setting('default_transaction_read_only') = 'off'",
                &[],
            )
            .await
            .ok()?;
        Some(r.get::<_, bool>(0))
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(300), ask).await,
        Ok(Some(true))
    )
}

/// The pid of the WAL receiver of the node on `port` when it streams from `upstream`.
pub fn receiver(port: u16, upstream: &str) -> Option<String> {
    let up = upstream.rsplit(':').next().unwrap_or("");
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-Atc",
        ])
        .arg(format!(
            "select pid from pg_stat_wal_receiver where status = 'streaming' and sender_port = {up}"
        ))
        .output()
        .ok()?;
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!pid.is_empty()).then_some(pid)
}

/// Waits until every node but the leader streams from it steadily (the same WAL receiver
/// two seconds later): the island is whole again before the next failure.
pub async fn island_follows(ports: &[u16], leader: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let others: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| format!("127.0.0.1:{p}") != leader)
            .collect();
        let first: Vec<Option<String>> = others.iter().map(|p| receiver(*p, leader)).collect();
        if first.iter().all(Option::is_some) {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let again: Vec<Option<String>> = others.iter().map(|p| receiver(*p, leader)).collect();
            if again == first {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the island did not follow {leader} within 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
