//! Learned routes: path prefixes a cell taught (`/my-company/* => eu0`), in an LRU with a
//! time to live, an entry cap and a byte cap, so a flood of distinct prefixes cannot grow
//! it (GitLab's objection to learning by prefix). Negative entries ("no cell owns it") are
//! dropped whenever the shard → island map changes: a move can give them an owner.

use crate::config::CacheConfig;
use crate::headers::{path_prefixes, CacheTarget};
use lru::LruCache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes counted per entry on top of its key and cell name: the LRU's node, the map's
/// slot, the `Instant` (a deliberate over-estimate, so the cap holds in real memory).
pub const ENTRY_OVERHEAD: usize = 96;
/// Prefixes of one path looked up at most (the longest first).
const MAX_LOOKUPS: usize = 16;

#[derive(Debug, Clone)]
struct Entry {
    target: CacheTarget,
    expires: Instant,
}

fn entry_bytes(prefix: &str, target: &CacheTarget) -> usize {
    let cell = match target {
        CacheTarget::Cell(c) => c.len(),
        CacheTarget::Nowhere => 0,
    };
    prefix.len() + cell + ENTRY_OVERHEAD
}

/// The cache's counters.
#[derive(Debug, Default)]
pub struct CacheCounters {
    /// Lookups that found a live entry.
    pub hits: AtomicU64,
    /// Lookups that found none.
    pub misses: AtomicU64,
    /// Entries stored.
    pub inserts: AtomicU64,
    /// Entries pushed out by a cap.
    pub evictions: AtomicU64,
    /// Entries found expired.
    pub expired: AtomicU64,
    /// Negative entries dropped because the shard map changed.
    pub invalidated: AtomicU64,
}

/// A snapshot of the cache's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CacheSize {
    /// Entries held.
    pub entries: usize,
    /// Of which negative.
    pub negative: usize,
    /// Bytes counted.
    pub bytes: usize,
}

struct Inner {
    lru: LruCache<String, Entry>,
    bytes: usize,
    negative: usize,
}

/// The learned-route cache; shared by every request (one short lock per lookup).
pub struct RouteCache {
    inner: Mutex<Inner>,
    config: CacheConfig,
    /// Counters, for `/metrics`.
    pub counters: CacheCounters,
}

/// What a lookup found: the prefix and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    /// The prefix that covers the path.
    pub prefix: String,
    /// Its target.
    pub target: CacheTarget,
}

impl RouteCache {
    /// An empty cache with these bounds.
    pub fn new(config: CacheConfig) -> RouteCache {
        RouteCache {
            inner: Mutex::new(Inner {
                lru: LruCache::unbounded(),
                bytes: 0,
                negative: 0,
            }),
            config,
            counters: CacheCounters::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The longest live prefix covering `path`.
    pub fn lookup(&self, path: &str, now: Instant) -> Option<Learned> {
        let mut inner = self.lock();
        for prefix in path_prefixes(path, MAX_LOOKUPS) {
            let Some(e) = inner.lru.get(prefix) else {
                continue;
            };
            if e.expires <= now {
                let e = e.clone();
                inner.remove(prefix, &e.target);
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let target = e.target.clone();
            self.counters.hits.fetch_add(1, Ordering::Relaxed);
            return Some(Learned {
                prefix: prefix.to_string(),
                target,
            });
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Stores `prefix → target` for `ttl` (the default when `None`, capped), evicting the
    /// least recently used entries until both caps hold.
    pub fn insert(&self, prefix: &str, target: CacheTarget, ttl: Option<Duration>, now: Instant) {
        let ttl = match (&target, ttl) {
            (CacheTarget::Nowhere, None) => self.config.negative_ttl,
            (_, None) => self.config.ttl,
            (_, Some(t)) => t,
        }
        .min(self.config.max_ttl);
        if ttl.is_zero() {
            return;
        }
        let size = entry_bytes(prefix, &target);
        if size > self.config.max_bytes {
            return;
        }
        let mut inner = self.lock();
        if let Some(old) = inner.lru.pop(prefix) {
            inner.forget(prefix, &old.target);
        }
        while inner.lru.len() >= self.config.max_entries
            || inner.bytes + size > self.config.max_bytes
        {
            let Some((k, old)) = inner.lru.pop_lru() else {
                break;
            };
            inner.forget(&k, &old.target);
            self.counters.evictions.fetch_add(1, Ordering::Relaxed);
        }
        inner.bytes += size;
        if target == CacheTarget::Nowhere {
            inner.negative += 1;
        }
        inner.lru.put(
            prefix.to_string(),
            Entry {
                target,
                expires: now + ttl,
            },
        );
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops every negative entry (the shard map changed); how many.
    pub fn invalidate_negative(&self) -> usize {
        let mut inner = self.lock();
        let gone: Vec<String> = inner
            .lru
            .iter()
            .filter(|(_, e)| e.target == CacheTarget::Nowhere)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            inner.remove(k, &CacheTarget::Nowhere);
        }
        self.counters
            .invalidated
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        gone.len()
    }

    /// Entries and bytes now.
    pub fn size(&self) -> CacheSize {
        let inner = self.lock();
        CacheSize {
            entries: inner.lru.len(),
            negative: inner.negative,
            bytes: inner.bytes,
        }
    }

    /// The caps.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }
}

impl Inner {
    fn remove(&mut self, key: &str, target: &CacheTarget) {
        if self.lru.pop(key).is_some() {
            self.forget(key, target);
        }
    }

    fn forget(&mut self, key: &str, target: &CacheTarget) {
        self.bytes = self.bytes.saturating_sub(entry_bytes(key, target));
        if *target == CacheTarget::Nowhere {
            self.negative = self.negative.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(entries: usize, bytes: usize) -> CacheConfig {
        CacheConfig {
            max_entries: entries,
            max_bytes: bytes,
            ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(120),
            negative_ttl: Duration::from_secs(5),
        }
    }

    #[test]
    fn longest_prefix_ttl_and_caps() {
        let c = RouteCache::new(config(100, 1 << 20));
        let now = Instant::now();
        c.insert("/a", CacheTarget::Cell("x".into()), None, now);
        c.insert(
            "/a/b",
            CacheTarget::Cell("y".into()),
            Some(Duration::from_secs(1)),
            now,
        );
        assert_eq!(
            c.lookup("/a/b/c", now).unwrap().target,
            CacheTarget::Cell("y".into())
        );
        let later = now + Duration::from_secs(2);
        assert_eq!(c.lookup("/a/b/c", later).unwrap().prefix, "/a");
        assert!(c.lookup("/ab", later).is_none());
        assert_eq!(c.size().entries, 1);
        // A ttl above the cap is capped.
        c.insert(
            "/z",
            CacheTarget::Cell("x".into()),
            Some(Duration::from_secs(9999)),
            now,
        );
        assert!(c.lookup("/z", now + Duration::from_secs(121)).is_none());
    }

    #[test]
    fn ten_times_the_cap_stays_under_it() {
        let c = RouteCache::new(config(50, 8 * 1024));
        let now = Instant::now();
        for i in 0..5000 {
            c.insert(&format!("/p{i}"), CacheTarget::Cell("x".into()), None, now);
            let s = c.size();
            assert!(s.entries <= 50 && s.bytes <= 8 * 1024, "{s:?}");
        }
        assert!(c.counters.evictions.load(Ordering::Relaxed) >= 4950);
        assert!(c.lookup("/p4999", now).is_some());
        assert!(c.lookup("/p0", now).is_none());
    }

    #[test]
    fn negative_entries_are_dropped_on_invalidation() {
        let c = RouteCache::new(config(10, 1 << 20));
        let now = Instant::now();
        c.insert("/gone", CacheTarget::Nowhere, None, now);
        c.insert("/kept", CacheTarget::Cell("x".into()), None, now);
        assert_eq!(c.size().negative, 1);
        assert_eq!(c.invalidate_negative(), 1);
        assert!(c.lookup("/gone", now).is_none());
        assert!(c.lookup("/kept", now).is_some());
        assert_eq!(c.size().negative, 0);
    }
}
