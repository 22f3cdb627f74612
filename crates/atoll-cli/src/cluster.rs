//! The one way a command gets at the cluster: load the config, discover it once, and
//! refuse (naming the first problem) when the command cannot work on what was found.

use crate::exit::Failure;
use crate::Context;
use atoll_core::{Config, Snapshot, SnapshotProblem};
use atoll_pg::{Discoverer, DiscoveryOptions};

/// What a command needs of the cluster before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Whatever is there, shard sizes included (`status` reports the problems itself).
    Snapshot,
    /// A reachable master on every island (`init`, `cleanup`).
    Masters,
    /// Every master reachable and the catalog installed (`allocate`, `move`, `rebalance`).
    Catalog,
    /// The catalog installed, some islands possibly down (`shard activate`: switching a
    /// shard on one island must work while another island is out).
    Registry,
    /// Every master reachable, no sizes (migration runs and `schema diff` only talk to
    /// masters, and sizes cost a query per shard).
    Run,
}

impl Need {
    fn masters(self) -> bool {
        matches!(self, Need::Masters | Need::Catalog | Need::Run)
    }
    fn catalog(self) -> bool {
        matches!(self, Need::Catalog | Need::Registry)
    }
    fn sizes(self) -> bool {
        self != Need::Run
    }
}

/// The config and one discovery round of it.
pub struct Cluster {
    pub config: Config,
    pub snapshot: Snapshot,
}

impl Context {
    /// Loads the config (`--config`, `$ATOLL_CONFIG`, ./atoll.toml, `$ATOLL_ISLANDS`),
    /// discovers the cluster and checks it against `need`.
    pub async fn cluster(&self, need: Need) -> Result<Cluster, Failure> {
        let config = atoll_core::Config::load(self.config.as_deref()).map_err(Failure::input)?;
        // `[endpoints]`: the islands and credentials come from the endpoint records.
        let config = atoll_pg::endpoints::resolve(&config).await.map_err(|e| {
            let msg = format!("endpoints: {e}");
            if e.is_refusal() {
                Failure::input(msg)
            } else {
                Failure::failed(msg)
            }
        })?;
        Cluster::discover(config, need).await
    }
}

impl Cluster {
    /// Discovers the cluster of `config` and checks it against `need`.
    pub async fn discover(config: Config, need: Need) -> Result<Cluster, Failure> {
        let options = DiscoveryOptions {
            sizes: need.sizes(),
            ..DiscoveryOptions::default()
        };
        let snapshot = Discoverer::new(config.clone(), options).discover().await;
        if need.masters() {
            require_masters(&snapshot)?;
        }
        if need.catalog() {
            require_catalog(&snapshot)?;
        }
        Ok(Cluster { config, snapshot })
    }

    /// Discovers again (sizes included), after a command changed the cluster.
    pub async fn rediscover(&mut self) {
        self.snapshot = Discoverer::new(self.config.clone(), DiscoveryOptions::default())
            .discover()
            .await;
    }
}

/// A refusal that names the first problem of an island without a reachable master.
fn require_masters(s: &Snapshot) -> Result<(), Failure> {
    for island in &s.islands {
        if island.master().is_none() {
            let prefix = format!("island {} ", island.id);
            // Why a node is down (a refused certificate, a wrong password) says more than
            // that the island has no master, so it comes first.
            let why = s
                .problems
                .iter()
                .filter(|p| p.to_string().starts_with(&prefix))
                .min_by_key(|p| !matches!(p, SnapshotProblem::NodeDown { .. }))
                .map(|p| p.to_string())
                .unwrap_or_else(|| format!("island {} has no reachable master", island.id));
            return Err(Failure::failed(why));
        }
    }
    Ok(())
}

/// Bad input (exit 2) while `atoll init` has not installed the catalog everywhere.
fn require_catalog(s: &Snapshot) -> Result<(), Failure> {
    match s
        .problems
        .iter()
        .find(|p| matches!(p, SnapshotProblem::NotInitialized { .. }))
    {
        Some(p) => Err(Failure::input(p)),
        None => Ok(()),
    }
}
