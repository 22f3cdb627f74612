//! `router.toml`: the router's cells, rules and limits, parsed and validated in one pass.
//! Every refusal names the file and the item (`router.toml: rule "project": ...`).

use crate::error::RouterError;
use crate::headers::parse_cell_name;
use crate::rules::{Rule, RuleSpec};
use atoll_core::IslandId;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    router: RawRouter,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    health: RawHealth,
    #[serde(default, rename = "cell")]
    cells: Vec<RawCell>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    listen: String,
    admin_listen: Option<String>,
    atoll_config: Option<PathBuf>,
    default_cell: String,
    body_buffer_bytes: Option<u64>,
    body_budget_bytes: Option<u64>,
    max_header_bytes: Option<u64>,
    connect_timeout_ms: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    jitter_404_ms: Option<u64>,
    retries: Option<u32>,
    workers: Option<usize>,
    drain_timeout_ms: Option<u64>,
    discovery_period_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCache {
    max_entries: Option<usize>,
    max_bytes: Option<usize>,
    ttl_s: Option<u64>,
    max_ttl_s: Option<u64>,
    negative_ttl_s: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    probe_path: Option<String>,
    probe_interval_ms: Option<u64>,
    failures_to_down: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCell {
    name: String,
    addrs: Vec<String>,
    #[serde(default)]
    islands: Vec<u16>,
}

/// One upstream cell: its name, addresses and the islands it serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CellConfig {
    /// `a-z 0-9 - _`, what redirect and cache headers name.
    pub name: String,
    /// `host:port` of each instance, tried in turn.
    pub addrs: Vec<String>,
    /// The islands whose shards this cell serves.
    pub islands: Vec<IslandId>,
}

/// The learned-route cache's bounds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CacheConfig {
    /// Most entries (positive and negative together).
    pub max_entries: usize,
    /// Most bytes the entries' keys and values take (an estimate per entry, see `cache.rs`).
    pub max_bytes: usize,
    /// Time to live of an entry whose cell named none.
    pub ttl: Duration,
    /// Longest time to live a cell may ask for.
    pub max_ttl: Duration,
    /// Time to live of a negative entry ("no cell owns it").
    pub negative_ttl: Duration,
}

/// Active and passive health checks of cell addresses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthConfig {
    /// The path probed with `GET` (any answer below 500 is healthy).
    pub probe_path: String,
    /// How often each address is probed; zero: no active probe.
    pub probe_interval: Duration,
    /// Consecutive failures (probes or requests) that mark an address down.
    pub failures_to_down: u32,
}

/// A validated router configuration.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Where it was read from (`None`: inline text).
    pub source: Option<PathBuf>,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where `/metrics` and `/healthz` are served (`None`: not served).
    pub admin_listen: Option<SocketAddr>,
    /// The atoll cluster config for discovery (relative paths are from the router config's
    /// directory); needed by `id` and `key` rules.
    pub atoll_config: Option<PathBuf>,
    /// The cell unknown routes go to (the newest).
    pub default_cell: String,
    /// Cells by name.
    pub cells: BTreeMap<String, CellConfig>,
    /// Which cell serves each island.
    pub island_cells: BTreeMap<IslandId, String>,
    /// Rules, tried in order.
    pub rules: Vec<Rule>,
    /// Largest request body held for a possible re-send (default 64 KiB).
    pub body_buffer_bytes: u64,
    /// Most bytes all held bodies take together (default 64 MiB).
    pub body_budget_bytes: u64,
    /// Most bytes of request headers (names and values) accepted (default 32 KiB): above,
    /// 431.
    pub max_header_bytes: u64,
    /// Limit on connecting to a cell.
    pub connect_timeout: Duration,
    /// Limit on a cell's answer (its head).
    pub upstream_timeout: Duration,
    /// Largest random delay added to a 404 (zero: off; default 50 ms).
    pub jitter_404: Duration,
    /// Retries of a request at another address of its cell (default 1).
    pub retries: u32,
    /// Proxy threads, each with its own listening socket on `listen` (SO_REUSEPORT: the
    /// kernel spreads connections), event loop and connections to the cells, so a request
    /// never wakes another thread (default: the machine's cores).
    pub workers: usize,
    /// How long shutdown waits for requests in flight.
    pub drain_timeout: Duration,
    /// Discovery period of the snapshot (default 1 s; shard notices update it between).
    pub discovery_period: Duration,
    /// The learned-route cache.
    pub cache: CacheConfig,
    /// Health checks.
    pub health: HealthConfig,
}

fn addr(where_: &str, s: &str) -> Result<SocketAddr, RouterError> {
    s.parse()
        .map_err(|_| RouterError::config(where_, format!("{s:?} is not an address ip:port")))
}

impl RouterConfig {
    /// Reads and validates `path`.
    pub fn from_file(path: &Path) -> Result<RouterConfig, RouterError> {
        let text = std::fs::read_to_string(path).map_err(|source| RouterError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RouterConfig::parse(&text, Some(path))
    }

    /// Parses and validates TOML text; `source` is named in errors.
    pub fn parse(text: &str, source: Option<&Path>) -> Result<RouterConfig, RouterError> {
        let file = source
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "router config".into());
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| RouterError::config(&file, one_line(&e.to_string())))?;
        let r = &raw.router;
        let at = |item: &str| format!("{file}: {item}");
        let listen = addr(&at("router.listen"), &r.listen)?;
        let admin_listen = match &r.admin_listen {
            Some(a) => Some(addr(&at("router.admin_listen"), a)?),
            None => None,
        };
        let (cells, island_cells) = cells(&file, &raw.cells)?;
        if !cells.contains_key(&r.default_cell) {
            return Err(RouterError::config(
                at("router.default_cell"),
                format!("names no configured cell: {:?}", r.default_cell),
            ));
        }
        let mut rules = Vec::new();
        for (i, spec) in raw.rules.iter().enumerate() {
            let item = at(&format!("rule {:?} (#{})", spec.name, i + 1));
            if rules.iter().any(|x: &Rule| x.name == spec.name) {
                return Err(RouterError::config(item, "the name is used twice"));
            }
            rules.push(Rule::compile(spec).map_err(|e| RouterError::config(item, e))?);
        }
        let atoll_config = r.atoll_config.as_ref().map(|p| match source {
            Some(s) if p.is_relative() => s.parent().unwrap_or(Path::new(".")).join(p),
            _ => p.clone(),
        });
        if atoll_config.is_none() && !rules.is_empty() {
            return Err(RouterError::config(
                at("router.atoll_config"),
                "rules route by shard and need the cluster's config (atoll_config = \"atoll.toml\")",
            ));
        }
        let body_buffer_bytes = r.body_buffer_bytes.unwrap_or(64 * 1024);
        let body_budget_bytes = r.body_budget_bytes.unwrap_or(64 * 1024 * 1024);
        if body_buffer_bytes > body_budget_bytes {
            return Err(RouterError::config(
                at("router.body_buffer_bytes"),
                "is larger than router.body_budget_bytes",
            ));
        }
        let ms = |v: Option<u64>, d: u64| Duration::from_millis(v.unwrap_or(d));
        let workers = match r.workers {
            Some(n) if !(1..=256).contains(&n) => {
                return Err(RouterError::config(
                    at("router.workers"),
                    format!("{n} is not within 1..=256"),
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(RouterConfig {
            source: source.map(Path::to_path_buf),
            listen,
            admin_listen,
            atoll_config,
            default_cell: r.default_cell.clone(),
            cells,
            island_cells,
            rules,
            body_buffer_bytes,
            body_budget_bytes,
            max_header_bytes: r.max_header_bytes.unwrap_or(32 * 1024),
            connect_timeout: ms(r.connect_timeout_ms, 1000),
            upstream_timeout: ms(r.upstream_timeout_ms, 30_000),
            jitter_404: ms(r.jitter_404_ms, 50),
            retries: r.retries.unwrap_or(1).min(10),
            workers,
            drain_timeout: ms(r.drain_timeout_ms, 10_000),
            discovery_period: ms(r.discovery_period_ms, 1000).max(Duration::from_millis(50)),
            cache: cache(&file, &raw.cache)?,
            health: health(&file, &raw.health)?,
        })
    }

    /// The cell serving `island`, if any.
    pub fn cell_for_island(&self, island: IslandId) -> Option<&str> {
        self.island_cells.get(&island).map(String::as_str)
    }
}

type Cells = (BTreeMap<String, CellConfig>, BTreeMap<IslandId, String>);

fn cells(file: &str, raw: &[RawCell]) -> Result<Cells, RouterError> {
    if raw.is_empty() {
        return Err(RouterError::config(
            file,
            "no [[cell]]: a router needs at least one cell",
        ));
    }
    let mut cells = BTreeMap::new();
    let mut island_cells = BTreeMap::new();
    for (i, c) in raw.iter().enumerate() {
        let item = format!("{file}: cell {:?} (#{})", c.name, i + 1);
        let name =
            parse_cell_name(&c.name).map_err(|e| RouterError::config(&item, e.to_string()))?;
        if c.addrs.is_empty() {
            return Err(RouterError::config(item, "has no addrs"));
        }
        for a in &c.addrs {
            if a.parse::<http::uri::Authority>()
                .ok()
                .and_then(|x| x.port_u16())
                .is_none()
            {
                return Err(RouterError::config(
                    &item,
                    format!("{a:?} is not host:port"),
                ));
            }
        }
        let mut islands = Vec::new();
        for &n in &c.islands {
            let island = IslandId(n);
            if let Some(other) = island_cells.insert(island, name.clone()) {
                return Err(RouterError::config(
                    item,
                    format!("island {n} is already served by cell {other:?}"),
                ));
            }
            islands.push(island);
        }
        let cell = CellConfig {
            name: name.clone(),
            addrs: c.addrs.clone(),
            islands,
        };
        if cells.insert(name, cell).is_some() {
            return Err(RouterError::config(item, "the name is used twice"));
        }
    }
    Ok((cells, island_cells))
}

fn cache(file: &str, c: &RawCache) -> Result<CacheConfig, RouterError> {
    let max_entries = c.max_entries.unwrap_or(100_000);
    if max_entries == 0 {
        return Err(RouterError::config(
            format!("{file}: cache.max_entries"),
            "must be at least 1",
        ));
    }
    Ok(CacheConfig {
        max_entries,
        max_bytes: c.max_bytes.unwrap_or(32 * 1024 * 1024).max(1024),
        ttl: Duration::from_secs(c.ttl_s.unwrap_or(300)),
        max_ttl: Duration::from_secs(c.max_ttl_s.unwrap_or(3600)),
        negative_ttl: Duration::from_secs(c.negative_ttl_s.unwrap_or(30)),
    })
}

fn health(file: &str, h: &RawHealth) -> Result<HealthConfig, RouterError> {
    let probe_path = h.probe_path.clone().unwrap_or_else(|| "/healthz".into());
    if !probe_path.starts_with('/') || probe_path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(RouterError::config(
            format!("{file}: health.probe_path"),
            format!("{probe_path:?} is not an absolute path"),
        ));
    }
    Ok(HealthConfig {
        probe_path,
        probe_interval: Duration::from_millis(h.probe_interval_ms.unwrap_or(2000)),
        failures_to_down: h.failures_to_down.unwrap_or(2).max(1),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[router]\nlisten = \"127.0.0.1:0\"\ndefault_cell = \"a\"\n[[cell]]\nname = \"a\"\naddrs = [\"127.0.0.1:1\"]\nislands = [0]\n";

    fn refused(text: &str) -> String {
        RouterConfig::parse(text, Some(Path::new("r.toml")))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn refusals_name_the_file_and_item() {
        assert!(RouterConfig::parse(BASE, None).is_ok_and(|c| c.workers >= 1));
        let three = BASE.replace("[router]\n", "[router]\nworkers = 3\n");
        assert!(RouterConfig::parse(&three, None).is_ok_and(|c| c.workers == 3));
        let cases = [
            (BASE.replace("default_cell = \"a\"", "default_cell = \"b\""), "router.default_cell"),
            (format!("{BASE}[[cell]]\nname = \"b\"\naddrs = [\"127.0.0.1:2\"]\nislands = [0]\n"), "already served by cell \"a\""),
            (format!("{BASE}[[cell]]\nname = \"a\"\naddrs = [\"127.0.0.1:2\"]\n"), "used twice"),
            (BASE.replace("127.0.0.1:1", "nohost"), "is not host:port"),
            (BASE.replace("name = \"a\"", "name = \"A b\"").replace("default_cell = \"a\"", "default_cell = \"A b\""), "not a cell name"),
            (BASE.replace("127.0.0.1:0", "here"), "router.listen"),
            (format!("{BASE}colour = 1\n"), "unknown field"),
            (format!("{BASE}[[rule]]\nname = \"r\"\nsource = \"path\"\npattern = '(?P<id>\\d+)'\nkind = \"id\"\n"), "atoll_config"),
            (format!("{BASE}[[rule]]\nname = \"r\"\nsource = \"nose\"\npattern = 'x'\nkind = \"id\"\n"), "nose"),
            (BASE.replace("[router]\n", "[router]\nbody_buffer_bytes = 10\nbody_budget_bytes = 5\n"), "body_budget_bytes"),
            ("[router\n".to_string(), "r.toml"),
            (BASE.replace("[router]\n", "[router]\nworkers = 0\n"), "router.workers"),
        ];
        for (text, needle) in cases {
            let e = refused(&text);
            assert!(e.starts_with("r.toml"), "{e}");
            assert!(e.contains(needle), "{needle}: {e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }
}
