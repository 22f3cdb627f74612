//! Per-address health of the cells: passive (a failed request counts), active (a `GET` of
//! the probe path every interval), and the choice of an address for a request.

use crate::config::{HealthConfig, RouterConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// One address of a cell.
#[derive(Debug)]
pub struct AddrHealth {
    /// `host:port`.
    pub addr: String,
    failures: AtomicU32,
    down: AtomicBool,
}

impl AddrHealth {
    fn new(addr: &str) -> AddrHealth {
        AddrHealth {
            addr: addr.to_string(),
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
        }
    }

    /// Whether the address is marked down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// A cell's addresses and its round-robin position.
#[derive(Debug)]
pub struct CellHealth {
    /// The addresses, in configured order.
    pub addrs: Vec<Arc<AddrHealth>>,
    next: AtomicUsize,
}

/// Every cell's health; rebuilt on a config reload, keeping the state of addresses that
/// stayed.
#[derive(Debug, Default)]
pub struct Health {
    cells: HashMap<String, CellHealth>,
    failures_to_down: u32,
}

impl Health {
    /// The health of `config`'s cells, reusing `old`'s state of unchanged addresses.
    pub fn new(config: &RouterConfig, old: Option<&Health>) -> Health {
        let mut cells = HashMap::new();
        for (name, cell) in &config.cells {
            let addrs = cell
                .addrs
                .iter()
                .map(|a| {
                    old.and_then(|o| o.cells.get(name))
                        .and_then(|c| c.addrs.iter().find(|x| x.addr == *a).cloned())
                        .unwrap_or_else(|| Arc::new(AddrHealth::new(a)))
                })
                .collect();
            cells.insert(
                name.clone(),
                CellHealth {
                    addrs,
                    next: AtomicUsize::new(0),
                },
            );
        }
        Health {
            cells,
            failures_to_down: config.health.failures_to_down,
        }
    }

    /// An address of `cell` not in `tried`: the next healthy one in turn, else (every
    /// remaining one down) the next one anyway, since a down mark may be stale.
    pub fn pick(&self, cell: &str, tried: &[usize]) -> Option<(usize, Arc<AddrHealth>)> {
        let c = self.cells.get(cell)?;
        let n = c.addrs.len();
        let start = c.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i));
        let mut fallback = None;
        for i in order {
            if !c.addrs[i].is_down() {
                return Some((i, c.addrs[i].clone()));
            }
            fallback.get_or_insert(i);
        }
        fallback.map(|i| (i, c.addrs[i].clone()))
    }

    /// A request or probe to `a` failed; marks it down after enough in a row.
    pub fn failed(&self, a: &AddrHealth) {
        let n = a.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.failures_to_down && !a.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(addr = %a.addr, failures = n, "atoll-router: cell address marked down");
        }
    }

    /// A request or probe to `a` succeeded.
    pub fn succeeded(&self, a: &AddrHealth) {
        // Read before writing: every request succeeds here, from every worker, and a write
        // would bounce the cache line between them.
        if a.failures.load(Ordering::Relaxed) != 0 {
            a.failures.store(0, Ordering::Relaxed);
        }
        if a.down.load(Ordering::Relaxed) && a.down.swap(false, Ordering::Relaxed) {
            tracing::info!(addr = %a.addr, "atoll-router: cell address is up again");
        }
    }

    /// Every cell with its addresses, for probes and `/metrics`.
    pub fn all(&self) -> impl Iterator<Item = (&String, &CellHealth)> {
        self.cells.iter()
    }
}

/// The probe settings (kept apart so a reload can change them).
pub fn probe_settings(h: &HealthConfig) -> (String, std::time::Duration) {
    (h.probe_path.clone(), h.probe_interval)
}
