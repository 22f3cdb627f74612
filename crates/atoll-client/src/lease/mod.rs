//! Leased ID node ids ([`crate::IdNode::Lease`]): the generator of the node id this process
//! currently holds, and until when it may be used.
//!
//! The lease itself is a row in `atoll.id_leases` ([`atoll_pg::id_lease`]), renewed by a
//! background task ([`task`]). Safety rests on one rule: **no ID is made after the moment
//! the server may consider the lease expired**. A renewal sent at local time `t` makes the
//! server set the expiry to its `now() + ttl`, and the server's `now()` comes after `t`; so
//! this process stops at `t + ttl - margin` by its monotonic clock (never the wall clock,
//! which may jump), before the server's expiry. Another process can take the node id only
//! `reuse_after` (lead window + 1 s + clock skew) after that expiry, when every ID this
//! process made, even ones run ahead of the clock, lies in its past.

pub(crate) mod task;

use crate::error::ClientError;
use atoll_core::{Id, IdGenError, IdGenerator, ShardNo, NODE_IDS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What [`crate::Cluster::id_lease`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdLeaseStatus {
    /// The node id IDs are made with now; `None` while no lease is valid (IDs refused).
    pub node: Option<u16>,
    /// Leases taken so far (the first one, and new ones after a loss).
    pub acquisitions: u64,
    /// Leases found taken over by another process at renewal.
    pub losses: u64,
}

/// The local deadline of a lease renewed (or acquired) by a statement sent at `sent_ms`
/// (monotonic): `ttl` later, less a margin for the coarse clock (a few ms behind) and for
/// the rate difference between this clock and the server's.
pub(crate) fn deadline_ms(sent_ms: u64, ttl: Duration) -> u64 {
    let ttl_ms = ttl.as_millis() as u64;
    let margin = (ttl_ms / 10).min(1000);
    sent_ms.saturating_add(ttl_ms - margin)
}

/// Bits of the packed state that hold the node id; the rest hold the deadline.
const NODE_BITS: u32 = 10;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
/// "No lease" in the node bits (node ids are below 1000).
const NO_NODE: u64 = NODE_MASK;
const MAX_DEADLINE: u64 = u64::MAX >> NODE_BITS;

/// The node id and the local deadline in one word, so making an ID reads both with one
/// atomic load (a few ns) and can never pair one lease's node with another's deadline.
fn pack(node: u64, valid_until_ms: u64) -> u64 {
    (valid_until_ms.min(MAX_DEADLINE) << NODE_BITS) | node
}

/// A lease in force, as the renewal task knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    pub node: u16,
    pub token: String,
}

/// The lease slot shared by the cluster handle (making IDs) and the renewal task (the only
/// writer, one step at a time).
pub(crate) struct LeaseSlot {
    env: u8,
    /// `pack(node, deadline)`: the node id in use and the monotonic ms until which it may be.
    state: AtomicU64,
    /// One generator per node id this process has held, kept for the process's life: a
    /// node id leased again continues from its positions (it may have run ahead of the
    /// clock, and a fresh generator would start behind it). Created on first lease.
    gens: Box<[OnceLock<IdGenerator>]>,
    held: Mutex<Option<Held>>,
    /// Why IDs are refused (no lease yet, lost, not renewed in time), for the error.
    why: Mutex<String>,
    acquisitions: AtomicU64,
    losses: AtomicU64,
}

impl LeaseSlot {
    pub(crate) fn new(env: u8) -> LeaseSlot {
        LeaseSlot {
            env,
            state: AtomicU64::new(pack(NO_NODE, 0)),
            gens: (0..NODE_IDS).map(|_| OnceLock::new()).collect(),
            held: Mutex::new(None),
            why: Mutex::new("no lease taken yet".to_string()),
            acquisitions: AtomicU64::new(0),
            losses: AtomicU64::new(0),
        }
    }

    /// A new ID by the current lease, or why there is none valid at `mono_ms`.
    #[inline]
    pub(crate) fn next(
        &self,
        shard: ShardNo,
        wall_ms: u64,
        mono_ms: u64,
    ) -> Result<Result<Id, IdGenError>, ClientError> {
        let s = self.state.load(Ordering::Acquire);
        let node = s & NODE_MASK;
        if node != NO_NODE && mono_ms < s >> NODE_BITS {
            if let Some(g) = self.gens.get(node as usize).and_then(OnceLock::get) {
                return Ok(g.next_at(shard, wall_ms));
            }
        }
        Err(self.refusal(node))
    }

    #[cold]
    fn refusal(&self, node: u64) -> ClientError {
        let why = if node == NO_NODE {
            self.why()
        } else {
            format!(
                "the lease on node id {node} was not renewed in time ({})",
                self.why()
            )
        };
        ClientError::NoIdLease { why }
    }

    fn why(&self) -> String {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_why(&self, why: String) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// The lease in force (valid or not), for renewal.
    pub(crate) fn held(&self) -> Option<Held> {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts using a newly acquired lease on `node`, valid until `valid_until_ms`.
    pub(crate) fn install(
        &self,
        node: u16,
        token: String,
        valid_until_ms: u64,
    ) -> Result<(), IdGenError> {
        let cell = self
            .gens
            .get(usize::from(node))
            .ok_or(IdGenError::BadNode(node))?;
        if cell.get().is_none() {
            // Only the renewal task installs, so nobody races to create it.
            let _ = cell.set(IdGenerator::new(self.env, node)?);
        }
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held { node, token });
        self.state
            .store(pack(u64::from(node), valid_until_ms), Ordering::Release);
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Records a successful renewal of `held`, if it is still the lease in force. Deadlines
    /// only move forward.
    pub(crate) fn extend(&self, held: &Held, valid_until_ms: u64) {
        let node = u64::from(held.node);
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & NODE_MASK == node).then(|| pack(node, (s >> NODE_BITS).max(valid_until_ms)))
            });
    }

    /// Stops using the lease at once: it was taken over, or is being released.
    pub(crate) fn drop_lease(&self, why: String, lost: bool) -> Option<Held> {
        self.set_why(why);
        if lost {
            self.losses.fetch_add(1, Ordering::Relaxed);
        }
        self.state.store(pack(NO_NODE, 0), Ordering::Release);
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn status(&self, mono_ms: u64) -> IdLeaseStatus {
        let s = self.state.load(Ordering::Acquire);
        let node = s & NODE_MASK;
        IdLeaseStatus {
            node: (node != NO_NODE && mono_ms < s >> NODE_BITS).then_some(node as u16),
            acquisitions: self.acquisitions.load(Ordering::Relaxed),
            losses: self.losses.load(Ordering::Relaxed),
        }
    }
}

/// The running lease task of a cluster; dropping it (with the last cluster handle) tells
/// the task to release the lease and stop.
pub(crate) struct LeaseHandle {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl LeaseHandle {
    /// Takes the first lease (an error if none can be had now), then renews it in the
    /// background.
    pub(crate) async fn start(
        shared: Arc<crate::cluster::Shared>,
        slot: Arc<LeaseSlot>,
        opts: crate::options::LeaseOptions,
    ) -> Result<LeaseHandle, ClientError> {
        let mut task = task::LeaseTask::new(shared, slot.clone(), opts);
        if !task.acquire().await? {
            return Err(ClientError::IdLease(slot.why()));
        }
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(task.run(rx));
        Ok(LeaseHandle {
            stop,
            task: Mutex::new(Some(handle)),
        })
    }

    /// Releases the lease and waits for the task to finish (bounded by its own timeouts).
    pub(crate) async fn close(&self) {
        self.stop.send_replace(true);
        let handle = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.await;
        }
    }
}

impl Drop for LeaseHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const WALL: u64 = 1_763_700_000_000;

    fn shard(n: i64) -> ShardNo {
        ShardNo::new(n).unwrap()
    }

    #[test]
    fn node_and_deadline_pack_into_one_word() {
        let s = pack(999, 123_456_789);
        assert_eq!((s & NODE_MASK, s >> NODE_BITS), (999, 123_456_789));
        // An unreadable clock (u64::MAX) is never before any deadline.
        assert_eq!(pack(5, u64::MAX) >> NODE_BITS, MAX_DEADLINE);
        let slot = LeaseSlot::new(1);
        slot.install(5, "t".into(), u64::MAX).unwrap();
        assert!(slot.next(shard(1), WALL, u64::MAX).is_err());
        assert!(slot.install(1000, "t".into(), 1).is_err());
    }

    #[test]
    fn the_local_deadline_comes_before_the_server_expiry() {
        assert_eq!(deadline_ms(1000, Duration::from_secs(30)), 30_000);
        assert_eq!(deadline_ms(1000, Duration::from_secs(2)), 2_800);
        assert_eq!(deadline_ms(u64::MAX, Duration::from_secs(2)), u64::MAX);
    }

    #[test]
    fn ids_only_while_the_lease_is_valid() {
        let slot = LeaseSlot::new(1);
        let err = slot.next(shard(1), WALL, 0).unwrap_err();
        assert!(err.to_string().contains("no lease taken yet"), "{err}");
        slot.install(12, "t".into(), 5_000).unwrap();
        let id = slot.next(shard(1), WALL, 4_999).unwrap().unwrap();
        assert_eq!(IdGenerator::parts(id).unwrap().node, 12);
        assert_eq!(slot.status(4_999).node, Some(12));
        // Past the deadline without a renewal: refused, and the status says so.
        let err = slot.next(shard(1), WALL, 5_000).unwrap_err();
        assert!(err.to_string().contains("not renewed in time"), "{err}");
        assert_eq!(slot.status(5_000).node, None);
        // A late renewal of the same lease (nobody took it over) makes it usable again.
        let held = slot.held().unwrap();
        slot.extend(&held, 9_000);
        slot.extend(&held, 8_000); // an older renewal answering late moves nothing back
        assert!(slot.next(shard(1), WALL, 8_500).unwrap().is_ok());
    }

    #[test]
    fn a_lost_lease_refuses_until_a_new_one_is_installed() {
        let slot = LeaseSlot::new(1);
        slot.install(3, "a".into(), u64::MAX).unwrap();
        let held = slot
            .drop_lease("node id 3 was taken over".into(), true)
            .unwrap();
        assert_eq!(held.token, "a");
        let err = slot.next(shard(1), WALL, 0).unwrap_err();
        assert!(matches!(err, ClientError::NoIdLease { .. }));
        assert!(err.to_string().contains("taken over"), "{err}");
        // Extending the dropped lease (a renewal that was in flight) does not revive it.
        slot.extend(&held, u64::MAX);
        assert!(slot.next(shard(1), WALL, 0).is_err());
        slot.install(4, "b".into(), u64::MAX).unwrap();
        let id = slot.next(shard(1), WALL, 0).unwrap().unwrap();
        assert_eq!(IdGenerator::parts(id).unwrap().node, 4);
        let st = slot.status(0);
        assert_eq!((st.node, st.acquisitions, st.losses), (Some(4), 2, 1));
    }

    #[test]
    fn the_same_node_id_again_continues_after_the_ids_already_made() {
        // Also after another node id in between.
        let slot = LeaseSlot::new(1);
        slot.install(7, "a".into(), u64::MAX).unwrap();
        // A burst runs ahead of the clock.
        let mut seen = HashSet::new();
        for _ in 0..500 {
            assert!(seen.insert(slot.next(shard(2), WALL, 0).unwrap().unwrap()));
        }
        slot.drop_lease("lost".into(), true);
        slot.install(8, "b".into(), u64::MAX).unwrap();
        assert!(seen.insert(slot.next(shard(2), WALL, 0).unwrap().unwrap()));
        slot.drop_lease("lost".into(), true);
        slot.install(7, "c".into(), u64::MAX).unwrap();
        for _ in 0..500 {
            let id = slot.next(shard(2), WALL, 0).unwrap().unwrap();
            assert!(seen.insert(id), "duplicate {id} after taking node 7 again");
        }
    }
}
