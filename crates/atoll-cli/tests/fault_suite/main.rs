//! The fault suite (issue 8): a move interrupted at every persisted step (the mover
//! stopped by the test hook or SIGKILLed, a resume or an abort stopped half-way), then
//! every follow-up an operator could type (resume, abort, rebalance --resume, cleanup).
//! After each: shard 1 is active on exactly one island (or OFFLINE, and the output names
//! the command that ends it, which is then run), every acknowledged write of a concurrent
//! writer is there exactly once, no replication object is left without an unfinished move,
//! and `atoll status --json` lists exactly what remains. Every path starts from a verified
//! clean state on one reused cluster.
//!
//! `cargo test` runs a quick subset; the full matrix:
//! `ATOLL_FAULT_MATRIX=full cargo test -p atoll-cli --test fault_suite -- --nocapture`
//! (`ATOLL_FAULT_SEED=N` replays the random SIGKILL moments).

mod checks;
mod paths;
mod run;
mod world;
mod writer;

use paths::FaultPath;
use std::time::Instant;
use world::World;

/// Paths that find a known bug, with what they find: reported as KNOWN instead of failing
/// the suite, so the rest of the matrix still runs.
fn known_failure(_p: &FaultPath) -> Option<&'static str> {
    None
}

#[test]
fn fault_suite() {
    let full = std::env::var("ATOLL_FAULT_MATRIX").is_ok_and(|v| v == "full");
    let seed: u64 = std::env::var("ATOLL_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let list = if full {
        paths::full(&paths::signal_moments(seed, 10))
    } else {
        paths::quick(&paths::signal_moments(seed, 2))
    };
    eprintln!(
        "fault suite: {} paths ({}), SIGKILL seed {seed} (ATOLL_FAULT_SEED)",
        list.len(),
        if full { "full matrix" } else { "quick subset" }
    );
    let started = Instant::now();
    let w = World::new();
    let mut rows: Vec<(String, &'static str, String, f64)> = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let t = Instant::now();
        let result = run::run_path(&w, i, *p);
        let (verdict, detail) = match (&result, known_failure(p)) {
            (Ok(line), None) => ("ok", line.clone()),
            (Ok(line), Some(_)) => ("FIXED?", line.clone()),
            (Err(e), Some(why)) => ("KNOWN", format!("{why}: {e}")),
            (Err(e), None) => ("FAIL", e.clone()),
        };
        let secs = t.elapsed().as_secs_f64();
        eprintln!("[{:>3}] {verdict:<6} {p} ({secs:.1} s): {detail}", i + 1);
        rows.push((p.to_string(), verdict, detail, secs));
        if result.is_err() {
            if let Err(e) = run::recover(&w) {
                print_table(&rows);
                panic!("path {p} left the cluster unusable, stopping: {e}");
            }
        }
    }
    print_table(&rows);
    let failed: Vec<&String> = rows
        .iter()
        .filter(|r| r.1 == "FAIL")
        .map(|r| &r.0)
        .collect();
    eprintln!(
        "{} paths in {:.0} s: {} ok, {} known failures, {} failed",
        rows.len(),
        started.elapsed().as_secs_f64(),
        rows.iter().filter(|r| r.1 == "ok").count(),
        rows.iter().filter(|r| r.1 == "KNOWN").count(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed paths: {failed:?}");
}

fn print_table(rows: &[(String, &'static str, String, f64)]) {
    eprintln!("\n{:<52} {:<7} {:>6}  outcome", "path", "verdict", "secs");
    for (path, verdict, detail, secs) in rows {
        eprintln!("{path:<52} {verdict:<7} {secs:>6.1}  {detail}");
    }
}
