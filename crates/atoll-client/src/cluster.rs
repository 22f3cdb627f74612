//! [`Cluster`]: the application's handle on an atoll cluster. It holds the current routing
//! state (config, discovery snapshot, pools) in an `ArcSwap`, so every query reads it with
//! one atomic load, and a background task replaces it whole (see [`crate::refresh`]).

use crate::clock::{coarse_now_ms, stamp};
use crate::error::ClientError;
use crate::lease::{IdLeaseStatus, LeaseHandle, LeaseSlot};
use crate::notices::{ClientStats, Counters};
use crate::options::{ClusterOptions, IdNode};
use crate::pools::{self, Pools};
use crate::refresh;
use crate::shard::Shard;
use crate::timeline::{Timeline, TimelineError};
use arc_swap::ArcSwap;
use atoll_core::{Config, Id, IdGenError, IdGenerator, Lsn, NoticeLog, ShardNo, Snapshot};
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
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
    /// Refresh tickets handed out: a caller that needs a snapshot taken after now draws
    /// the next one.
    pub requested: AtomicU64,
    /// The highest ticket a finished round covers: a round publishes the tickets drawn
    /// before it *started*, so a round already under way when a caller asked (and maybe
    /// already past the node it needed) does not count for that caller.
    pub published: watch::Sender<u64>,
    /// Replay positions seen by direct checks on replicas since the current snapshot was
    /// installed (then newer than the snapshot's). Cleared at every install: an address can
    /// be rebuilt, or become another island's node, with a different WAL.
    pub replayed: Mutex<HashMap<String, Lsn>>,
    pub ids: IdSource,
    /// The config's environment digit, outside the `ArcSwap` so `shard_for_id` stays a few
    /// ns (updated when a reloaded config changes it).
    pub env_digit: AtomicU8,
    /// Shard notices applied since the discovery rounds that had not seen them; its lock
    /// also serialises every swap of `state` (see [`Shared::apply_notices`]).
    pub notices: Mutex<NoticeLog>,
    /// Bumped at every swap of `state` (a discovery round or a notice), for statements
    /// waiting for a shard to be placed ([`Shared::await_route`]).
    pub changed: watch::Sender<u64>,
    pub counters: Counters,
}

impl Shared {
    pub(crate) fn new(state: State, options: ClusterOptions, ids: IdSource) -> Shared {
        Shared {
            env_digit: AtomicU8::new(state.config.env_digit),
            state: ArcSwap::from_pointee(state),
            options,
            wake: Notify::new(),
            requested: AtomicU64::new(0),
            published: watch::channel(0u64).0,
            replayed: Mutex::new(HashMap::new()),
            ids,
            notices: Mutex::new(NoticeLog::default()),
            changed: watch::channel(0u64).0,
            counters: Counters::default(),
        }
    }

    /// What a discovery round starting now will cover: call just before it reads nodes.
    pub(crate) fn round_start(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    /// Installs a round's result, with the notices it had not seen yet applied again;
    /// `covers` is what [`Shared::round_start`] said at its start.
    pub(crate) fn install(
        &self,
        config: Arc<Config>,
        snapshot: Snapshot,
        pools: Arc<Pools>,
        covers: u64,
    ) {
        self.env_digit.store(config.env_digit, Ordering::Relaxed);
        {
            let mut log = self.notices.lock().unwrap_or_else(|p| p.into_inner());
            let snapshot = log.merge(snapshot);
            self.state
                .store(Arc::new(State::new(config, Arc::new(snapshot), pools)));
        }
        self.changed.send_modify(|n| *n += 1);
        self.counters
            .discovery_rounds
            .fetch_add(1, Ordering::Relaxed);
        self.replayed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.published.send_if_modified(|p| {
            let newer = covers > *p;
            *p = (*p).max(covers);
            newer
        });
    }

    /// Asks for a discovery round that starts after this call and waits (at most `limit`)
    /// until it has been installed. Whether it was.
    pub(crate) async fn refresh_and_wait(&self, limit: Duration) -> bool {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.published.subscribe();
        self.wake.notify_one();
        let published =
            tokio::time::timeout(limit, async { rx.wait_for(|p| *p >= ticket).await.is_ok() })
                .await;
        published == Ok(true)
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

/// Where app-side IDs come from ([`IdNode`]).
pub(crate) enum IdSource {
    None,
    Fixed(IdGenerator),
    Leased(Arc<LeaseSlot>),
}

struct Inner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    /// Dropped with the last handle, which makes the lease task release and stop.
    lease: Option<LeaseHandle>,
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
        // `[endpoints]`: the islands and credentials come from the endpoint records.
        let config = atoll_pg::endpoints::resolve(&config).await?;
        let ids = match &options.id_node {
            IdNode::None => IdSource::None,
            IdNode::Fixed(n) => IdSource::Fixed(IdGenerator::new(config.env_digit, *n)?),
            IdNode::Lease(l) => {
                l.validate().map_err(ClientError::BadLeaseOptions)?;
                IdSource::Leased(Arc::new(LeaseSlot::new(config.env_digit)))
            }
        };
        let watch = refresh::Watch::new(&config);
        let disc = refresh::discoverer(&config, &options);
        let t0 = std::time::Instant::now();
        let snapshot = disc.discover().await;
        let took = t0.elapsed();
        let pools = pools::build(&config, &options, None);
        let state = State::new(Arc::new(config), Arc::new(snapshot), pools);
        let shared = Arc::new(Shared::new(state, options, ids));
        shared
            .counters
            .discovery_rounds
            .fetch_add(1, Ordering::Relaxed);
        shared.counters.record_discovery(took);
        let lease = match (&shared.ids, &shared.options.id_node) {
            (IdSource::Leased(slot), IdNode::Lease(opts)) => {
                Some(LeaseHandle::start(shared.clone(), slot.clone(), opts.clone()).await?)
            }
            _ => None,
        };
        let task = tokio::spawn(refresh::run(shared.clone(), disc, watch));
        Ok(Cluster {
            inner: Arc::new(Inner {
                shared,
                task,
                lease,
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    /// The options this cluster was built with.
    pub fn options(&self) -> &ClusterOptions {
        &self.inner.shared.options
    }

    /// The current discovery snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.shared.state.load().snapshot.clone()
    }

    /// Counters of the background work: discovery rounds, shard notices, listeners.
    pub fn stats(&self) -> ClientStats {
        self.inner.shared.counters.stats()
    }

    /// The configuration in force (changes when the config file is edited).
    pub fn config(&self) -> Arc<Config> {
        self.inner.shared.state.load().config.clone()
    }

    /// Waits (at most `limit`) until the snapshot routes `shard` to an island other than
    /// `away` (`None`: to any island). A shard notice places it at once; a discovery round
    /// is asked for every half second meanwhile, in case a notice was missed. Whether it
    /// was placed. For a proxy holding a moving shard's statements through the cut-over.
    pub async fn await_placement(
        &self,
        shard: ShardNo,
        away: Option<atoll_core::IslandId>,
        limit: std::time::Duration,
    ) -> bool {
        let shared = self.shared();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let step = left.min(std::time::Duration::from_millis(500));
            if shared.await_route(shard, away, step).await {
                return true;
            }
            if step.is_zero() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            shared.wake.notify_one();
        }
    }

    /// Runs a discovery round now and waits for it (bounded by twice the node timeout).
    pub async fn refresh(&self) {
        let limit = self.options().node_timeout * 2 + self.options().min_refresh_interval;
        self.inner.shared.refresh_and_wait(limit).await;
    }

    /// Parses a timeline carried by a request ([`Timeline::serialize`]'s form), its expiries
    /// clamped to now + `timeline_ttl`.
    pub fn parse_timeline(&self, text: &str) -> Result<Timeline, TimelineError> {
        Timeline::parse(text, self.options().timeline_ttl)
    }

    /// The shard an ID lives in. O(1): no lookup; a malformed ID, or one from another
    /// environment (its first digit is not `cluster.env_digit`), is an error.
    #[inline]
    pub fn shard_for_id(&self, id: i64) -> Result<Shard, ClientError> {
        let parsed = Id::parse(id)?;
        let expected = self.inner.shared.env_digit.load(Ordering::Relaxed);
        if parsed.env() != expected {
            // Another environment's shard N is not ours: routing it would read or write
            // the wrong data.
            return Err(ClientError::WrongEnvironment {
                id,
                env: parsed.env(),
                expected,
            });
        }
        Ok(self.shard(parsed.shard()))
    }

    /// A handle on one shard (whether it is active is checked when a query runs).
    #[inline]
    pub fn shard(&self, no: ShardNo) -> Shard {
        Shard::new(self.clone(), no)
    }

    /// Shard 0, the global microshard. Its reads are answered by the read-only copy on
    /// [`ClusterOptions::home_island`] when one is set and the copy is as fresh as asked
    /// (see [`Cluster::global_near`]); writes always go to shard 0's master.
    pub fn global(&self) -> Shard {
        Shard::global_near(self.clone(), self.options().home_island)
    }

    /// Shard 0, its reads answered by the read-only copy of its tables on `island` (made
    /// by `atoll global replicate`) when the copy is ready and as fresh as asked: any copy
    /// for `Freshness::StaleReplica`, one that has applied the caller's last write to
    /// shard 0 for `Freshness::Timeline`; otherwise, and for `Freshness::Master`, shard 0's
    /// island as usual. Pass the island of the shard being worked on to join locally.
    pub fn global_near(&self, island: atoll_core::IslandId) -> Shard {
        Shard::global_near(self.clone(), Some(island))
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
        match &self.inner.shared.ids {
            IdSource::Fixed(gen) => Ok(gen.next_at(shard, coarse_now_ms())),
            IdSource::Leased(slot) => slot.next(shard, stamp),
            IdSource::None => Err(ClientError::NoIdNode),
        }
    }

    /// The state of a leased node id ([`IdNode::Lease`]); `None` for a fixed one or none.
    pub fn id_lease(&self) -> Option<IdLeaseStatus> {
        match &self.inner.shared.ids {
            IdSource::Leased(slot) => Some(slot.status(stamp)),
            _ => None,
        }
    }

    /// Releases the node id lease now (app-side IDs are refused from here on, on every
    /// clone of this handle) and waits for it, so the node id's rest starts now rather
    /// than when the lease would have expired; a concurrent `close` on another clone waits
    /// too. Call it before the runtime shuts down: dropping the last handle only asks the
    /// background task to release, which happens only while the runtime keeps running.
    /// Queries keep working. Does nothing without a lease.
    pub async fn close(&self) {
        if let Some(lease) = &self.inner.lease {
            lease.close().await;
        }
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
            id_node: IdNode::Fixed(3),
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
        // The config's environment is 1 (the default): environment 2's IDs are refused.
        let other = Id::new(2, ShardNo::new(42).unwrap(), 5).unwrap();
        let err = cluster.shard_for_id(other.get()).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::WrongEnvironment {
                    env: 2,
                    expected: 1,
                    ..
                }
            ),
            "{err}"
        );
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
