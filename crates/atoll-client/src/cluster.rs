//! [`Cluster`]: the application's handle on an atoll cluster. It holds the current routing
//! state (config, discovery snapshot, pools) in an `ArcSwap`, so every query reads it with
//! one atomic load, and a background task replaces it whole (see [`crate::refresh`]).

use crate::error::ClientError;
use crate::options::ClusterOptions;
use crate::pools::{self, Pools};
use crate::refresh;
use crate::shard::Shard;
use arc_swap::ArcSwap;
use atoll_core::{Config, Id, IdGenError, IdGenerator, Lsn, ShardNo, Snapshot};
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// One consistent view: the config, what discovery saw, and the pools for the config's nodes.
pub(crate) struct State {
    pub config: Arc<Config>,
    pub snapshot: Arc<Snapshot>,
    pub pools: Arc<Pools>,
    /// Active shards other than shard 0, for `random_shard` and scatter-gather.
    pub active: Vec<ShardNo>,
}

impl State {
    pub(crate) fn new(config: Arc<Config>, snapshot: Arc<Snapshot>, pools: Arc<Pools>) -> State {
        let active = snapshot
            .active_shards()
            .map(|(s, _)| s)
            .filter(|s| *s != ShardNo::GLOBAL)
            .collect();
        State {
            config,
            snapshot,
            pools,
            active,
        }
    }
}

/// What the cluster handle and the background task share. The task holds only this, so
/// dropping the last [`Cluster`] handle can stop it.
pub(crate) struct Shared {
    pub state: ArcSwap<State>,
    pub options: ClusterOptions,
    /// Wakes the background task for an immediate round.
    pub wake: Notify,
    /// Bumped after every round, for callers waiting for a fresher snapshot.
    pub generation: watch::Sender<u64>,
    /// Replay positions seen by direct checks on replicas (newer than the snapshot's).
    pub replayed: Mutex<HashMap<String, Lsn>>,
    pub ids: Option<IdGenerator>,
}

impl Shared {
    pub(crate) fn install(&self, state: State) {
        self.state.store(Arc::new(state));
        self.generation.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Asks for a discovery round and waits (at most `limit`) until one has finished.
    pub(crate) async fn refresh_and_wait(&self, limit: Duration) {
        let mut rx = self.generation.subscribe();
        rx.mark_unchanged();
        self.wake.notify_one();
        let _ = tokio::time::timeout(limit, rx.changed()).await;
    }

    pub(crate) fn replayed(&self, addr: &str) -> Option<Lsn> {
        self.replayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(addr)
            .copied()
    }

    pub(crate) fn note_replayed(&self, addr: &str, lsn: Lsn) {
        let mut map = self.replayed.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(addr.to_string()).or_insert(lsn);
        *e = (*e).max(lsn);
    }
}

struct Inner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A cluster: cheap to clone (one `Arc`); the background refresh stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Loads the configuration the way the CLI does (`explicit` path, `ATOLL_CONFIG`,
    /// `./atoll.toml`, `ATOLL_ISLANDS`) and connects.
    pub async fn load(
        explicit: Option<&Path>,
        options: ClusterOptions,
    ) -> Result<Cluster, ClientError> {
        Cluster::connect(Config::load(explicit)?, options).await
    }

    /// Runs a first discovery round, then keeps the snapshot fresh in the background.
    /// Must be called inside a tokio runtime. A config loaded from a file is watched.
    pub async fn connect(config: Config, options: ClusterOptions) -> Result<Cluster, ClientError> {
        let ids = match options.id_node {
            Some(n) => Some(IdGenerator::new(config.env_digit, n)?),
            None => None,
        };
        let watch = refresh::Watch::new(&config);
        let disc = refresh::discoverer(&config, options.node_timeout);
        let snapshot = disc.discover().await;
        let pools = pools::build(&config, &options, None);
        let state = State::new(Arc::new(config), Arc::new(snapshot), pools);
        let (generation, _) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            state: ArcSwap::from_pointee(state),
            options,
            wake: Notify::new(),
            generation,
            replayed: Mutex::new(HashMap::new()),
            ids,
        });
        let task = tokio::spawn(refresh::run(shared.clone(), disc, watch));
        Ok(Cluster {
            inner: Arc::new(Inner { shared, task }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.inner.shared.options
    }

    /// The current discovery snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.shared.state.load().snapshot.clone()
    }

    /// The configuration in force (changes when the config file is edited).
    pub fn config(&self) -> Arc<Config> {
        self.inner.shared.state.load().config.clone()
    }

    /// Runs a discovery round now and waits for it (bounded by twice the node timeout).
    pub async fn refresh(&self) {
        let limit = self.options().node_timeout * 2 + self.options().min_refresh_interval;
        self.inner.shared.refresh_and_wait(limit).await;
    }

    /// The shard an ID lives in. O(1): no lookup; a malformed ID is an error.
    #[inline]
    pub fn shard_for_id(&self, id: i64) -> Result<Shard, ClientError> {
        Ok(self.shard(Id::parse(id)?.shard()))
    }

    /// A handle on one shard (whether it is active is checked when a query runs).
    #[inline]
    pub fn shard(&self, no: ShardNo) -> Shard {
        Shard::new(self.clone(), no)
    }

    /// Shard 0, the global microshard.
    pub fn global(&self) -> Shard {
        self.shard(ShardNo::GLOBAL)
    }

    /// A random active shard other than shard 0, for placing a new object.
    pub fn random_shard(&self) -> Result<Shard, ClientError> {
        let state = self.inner.shared.state.load();
        let no = state
            .active
            .choose(&mut rand::thread_rng())
            .copied()
            .ok_or(ClientError::NoActiveShards)?;
        Ok(self.shard(no))
    }

    /// Every active shard other than shard 0, in shard order.
    pub fn shards(&self) -> Vec<Shard> {
        let state = self.inner.shared.state.load();
        state.active.iter().map(|s| self.shard(*s)).collect()
    }

    pub(crate) fn active_shard_numbers(&self) -> Vec<ShardNo> {
        self.inner.shared.state.load().active.clone()
    }

    /// A new app-side ID in `shard` (no round trip; see [`atoll_core::IdGenerator`]). When a
    /// burst has used up the allowed lead over the clock, waits for the clock (at most 2 s).
    pub async fn new_id(&self, shard: ShardNo) -> Result<Id, ClientError> {
        let mut waited = 0u64;
        loop {
            match self.try_new_id_inner(shard)? {
                Err(IdGenError::Ahead { retry_in_ms, .. }) if waited + retry_in_ms <= 2000 => {
                    waited += retry_in_ms;
                    tokio::time::sleep(Duration::from_millis(retry_in_ms)).await;
                }
                other => return Ok(other?),
            }
        }
    }

    /// A new app-side ID in `shard` without waiting: [`atoll_core::IdGenError::Ahead`] when a
    /// burst has used up the lead over the clock.
    #[inline]
    pub fn try_new_id(&self, shard: ShardNo) -> Result<Id, ClientError> {
        Ok(self.try_new_id_inner(shard)??)
    }

    #[inline]
    fn try_new_id_inner(&self, shard: ShardNo) -> Result<Result<Id, IdGenError>, ClientError> {
        let gen = self
            .inner
            .shared
            .ids
            .as_ref()
            .ok_or(ClientError::NoIdNode)?;
        Ok(gen.next_at(shard, crate::clock::coarse_now_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::ConfigSource;

    /// A cluster whose only node refuses connections (port 1): no database needed.
    async fn unreachable() -> Cluster {
        let config = Config::parse(
            "[cluster]\nname = \"t\"\n[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 1, user = \"u\", database = \"d\" }]\n",
            ConfigSource::Inline,
        )
        .unwrap();
        let options = ClusterOptions {
            id_node: Some(3),
            ..Default::default()
        };
        Cluster::connect(config, options).await.unwrap()
    }

    #[tokio::test]
    async fn dropping_the_last_handle_stops_the_background_task() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let cluster = unreachable().await;
        let clone = cluster.clone();
        assert_eq!(metrics.num_alive_tasks(), before + 1);
        drop(cluster);
        tokio::task::yield_now().await;
        assert_eq!(
            metrics.num_alive_tasks(),
            before + 1,
            "a clone still holds it"
        );
        drop(clone);
        for _ in 0..100 {
            if metrics.num_alive_tasks() == before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("background task still alive after the last handle was dropped");
    }

    #[tokio::test]
    async fn routing_by_id_needs_no_node() {
        let cluster = unreachable().await;
        let id = Id::new(1, ShardNo::new(42).unwrap(), 5).unwrap();
        assert_eq!(cluster.shard_for_id(id.get()).unwrap().no().get(), 42);
        assert!(matches!(cluster.shard_for_id(7), Err(ClientError::Id(_))));
        assert!(matches!(
            cluster.random_shard(),
            Err(ClientError::NoActiveShards)
        ));
        assert!(cluster.shards().is_empty());
        let app = cluster.new_id(ShardNo::new(9).unwrap()).await.unwrap();
        assert_eq!(app.shard().get(), 9);
        assert_eq!(IdGenerator::parts(app).unwrap().node, 3);
        // The snapshot says why nothing is routable.
        assert!(cluster.snapshot().islands[0].nodes[0].error.is_some());
    }
}
