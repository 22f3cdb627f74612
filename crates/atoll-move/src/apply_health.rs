//! When the subscription's worker errors end a move (pure; the counter is read by
//! [`crate::replication::error_count`]).
//!
//! PostgreSQL restarts a failed apply or table-sync worker by itself (after
//! `wal_retrieve_retry_interval`) and the new worker retries the transaction that failed:
//! it never skips one. So an error the worker gets past (a deadlock with other DDL on the
//! destination, a lost connection) costs a retry, nothing else, and must not fail the move;
//! a worker that fails on every retry (a conflicting row on the destination) must. A worker
//! has got past every error counted before a tick once that tick is applied (changes
//! apply in commit order), so errors are judged since the last such proof of progress.

use std::time::{Duration, Instant};

/// More errors than this since the worker last made progress, and it is failing for good.
/// A passing conflict costs one error, rarely two in a row; a transaction that fails every
/// time reaches this after as many restarts (about 15 s with PostgreSQL's default 5 s
/// `wal_retrieve_retry_interval`).
pub(crate) const MAX_ERRORS_WITHOUT_PROGRESS: i64 = 3;

/// A worker that errs again this long after its first error without progress in between
/// is failing for good even below [`MAX_ERRORS_WITHOUT_PROGRESS`]: it bounds the time
/// when the restart interval is long.
pub(crate) const STILL_FAILING_AFTER: Duration = Duration::from_secs(60);

/// The subscription's health as judged from its error counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// No error since the worker last made progress.
    Healthy,
    /// Errors the worker may still get past by itself.
    Retrying {
        /// Errors since the worker last made progress.
        errors: i64,
    },
    /// The worker keeps failing.
    Failing {
        /// Errors since the worker last made progress.
        errors: i64,
        /// From the first of them to the last.
        over: Duration,
    },
}

/// The verdict on `errors` counted since the worker last made progress, the first and
/// the last of them `span` apart.
pub(crate) fn judge(errors: i64, span: Duration) -> Health {
    if errors <= 0 {
        Health::Healthy
    } else if errors > MAX_ERRORS_WITHOUT_PROGRESS || (errors > 1 && span >= STILL_FAILING_AFTER) {
        Health::Failing { errors, over: span }
    } else {
        Health::Retrying { errors }
    }
}

/// Readings of the cumulative error counter over a run of a move, and the proofs of
/// progress between them.
#[derive(Debug, Clone)]
pub(crate) struct ErrorWatch {
    /// The count when the worker last proved it had got past every error before.
    baseline: i64,
    /// Each reading at which the count grew past `baseline`: (count, when seen).
    growth: Vec<(i64, Instant)>,
}

impl ErrorWatch {
    /// A watch starting from the counter's current value (errors of earlier runs of the
    /// move do not count against this one).
    pub fn new(count: i64) -> ErrorWatch {
        ErrorWatch {
            baseline: count,
            growth: Vec::new(),
        }
    }

    /// Takes a reading of the counter, seen at `now`, and judges it.
    pub fn observe(&mut self, count: i64, now: Instant) -> Health {
        let last = self.growth.last().map_or(self.baseline, |g| g.0);
        if count < last {
            // The statistics were reset: start over from here.
            *self = ErrorWatch::new(count);
        } else if count > last {
            self.growth.push((count, now));
        }
        self.verdict()
    }

    /// The worker applied something sent after the counter read `count`: it got past
    /// every error counted up to then.
    pub fn progressed(&mut self, count: i64) {
        self.baseline = self.baseline.max(count);
        let baseline = self.baseline;
        self.growth.retain(|g| g.0 > baseline);
    }

    /// The verdict on the readings so far.
    pub fn verdict(&self) -> Health {
        match (self.growth.first(), self.growth.last()) {
            (Some(first), Some(last)) => judge(last.0 - self.baseline, last.1 - first.1),
            _ => Health::Healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_few_errors_are_retries_more_or_late_ones_are_failing() {
        assert_eq!(judge(0, Duration::ZERO), Health::Healthy);
        assert_eq!(judge(1, Duration::ZERO), Health::Retrying { errors: 1 });
        // One error never fails by time alone: the worker may take long to catch up.
        assert_eq!(
            judge(1, 10 * STILL_FAILING_AFTER),
            Health::Retrying { errors: 1 }
        );
        assert_eq!(
            judge(MAX_ERRORS_WITHOUT_PROGRESS, 2 * S),
            Health::Retrying {
                errors: MAX_ERRORS_WITHOUT_PROGRESS
            }
        );
        assert_eq!(
            judge(MAX_ERRORS_WITHOUT_PROGRESS + 1, 2 * S),
            Health::Failing {
                errors: MAX_ERRORS_WITHOUT_PROGRESS + 1,
                over: 2 * S
            }
        );
        // Still erring after the patience: failing below the count too.
        assert_eq!(
            judge(2, STILL_FAILING_AFTER),
            Health::Failing {
                errors: 2,
                over: STILL_FAILING_AFTER
            }
        );
    }

    #[test]
    fn progress_forgives_the_errors_before_it_only() {
        let t0 = Instant::now();
        let mut w = ErrorWatch::new(10);
        assert_eq!(w.observe(10, t0), Health::Healthy);
        // A deadlock: one error, then the worker gets past it.
        assert_eq!(w.observe(11, t0 + S), Health::Retrying { errors: 1 });
        w.progressed(11);
        assert_eq!(w.verdict(), Health::Healthy);
        // Much later, a worker failing on every retry.
        let t1 = t0 + 600 * S;
        for (i, n) in (12..=14).enumerate() {
            let h = w.observe(n, t1 + S * i as u32);
            assert_eq!(h, Health::Retrying { errors: n - 11 });
        }
        // A tick sent after the count read 12 arrives: errors 13 and 14 came after it.
        w.progressed(12);
        assert_eq!(w.verdict(), Health::Retrying { errors: 2 });
        assert_eq!(w.observe(15, t1 + 3 * S), Health::Retrying { errors: 3 });
        assert_eq!(
            w.observe(16, t1 + 4 * S),
            Health::Failing {
                errors: 4,
                over: 3 * S
            },
            "timed from the first error not yet recovered from"
        );
    }

    #[test]
    fn a_burst_read_at_once_counts_whole_and_a_reset_starts_over() {
        let t0 = Instant::now();
        let mut w = ErrorWatch::new(0);
        assert_eq!(
            w.observe(5, t0),
            Health::Failing {
                errors: 5,
                over: Duration::ZERO
            }
        );
        assert_eq!(w.observe(0, t0 + S), Health::Healthy);
        assert_eq!(w.observe(1, t0 + 2 * S), Health::Retrying { errors: 1 });
        // Errors before this run's baseline never count.
        let mut w = ErrorWatch::new(7);
        assert_eq!(w.observe(7, t0), Health::Healthy);
        w.progressed(3);
        assert_eq!(w.observe(8, t0), Health::Retrying { errors: 1 });
    }
}
