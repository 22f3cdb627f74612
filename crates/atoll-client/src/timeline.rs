//! Read-your-writes: a [`Timeline`] remembers, per shard, the WAL position of the caller's
//! last write and until when that matters. A read with [`Freshness::Timeline`] goes to a
//! replica only once the replica has replayed past that position (or the entry expired);
//! otherwise to the master.
//!
//! A timeline serialises to a short string (`shard:lsn-hex:expiry-unix-s`, comma-separated,
//! e.g. `42:3000060:1763700060`) so a web app can carry it between requests in a cookie or
//! header, and timelines merge (per shard the later position and later expiry win).

use atoll_core::{Lsn, ShardNo};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// Where a read may go.
#[derive(Debug, Clone, Copy)]
pub enum Freshness<'a> {
    /// Always the master.
    Master,
    /// Any healthy replica of the island (the master if it has none): may lag.
    StaleReplica,
    /// A replica that has replayed the timeline's writes to this shard, else the master.
    Timeline(&'a Timeline),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    lsn: Lsn,
    expires_unix_ms: u64,
}

/// Per-shard positions of a caller's writes. Shared by `&` between concurrent queries.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: Mutex<BTreeMap<ShardNo, Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeline {text:?}: entry {index}: {msg}")]
pub struct TimelineError {
    text: String,
    index: usize,
    msg: &'static str,
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardNo, Entry>> {
        // The map stays consistent whatever a panicking holder did (single inserts).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a write to `shard` at `lsn`, relevant until `expires_unix_ms`.
    pub fn record(&self, shard: ShardNo, lsn: Lsn, expires_unix_ms: u64) {
        let mut map = self.lock();
        let e = map.entry(shard).or_insert(Entry {
            lsn,
            expires_unix_ms,
        });
        e.lsn = e.lsn.max(lsn);
        e.expires_unix_ms = e.expires_unix_ms.max(expires_unix_ms);
    }

    /// The position a replica must have replayed to serve `shard`, if any is still relevant.
    pub fn required(&self, shard: ShardNo, now_unix_ms: u64) -> Option<Lsn> {
        self.lock()
            .get(&shard)
            .filter(|e| e.expires_unix_ms > now_unix_ms)
            .map(|e| e.lsn)
    }

    /// Takes in another timeline's entries (e.g. one carried by a request).
    pub fn merge(&self, other: &Timeline) {
        let theirs: Vec<(ShardNo, Entry)> = other.lock().iter().map(|(s, e)| (*s, *e)).collect();
        for (s, e) in theirs {
            self.record(s, e.lsn, e.expires_unix_ms);
        }
    }

    /// The string form, leaving out entries expired at `now_unix_ms`.
    pub fn serialize(&self, now_unix_ms: u64) -> String {
        let map = self.lock();
        let parts: Vec<String> = map
            .iter()
            .filter(|(_, e)| e.expires_unix_ms > now_unix_ms)
            .map(|(s, e)| {
                // Rounded up to whole seconds: never shorter than recorded.
                let exp = e.expires_unix_ms.div_ceil(1000);
                format!("{}:{:x}:{exp}", s.get(), e.lsn.0)
            })
            .collect();
        parts.join(",")
    }

    /// Parses [`Timeline::serialize`]'s form; an empty string is an empty timeline.
    pub fn parse(text: &str) -> Result<Timeline, TimelineError> {
        let t = Timeline::new();
        if text.trim().is_empty() {
            return Ok(t);
        }
        for (index, part) in text.split(',').enumerate() {
            let err = |msg| TimelineError {
                text: text.chars().take(200).collect(),
                index,
                msg,
            };
            let mut it = part.trim().split(':');
            let (Some(s), Some(l), Some(x), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(err("expected shard:lsn:expiry"));
            };
            let shard = s
                .parse::<i64>()
                .ok()
                .and_then(|n| ShardNo::new(n).ok())
                .ok_or_else(|| err("bad shard number"))?;
            let lsn = u64::from_str_radix(l, 16).map_err(|_| err("bad LSN (hex)"))?;
            let exp: u64 = x.parse().map_err(|_| err("bad expiry (unix seconds)"))?;
            t.record(shard, Lsn(lsn), exp.saturating_mul(1000));
        }
        Ok(t)
    }
}

impl Clone for Timeline {
    fn clone(&self) -> Timeline {
        Timeline {
            entries: Mutex::new(self.lock().clone()),
        }
    }
}

/// The string form without pruning (for logs); use [`Timeline::serialize`] to carry it.
impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialize(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: i64) -> ShardNo {
        ShardNo::new(n).unwrap()
    }

    #[test]
    fn record_required_expiry() {
        let t = Timeline::new();
        assert_eq!(t.required(s(1), 0), None);
        t.record(s(1), Lsn(100), 5_000);
        t.record(s(1), Lsn(50), 4_000);
        assert_eq!(t.required(s(1), 1_000), Some(Lsn(100)));
        assert_eq!(t.required(s(1), 5_000), None);
        assert_eq!(t.required(s(2), 1_000), None);
    }

    #[test]
    fn round_trip_and_merge() {
        let a = Timeline::new();
        a.record(s(42), Lsn(0x3000060), 1_763_700_060_000);
        a.record(s(7), Lsn(0x10), 1_000); // expired below
        let text = a.serialize(2_000);
        assert_eq!(text, "42:3000060:1763700060");
        let b = Timeline::parse(&text).unwrap();
        assert_eq!(b.required(s(42), 2_000), Some(Lsn(0x3000060)));
        let c = Timeline::parse("42:4000000:1763700000,9:1:1763700000").unwrap();
        b.merge(&c);
        assert_eq!(b.required(s(42), 2_000), Some(Lsn(0x4000000)));
        assert_eq!(b.required(s(9), 2_000), Some(Lsn(1)));
        assert_eq!(b.serialize(2_000), "9:1:1763700000,42:4000000:1763700060");
        assert_eq!(Timeline::parse("").unwrap().serialize(0), "");
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in [
            "x",
            "1:2",
            "1:2:3:4",
            "10000:1:1",
            "1:zz:1",
            "1:1:-3",
            "1:1:1,",
        ] {
            let e = Timeline::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("timeline "), "{bad}: {e}");
        }
    }
}
