//! The application-side ID generator: time-ordered IDs made in the application process,
//! unique across many processes, with no round trip per ID.
//!
//! # Digit budget
//!
//! An [`Id`] is `E ssss RRRRRRRRRRRRRR`. The 14-digit counter `R` is split (see
//! [`SEQUENCE_MAX`]): `R < 10^13` belongs to the shard's database sequence, so this generator
//! only uses `10^13 <= R < 10^14`, i.e. 9 × 10^13 values **per shard** (the shard digits are
//! outside `R`, so every shard has its own space). They are laid out as
//!
//! ```text
//! R = 10^13 + t·10^5 + s·10^3 + n
//!            t: seconds since 2025-01-01T00:00:00Z, 0 ..= 899 999 999  (~28.5 years, to 2053-07)
//!            s: sequence within (shard, second, node), 0 ..= 99
//!            n: node id of the generating process, 0 ..= 999
//! ```
//!
//! so one process can make 100 IDs per second per shard sustained (1 M/s over 10 000 shards),
//! and up to `MAX_LEAD_SECONDS` × 100 more per shard in a burst by running ahead of its clock
//! (below). A heavier writer on one shard should use the database generator
//! (`shNNNN.id_gen()`), which has 10^13 values per shard and no clock.
//!
//! # Uniqueness argument
//!
//! Per shard, a generator keeps `p = t·100 + s` and hands out strictly increasing values of it
//! (one atomic compare-and-swap per ID), never below `now·100` (so IDs follow the clock) and
//! never above `(now + MAX_LEAD_SECONDS)·100 + 99` (so the lead over the clock is bounded).
//! - **Within a process**: `p` strictly increases per shard, so no value repeats.
//! - **Across processes**: `n` differs, so their values differ. The node id is what must be
//!   unique per process: among all processes generating IDs in the same environment at the
//!   same time (a pod ordinal, or a node id leased from the cluster's `atoll.id_leases`
//!   table: `atoll_client::IdNode::Lease`, which enforces the rest below).
//! - **Reusing a node id** (a restart): the new process starts at `now·100`, the old one may have
//!   run ahead up to `MAX_LEAD_SECONDS`. A node id must therefore not be reused until
//!   `MAX_LEAD_SECONDS + 1` seconds (plus the clock difference between the two hosts) after its
//!   previous holder stopped generating.
//! - **The clock going back**: within a process nothing repeats, because `p` continues from its
//!   last value; the IDs simply stop following the clock for a while. If the clock went back
//!   by more than the lead allows, [`IdGenerator::next_at`] refuses with
//!   [`IdGenError::Ahead`] (saying how long to wait) instead of running further ahead;
//!   callers wait and retry. It never returns a duplicate and never guesses.
//!
//! # Ordering
//!
//! Within one shard, IDs from processes with roughly synchronised clocks sort by creation
//! second (IDs within one second are not ordered across processes). Across shards compare
//! [`Id::counter`] (or [`IdGenerator::timestamp`]), since the shard digits come first.
//!
//! This module is pure apart from reading the system clock in [`IdGenerator::next`]; it never
//! sleeps, so async callers decide how to wait.

use crate::ids::{Id, IdError, SEQUENCE_MAX};
use crate::shard::ShardNo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The start of generator time: 2025-01-01T00:00:00Z, in Unix seconds. Fixed forever.
pub const GENERATOR_EPOCH_UNIX_S: u64 = 1_735_689_600;
/// Node ids are `0..NODE_IDS`.
pub const NODE_IDS: u16 = 1000;
/// Sequence values per (shard, second, node).
pub const SEQ_PER_SECOND: u64 = 100;
/// How far (in seconds) a generator may run ahead of its clock during a burst.
pub const MAX_LEAD_SECONDS: u64 = 30;
/// The first counter of the application range.
const APP_BASE: i64 = SEQUENCE_MAX + 1; // 10^13
/// Seconds of generator time: 9·10^13 / (100 · 1000).
const SECONDS: u64 = 900_000_000;
const POSITIONS: u64 = SECONDS * SEQ_PER_SECOND;
const SHARDS: usize = 10_000;

/// Why the application-side generator could not make an ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdGenError {
    /// The node id is not below [`NODE_IDS`].
    #[error("ID generator node id {0} is out of range 0..1000")]
    BadNode(u16),
    /// The environment digit is out of range.
    #[error(transparent)]
    Id(#[from] IdError),
    /// The generator is more than [`MAX_LEAD_SECONDS`] ahead of the clock for this shard (a burst
    /// or the clock went back); wait and retry.
    #[error("ID generator for {shard} is {lead_s} s ahead of the clock (burst or clock went back); retry in {retry_in_ms} ms")]
    Ahead {
        /// The shard the ID was asked for.
        shard: ShardNo,
        /// How far the shard's generator is ahead of the clock, in seconds.
        lead_s: u64,
        /// How long to wait before the next attempt can succeed, in milliseconds.
        retry_in_ms: u64,
    },
    #[error(
        "the clock ({now_unix_s} s) is outside the generator's time range 2025-01-01..2053-07"
    )]
    /// The clock is outside the generator's time range (2025-01-01 to 2053-07).
    ClockOutOfRange {
        /// The clock reading, in Unix seconds.
        now_unix_s: u64,
    },
}

/// The parts of an application-generated ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppIdParts {
    /// The shard the ID belongs to.
    pub shard: ShardNo,
    /// Unix seconds of the generator's time for this ID.
    pub unix_s: u64,
    /// Sequence within (shard, second, node), 0..=99.
    pub seq: u8,
    /// Node id of the process that generated it, 0..=999.
    pub node: u16,
}

/// A thread-safe application-side generator for one environment digit and one node id.
/// Share one per process (e.g. in an `Arc`); it holds 80 KB of per-shard state.
#[derive(Debug)]
pub struct IdGenerator {
    env: u8,
    node: u16,
    /// Per shard: the next unused position `p` (0 = none used yet).
    next: Box<[AtomicU64]>,
}

impl IdGenerator {
    /// A generator for environment digit `env` and node id `node`, which must be unique among the
    /// processes generating IDs in this environment (see the module docs).
    pub fn new(env: u8, node: u16) -> Result<IdGenerator, IdGenError> {
        if node >= NODE_IDS {
            return Err(IdGenError::BadNode(node));
        }
        // Checks the environment digit once, so `next_at` cannot fail on it.
        Id::new(env, ShardNo::GLOBAL, APP_BASE)?;
        Ok(IdGenerator {
            env,
            node,
            next: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// The node id this generator puts in every ID.
    pub fn node(&self) -> u16 {
        self.node
    }

    /// A new ID in `shard`, by the system clock.
    pub fn next(&self, shard: ShardNo) -> Result<Id, IdGenError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.next_at(shard, now_ms)
    }

    /// A new ID in `shard` at the given clock reading (Unix milliseconds).
    pub fn next_at(&self, shard: ShardNo, now_unix_ms: u64) -> Result<Id, IdGenError> {
        let now_s = now_unix_ms / 1000;
        let t = now_s
            .checked_sub(GENERATOR_EPOCH_UNIX_S)
            .filter(|t| *t < SECONDS)
            .ok_or(IdGenError::ClockOutOfRange { now_unix_s: now_s })?;
        let floor = t * SEQ_PER_SECOND;
        // The largest position allowed now: the end of second `t + MAX_LEAD_SECONDS`.
        let ceiling = ((t + MAX_LEAD_SECONDS + 1) * SEQ_PER_SECOND).min(POSITIONS);
        let cell = &self.next[shard.get() as usize];
        let mut cur = cell.load(Ordering::Relaxed);
        loop {
            let p = cur.max(floor);
            if p >= ceiling {
                if p >= POSITIONS {
                    return Err(IdGenError::ClockOutOfRange { now_unix_s: now_s });
                }
                let ahead_s = p / SEQ_PER_SECOND - t;
                let wait_s = ahead_s - MAX_LEAD_SECONDS;
                return Err(IdGenError::Ahead {
                    shard,
                    lead_s: ahead_s,
                    retry_in_ms: wait_s * 1000 - now_unix_ms % 1000,
                });
            }
            match cell.compare_exchange_weak(cur, p + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return self.encode(shard, p),
                Err(actual) => cur = actual,
            }
        }
    }

    fn encode(&self, shard: ShardNo, p: u64) -> Result<Id, IdGenError> {
        // In range: p < POSITIONS keeps the counter < 10^14, and env was checked in `new`;
        // Id::new checks again rather than trusting the arithmetic.
        let counter = APP_BASE + (p * NODE_IDS as u64 + self.node as u64) as i64;
        Ok(Id::new(self.env, shard, counter)?)
    }

    /// Decodes an application-generated ID; `None` for a database-generated one.
    pub fn parts(id: Id) -> Option<AppIdParts> {
        let r = u64::try_from(id.counter() - APP_BASE).ok()?;
        let node = (r % NODE_IDS as u64) as u16;
        let p = r / NODE_IDS as u64;
        Some(AppIdParts {
            shard: id.shard(),
            unix_s: GENERATOR_EPOCH_UNIX_S + p / SEQ_PER_SECOND,
            seq: (p % SEQ_PER_SECOND) as u8,
            node,
        })
    }

    /// The creation second (Unix) of an application-generated ID.
    pub fn timestamp(id: Id) -> Option<u64> {
        Self::parts(id).map(|p| p.unix_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    const NOW_MS: u64 = 1_763_700_000_000; // 2025-11-21

    fn shard(n: i64) -> ShardNo {
        ShardNo::new(n).unwrap()
    }

    #[test]
    fn layout_and_decode() {
        let g = IdGenerator::new(1, 7).unwrap();
        let id = g.next_at(shard(42), NOW_MS).unwrap();
        assert_eq!(id.shard(), shard(42));
        assert!(id.counter() > SEQUENCE_MAX);
        let p = IdGenerator::parts(id).unwrap();
        assert_eq!(p.node, 7);
        assert_eq!(p.seq, 0);
        assert_eq!(p.unix_s, NOW_MS / 1000);
        let next = g.next_at(shard(42), NOW_MS).unwrap();
        assert_eq!(IdGenerator::parts(next).unwrap().seq, 1);
        assert!(next > id);
        // A database ID is not an application ID.
        let db = Id::new(1, shard(42), 5).unwrap();
        assert_eq!(IdGenerator::parts(db), None);
    }

    #[test]
    fn extremes_of_the_time_range() {
        let g = IdGenerator::new(8, NODE_IDS - 1).unwrap();
        let first = g
            .next_at(ShardNo::MAX, GENERATOR_EPOCH_UNIX_S * 1000)
            .unwrap();
        assert_eq!(first.counter(), APP_BASE + (NODE_IDS - 1) as i64);
        let last_s = GENERATOR_EPOCH_UNIX_S + SECONDS - 1;
        let last = g.next_at(ShardNo::MAX, last_s * 1000).unwrap();
        assert!(last.counter() < 100_000_000_000_000);
        assert!(matches!(
            g.next_at(ShardNo::MAX, (last_s + 1) * 1000),
            Err(IdGenError::ClockOutOfRange { .. })
        ));
        assert!(matches!(
            g.next_at(ShardNo::MAX, 1000),
            Err(IdGenError::ClockOutOfRange { .. })
        ));
        assert_eq!(
            IdGenerator::new(1, NODE_IDS).unwrap_err(),
            IdGenError::BadNode(1000)
        );
        assert!(IdGenerator::new(9, 0).is_err());
    }

    #[test]
    fn burst_runs_ahead_then_refuses() {
        let g = IdGenerator::new(1, 0).unwrap();
        let allowed = (MAX_LEAD_SECONDS + 1) * SEQ_PER_SECOND;
        let mut last = None;
        for _ in 0..allowed {
            let id = g.next_at(shard(1), NOW_MS).unwrap();
            assert!(Some(id) > last);
            last = Some(id);
        }
        match g.next_at(shard(1), NOW_MS) {
            Err(IdGenError::Ahead {
                lead_s,
                retry_in_ms,
                ..
            }) => {
                assert_eq!(lead_s, MAX_LEAD_SECONDS + 1);
                assert_eq!(retry_in_ms, 1000);
            }
            other => panic!("expected Ahead, got {other:?}"),
        }
        // Other shards are independent; a second later the shard has room again.
        assert!(g.next_at(shard(2), NOW_MS).is_ok());
        assert!(g.next_at(shard(1), NOW_MS + 1000).unwrap() > last.unwrap());
    }

    #[test]
    fn clock_going_back_never_repeats() {
        let g = IdGenerator::new(1, 3).unwrap();
        let a = g.next_at(shard(5), NOW_MS).unwrap();
        // Ten seconds back: still increasing.
        let b = g.next_at(shard(5), NOW_MS - 10_000).unwrap();
        assert!(b > a);
        // Far back: refused with a wait, not a duplicate.
        assert!(matches!(
            g.next_at(shard(5), NOW_MS - 3_600_000),
            Err(IdGenError::Ahead { .. })
        ));
        // Forward again: follows the clock.
        let c = g.next_at(shard(5), NOW_MS + 60_000).unwrap();
        assert_eq!(IdGenerator::timestamp(c), Some(NOW_MS / 1000 + 60));
    }

    #[test]
    fn many_concurrent_generators_are_unique() {
        // 8 processes (node ids) × 4 threads sharing each generator, all on the same shards
        // and the same second: the worst case for collisions.
        let gens: Vec<Arc<IdGenerator>> = (0..8)
            .map(|n| Arc::new(IdGenerator::new(2, n * 111).unwrap()))
            .collect();
        let mut handles = Vec::new();
        for g in &gens {
            for t in 0..4u64 {
                let g = g.clone();
                handles.push(std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..3000u64 {
                        let s = shard(((i + t) % 3) as i64 + 1);
                        // Clocks of the "processes" differ by up to 2 s and jitter.
                        let now = NOW_MS + (i % 7) * 300 + t * 500;
                        match g.next_at(s, now) {
                            Ok(id) => ids.push(id),
                            Err(IdGenError::Ahead { .. }) => {}
                            Err(e) => panic!("{e}"),
                        }
                    }
                    ids
                }));
            }
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        for h in handles {
            for id in h.join().unwrap() {
                total += 1;
                assert!(seen.insert(id), "duplicate {id}");
            }
        }
        assert!(total > 8 * 3 * 3000 / 2, "only {total} IDs generated");
    }
}
