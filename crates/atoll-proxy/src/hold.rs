//! Holding a moving shard's transactions instead of failing them.
//!
//! A move's cut-over (atoll-move's `cutover.rs`) locks the shard's tables on the source
//! (writers wait), then in one transaction marks the shard inactive there and renames its
//! schema; the destination activates it right after. So a transaction that reaches the
//! source during the cut-over waits on the lock and then fails with "relation does not
//! exist", and one routed between the switch and the activation finds the shard active
//! nowhere. The proxy holds such a transaction instead:
//!
//! - its first exchange is relayed by `relay_first`, which keeps back an error that a
//!   moved shard causes ([`moved_code`]) when nothing had completed yet;
//! - the proxy rolls the node's transaction back and asks that node's registry whether
//!   the shard is still active there ([`registry_sql`]): if it is, the error was the
//!   application's own and is relayed as it came;
//! - if not, the transaction waits until the cluster's snapshot (kept by atoll-client,
//!   which applies the islands' shard notices at once) places the shard on another island,
//!   and its first exchange runs again there;
//! - the wait is bounded (`--hold-timeout-ms`, 5 s by default); past it the client gets
//!   57P03 naming the shard, never a hang.
//!
//! A proxy started mid-move needs nothing more: what it learns comes from the nodes
//! themselves. Only the first exchange of a transaction can run again (the client has
//! seen nothing of it); a transaction that read before the cut-over and writes during it
//! gets the node's error.

use crate::backend::error_code;
use atoll_core::ShardNo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// SQLSTATEs a statement gets when its shard's schema is gone from the node: undefined
/// table, undefined function, invalid schema name.
const MOVED_CODES: [&str; 3] = ["42P01", "42883", "3F000"];

/// Whether an ErrorResponse's body carries a SQLSTATE a moved shard causes.
pub fn moved_code(body: &[u8]) -> bool {
    error_code(body).is_some_and(|c| MOVED_CODES.contains(&c.as_str()))
}

/// The query asking a node whether `shard` is active there: one row when it is.
pub fn registry_sql(shard: ShardNo) -> String {
    format!(
        "select 1 from atoll.shards where shard = {} and active",
        shard.get()
    )
}

/// The refusal when the hold ran out.
pub fn expired(shard: ShardNo, limit: Duration) -> (&'static str, String) {
    (
        "57P03",
        format!(
            "{} is not active on any island (being moved, or its island's master cannot be reached) and was not placed within the {} ms hold; the statement did not run: retry it",
            shard.schema(),
            limit.as_millis()
        ),
    )
}

/// How many recent hold times are kept for the percentiles.
const RECENT: usize = 4096;

/// Counts of holds, for `SHOW atoll.holds` and `/metrics`.
#[derive(Default)]
pub struct HoldStats {
    /// Holds under way right now.
    pub holding: AtomicU64,
    /// Holds that ended with the transaction run on the shard's new place.
    pub released: AtomicU64,
    /// Holds that ran out (57P03 sent).
    pub expired: AtomicU64,
    /// First exchanges run again after a node said the shard was not there.
    pub rerun: AtomicU64,
    /// All holds' time together, in microseconds.
    pub total_us: AtomicU64,
    /// The most recent hold times (a ring of [`RECENT`]), locked only to push or copy.
    recent: Mutex<(Vec<Duration>, usize)>,
}

impl HoldStats {
    /// Records a finished hold.
    pub fn record(&self, took: Duration, released: bool) {
        let counter = if released {
            &self.released
        } else {
            &self.expired
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let (times, next) = &mut *recent;
        if times.len() < RECENT {
            times.push(took);
        } else {
            times[*next] = took;
        }
        *next = (*next + 1) % RECENT;
    }

    /// The recent hold times, sorted.
    pub fn recent_sorted(&self) -> Vec<Duration> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut times = recent.0.clone();
        times.sort();
        times
    }
}

/// The `q` quantile of sorted durations (zero when none).
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One transaction's hold: started when it first has to wait, counted while it lasts.
pub struct Hold<'a> {
    stats: &'a HoldStats,
    started: Instant,
    limit: Duration,
}

impl<'a> Hold<'a> {
    /// Starts a hold bounded by `limit`.
    pub fn start(stats: &'a HoldStats, limit: Duration) -> Hold<'a> {
        stats.holding.fetch_add(1, Ordering::Relaxed);
        Hold {
            stats,
            started: Instant::now(),
            limit,
        }
    }

    /// What is left of the bound.
    pub fn left(&self) -> Duration {
        self.limit.saturating_sub(self.started.elapsed())
    }

    /// Ends the hold: the transaction ran (`released`) or the bound ran out.
    pub fn end(self, released: bool) {
        self.stats.record(self.started.elapsed(), released);
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.stats.holding.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_body(code: &str) -> Vec<u8> {
        let mut b = Vec::new();
        for (f, v) in [(b'S', "ERROR"), (b'C', code), (b'M', "m")] {
            b.push(f);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        b
    }

    #[test]
    fn which_errors_mean_the_shard_may_have_moved() {
        assert!(moved_code(&error_body("42P01")));
        assert!(moved_code(&error_body("3F000")));
        assert!(!moved_code(&error_body("23505")));
        assert!(!moved_code(b""));
        assert!(!moved_code(b"C42P0"));
    }

    #[test]
    fn holds_are_counted_and_their_times_kept() {
        let stats = HoldStats::default();
        let h = Hold::start(&stats, Duration::from_secs(5));
        assert_eq!(stats.holding.load(Ordering::Relaxed), 1);
        assert!(h.left() <= Duration::from_secs(5));
        h.end(true);
        assert_eq!(stats.holding.load(Ordering::Relaxed), 0);
        for ms in [30, 10, 20] {
            stats.record(Duration::from_millis(ms), false);
        }
        let sorted = stats.recent_sorted();
        assert_eq!(sorted.len(), 4);
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(30));
        assert_eq!(stats.released.load(Ordering::Relaxed), 1);
        assert_eq!(stats.expired.load(Ordering::Relaxed), 3);
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
