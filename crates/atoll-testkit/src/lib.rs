//! Test support for atoll's own integration tests and benchmarks: a [`TestCluster`] — a
//! throw-away sandbox of real PostgreSQL islands on random loopback ports, its loaded
//! [`Config`], the `atoll` catalog installed and, when asked, shards allocated and active —
//! ready in one call, plus the helpers every suite needs around it (discovery, master
//! connections, polling, a retrying writer, running the built `atoll` binary).
//!
//! This crate is a **dev-dependency only**: library code must never depend on it (it
//! starts servers, panics on failed assertions and is not published).
//!
//! Cleanup is [`TestSandbox`]'s: when the last handle of a cluster drops — also when a test
//! panics or its setup fails half-way — every server the sandbox started is stopped (by
//! pid) and its directory removed; nothing else on the machine is touched.

pub mod agent;
pub mod cli;
pub mod failover;
pub mod fault_proxy;
pub mod http;
pub mod wait;
pub mod writer;

use anyhow::{Context, Result};
use atoll_core::{allocation, Config, IslandId, ShardNo, Snapshot};
use atoll_pg::{Discoverer, DiscoveryOptions};
pub use atoll_sandbox::{write_self_signed_ca, TestSandbox};
use std::collections::hash_map::{Entry, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

pub use wait::{poll_until, wait_until};

/// Shard `n`; panics on a number outside 0..=9999 (a typo in a test).
pub fn shard(n: i64) -> ShardNo {
    ShardNo::new(n).unwrap_or_else(|e| panic!("shard {n}: {e}"))
}

/// Shards `ns` as [`ShardNo`]s.
pub fn shards(ns: impl IntoIterator<Item = i64>) -> Vec<ShardNo> {
    ns.into_iter().map(shard).collect()
}

/// One discovery round with shard sizes (what `atoll status` and allocation read).
pub async fn discover(config: &Config) -> Snapshot {
    Discoverer::new(config.clone(), DiscoveryOptions::default())
        .discover()
        .await
}

/// A new connection to `island`'s master as `snapshot` found it.
pub async fn master(
    config: &Config,
    snapshot: &Snapshot,
    island: IslandId,
) -> Result<tokio_postgres::Client> {
    let node = atoll_pg::master_node(config, snapshot, island)?;
    atoll_pg::connect(&node)
        .await
        .with_context(|| format!("connect to the master of island {island}"))
}

/// Installs (or upgrades) the catalog on every island master, as `atoll init` does.
pub async fn install_catalog(config: &Config) -> Result<()> {
    let snapshot = discover(config).await;
    atoll_pg::catalog::init(config, &snapshot)
        .await
        .context("install the catalog")?;
    Ok(())
}

/// Allocates `shards` (on `island` when given, else where allocation puts them), active
/// when `active`, as `atoll allocate [--activate]` does.
pub async fn allocate(
    config: &Config,
    shards: &[ShardNo],
    island: Option<IslandId>,
    active: bool,
) -> Result<()> {
    let snapshot = discover(config).await;
    let plan = allocation::plan(&snapshot, shards, island).context("plan the allocation")?;
    atoll_pg::allocate::execute(config, &snapshot, &plan, active)
        .await
        .context("allocate")?;
    Ok(())
}

/// What a [`TestCluster`] is made of; built by [`TestCluster::setup`].
#[derive(Debug, Clone)]
#[must_use = "a Setup does nothing until started"]
pub struct Setup {
    islands: u16,
    replicas: u16,
    catalog: bool,
    shards: Vec<ShardNo>,
    island: Option<IslandId>,
    active: bool,
    tls: bool,
}

impl Setup {
    /// Allocates these shards once the catalog is installed (active unless
    /// [`inactive`](Setup::inactive)).
    pub fn shards(mut self, ns: impl IntoIterator<Item = i64>) -> Setup {
        self.shards = shards(ns);
        self
    }

    /// Puts every allocated shard on `island` instead of where allocation would.
    pub fn on_island(mut self, island: IslandId) -> Setup {
        self.island = Some(island);
        self
    }

    /// Allocates the shards without activating them.
    pub fn inactive(mut self) -> Setup {
        self.active = false;
        self
    }

    /// Leaves the catalog uninstalled (and allocates nothing): a bare sandbox with its
    /// config, for tests of `atoll init` itself.
    pub fn without_catalog(mut self) -> Setup {
        self.catalog = false;
        self
    }

    /// Servers with TLS only, from a self-signed CA; the config says `sslmode = "verify-full"`
    /// with that CA (`atoll sandbox up --tls`).
    pub fn tls(mut self) -> Setup {
        self.tls = true;
        self
    }

    /// Starts the sandbox and brings the cluster to the state asked for.
    pub async fn start(self) -> Result<TestCluster> {
        let (islands, replicas, tls) = (self.islands, self.replicas, self.tls);
        // Creating the servers blocks (initdb, pg_ctl): off the async worker threads.
        let sandbox =
            tokio::task::spawn_blocking(move || TestSandbox::create(islands, replicas, tls))
                .await
                .context("sandbox task")?
                .context("create the test sandbox")?;
        // From here on, an error drops the sandbox, which stops and removes it.
        let cluster = TestCluster::from_sandbox(Arc::new(sandbox))?;
        if self.catalog {
            install_catalog(&cluster.config).await?;
            if !self.shards.is_empty() {
                allocate(&cluster.config, &self.shards, self.island, self.active).await?;
            }
        }
        Ok(cluster)
    }

    /// [`start`](Setup::start) for synchronous tests, on a runtime of its own that ends
    /// before this returns (no connection outlives it).
    pub fn start_blocking(self) -> Result<TestCluster> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?
            .block_on(self.start())
    }
}

/// A sandbox cluster ready for a test: servers up, config loaded, catalog installed (and
/// shards allocated when its [`Setup`] asked). Dropping the last handle stops and removes
/// the sandbox.
#[derive(Debug)]
pub struct TestCluster {
    sandbox: Arc<TestSandbox>,
    config: Config,
}

impl TestCluster {
    /// A cluster of `islands` islands of one master and `replicas` streaming replicas
    /// each; configure it further, then [`start`](Setup::start) it.
    pub fn setup(islands: u16, replicas: u16) -> Setup {
        Setup {
            islands,
            replicas,
            catalog: true,
            shards: Vec::new(),
            island: None,
            active: true,
            tls: false,
        }
    }

    /// A started cluster with the catalog installed and no shards.
    pub async fn new(islands: u16, replicas: u16) -> Result<TestCluster> {
        TestCluster::setup(islands, replicas).start().await
    }

    fn from_sandbox(sandbox: Arc<TestSandbox>) -> Result<TestCluster> {
        let path = sandbox.config_path();
        let config =
            Config::from_file(&path).with_context(|| format!("load {}", path.display()))?;
        Ok(TestCluster { sandbox, config })
    }

    pub fn sandbox(&self) -> &TestSandbox {
        &self.sandbox
    }

    /// Another handle of the sandbox, for work moved to another thread or task (stopping
    /// and promoting nodes); the servers stay up while any handle lives.
    pub fn shared_sandbox(&self) -> Arc<TestSandbox> {
        self.sandbox.clone()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn config_path(&self) -> PathBuf {
        self.sandbox.config_path()
    }

    /// Reads the config file again (after the sandbox gained an island, or a test
    /// rewrote it).
    pub fn reload_config(&mut self) -> Result<()> {
        let path = self.config_path();
        self.config =
            Config::from_file(&path).with_context(|| format!("load {}", path.display()))?;
        Ok(())
    }

    /// Adds an island of a master and `replicas` replicas to the sandbox, reloads the
    /// config and installs the catalog on it.
    pub async fn add_island(&mut self, replicas: u16) -> Result<IslandId> {
        let sandbox = self.sandbox.clone();
        let id = tokio::task::spawn_blocking(move || sandbox.add_island(replicas))
            .await
            .context("sandbox task")?
            .context("add an island")?;
        self.reload_config()?;
        install_catalog(&self.config).await?;
        Ok(IslandId(id))
    }

    /// See [`discover`].
    pub async fn discover(&self) -> Snapshot {
        discover(&self.config).await
    }

    /// A new connection to `island`'s master, as discovered now.
    pub async fn master(&self, island: IslandId) -> Result<tokio_postgres::Client> {
        master(&self.config, &self.discover().await, island).await
    }

    /// See [`allocate`].
    pub async fn allocate(
        &self,
        shards: &[ShardNo],
        island: Option<IslandId>,
        active: bool,
    ) -> Result<()> {
        allocate(&self.config, shards, island, active).await
    }

    /// Runs `sql(schema)` on the master of each of `shards`' active island, one shard after
    /// the other over one connection per island (creating the tests' tables in every shard).
    pub async fn on_each_shard(
        &self,
        shards: &[ShardNo],
        sql: impl Fn(&str) -> String,
    ) -> Result<()> {
        let snapshot = self.discover().await;
        let mut masters = HashMap::new();
        for s in shards {
            let island = snapshot.active_island(*s)?;
            let c = match masters.entry(island) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(master(&self.config, &snapshot, island).await?),
            };
            c.batch_execute(&sql(&s.schema()))
                .await
                .with_context(|| format!("SQL on {s}"))?;
        }
        Ok(())
    }

    /// The ports of every island's first node, in island order.
    pub fn master_ports(&self) -> Vec<u16> {
        self.sandbox
            .islands()
            .iter()
            .filter_map(|i| i.nodes.first().map(|n| n.port))
            .collect()
    }

    /// `sql` through psql on `port` as the superuser; its trimmed output. Panics naming the
    /// SQL when it fails.
    pub fn psql(&self, port: u16, sql: &str) -> String {
        self.sandbox
            .psql(port, sql)
            .unwrap_or_else(|e| panic!("psql {port}: {sql}: {e}"))
    }

    /// A runner of the built `atoll` binary `bin` against this cluster's config.
    pub fn cli(&self, bin: impl Into<PathBuf>) -> cli::Cli {
        cli::Cli::new(bin, self.config_path())
    }
}
