//! Shard notices in the client: one `LISTEN` connection per island master
//! ([`atoll_pg::notices::ShardNotices`], followed to a new master after each discovery
//! round), whose notices update the snapshot of just that shard at once
//! ([`atoll_core::NoticeLog`]: only notices newer than what the snapshot knows, and kept
//! over discovery rounds that had not seen them yet). After a listener (re)connects, a full
//! discovery round runs: notices sent while it was away are lost. The error path stays as
//! the fallback for a client that missed a notice (`shard.rs`).

use crate::cluster::{Shared, State};
use atoll_core::{Config, IslandId, ShardNo, ShardNotice, Snapshot};
use atoll_pg::notices::{ListenOptions, NoticeEvent, ShardNotices};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Counters of a [`crate::Cluster`]'s background work, for monitoring and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Discovery rounds installed since the cluster was connected (the first included).
    pub discovery_rounds: u64,
    /// Shard notices that updated the snapshot.
    pub notices_applied: u64,
    /// Shard notices ignored: not newer than what the snapshot knew, or naming an island
    /// the config does not have.
    pub notices_ignored: u64,
    /// The islands whose master is being listened to right now (`LISTEN` in place).
    pub listening: Vec<IslandId>,
    /// How long the last discovery round took, in microseconds.
    pub last_discovery_us: u64,
}

/// What the background tasks count.
#[derive(Default)]
pub(crate) struct Counters {
    pub discovery_rounds: AtomicU64,
    pub notices_applied: AtomicU64,
    pub notices_ignored: AtomicU64,
    pub listening: Mutex<BTreeSet<IslandId>>,
    pub last_discovery_us: AtomicU64,
}

impl Counters {
    pub(crate) fn stats(&self) -> ClientStats {
        ClientStats {
            discovery_rounds: self.discovery_rounds.load(Ordering::Relaxed),
            notices_applied: self.notices_applied.load(Ordering::Relaxed),
            notices_ignored: self.notices_ignored.load(Ordering::Relaxed),
            listening: self.listening_now().into_iter().collect(),
            last_discovery_us: self.last_discovery_us.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn record_discovery(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.last_discovery_us.store(us, Ordering::Relaxed);
    }

    fn listening_now(&self) -> BTreeSet<IslandId> {
        self.listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_listening(&self, island: IslandId, on: bool) {
        let mut set = self.listening.lock().unwrap_or_else(|p| p.into_inner());
        if on {
            set.insert(island);
        } else {
            set.remove(&island);
        }
    }
}

/// The listeners of a cluster whose options ask for them (`shard_notices`), reporting to
/// `shared` (held weakly: dropping the last handle must still stop everything).
pub(crate) fn listener(shared: &Arc<Shared>) -> Option<ShardNotices> {
    if !shared.options.shard_notices {
        return None;
    }
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let options = ListenOptions {
        application_name: format!("{} notices", shared.options.application_name),
        connect_timeout: shared.state.load().config.connect_timeout,
        ping_every: Duration::from_secs(10),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
    };
    let sink = Arc::new(move |event: NoticeEvent| {
        if let Some(shared) = weak.upgrade() {
            shared.on_notice_event(event);
        }
    });
    Some(ShardNotices::new(options, sink))
}

/// Every configured island with its master as `snapshot` found it (`None`: none known).
pub(crate) fn masters(
    config: &Config,
    snapshot: &Snapshot,
) -> Vec<(IslandId, Option<atoll_core::NodeConfig>)> {
    config
        .islands
        .iter()
        .map(|i| (i.id, atoll_pg::master_node(config, snapshot, i.id).ok()))
        .collect()
}

impl Shared {
    fn on_notice_event(&self, event: NoticeEvent) {
        match event {
            NoticeEvent::Notices(batch) => self.apply_notices(&batch),
            NoticeEvent::Listening { island, addr } => {
                tracing::debug!(%island, %addr, "atoll-client: listening for shard notices");
                self.counters.set_listening(island, true);
                // Notices sent before LISTEN took effect are lost: rediscover.
                self.wake.notify_one();
            }
            NoticeEvent::Unreadable { island, reason } => {
                tracing::warn!(%island, %reason, "atoll-client: unreadable shard notice; rediscovering");
                self.wake.notify_one();
            }
            NoticeEvent::Lost { island, error } => {
                tracing::debug!(%island, %error, "atoll-client: shard notice listener lost its connection");
                self.counters.set_listening(island, false);
                // Maybe the master changed: a round finds the new one to listen to.
                self.wake.notify_one();
            }
        }
    }

    /// Applies notices to the current snapshot and swaps the result in. Under the notice
    /// log's lock, like [`Shared::install`], so a discovery round installed meanwhile
    /// cannot be overwritten by a snapshot made from the one before it.
    pub(crate) fn apply_notices(&self, batch: &[ShardNotice]) {
        let mut log = self.notices.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.state.load_full();
        let (next, counts) = log.apply(&state.snapshot, batch);
        self.counters
            .notices_applied
            .fetch_add(counts.applied, Ordering::Relaxed);
        self.counters
            .notices_ignored
            .fetch_add(counts.ignored, Ordering::Relaxed);
        if let Some(snapshot) = next {
            let config = state.config.clone();
            let pools = state.pools.clone();
            self.state
                .store(Arc::new(State::new(config, Arc::new(snapshot), pools)));
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Whether the current snapshot routes `shard` to an island other than `away`.
    pub(crate) fn routed(&self, shard: ShardNo, away: Option<IslandId>) -> bool {
        matches!(self.state.load().snapshot.active_island(shard), Ok(i) if Some(i) != away)
    }

    /// Waits (at most `limit`) until a snapshot swapped in (by a notice or a discovery
    /// round) routes `shard` to an island other than `away`. Whether one did.
    pub(crate) async fn await_route(
        &self,
        shard: ShardNo,
        away: Option<IslandId>,
        limit: Duration,
    ) -> bool {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if self.routed(shard, away) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::IdSource;
    use crate::options::ClusterOptions;
    use atoll_core::{ConfigSource, IslandCatalog, NodeFacts, NodeObservation, ShardObservation};
    use std::collections::HashMap;

    fn sh() -> ShardNo {
        ShardNo::new(3).unwrap()
    }

    /// Two islands; island `i` has the shard's row `rows[i]` as (active, gen).
    fn snapshot(rows: [(bool, u64); 2]) -> Snapshot {
        let islands = rows
            .iter()
            .enumerate()
            .map(|(i, (active, gen))| {
                let id = IslandId(i as u16);
                let node = NodeObservation {
                    island: id,
                    addr: format!("127.0.0.1:{}", 10 + i),
                    outcome: Ok(NodeFacts {
                        in_recovery: false,
                        server_version: "15".into(),
                        lsn: Default::default(),
                        replay_lag_seconds: None,
                    }),
                };
                let catalog = IslandCatalog {
                    cluster_id: Some("c".into()),
                    catalog_island: Some(id),
                    shards: vec![ShardObservation {
                        shard: sh(),
                        schema_exists: true,
                        active: *active,
                        size_bytes: None,
                        gen: *gen,
                        rows_estimate: None,
                        weight: None,
                    }],
                    global_copy: None,
                };
                (id, vec![node], Some(catalog))
            })
            .collect();
        Snapshot::build(0, islands)
    }

    fn shared(s: Snapshot) -> (Shared, Arc<Config>) {
        let text = "[cluster]\nname = \"t\"\n[[island]]\nid = 0\nnodes = [{ host = \"127.0.0.1\", port = 10, user = \"u\", database = \"d\" }]\n[[island]]\nid = 1\nnodes = [{ host = \"127.0.0.1\", port = 11, user = \"u\", database = \"d\" }]\n";
        let config = Arc::new(Config::parse(text, ConfigSource::Inline).unwrap());
        let state = State::new(config.clone(), Arc::new(s), Arc::new(HashMap::new()));
        (
            Shared::new(state, ClusterOptions::default(), IdSource::None),
            config,
        )
    }

    fn notice(island: u16, active: bool, gen: u64) -> ShardNotice {
        ShardNotice {
            shard: sh(),
            island: IslandId(island),
            active,
            gen,
        }
    }

    #[tokio::test]
    async fn a_waiting_statement_is_placed_by_the_activation_notice() {
        let (shared, config) = shared(snapshot([(true, 10), (false, 5)]));
        let away = Some(IslandId(0));
        assert!(!shared.routed(sh(), away));
        assert!(
            !shared
                .await_route(sh(), away, Duration::from_millis(20))
                .await
        );
        let waiting = shared.await_route(sh(), away, Duration::from_secs(5));
        let notify = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            shared.apply_notices(&[notice(0, false, 11)]);
            assert!(
                !shared.routed(sh(), None),
                "switched off, not activated yet"
            );
            shared.apply_notices(&[notice(1, true, 12)]);
        };
        let (placed, ()) = tokio::join!(waiting, notify);
        assert!(placed);
        // A round that read both islands before the switch does not undo it.
        let pools = shared.state.load().pools.clone();
        shared.install(
            config.clone(),
            snapshot([(true, 10), (false, 5)]),
            pools.clone(),
            0,
        );
        assert!(shared.routed(sh(), away));
        // Old notices change nothing; the counters say so.
        shared.apply_notices(&[notice(0, true, 10), notice(1, true, 12)]);
        assert!(shared.routed(sh(), away));
        let stats = shared.counters.stats();
        assert_eq!((stats.notices_applied, stats.notices_ignored), (2, 2));
        assert_eq!(stats.discovery_rounds, 1);
        // A round that saw the move: nothing kept any more.
        shared.install(config, snapshot([(false, 11), (true, 12)]), pools, 0);
        assert!(shared.notices.lock().unwrap().is_empty());
        assert!(shared.routed(sh(), away));
    }
}
