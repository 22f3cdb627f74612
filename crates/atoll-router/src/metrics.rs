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

/// Every counter of a running router.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, RouteSource, u16), u64>>,
    events: Mutex<BTreeMap<Event, u64>>,
    /// Microseconds of jitter added, in total.
    pub jitter_us: AtomicU64,
}

impl Metrics {
    /// Counts a request answered with `status`, sent to `cell` (empty: none) because of
    /// `source`.
    pub fn request(&self, cell: &str, source: RouteSource, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((cell.to_string(), source, status)).or_default() += 1;
    }

    /// Counts `n` events.
    pub fn add(&self, e: Event, n: u64) {
        let mut m = self.events.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(e).or_default() += n;
    }

    /// The count of `e`.
    pub fn get(&self, e: Event) -> u64 {
        let m = self.events.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&e).copied().unwrap_or(0)
    }

    /// Requests counted for (`cell`, `source`), any status.
    pub fn requests(&self, cell: &str, source: RouteSource) -> u64 {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|((c, s, _), _)| c == cell && *s == source)
            .map(|(_, n)| n)
            .sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self, cache: &RouteCache, health: &Health, budget: (u64, u64)) -> String {
        let mut out = String::new();
        out.push_str("# TYPE atoll_router_requests_total counter\n");
        for ((cell, source, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "atoll_router_requests_total{{cell=\"{cell}\",source=\"{}\",status=\"{status}\"}} {n}",
                source.as_str()
            );
        }
        for (e, n) in self.events.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "# TYPE {} counter\n{} {n}", e.name(), e.name());
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
