//! `[proxy]` in `atoll.toml`: how `atoll proxy` runs, so a deployment keeps it in the
//! cluster's config rather than in flags (a flag given on the command line wins).
//!
//! ```toml
//! [proxy]
//! listen = "0.0.0.0:6432"
//! users = { app = "env:APP_PW", reports = "file:/run/secrets/reports_pw" }
//! pool_size = 20              # server connections per node
//! pool_mode = "transaction"   # or "session"
//! hold_timeout_ms = 5000      # a moving shard's transactions held at most this long
//! tls_cert = "proxy.crt"      # relative paths: from the config file's directory
//! tls_key = "proxy.key"
//! require_tls = true
//! metrics = "127.0.0.1:9187"
//! user_pool_size = 10
//! max_clients = 1000
//! database = "app"            # the name clients connect to (default: the first node's)
//! replica_max_lag_ms = 1000   # replicas further behind get no replica reads
//! ```

use crate::SecretRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The database name that selects a proxy's admin views; no cluster database is served
/// under it.
pub const ADMIN_DATABASE: &str = "atoll";

/// Whether a proxy can serve the database `name` (not empty, no NUL, not the admin one);
/// the error says why, for the caller to prefix with where the name came from.
pub fn check_database(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('\0') || name == ADMIN_DATABASE {
        return Err(format!(
            "{name:?} cannot be served (\"{ADMIN_DATABASE}\" is the admin database)"
        ));
    }
    Ok(())
}

/// `[proxy]`, validated; every field optional (the CLI's defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: Option<SocketAddr>,
    /// The users clients log in as, with where each one's password is read from.
    pub users: BTreeMap<String, SecretRef>,
    /// Server connections per node.
    pub pool_size: Option<usize>,
    /// `transaction` or `session`.
    pub pool_mode: Option<ProxyPoolMode>,
    /// How long a moving shard's transaction is held at most, in milliseconds.
    pub hold_timeout_ms: Option<u64>,
    /// The certificate chain (PEM) offered to clients.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not use TLS.
    pub require_tls: bool,
    /// Where `/metrics` is served.
    pub metrics: Option<SocketAddr>,
    /// Server connections one user's clients hold at once.
    pub user_pool_size: Option<usize>,
    /// Client connections open at once.
    pub max_clients: Option<usize>,
    /// The database name clients connect to.
    pub database: Option<String>,
    /// Replicas further behind their master than this (in milliseconds) get no replica
    /// reads.
    pub replica_max_lag_ms: Option<u64>,
}

/// How long a proxy's client keeps a server connection (`pool_mode`, `--pool-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyPoolMode {
    /// For one transaction (or one statement outside a transaction): session state is
    /// kept by the proxy (settings) or refused (LISTEN, SQL PREPARE, WITH HOLD cursors,
    /// SET ROLE).
    #[default]
    Transaction,
    /// For the whole session, on the first shard it names: everything a PostgreSQL
    /// session does works; a statement naming another shard is refused.
    Session,
}

impl ProxyPoolMode {
    /// Its name, as `pool_mode` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyPoolMode::Transaction => "transaction",
            ProxyPoolMode::Session => "session",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    listen: Option<String>,
    #[serde(default)]
    users: BTreeMap<String, String>,
    pool_size: Option<i64>,
    pool_mode: Option<ProxyPoolMode>,
    hold_timeout_ms: Option<i64>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    #[serde(default)]
    require_tls: bool,
    metrics: Option<String>,
    user_pool_size: Option<i64>,
    max_clients: Option<i64>,
    database: Option<String>,
    replica_max_lag_ms: Option<i64>,
}

impl RawProxy {
    /// Checked; `base` is the directory relative paths are taken from.
    pub(crate) fn validate(self, base: Option<&Path>) -> Result<ProxyConfig, String> {
        let addr = |key: &str, v: Option<String>| -> Result<Option<SocketAddr>, String> {
            v.map(|s| {
                s.parse()
                    .map_err(|_| format!("[proxy] {key}: {s:?} is not an IP address and port"))
            })
            .transpose()
        };
        let count = |key: &str, v: Option<i64>, max: i64| -> Result<Option<usize>, String> {
            match v {
                Some(n) if !(1..=max).contains(&n) => {
                    Err(format!("[proxy] {key}: {n} is outside 1..={max}"))
                }
                n => Ok(n.map(|n| n as usize)),
            }
        };
        let path = |v: Option<String>| {
            v.map(|p| {
                let p = PathBuf::from(p);
                match base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p,
                }
            })
        };
        let mut users = BTreeMap::new();
        for (name, reference) in self.users {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(format!("[proxy] users: {name:?} is not a user name"));
            }
            let r: SecretRef = reference
                .parse()
                .map_err(|e| format!("[proxy] users.{name}: {e}"))?;
            users.insert(name, r);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("[proxy] tls_cert and tls_key go together".into());
        }
        if self.require_tls && self.tls_cert.is_none() {
            return Err("[proxy] require_tls needs tls_cert and tls_key".into());
        }
        if let Some(d) = &self.database {
            check_database(d).map_err(|e| format!("[proxy] database: {e}"))?;
        }
        Ok(ProxyConfig {
            listen: addr("listen", self.listen)?,
            users,
            pool_size: count("pool_size", self.pool_size, 10_000)?,
            pool_mode: self.pool_mode,
            hold_timeout_ms: count("hold_timeout_ms", self.hold_timeout_ms, 3_600_000)?
                .map(|n| n as u64),
            tls_cert: path(self.tls_cert),
            tls_key: path(self.tls_key),
            require_tls: self.require_tls,
            metrics: addr("metrics", self.metrics)?,
            user_pool_size: count("user_pool_size", self.user_pool_size, 10_000)?,
            max_clients: count("max_clients", self.max_clients, 1_000_000)?,
            database: self.database,
            replica_max_lag_ms: count("replica_max_lag_ms", self.replica_max_lag_ms, 86_400_000)?
                .map(|n| n as u64),
        })
    }
}
