//! # atoll-sandbox
//!
//! Real local PostgreSQL islands for development and tests: an island is one master
//! plus N streaming replicas, each node a PostgreSQL server started from the local
//! binaries (`initdb`, `pg_ctl`, `pg_basebackup`) and listening on 127.0.0.1 only.
//! [`Sandbox::up`] creates or restarts a sandbox in a directory and writes an
//! `atoll.toml` for it; [`TestSandbox`] gives each test its own throw-away sandbox.
//!
//! The servers trust every loopback connection and run with `fsync=off`,
//! `synchronous_commit=off` and `full_page_writes=off`: **speed over durability**, a crash
//! of the machine may corrupt a sandbox. Never point it at data you care about.
//!
//! When run as root the servers run as the `postgres` system user (PostgreSQL refuses
//! root), via `runuser`.
//!
//! Dependencies: plain `std::process` + `nix` for processes and signals. This crate must
//! not depend on tokio-postgres or atoll-pg (those crates test *against* the sandbox).

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod binaries;
mod create;
mod error;
mod etcd;
mod node;
mod ports;
mod spec;
mod state;
mod test_sandbox;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use tracing::{info, warn};

pub use binaries::{find_pg_bin, PG_BIN_ENV};
pub use error::SandboxError;
pub use etcd::{SandboxHa, ETCD_BIN_ENV};
pub use spec::{node_port, SandboxSpec, DEFAULT_BASE_PORT, MAX_REPLICAS, PORTS_PER_ISLAND};
pub use state::{Role, CONFIG_FILE, HOST, STATE_FILE};
pub use test_sandbox::TestSandbox;
pub use tls::{write_self_signed_ca, CA_FILE, TLS_DIR};

use create::{create_island, island_dir, remove_quietly, undo_nodes};
use node::Runner;
use state::{HaState, NodeState, State, STATE_FORMAT};

/// A sandbox on disk: its directory and its persisted state (sandbox.json).
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    /// Cache of sandbox.json; re-read before every change (another handle may have changed it).
    state: Mutex<State>,
}

/// One island as the sandbox created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxIsland {
    /// The island's id, as written to `atoll.toml`.
    pub id: u16,
    /// Master (at creation) first.
    pub nodes: Vec<SandboxNode>,
}

/// One node: where it listens and where its data lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxNode {
    /// The node's index within its island: 0 is the master at creation, 1.. the replicas.
    pub index: usize,
    /// Address the node listens on: always `127.0.0.1`.
    pub host: String,
    /// TCP port of the node.
    pub port: u16,
    /// The node's PostgreSQL data directory (absolute).
    pub data_dir: PathBuf,
    /// The node's server log file (absolute).
    pub log_file: PathBuf,
    /// Role at creation; failover tests may have changed the live role since.
    pub role: Role,
}

/// What is running, for `atoll sandbox status`.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxStatus {
    /// The sandbox directory (canonical).
    pub dir: PathBuf,
    /// The generated `atoll.toml` in it.
    pub config_path: PathBuf,
    /// Directory holding the PostgreSQL binaries the sandbox uses.
    pub pg_bin: PathBuf,
    /// Every node, by island then index.
    pub nodes: Vec<NodeStatus>,
}

/// One node's status, for `atoll sandbox status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's island id.
    pub island: u16,
    /// The node's index within its island: 0 is the master at creation.
    pub index: usize,
    /// Role at creation.
    pub role: Role,
    /// Address the node listens on: always `127.0.0.1`.
    pub host: String,
    /// TCP port of the node.
    pub port: u16,
    /// The node's PostgreSQL data directory (absolute).
    pub data_dir: PathBuf,
    /// The node's server log file (absolute).
    pub log_file: PathBuf,
    /// The postmaster's pid, checked to be alive; `None` when the node is not running.
    pub pid: Option<i32>,
    /// Whether the node's server is running (`pid` is `Some`).
    pub running: bool,
}

impl SandboxStatus {
    /// True when every node is running.
    pub fn all_running(&self) -> bool {
        self.nodes.iter().all(|n| n.running)
    }
    /// True when no node is running.
    pub fn none_running(&self) -> bool {
        self.nodes.iter().all(|n| !n.running)
    }
}

impl Sandbox {
    /// True if `dir` holds a sandbox (a sandbox.json).
    pub fn exists(dir: &Path) -> bool {
        dir.join(STATE_FILE).is_file()
    }

    /// Creates the sandbox if `dir` holds none, else starts whatever of it is stopped
    /// (same data); a running sandbox is left as it is. A spec that disagrees with an
    /// existing sandbox is an error (islands may equal the count at creation or now).
    pub fn up(spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        spec.validate()?;
        if Self::exists(&spec.dir) {
            let sandbox = Self::open(&spec.dir)?;
            sandbox.check_spec(spec)?;
            sandbox.start_all()?;
            Ok(sandbox)
        } else {
            Self::create(spec)
        }
    }

    /// Opens an existing sandbox; error if `dir` holds none.
    pub fn open(dir: &Path) -> Result<Sandbox, SandboxError> {
        let dir = std::fs::canonicalize(dir).map_err(|_| SandboxError::NotASandbox {
            dir: dir.to_path_buf(),
        })?;
        let state = State::load(&dir)?;
        Ok(Sandbox {
            dir,
            state: Mutex::new(state),
        })
    }

    /// The sandbox directory (canonical).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/atoll.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// Per node: where it is and whether it runs (pids are verified, not trusted).
    pub fn status(&self) -> SandboxStatus {
        let state = self.fresh_state();
        let nodes = sorted_nodes(&state)
            .into_iter()
            .map(|n| {
                let pid = node::running_pid(n);
                NodeStatus {
                    island: n.island,
                    index: n.index,
                    role: n.role,
                    host: HOST.to_string(),
                    port: n.port,
                    data_dir: n.data_dir.clone(),
                    log_file: n.log_file.clone(),
                    pid,
                    running: pid.is_some(),
                }
            })
            .collect();
        SandboxStatus {
            dir: self.dir.clone(),
            config_path: self.config_path(),
            pg_bin: state.pg_bin.clone(),
            nodes,
        }
    }

    /// Islands in id order, masters first.
    pub fn islands(&self) -> Vec<SandboxIsland> {
        let state = self.fresh_state();
        state
            .island_ids()
            .into_iter()
            .map(|id| SandboxIsland {
                id,
                nodes: state
                    .island_nodes(id)
                    .into_iter()
                    .map(|n| SandboxNode {
                        index: n.index,
                        host: HOST.to_string(),
                        port: n.port,
                        data_dir: n.data_dir.clone(),
                        log_file: n.log_file.clone(),
                        role: n.role,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Directory holding the PostgreSQL binaries this sandbox uses (psql is there too).
    pub fn pg_bin(&self) -> PathBuf {
        self.lock().pg_bin.clone()
    }

    /// Runs SQL with `psql` on the node listening on `port` and returns its unaligned,
    /// tuples-only output, trimmed. For tests and for looking around; stops at the first
    /// error (`ON_ERROR_STOP`).
    pub fn psql(&self, port: u16, sql: &str) -> Result<String, SandboxError> {
        let psql = self.pg_bin().join("psql");
        let out = std::process::Command::new(&psql)
            .args([
                "-h",
                HOST,
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .current_dir("/")
            .output()
            .map_err(|e| SandboxError::Io {
                what: "cannot run".into(),
                path: psql.clone(),
                source: e,
            })?;
        if !out.status.success() {
            return Err(SandboxError::Command {
                command: format!("psql -p {port}"),
                status: out.status.to_string(),
                output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Starts the sandbox's etcd (once: later calls keep its ports) and writes `[ha]`
    /// with `settings` into atoll.toml. Returns etcd's client endpoint.
    pub fn enable_ha(&self, settings: SandboxHa) -> Result<String, SandboxError> {
        let mut state = self.reload()?;
        let mut ha = match state.ha.take() {
            Some(h) => h,
            None => {
                let (client_port, peer_port) = etcd::pick_ports()?;
                HaState {
                    client_port,
                    peer_port,
                    pid: None,
                    ttl_s: 0,
                    loop_ms: None,
                    synchronous: false,
                }
            }
        };
        ha.ttl_s = settings.ttl_s;
        ha.loop_ms = settings.loop_ms;
        ha.synchronous = settings.synchronous;
        // pg_rewind (an old master rejoining after a failover) needs full-page writes,
        // which the sandbox otherwise turns off for speed.
        for n in &state.nodes {
            if node::running_pid(n).is_some() {
                self.psql(n.port, "alter system set full_page_writes = on")?;
                self.psql(n.port, "select pg_reload_conf()")?;
            }
        }
        let started = etcd::start(&self.dir, &ha);
        ha.pid = started.as_ref().ok().copied();
        let endpoint = format!("http://{HOST}:{}", ha.client_port);
        state.ha = Some(ha);
        self.store(state)?;
        started?;
        self.reload()?.write_config(&self.dir)?;
        Ok(endpoint)
    }

    /// Stops the sandbox's etcd, if it has one (failover tests).
    pub fn stop_etcd(&self) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        if let Some(ha) = state.ha.as_mut() {
            if let Some(pid) = ha.pid.take() {
                etcd::stop(&self.dir, pid);
            }
        }
        self.store(state)
    }

    /// Starts the sandbox's etcd again after [`Sandbox::stop_etcd`].
    pub fn start_etcd(&self) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        if let Some(ha) = state.ha.as_mut() {
            ha.pid = Some(etcd::start(&self.dir, ha)?);
        }
        self.store(state)
    }

    /// Stops every node, replicas first, then masters, then etcd. Keeps going past a
    /// failure and returns the first error.
    pub fn down(&self) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        if let Some(ha) = state.ha.as_mut() {
            if let Some(pid) = ha.pid.take() {
                etcd::stop(&self.dir, pid);
            }
        }
        let order: Vec<(u16, usize)> = stop_order(&state);
        let mut first_err = None;
        for (island, index) in order {
            if let Some(n) = state.node_mut(island, index) {
                match node::running_pid(n).map(|pid| node::stop(n, pid)) {
                    Some(Err(e)) => {
                        warn!(island, node = index, error = %e, "stop failed");
                        first_err.get_or_insert(e);
                    }
                    _ => n.pid = None,
                }
            }
        }
        self.store(state)?;
        first_err.map_or(Ok(()), Err)
    }

    /// Stops the sandbox if running and removes its directory. A directory that does not
    /// exist is fine; one without a sandbox.json is refused (never remove foreign data).
    pub fn destroy(dir: &Path) -> Result<(), SandboxError> {
        if !dir.exists() {
            return Ok(());
        }
        let sandbox = Self::open(dir)?;
        sandbox.down()?;
        std::fs::remove_dir_all(&sandbox.dir)
            .map_err(|e| SandboxError::io("cannot remove", &sandbox.dir, e))?;
        info!(dir = %sandbox.dir.display(), "sandbox destroyed");
        Ok(())
    }

    /// Stops one node (for failover tests).
    pub fn stop_node(&self, island: u16, index: usize) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        let n = self.find_mut(&mut state, island, index)?;
        if let Some(pid) = node::running_pid(n) {
            node::stop(n, pid)?;
        }
        n.pid = None;
        self.store(state)
    }

    /// Starts one node if it is stopped.
    pub fn start_node(&self, island: u16, index: usize) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        let runner = Runner::new(state.pg_bin.clone())?;
        let n = self.find_mut(&mut state, island, index)?;
        n.pid = Some(match node::running_pid(n) {
            Some(pid) => pid,
            None => runner.start(n)?,
        });
        self.store(state)
    }

    /// `pg_ctl promote -w` on a node (a replica becomes a master).
    pub fn promote_node(&self, island: u16, index: usize) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        let runner = Runner::new(state.pg_bin.clone())?;
        let n = self.find_mut(&mut state, island, index)?;
        runner.promote(n)
    }

    /// Adds one island (id = max + 1) with `replicas` replicas on the sandbox's port
    /// layout and rewrites atoll.toml. Returns the new island id.
    pub fn add_island(&self, replicas: u16) -> Result<u16, SandboxError> {
        spec::validate_replicas(replicas)?;
        let mut state = self.reload()?;
        let id = state.island_ids().last().map_or(Ok(0), |max| {
            max.checked_add(1)
                .ok_or_else(|| SandboxError::InvalidSpec("no island id left".into()))
        })?;
        for (index, port) in spec::island_ports(state.base_port, id, replicas)? {
            if !ports::port_is_free(port) {
                return Err(SandboxError::PortInUse {
                    port,
                    island: id,
                    node: index,
                });
            }
        }
        let runner = Runner::new(state.pg_bin.clone())?;
        let before = state.nodes.len();
        if let Err(e) = create_island(&runner, &self.dir, &mut state, id, replicas) {
            let created = state.nodes.split_off(before);
            undo_nodes(&created);
            remove_quietly(&island_dir(&self.dir, id));
            return Err(e);
        }
        self.store(state.clone())?;
        state.write_config(&self.dir)?;
        info!(island = id, replicas, "island added");
        Ok(id)
    }

    // ---- internals ----

    /// Starts what is stopped: masters first, then replicas. Pids are saved after each.
    fn start_all(&self) -> Result<(), SandboxError> {
        let mut state = self.reload()?;
        if let Some(ha) = state.ha.as_mut() {
            ha.pid = Some(etcd::start(&self.dir, ha)?);
        }
        let runner = Runner::new(state.pg_bin.clone())?;
        let mut order = stop_order(&state);
        order.reverse();
        let mut result = Ok(());
        for (island, index) in order {
            let Some(n) = state.node_mut(island, index) else {
                continue;
            };
            match node::running_pid(n) {
                Some(pid) => n.pid = Some(pid),
                None => match runner.start(n) {
                    Ok(pid) => n.pid = Some(pid),
                    Err(e) => {
                        n.pid = None;
                        result = Err(e);
                        break;
                    }
                },
            }
        }
        self.store(state)?;
        result
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot corrupt the cache: it is re-read from disk anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// State from disk (another handle may have changed it), also refreshing the cache.
    fn reload(&self) -> Result<State, SandboxError> {
        let state = State::load(&self.dir)?;
        *self.lock() = state.clone();
        Ok(state)
    }

    /// Like reload, but falls back to the cache (for infallible readers).
    fn fresh_state(&self) -> State {
        self.reload().unwrap_or_else(|_| self.lock().clone())
    }

    fn store(&self, state: State) -> Result<(), SandboxError> {
        state.save(&self.dir)?;
        *self.lock() = state;
        Ok(())
    }

    fn find_mut<'a>(
        &self,
        state: &'a mut State,
        island: u16,
        index: usize,
    ) -> Result<&'a mut NodeState, SandboxError> {
        state
            .node_mut(island, index)
            .ok_or_else(|| SandboxError::NoSuchNode {
                dir: self.dir.clone(),
                island,
                node: index,
            })
    }
}

/// Nodes by island then index.
fn sorted_nodes(state: &State) -> Vec<&NodeState> {
    let mut nodes: Vec<&NodeState> = state.nodes.iter().collect();
    nodes.sort_by_key(|n| (n.island, n.index));
    nodes
}

/// Replicas (by creation role) first, then masters: the order for stopping.
fn stop_order(state: &State) -> Vec<(u16, usize)> {
    let mut nodes = sorted_nodes(state);
    nodes.sort_by_key(|n| std::cmp::Reverse(n.role));
    nodes.into_iter().map(|n| (n.island, n.index)).collect()
}
