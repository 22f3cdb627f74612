//! Read-your-writes: a [`Timeline`] remembers, per shard, the island and WAL position of the
//! caller's last write and until when that matters. A read with [`Freshness::Timeline`] goes
//! to a replica only once the replica has replayed past that position (or the entry
//! expired); otherwise to the master. A position is only comparable with the WAL of the
//! island it was read on: when the shard has moved since (the entry names another island),
//! reads go to the master until the entry expires.
//!
//! A timeline serialises to a short string (`shard:island:lsn-hex:expiry-unix-s`,
//! comma-separated, e.g. `42:1:3000060:1763700060`) so a web app can carry it between
//! requests in a cookie or header, and timelines merge (per shard on the same island the
//! later position and later expiry win; across islands the later write, i.e. the later
//! expiry). A parsed expiry is clamped to now + the TTL: a forged string cannot pin reads to
//! the master for longer than a real write could.

use atoll_core::{IslandId, Lsn, ShardNo};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

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
    island: IslandId,
    lsn: Lsn,
    expires_unix_ms: u64,
}

/// Per-shard positions of a caller's writes. Shared by `&` between concurrent queries.
#[derive(Debug, Default)]
pub struct Timeline {
    entries: Mutex<BTreeMap<ShardNo, Entry>>,
}

/// A timeline string that [`Timeline::parse`] refused; the message names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timeline {text:?}: entry {index}: {msg}")]
pub struct TimelineError {
    text: String,
    index: usize,
    msg: &'static str,
}

impl Timeline {
    /// An empty timeline: no writes recorded, so any replica is fresh enough.
    pub fn new() -> Timeline {
        Timeline::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ShardNo, Entry>> {
        // The map stays consistent whatever a panicking holder did (single inserts).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a write to `shard` on `island` at `lsn`, relevant until `expires_unix_ms`.
    pub fn record(&self, shard: ShardNo, island: IslandId, lsn: Lsn, expires_unix_ms: u64) {
        let new = Entry {
            island,
            lsn,
            expires_unix_ms,
        };
        let mut map = self.lock();
        let e = map.entry(shard).or_insert(new);
        if e.island == island {
            e.lsn = e.lsn.max(lsn);
            e.expires_unix_ms = e.expires_unix_ms.max(expires_unix_ms);
        } else if expires_unix_ms > e.expires_unix_ms {
            // Positions on different islands do not compare: keep the later write (every
            // entry lives the same TTL, so the later expiry is the later write).
            *e = new;
        }
    }

    /// The island and position a replica must have replayed to serve `shard`, if an entry
    /// is still relevant. A replica of another island cannot serve it at all.
    pub fn required(&self, shard: ShardNo, now_unix_ms: u64) -> Option<(IslandId, Lsn)> {
        self.lock()
            .get(&shard)
            .filter(|e| e.expires_unix_ms > now_unix_ms)
            .map(|e| (e.island, e.lsn))
    }

    /// Takes in another timeline's entries (e.g. one carried by a request).
    pub fn merge(&self, other: &Timeline) {
        let theirs: Vec<(ShardNo, Entry)> = other.lock().iter().map(|(s, e)| (*s, *e)).collect();
        for (s, e) in theirs {
            self.record(s, e.island, e.lsn, e.expires_unix_ms);
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
                format!("{}:{}:{:x}:{exp}", s.get(), e.island, e.lsn.0)
            })
            .collect();
        parts.join(",")
    }

    /// Parses [`Timeline::serialize`]'s form (an empty string is an empty timeline). The
    /// text comes from the client, so every expiry is clamped to now + `max_ttl` (use the
    /// cluster's `timeline_ttl`; [`crate::Cluster::parse_timeline`] does).
    pub fn parse(text: &str, max_ttl: Duration) -> Result<Timeline, TimelineError> {
        Timeline::parse_at(text, crate::attempt::now_ms(), max_ttl)
    }

    /// [`Timeline::parse`] at a given time.
    pub fn parse_at(
        text: &str,
        now_unix_ms: u64,
        max_ttl: Duration,
    ) -> Result<Timeline, TimelineError> {
        let t = Timeline::new();
        if text.trim().is_empty() {
            return Ok(t);
        }
        let ttl_ms = u64::try_from(max_ttl.as_millis()).unwrap_or(u64::MAX);
        let latest = now_unix_ms.saturating_add(ttl_ms);
        for (index, part) in text.split(',').enumerate() {
            let err = |msg| TimelineError {
                text: text.chars().take(200).collect(),
                index,
                msg,
            };
            let f: Vec<&str> = part.trim().split(':').collect();
            let [s, i, l, x] = f[..] else {
                return Err(err("expected shard:island:lsn:expiry"));
            };
            let shard = s
                .parse::<i64>()
                .ok()
                .and_then(|n| ShardNo::new(n).ok())
                .ok_or_else(|| err("bad shard number"))?;
            let island = i.parse::<u16>().map_err(|_| err("bad island number"))?;
            let lsn = u64::from_str_radix(l, 16).map_err(|_| err("bad LSN (hex)"))?;
            let exp: u64 = x.parse().map_err(|_| err("bad expiry (unix seconds)"))?;
            let exp_ms = exp.saturating_mul(1000).min(latest);
            t.record(shard, IslandId(island), Lsn(lsn), exp_ms);
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

    const I0: IslandId = IslandId(0);
    const I1: IslandId = IslandId(1);
    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn record_required_expiry() {
        let t = Timeline::new();
        assert_eq!(t.required(s(1), 0), None);
        t.record(s(1), I0, Lsn(100), 5_000);
        t.record(s(1), I0, Lsn(50), 4_000);
        assert_eq!(t.required(s(1), 1_000), Some((I0, Lsn(100))));
        assert_eq!(t.required(s(1), 5_000), None);
        assert_eq!(t.required(s(2), 1_000), None);
    }

    #[test]
    fn positions_on_different_islands_do_not_mix() {
        let t = Timeline::new();
        t.record(s(1), I0, Lsn(900), 5_000);
        // The shard moved; a later write on island 1 at a lower LSN replaces the entry
        // (not max'ed with island 0's position).
        t.record(s(1), I1, Lsn(100), 6_000);
        assert_eq!(t.required(s(1), 1_000), Some((I1, Lsn(100))));
        // An older write on the old island (e.g. merged from a stale cookie) does not win.
        t.record(s(1), I0, Lsn(950), 5_500);
        assert_eq!(t.required(s(1), 1_000), Some((I1, Lsn(100))));
        let back = Timeline::parse_at(&t.serialize(1_000), 1_000, DAY).unwrap();
        assert_eq!(back.required(s(1), 1_000), Some((I1, Lsn(100))));
    }

    #[test]
    fn round_trip_and_merge() {
        let now = 2_000;
        let a = Timeline::new();
        a.record(s(42), I1, Lsn(0x3000060), 1_763_700_060_000);
        a.record(s(7), I0, Lsn(0x10), 1_000); // expired below
        let text = a.serialize(now);
        assert_eq!(text, "42:1:3000060:1763700060");
        let ttl = Duration::from_secs(1_763_800_000);
        let b = Timeline::parse_at(&text, now, ttl).unwrap();
        assert_eq!(b.required(s(42), now), Some((I1, Lsn(0x3000060))));
        let c = Timeline::parse_at("42:1:4000000:1763700000,9:0:1:1763700000", now, ttl).unwrap();
        b.merge(&c);
        assert_eq!(b.required(s(42), now), Some((I1, Lsn(0x4000000))));
        assert_eq!(b.required(s(9), now), Some((I0, Lsn(1))));
        assert_eq!(b.serialize(now), "9:0:1:1763700000,42:1:4000000:1763700060");
        assert_eq!(Timeline::parse("", DAY).unwrap().serialize(0), "");
    }

    #[test]
    fn parsed_expiry_is_clamped_to_the_ttl() {
        let now = 1_763_700_000_000;
        let ttl = Duration::from_secs(60);
        // A forged entry claiming to matter for a century (and an absurd LSN).
        let t = Timeline::parse_at("3:0:ffffffffffffffff:4900000000", now, ttl).unwrap();
        assert!(t.required(s(3), now + 59_000).is_some());
        assert_eq!(t.required(s(3), now + 60_000), None, "outlived the TTL");
        // A genuine shorter expiry is kept as it is.
        let t = Timeline::parse_at("3:0:10:1763700010", now, ttl).unwrap();
        assert_eq!(t.required(s(3), now + 10_000), None);
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in [
            "x",
            "1:2",
            "1:0:2",
            "1:0:2:3:4",
            "42:3000060:1763700060",
            "10000:0:1:1",
            "1:70000:1:1",
            "1:0:zz:1",
            "1:0:1:-3",
            "1:0:1:1,",
        ] {
            let e = Timeline::parse(bad, DAY).unwrap_err();
            assert!(e.to_string().starts_with("timeline "), "{bad}: {e}");
        }
    }
}
