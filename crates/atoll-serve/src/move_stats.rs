//! Histograms of finished moves for `/metrics`: how long writers waited (the pause), how
//! long writes were blocked in all (the pause plus the comparison's brief freeze), and how
//! long moves took. Each move is counted once, when the catalog reader first sees it
//! finished (from the timings its source row records, catalog step 11), whoever ran it;
//! the moves already finished when this process started are not counted, so the counters
//! start at zero like any Prometheus counter.

use atoll_move::FinishedMove;
use std::collections::BTreeSet;

/// Upper bounds of the pause buckets, seconds: the target is tens of ms.
const PAUSE_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Upper bounds of the duration buckets, seconds.
const DURATION_BOUNDS: &[f64] = &[1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// A cumulative histogram with fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at most `bounds[i]` (not cumulative; summed when rendered).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name`.
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        use std::fmt::Write;
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", self.sum, self.count);
    }
}

/// The move histograms and which finished moves they already counted.
#[derive(Debug, Clone)]
pub struct MoveStats {
    /// The pause of each move, seconds.
    pub pause: Histogram,
    /// The pause plus the comparison's freeze, seconds.
    pub write_block: Histogram,
    /// The whole move, seconds.
    pub duration: Histogram,
    /// The ids in the reader's last window, so a move is counted once.
    seen: BTreeSet<i64>,
    /// False until the first read: what was finished before start is not counted.
    primed: bool,
}

impl Default for MoveStats {
    fn default() -> Self {
        MoveStats {
            pause: Histogram::new(PAUSE_BOUNDS),
            write_block: Histogram::new(PAUSE_BOUNDS),
            duration: Histogram::new(DURATION_BOUNDS),
            seen: BTreeSet::new(),
            primed: false,
        }
    }
}

impl MoveStats {
    /// Counts the moves of `finished` (the reader's window) not counted yet.
    pub fn observe(&mut self, finished: &[FinishedMove]) {
        for m in finished.iter().filter(|m| !self.seen.contains(&m.id)) {
            if !self.primed {
                continue;
            }
            let t = &m.timings;
            if let Some(p) = t.pause_ms {
                self.pause.observe(p / 1e3);
                let block = p + t.verify_block_ms.unwrap_or(0.0);
                self.write_block.observe(block / 1e3);
            }
            if let Some(total) = t.total_ms {
                self.duration.observe(total as f64 / 1e3);
            }
        }
        // Only the window is kept: a move that left it never comes back into it.
        self.seen = finished.iter().map(|m| m.id).collect();
        self.primed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::{IslandId, ShardNo};
    use atoll_move::MoveTimings;

    fn finished(id: i64, pause_ms: f64) -> FinishedMove {
        FinishedMove {
            id,
            shard: ShardNo::new(1).unwrap(),
            source: IslandId(0),
            destination: IslandId(1),
            started_at_unix_ms: 0,
            finished_at_unix_ms: id,
            timings: MoveTimings {
                total_ms: Some(2000),
                copy_ms: Some(1000),
                pause_ms: Some(pause_ms),
                verify_block_ms: Some(4.0),
            },
        }
    }

    #[test]
    fn each_move_is_counted_once_and_not_the_ones_before_start() {
        let mut s = MoveStats::default();
        s.observe(&[finished(1, 30.0)]);
        assert_eq!(s.pause.count, 0, "finished before start");
        s.observe(&[finished(2, 8.0), finished(1, 30.0)]);
        s.observe(&[finished(3, 300.0), finished(2, 8.0)]);
        assert_eq!((s.pause.count, s.duration.count), (2, 2));
        let mut out = String::new();
        s.pause.render(&mut out, "p", "h");
        assert!(out.contains("p_bucket{le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("p_bucket{le=\"0.25\"} 1\n"), "{out}");
        assert!(out.contains("p_bucket{le=\"0.5\"} 2\n"), "{out}");
        assert!(
            out.contains("p_bucket{le=\"+Inf\"} 2\np_sum 0.308\np_count 2\n"),
            "{out}"
        );
        let mut out = String::new();
        s.write_block.render(&mut out, "w", "h");
        assert!(
            out.contains("w_bucket{le=\"0.025\"} 1\n"),
            "8 + 4 ms: {out}"
        );
    }
}
