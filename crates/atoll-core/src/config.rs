//! The cluster configuration: islands by number and their nodes. Nothing else lives here:
//! where shards are is read from the islands themselves (docs/architecture.md, principle 1).
//!
//! Sources, in order: an explicit path (`--config`), `ATOLL_CONFIG`, `./atoll.toml`, and
//! `ATOLL_ISLANDS` as a quick developer fallback. Every error names the field and line.

use crate::island::IslandId;
use crate::secret::SecretRef;
use crate::tls::TlsConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Where a configuration came from; errors and `status` name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    /// A TOML file at this path (`--config`, `ATOLL_CONFIG` or `./atoll.toml`).
    File(PathBuf),
    /// The `ATOLL_ISLANDS` environment variable.
    Env,
    /// Text handed to [`Config::parse`] by the caller, not read from a file.
    Inline,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(p) => write!(f, "{}", p.display()),
            ConfigSource::Env => f.write_str("ATOLL_ISLANDS"),
            ConfigSource::Inline => f.write_str("<inline>"),
        }
    }
}

/// Why a configuration could not be found, read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The configuration text is not valid TOML or breaks a rule (ranges, duplicates, no islands).
    #[error("{origin}:{line}: {msg}")]
    Invalid {
        /// Where the text came from.
        origin: ConfigSource,
        /// 1-based line of the offending field; 1 when the error has no position.
        line: usize,
        /// What is wrong, naming the field.
        msg: String,
    },
    /// `ATOLL_ISLANDS` could not be parsed; the text names the entry and what is wrong.
    #[error("ATOLL_ISLANDS: {0}")]
    Env(String),
    /// The config file could not be read.
    #[error("cannot read config {path}: {msg}")]
    Read {
        /// The file that was tried.
        path: PathBuf,
        /// The I/O error.
        msg: String,
    },
    /// No explicit path, no `ATOLL_CONFIG`, no `./atoll.toml` and no `ATOLL_ISLANDS`.
    #[error("no configuration found: pass --config PATH, set ATOLL_CONFIG, create ./atoll.toml, or set ATOLL_ISLANDS")]
    NotFound,
}

/// A whole cluster's configuration, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Where this configuration came from.
    pub source: ConfigSource,
    /// The cluster's name (`cluster.name`, default `atoll`), shown by `status`.
    pub name: String,
    /// The environment digit of shard-encoded IDs (see [`crate::Id`]).
    pub env_digit: u8,
    /// Limit on opening one connection to a node (`cluster.connect_timeout_ms`, default 2000 ms).
    pub connect_timeout: Duration,
    /// Sorted by island id, ids unique.
    pub islands: Vec<IslandConfig>,
    /// Automated failover on etcd (`[ha]`); `None`: no failover.
    pub ha: Option<crate::ha::HaConfig>,
    /// The islands come from the endpoint records (`[endpoints]`); `None`: from this config.
    pub endpoints: Option<EndpointsConfig>,
    /// Shard 0's read-only copies (`[global]`).
    pub global: GlobalConfig,
    /// How `atoll proxy` runs (`[proxy]`).
    pub proxy: crate::proxy_config::ProxyConfig,
}

/// `[global]`: shard 0's read-only copies on the other islands (`atoll global replicate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GlobalConfig {
    /// The tables of `sh0000` the copies hold (`tables = ["tenants", "plans"]`), sorted;
    /// `None`: the ones they hold already, else every table.
    pub tables: Option<Vec<String>>,
}

/// `[endpoints]`: the islands and their credentials come from `atoll.shard_endpoints` on
/// the coordination island (read through the nodes this config lists), each record's
/// `credential_alias` looked up in the keychain file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointsConfig {
    /// The keychain file (`keychain = "PATH"`; relative to the config file's directory).
    pub keychain: PathBuf,
}

/// One island of the configuration: its number and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IslandConfig {
    /// The island's number, 0..=9999, unique in the cluster.
    pub id: IslandId,
    /// Listed order; the master is discovered, not configured.
    pub nodes: Vec<NodeConfig>,
}

/// How to connect to one node (one PostgreSQL server). `Debug` and `Display` never show the
/// password.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
pub struct NodeConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
    /// PostgreSQL user (the node's own, else `defaults.user`, else `postgres`).
    pub user: String,
    /// Database to connect to (the node's own, else `defaults.database`, else `postgres`).
    pub database: String,
    /// Where the password is read from (the node's own, else `defaults.password`); `None`: no
    /// password is sent.
    pub password: Option<SecretRef>,
    /// TLS to the node (`sslmode`, `sslrootcert`: the node's own, else `[defaults]`; default
    /// `disable`). Not part of [`NodeConfig::addr`] nor of its `Display`.
    pub tls: TlsConfig,
}

impl NodeConfig {
    /// `host:port`: the node's identity within a cluster.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Whether [`NodeConfig::addr`] is `addr`, without building it (routing asks per
    /// transaction).
    pub fn has_addr(&self, addr: &str) -> bool {
        addr.rsplit_once(':')
            .is_some_and(|(host, port)| host == self.host && port.parse() == Ok(self.port))
    }
}

/// Masked form: user, address and database, never a password.
impl fmt::Display for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.database
        )
    }
}

impl fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

const DEFAULT_USER: &str = "postgres";
const DEFAULT_DATABASE: &str = "postgres";
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2000;
/// An hour: a longer connect timeout is a typo (seconds taken for milliseconds, say), and
/// 0 would fail every connection.
const MAX_CONNECT_TIMEOUT_MS: u64 = 3_600_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    island: Vec<Spanned<RawIsland>>,
    ha: Option<Spanned<crate::ha::RawHa>>,
    endpoints: Option<Spanned<RawEndpoints>>,
    global: Option<Spanned<RawGlobal>>,
    proxy: Option<Spanned<crate::proxy_config::RawProxy>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    tables: Option<Vec<String>>,
}

impl RawGlobal {
    /// The table names checked: plain names of `sh0000`'s tables, each once.
    fn validate(self) -> Result<GlobalConfig, String> {
        let Some(mut tables) = self.tables else {
            return Ok(GlobalConfig::default());
        };
        if tables.is_empty() {
            return Err(
                "[global] tables: the list is empty (leave it out to copy every table)".into(),
            );
        }
        for t in &tables {
            let plain = !t.is_empty()
                && t.len() <= 63
                && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !t.starts_with(|c: char| c.is_ascii_digit());
            if !plain {
                return Err(format!(
                    "[global] tables: {t:?} is not a plain table name (letters, digits and _, unqualified: the tables are sh0000's)"
                ));
            }
        }
        tables.sort();
        if let Some(w) = tables.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("[global] tables: {} is listed twice", w[0]));
        }
        Ok(GlobalConfig {
            tables: Some(tables),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoints {
    keychain: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Option<String>,
    env_digit: Option<Spanned<i64>>,
    connect_timeout_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    user: Option<String>,
    database: Option<String>,
    password: Option<Spanned<String>>,
    sslmode: Option<Spanned<String>>,
    sslrootcert: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIsland {
    id: Spanned<i64>,
    nodes: Vec<Spanned<RawNode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    host: String,
    port: i64,
    user: Option<String>,
    database: Option<String>,
    password: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
}

impl Config {
    /// Finds and parses the configuration: `explicit`, then `ATOLL_CONFIG`, then
    /// `./atoll.toml`, then `ATOLL_ISLANDS`.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        if let Some(p) = explicit {
            return Config::from_file(p);
        }
        if let Some(p) = std::env::var_os("ATOLL_CONFIG").filter(|p| !p.is_empty()) {
            return Config::from_file(Path::new(&p));
        }
        let local = Path::new("atoll.toml");
        if local.exists() {
            return Config::from_file(local);
        }
        match std::env::var("ATOLL_ISLANDS") {
            Ok(v) if !v.trim().is_empty() => Config::from_islands_env(&v),
            _ => Err(ConfigError::NotFound),
        }
    }

    /// Reads and parses the TOML file at `path`.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Config::parse(&text, ConfigSource::File(path.to_path_buf()))
    }

    /// Parses TOML text; `source` is named in errors.
    // Long on purpose: one pass over the file's fields in the order a reader meets them,
    // each check next to the field it names (line numbers come from the same spans).
    pub fn parse(text: &str, source: ConfigSource) -> Result<Config, ConfigError> {
        let err = |span: Option<std::ops::Range<usize>>, msg: String| ConfigError::Invalid {
            origin: source.clone(),
            line: span.map(|s| line_of(text, s.start)).unwrap_or(1),
            msg,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', " ");
            err(e.span(), msg)
        })?;
        let raw_defaults = &raw.defaults;
        let default_password = match &raw.defaults.password {
            Some(p) => Some(
                p.get_ref()
                    .parse::<SecretRef>()
                    .map_err(|e| err(Some(p.span()), format!("defaults.password: {e}")))?,
            ),
            None => None,
        };
        // Relative CA paths are the config file's neighbours, made absolute because a move
        // hands the path to another server (and `./atoll.toml` has an empty parent).
        let base_dir = match &source {
            ConfigSource::File(p) => p.parent().map(|d| {
                let d = if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                };
                std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf())
            }),
            _ => None,
        };
        let tls_defaults = (
            raw_defaults.sslmode.as_ref().map(|m| m.get_ref().as_str()),
            raw_defaults.sslrootcert.as_deref(),
        );
        // The defaults are checked on their own line, even when every node overrides them.
        if let Some(m) = &raw_defaults.sslmode {
            TlsConfig::resolve(None, None, tls_defaults, None)
                .map_err(|e| err(Some(m.span()), format!("defaults.{e}")))?;
        }
        let env_digit = match &raw.cluster.env_digit {
            Some(d) => {
                let v = *d.get_ref();
                if !(crate::ENV_DIGIT_MIN as i64..=crate::ENV_DIGIT_MAX as i64).contains(&v) {
                    return Err(err(
                        Some(d.span()),
                        format!(
                            "cluster.env_digit = {v} is out of range {}..={}",
                            crate::ENV_DIGIT_MIN,
                            crate::ENV_DIGIT_MAX
                        ),
                    ));
                }
                v as u8
            }
            None => 1,
        };
        let connect_timeout = match &raw.cluster.connect_timeout_ms {
            Some(t) => {
                let v = *t.get_ref();
                let ms = u64::try_from(v)
                    .ok()
                    .filter(|ms| (1..=MAX_CONNECT_TIMEOUT_MS).contains(ms))
                    .ok_or_else(|| {
                        err(
                            Some(t.span()),
                            format!("cluster.connect_timeout_ms = {v} is out of range 1..={MAX_CONNECT_TIMEOUT_MS}"),
                        )
                    })?;
                Duration::from_millis(ms)
            }
            None => Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
        };
        if raw.island.is_empty() {
            return Err(err(None, "no [[island]] is configured".into()));
        }
        let mut islands: Vec<IslandConfig> = Vec::new();
        let mut island_lines: HashMap<u16, usize> = HashMap::new();
        let mut node_lines: HashMap<String, usize> = HashMap::new();
        for island in &raw.island {
            let id_span = island.get_ref().id.span();
            let id = *island.get_ref().id.get_ref();
            let id = u16::try_from(id)
                .ok()
                .filter(|id| *id <= 9999)
                .ok_or_else(|| {
                    err(
                        Some(id_span.clone()),
                        format!("island.id = {id} is out of range 0..=9999"),
                    )
                })?;
            let line = line_of(text, id_span.start);
            if let Some(first) = island_lines.insert(id, line) {
                return Err(err(
                    Some(id_span),
                    format!("island {id} is configured twice (first at line {first})"),
                ));
            }
            let raw_nodes = &island.get_ref().nodes;
            if raw_nodes.is_empty() {
                return Err(err(
                    Some(island.span()),
                    format!("island {id} has no nodes"),
                ));
            }
            let mut nodes = Vec::new();
            for n in raw_nodes {
                let span = n.span();
                let here = |msg: String| err(Some(span.clone()), format!("island {id}: {msg}"));
                let raw = n.get_ref();
                check_host(&raw.host).map_err(&here)?;
                let port = u16::try_from(raw.port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| here(format!("port {} is out of range 1..=65535", raw.port)))?;
                let password = match &raw.password {
                    Some(p) => Some(
                        p.parse::<SecretRef>()
                            .map_err(|e| here(format!("password: {e}")))?,
                    ),
                    None => default_password.clone(),
                };
                let tls = TlsConfig::resolve(
                    raw.sslmode.as_deref(),
                    raw.sslrootcert.as_deref(),
                    tls_defaults,
                    base_dir.as_deref(),
                )
                .map_err(|e| here(format!("node {}:{port}: {e}", raw.host)))?;
                let node = NodeConfig {
                    host: raw.host.clone(),
                    port,
                    user: pick(&raw.user, &raw_defaults.user, DEFAULT_USER),
                    database: pick(&raw.database, &raw_defaults.database, DEFAULT_DATABASE),
                    password,
                    tls,
                };
                let line = line_of(text, span.start);
                if let Some(first) = node_lines.insert(node.addr(), line) {
                    return Err(here(format!(
                        "node {} is configured twice (first at line {first})",
                        node.addr()
                    )));
                }
                nodes.push(node);
            }
            islands.push(IslandConfig {
                id: IslandId(id),
                nodes,
            });
        }
        islands.sort_by_key(|i| i.id);
        let name = raw.cluster.name.unwrap_or_else(|| "atoll".to_string());
        let ha = match raw.ha {
            Some(h) => {
                let span = h.span();
                Some(
                    h.into_inner()
                        .validate(&name)
                        .map_err(|m| err(Some(span), m))?,
                )
            }
            None => None,
        };
        let endpoints = match raw.endpoints {
            Some(e) => {
                let span = e.span();
                let keychain = e.into_inner().keychain;
                if keychain.trim().is_empty() {
                    return Err(err(
                        Some(span),
                        "[endpoints] keychain: the path is empty".into(),
                    ));
                }
                let keychain = PathBuf::from(keychain);
                let keychain = match &source {
                    ConfigSource::File(p) if keychain.is_relative() => {
                        p.parent().map_or(keychain.clone(), |d| d.join(&keychain))
                    }
                    _ => keychain,
                };
                Some(EndpointsConfig { keychain })
            }
            None => None,
        };
        let global = match raw.global {
            Some(g) => {
                let span = g.span();
                g.into_inner().validate().map_err(|m| err(Some(span), m))?
            }
            None => GlobalConfig::default(),
        };
        let proxy = match raw.proxy {
            Some(p) => {
                let span = p.span();
                let base = match &source {
                    ConfigSource::File(f) => f.parent(),
                    _ => None,
                };
                p.into_inner()
                    .validate(base)
                    .map_err(|m| err(Some(span), m))?
            }
            None => Default::default(),
        };
        Ok(Config {
            proxy,
            source,
            name,
            ha,
            endpoints,
            global,
            env_digit,
            connect_timeout,
            islands,
        })
    }
}

fn pick(own: &Option<String>, default: &Option<String>, fallback: &str) -> String {
    own.as_ref()
        .or(default.as_ref())
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| fallback.to_string())
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// A host is a name or an IP address; anything that would need quoting in a DSN is refused.
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
    if ok {
        Ok(())
    } else {
        Err(format!("host {host:?} is not a valid host name or address"))
    }
}
