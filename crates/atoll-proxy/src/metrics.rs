//! What the proxy counts, and `/metrics` in Prometheus' text format: clients, server
//! connections per node, transactions per shard, holds and their times, errors by SQLSTATE
//! (the proxy's own refusals and the nodes' errors it relayed). Counters are atomics
//! updated on the hot path; errors take a lock, but only when one happens.

use crate::hold::quantile;
use crate::shared::Shared;
use atoll_core::ShardNo;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The proxy's counters (holds are in [`crate::hold::HoldStats`]).
pub struct Stats {
    /// Client sessions open now.
    pub clients: AtomicU64,
    /// Transactions started, per shard number (one slot per possible shard: no lock, no
    /// map on the hot path).
    transactions: Vec<AtomicU64>,
    /// Errors sent to clients, by SQLSTATE; locked only when one is counted or shown.
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        let slots = ShardNo::MAX.get() as usize + 1;
        Stats {
            clients: AtomicU64::new(0),
            transactions: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Stats {
    /// A transaction started on `shard`.
    pub fn transaction(&self, shard: ShardNo) {
        if let Some(c) = self.transactions.get(shard.get() as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An error with `code` went to a client.
    pub fn error(&self, code: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(code.chars().take(5).collect()).or_default() += 1;
    }
}

/// `/metrics`' body.
pub fn render(shared: &Shared) -> String {
    let mut out = String::new();
    let stats = &shared.stats;
    metric(
        &mut out,
        "atoll_proxy_clients",
        "gauge",
        "Client sessions open.",
    );
    let _ = writeln!(
        out,
        "atoll_proxy_clients {}",
        stats.clients.load(Ordering::Relaxed)
    );
    metric(
        &mut out,
        "atoll_proxy_server_connections",
        "gauge",
        "Connections to the nodes, leased to a transaction or idle in the pool.",
    );
    for p in shared.pools.stats() {
        for (state, n) in [("leased", p.leased), ("idle", p.idle)] {
            let _ = writeln!(
                out,
                "atoll_proxy_server_connections{{node=\"{}\",state=\"{state}\"}} {n}",
                p.addr
            );
        }
    }
    metric(
        &mut out,
        "atoll_proxy_transactions_total",
        "counter",
        "Transactions (or single statements) run, by the shard they were routed to.",
    );
    for (n, c) in stats.transactions.iter().enumerate() {
        let v = c.load(Ordering::Relaxed);
        if v > 0 {
            let _ = writeln!(out, "atoll_proxy_transactions_total{{shard=\"{n}\"}} {v}");
        }
    }
    holds(shared, &mut out);
    metric(
        &mut out,
        "atoll_proxy_errors_total",
        "counter",
        "Errors sent to clients, by SQLSTATE (the proxy's refusals and the nodes' errors).",
    );
    let errors = stats
        .errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (code, n) in errors {
        let _ = writeln!(out, "atoll_proxy_errors_total{{sqlstate=\"{code}\"}} {n}");
    }
    out
}

fn holds(shared: &Shared, out: &mut String) {
    let h = &shared.holds;
    metric(
        out,
        "atoll_proxy_holds",
        "gauge",
        "Transactions held through a move now.",
    );
    let _ = writeln!(
        out,
        "atoll_proxy_holds {}",
        h.holding.load(Ordering::Relaxed)
    );
    metric(
        out,
        "atoll_proxy_holds_total",
        "counter",
        "Holds ended: released (run where the shard went) or expired (57P03 sent).",
    );
    for (outcome, c) in [("released", &h.released), ("expired", &h.expired)] {
        let v = c.load(Ordering::Relaxed);
        let _ = writeln!(out, "atoll_proxy_holds_total{{outcome=\"{outcome}\"}} {v}");
    }
    metric(
        out,
        "atoll_proxy_reruns_total",
        "counter",
        "First exchanges run again after a node said the shard had left it.",
    );
    let _ = writeln!(
        out,
        "atoll_proxy_reruns_total {}",
        h.rerun.load(Ordering::Relaxed)
    );
    metric(
        out,
        "atoll_proxy_hold_seconds",
        "summary",
        "How long transactions were held (quantiles over the most recent 4096 holds).",
    );
    let times = h.recent_sorted();
    for q in [0.5, 0.99, 1.0] {
        let v = quantile(&times, q).as_secs_f64();
        let _ = writeln!(out, "atoll_proxy_hold_seconds{{quantile=\"{q}\"}} {v}");
    }
    let sum = h.total_us.load(Ordering::Relaxed) as f64 / 1e6;
    let count = h.released.load(Ordering::Relaxed) + h.expired.load(Ordering::Relaxed);
    let _ = writeln!(out, "atoll_proxy_hold_seconds_sum {sum}");
    let _ = writeln!(out, "atoll_proxy_hold_seconds_count {count}");
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}
