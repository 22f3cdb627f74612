//! `ATOLL_ISLANDS`: a one-line cluster description for developers, e.g.
//! `0=127.0.0.1:5432,127.0.0.1:5433;1=app@db2:5432/app`.
//!
//! Islands are separated by `;`, nodes by `,`; a node is
//! `[user@]host:port[/database][?sslmode=MODE[&sslrootcert=PATH]]` (the TLS keys and
//! meanings of `atoll.toml`; a relative CA path is taken from the working directory).
//! Passwords cannot be given here (they would sit in plain text in the environment);
//! use `atoll.toml` with `env:`/`file:` references for that.

use crate::config::{Config, ConfigError, ConfigSource, IslandConfig, NodeConfig};
use crate::island::IslandId;
use std::collections::HashSet;
use std::time::Duration;

impl Config {
    /// Parses an `ATOLL_ISLANDS` value (see the module docs): default cluster name, env digit 1,
    /// connect timeout 2000 ms, no passwords.
    pub fn from_islands_env(value: &str) -> Result<Config, ConfigError> {
        let mut islands: Vec<IslandConfig> = Vec::new();
        let mut seen_nodes = HashSet::new();
        for (i, entry) in value.split(';').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let here =
                |msg: String| ConfigError::Env(format!("entry {} ({entry:?}): {msg}", i + 1));
            let (id, nodes) = entry
                .split_once('=')
                .ok_or_else(|| here("expected ISLAND=NODE,NODE".into()))?;
            let id: u16 = id
                .trim()
                .parse()
                .ok()
                .filter(|id| *id <= 9999)
                .ok_or_else(|| {
                    here(format!(
                        "island {:?} is not a number in 0..=9999",
                        id.trim()
                    ))
                })?;
            if islands.iter().any(|x| x.id.0 == id) {
                return Err(here(format!("island {id} is listed twice")));
            }
            let mut list = Vec::new();
            for node in nodes.split(',').map(str::trim) {
                let node = parse_node(node).map_err(&here)?;
                if !seen_nodes.insert(node.addr()) {
                    return Err(here(format!("node {} is listed twice", node.addr())));
                }
                list.push(node);
            }
            islands.push(IslandConfig {
                id: IslandId(id),
                nodes: list,
            });
        }
        if islands.is_empty() {
            return Err(ConfigError::Env("no island is listed".into()));
        }
        islands.sort_by_key(|i| i.id);
        Ok(Config {
            source: ConfigSource::Env,
            name: "atoll".into(),
            env_digit: 1,
            connect_timeout: Duration::from_millis(2000),
            ha: None,
            endpoints: None,
            global: Default::default(),
            proxy: Default::default(),
            islands,
        })
    }
}

fn parse_node(s: &str) -> Result<NodeConfig, String> {
    let bad = |why: &str| {
        format!("node {s:?}: {why} (expected [user@]host:port[/database][?sslmode=MODE&sslrootcert=PATH])")
    };
    let (s_node, query) = match s.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (s, None),
    };
    let tls = parse_tls(query).map_err(|why| bad(&why))?;
    let (user, rest) = match s_node.split_once('@') {
        Some((u, r)) if !u.is_empty() => (u.to_string(), r),
        Some(_) => return Err(bad("empty user")),
        None => ("postgres".to_string(), s_node),
    };
    let (addr, database) = match rest.split_once('/') {
        Some((a, d)) if !d.is_empty() => (a, d.to_string()),
        Some(_) => return Err(bad("empty database")),
        None => (rest, "postgres".to_string()),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    // The same rule as in atoll.toml: a name or an address, nothing a DSN would need quoted.
    crate::config::check_host(host).map_err(|why| bad(&why))?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad("port is not a number in 1..=65535"))?;
    Ok(NodeConfig {
        host: host.to_string(),
        port,
        user,
        database,
        password: None,
        tls,
    })
}

/// The `sslmode=…&sslrootcert=…` after a node's `?`; each key at most once, no other key.
fn parse_tls(query: Option<&str>) -> Result<crate::TlsConfig, String> {
    let (mut mode, mut root) = (None, None);
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))?;
        let slot = match key {
            "sslmode" => &mut mode,
            "sslrootcert" => &mut root,
            other => {
                return Err(format!(
                    "unknown key {other:?} (only sslmode and sslrootcert can follow '?')"
                ))
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("{key} is given twice"));
        }
    }
    crate::TlsConfig::resolve(mode, root, (None, None), None)
}
