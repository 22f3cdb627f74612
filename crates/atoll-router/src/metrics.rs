//! The router's counters and their Prometheus text (`/metrics` on the admin listener).

use crate::cache::RouteCache;
use crate::health::Health;
use crate::route::RouteSource;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of events without labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A redirect followed by re-sending the request (one hop).
    RedirectFollowed,
    /// A redirect passed to the client as 307 (its body was not held).
    RedirectPassed,
    /// A redirect refused by the loop guard.
    LoopGuard,
    /// A cell's routing header that could not be used (malformed, unknown cell, a prefix
    /// not covering the request).
    BadCellHeader,
    /// A route learned from a cell's cache header.
    Learned,
    /// An inbound `X-Atoll-*` header removed.
    StrippedHeader,
    /// A request retried at another address.
    Retry,
    /// A request that failed upstream (connect, timeout, reset).
    UpstreamError,
    /// A body held for a possible re-send.
    BodyHeld,
    /// A body streamed through (too large or the budget was used up).
    BodyStreamed,
    /// A body streamed because the global budget was used up.
    BudgetFull,
    /// A 404 delayed by jitter.
    Jittered,
    /// A change of the snapshot's shard → island map (negative entries dropped).
    ShardMapChanged,
    /// A request refused for oversized headers.
    HeadersTooLarge,
    /// A config reload applied.
    ReloadApplied,
    /// A config reload refused (the old config stays).
    ReloadRefused,
}

impl Event {
    /// Every event, in the order of their counters.
    pub const ALL: [Event; 16] = [
        Event::RedirectFollowed,
        Event::RedirectPassed,
        Event::LoopGuard,
        Event::BadCellHeader,
        Event::Learned,
        Event::StrippedHeader,
        Event::Retry,
        Event::UpstreamError,
        Event::BodyHeld,
        Event::BodyStreamed,
        Event::BudgetFull,
        Event::Jittered,
        Event::ShardMapChanged,
        Event::HeadersTooLarge,
        Event::ReloadApplied,
        Event::ReloadRefused,
    ];

    fn name(self) -> &'static str {
        match self {
            Event::RedirectFollowed => "atoll_router_redirects_followed_total",
            Event::RedirectPassed => "atoll_router_redirects_passed_total",
            Event::LoopGuard => "atoll_router_loop_guard_total",
            Event::BadCellHeader => "atoll_router_bad_cell_headers_total",
            Event::Learned => "atoll_router_routes_learned_total",
            Event::StrippedHeader => "atoll_router_inbound_headers_stripped_total",
            Event::Retry => "atoll_router_retries_total",
            Event::UpstreamError => "atoll_router_upstream_errors_total",
            Event::BodyHeld => "atoll_router_bodies_held_total",
            Event::BodyStreamed => "atoll_router_bodies_streamed_total",
            Event::BudgetFull => "atoll_router_body_budget_full_total",
            Event::Jittered => "atoll_router_jittered_404_total",
            Event::ShardMapChanged => "atoll_router_shard_map_changes_total",
            Event::HeadersTooLarge => "atoll_router_headers_too_large_total",
            Event::ReloadApplied => "atoll_router_config_reloads_total",
            Event::ReloadRefused => "atoll_router_config_reloads_refused_total",
        }
    }
}

/// Requests by cell, then by route source and status.
type RequestCounts = BTreeMap<String, BTreeMap<(RouteSource, u16), u64>>;

/// Every counter of a running router. Every request counts, from every worker thread: the
/// event counters are atomics (no lock), the labelled request counts a map looked up
/// without allocating.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<RequestCounts>,
    /// Indexed by `Event as usize`.
    events: [AtomicU64; Event::ALL.len()],
    /// Microseconds of jitter added, in total.
    pub jitter_us: AtomicU64,
}

impl Metrics {
    /// Counts a request answered with `status`, sent to `cell` (empty: none) because of
    /// `source`.
    pub fn request(&self, cell: &str, source: RouteSource, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let by_cell = match m.get_mut(cell) {
            Some(c) => c,
            None => m.entry(cell.to_string()).or_default(),
        };
        *by_cell.entry((source, status)).or_default() += 1;
    }

    /// Counts `n` events.
    pub fn add(&self, e: Event, n: u64) {
        if n > 0 {
            self.events[e as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The count of `e`.
    pub fn get(&self, e: Event) -> u64 {
        self.events[e as usize].load(Ordering::Relaxed)
    }

    /// Requests counted for (`cell`, `source`), any status.
    pub fn requests(&self, cell: &str, source: RouteSource) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.get(cell)
            .into_iter()
            .flatten()
            .filter(|((s, _), _)| *s == source)
            .map(|(_, n)| n)
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, cache: &RouteCache, health: &Health, budget: (u64, u64)) -> String {
        let mut out = String::new();
        out.push_str("# TYPE atoll_router_requests_total counter\n");
        for (cell, counts) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for ((source, status), n) in counts {
                let _ = writeln!(
                    out,
                    "atoll_router_requests_total{{cell=\"{cell}\",source=\"{}\",status=\"{status}\"}} {n}",
                    source.as_str()
                );
            }
        }
        for e in Event::ALL {
            let _ = writeln!(
                out,
                "# TYPE {} counter\n{} {}",
                e.name(),
                e.name(),
                self.get(e)
            );
        }
        let c = &cache.counters;
        let size = cache.size();
        for (name, v) in [
            (
                "atoll_router_cache_hits_total",
                c.hits.load(Ordering::Relaxed),
            ),
            (
                "atoll_router_cache_misses_total",
                c.misses.load(Ordering::Relaxed),
            ),
            (
                "atoll_router_cache_inserts_total",
                c.inserts.load(Ordering::Relaxed),
            ),
            (
                "atoll_router_cache_evictions_total",
                c.evictions.load(Ordering::Relaxed),
            ),
            (
                "atoll_router_cache_expired_total",
                c.expired.load(Ordering::Relaxed),
            ),
            (
                "atoll_router_cache_negative_invalidated_total",
                c.invalidated.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# TYPE {name} counter\n{name} {v}");
        }
        for (name, v) in [
            ("atoll_router_cache_entries", size.entries as u64),
            ("atoll_router_cache_negative_entries", size.negative as u64),
            ("atoll_router_cache_bytes", size.bytes as u64),
            (
                "atoll_router_cache_max_entries",
                cache.config().max_entries as u64,
            ),
            (
                "atoll_router_cache_max_bytes",
                cache.config().max_bytes as u64,
            ),
            ("atoll_router_body_budget_bytes", budget.1),
            (
                "atoll_router_body_held_bytes",
                budget.1.saturating_sub(budget.0),
            ),
        ] {
            let _ = writeln!(out, "# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# TYPE atoll_router_jitter_seconds_total counter\natoll_router_jitter_seconds_total {}",
            self.jitter_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        out.push_str("# TYPE atoll_router_cell_up gauge\n");
        for (cell, h) in health.all() {
            for a in &h.addrs {
                let _ = writeln!(
                    out,
                    "atoll_router_cell_up{{cell=\"{cell}\",addr=\"{}\"}} {}",
                    a.addr,
                    u8::from(!a.is_down())
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_has_its_own_counter() {
        for (i, e) in Event::ALL.iter().enumerate() {
            assert_eq!(*e as usize, i, "{e:?} is out of order in Event::ALL");
        }
        let m = Metrics::default();
        m.add(Event::Retry, 2);
        m.add(Event::Learned, 0);
        assert_eq!(m.get(Event::Retry), 2);
        assert_eq!(m.get(Event::Learned), 0);
        m.request("eu0", RouteSource::Default, 200);
        m.request("eu0", RouteSource::Default, 404);
        m.request("eu0", RouteSource::Rule, 200);
        assert_eq!(m.requests("eu0", RouteSource::Default), 2);
        assert_eq!(m.requests("eu1", RouteSource::Default), 0);
    }
}
