//! Leased ID node ids ([`crate::IdNode::Lease`]): the generator of the node id this process
//! currently holds, and until when it may be used.
//!
//! The lease itself is a row in `atoll.id_leases` ([`atoll_pg::catalog::id_leases`]), renewed by a
//! background task ([`task`]). Safety rests on one rule: **no ID is made after the moment
//! the server may consider the lease expired**. A renewal sent at local time `t` makes the
//! server set the expiry to its `now() + ttl`, and the server's `now()` comes after `t`; so
//! this process stops at `t + ttl - margin`, before the server's expiry. Another process
//! can take the node id only `reuse_after` (lead window + 1 s + clock skew) after that
//! expiry, when every ID this process made, even ones run ahead of the clock, lies in its
//! past.
//!
//! The local deadline is kept by two clocks and both must be before it: the monotonic
//! clock (never jumps when the wall clock is set back) and the wall clock (keeps counting
//! while the machine is suspended, when the monotonic clock stops). `CLOCK_BOOTTIME` alone
//! would do both but costs ~38 ns a read here against ~8 ns for the coarse clocks, and the
//! coarse wall clock is read for every ID anyway.

pub(crate) mod task;

use crate::clock::Stamp;
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

/// The local deadline (one clock's ms) of a lease renewed (or acquired) by a statement sent
/// at `sent_ms`: `ttl` later, less a margin for the coarse clocks (a few ms behind) and for
/// the rate difference between this clock and the server's. A clock that could not be read
/// (`u64::MAX`) gives 0: the deadline has passed, IDs are refused.
pub(crate) fn deadline_ms(sent_ms: u64, ttl: Duration) -> u64 {
    if sent_ms == u64::MAX {
        return 0;
    }
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let margin = (ttl_ms / 10).min(1000);
    sent_ms.saturating_add(ttl_ms - margin)
}

/// The local deadline by both clocks of a lease statement sent at `sent`.
pub(crate) fn deadline(sent: Stamp, ttl: Duration) -> Stamp {
    Stamp {
        wall_ms: deadline_ms(sent.wall_ms, ttl),
        mono_ms: deadline_ms(sent.mono_ms, ttl),
    }
}

/// Bits of the packed state that hold the node id; the rest hold the deadline.
const NODE_BITS: u32 = 10;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
/// "No lease" in the node bits (node ids are below 1000).
const NO_NODE: u64 = NODE_MASK;
const MAX_DEADLINE: u64 = u64::MAX >> NODE_BITS;

/// The node id and the monotonic deadline in one word, so making an ID reads both with one
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
    /// The same lease's deadline by the wall clock (Unix ms). Written before `state`, read
    /// between two reads of `state` that must agree ([`LeaseSlot::load`]), so it belongs to
    /// the lease read from `state`.
    wall_deadline: AtomicU64,
    /// One generator per node id this process has held, kept for the process's life: a
    /// node id leased again continues from its positions (it may have run ahead of the
    /// clock, and a fresh generator would start behind it). Created on first lease.
    gens: Box<[OnceLock<IdGenerator>]>,
    held: Mutex<Option<Held>>,
    /// Why IDs are refused while no lease is in force (none yet, lost, closed), or the last
    /// renewal error while one is ("" when the last renewal succeeded).
    why: Mutex<String>,
    acquisitions: AtomicU64,
    losses: AtomicU64,
}

impl LeaseSlot {
    pub(crate) fn new(env: u8) -> LeaseSlot {
        LeaseSlot {
            env,
            state: AtomicU64::new(pack(NO_NODE, 0)),
            wall_deadline: AtomicU64::new(0),
            gens: (0..NODE_IDS).map(|_| OnceLock::new()).collect(),
            held: Mutex::new(None),
            why: Mutex::new("no lease taken yet".to_string()),
            acquisitions: AtomicU64::new(0),
            losses: AtomicU64::new(0),
        }
    }

    /// The packed state and the wall deadline of one and the same lease: the wall deadline
    /// is read between two reads of the state that agree (the writer changes the state
    /// after the wall deadline, so a new lease in between shows in the second read).
    #[inline]
    fn load(&self) -> (u64, u64) {
        loop {
            let s = self.state.load(Ordering::Acquire);
            let wall = self.wall_deadline.load(Ordering::Acquire);
            if self.state.load(Ordering::Acquire) == s {
                return (s, wall);
            }
        }
    }

    /// Whether the packed state `s` with wall deadline `wall_dl` is valid at `now`.
    #[inline]
    fn valid(s: u64, wall_dl: u64, now: Stamp) -> bool {
        s & NODE_MASK != NO_NODE && now.mono_ms < s >> NODE_BITS && now.wall_ms < wall_dl
    }

    /// A new ID by the current lease, or why there is none valid. The clocks are read only
    /// after the lease (`clocks`: wall first, then monotonic), so the wall time an ID
    /// carries was read while that lease was held and before its deadline.
    #[inline]
    pub(crate) fn next(
        &self,
        shard: ShardNo,
        clocks: impl FnOnce() -> Stamp,
    ) -> Result<Result<Id, IdGenError>, ClientError> {
        let (s, wall_dl) = self.load();
        let now = clocks();
        let node = s & NODE_MASK;
        if Self::valid(s, wall_dl, now) {
            if let Some(g) = self.gens.get(node as usize).and_then(OnceLock::get) {
                return Ok(g.next_at(shard, now.wall_ms));
            }
        }
        Err(self.refusal(node))
    }

    #[cold]
    fn refusal(&self, node: u64) -> ClientError {
        let why = self.why();
        let why = if node == NO_NODE {
            why
        } else if why.is_empty() {
            format!("the lease on node id {node} was not renewed in time; IDs resume once a renewal gets through")
        } else {
            format!("the lease on node id {node} was not renewed in time, last renewal error: {why}; IDs resume once a renewal gets through")
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

    /// Starts using a newly acquired lease on `node`, valid until `until` (both clocks).
    pub(crate) fn install(&self, node: u16, token: String, until: Stamp) -> Result<(), IdGenError> {
        let cell = self
            .gens
            .get(usize::from(node))
            .ok_or(IdGenError::BadNode(node))?;
        if cell.get().is_none() {
            // Only the renewal task installs, so nobody races to create it.
            let _ = cell.set(IdGenerator::new(self.env, node)?);
        }
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(Held { node, token });
        self.set_why(String::new());
        // Counted before the state is published: whoever sees the new node sees the count.
        self.acquisitions.fetch_add(1, Ordering::Relaxed);
        self.wall_deadline.store(until.wall_ms, Ordering::Release);
        self.state
            .store(pack(u64::from(node), until.mono_ms), Ordering::Release);
        Ok(())
    }

    /// Records a successful renewal of `held`, if it is still the lease in force. Deadlines
    /// only move forward.
    pub(crate) fn extend(&self, held: &Held, until: Stamp) {
        let node = u64::from(held.node);
        if self.state.load(Ordering::Acquire) & NODE_MASK != node {
            return;
        }
        self.set_why(String::new());
        // Only the task writes, so the lease cannot change between the check and here.
        self.wall_deadline
            .fetch_max(until.wall_ms, Ordering::AcqRel);
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & NODE_MASK == node).then(|| pack(node, (s >> NODE_BITS).max(until.mono_ms)))
            });
    }

    /// Stops using the lease at once: it was taken over, or is being released. `why` is the
    /// whole message IDs are refused with from now on.
    pub(crate) fn drop_lease(&self, why: String, lost: bool) -> Option<Held> {
        self.set_why(why);
        self.wall_deadline.store(0, Ordering::Release);
        self.state.store(pack(NO_NODE, 0), Ordering::Release);
        // Counted after: whoever sees the count sees IDs refused.
        if lost {
            self.losses.fetch_add(1, Ordering::Release);
        }
        self.held.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn status(&self, clocks: impl FnOnce() -> Stamp) -> IdLeaseStatus {
        // Losses before the state (a loss counted is a lease seen dropped), acquisitions
        // after it (a lease seen is counted): the writer's order, mirrored.
        let losses = self.losses.load(Ordering::Acquire);
        let (s, wall_dl) = self.load();
        let acquisitions = self.acquisitions.load(Ordering::Relaxed);
        let now = clocks();
        IdLeaseStatus {
            node: Self::valid(s, wall_dl, now).then_some((s & NODE_MASK) as u16),
            acquisitions,
            losses,
        }
    }
}

/// The running lease task of a cluster; dropping it (with the last cluster handle) tells
/// the task to release the lease and stop.
pub(crate) struct LeaseHandle {
    stop: watch::Sender<bool>,
    /// Taken by the first `close`; an async lock, so a concurrent `close` (another clone)
    /// waits until the first one has seen the release through.
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl LeaseHandle {
    /// Takes the first lease (an error if none can be had now), then renews it in the
    /// background.
    pub(crate) async fn start(
        shared: Arc<crate::cluster::Shared>,
        slot: Arc<LeaseSlot>,
        opts: crate::options::LeaseOptions,
    ) -> Result<LeaseHandle, ClientError> {
        let range = format!("{}..{}", opts.nodes.start, opts.nodes.end);
        let mut task = task::LeaseTask::new(shared, slot.clone(), opts);
        if !task.acquire_first().await? {
            return Err(ClientError::IdLease(format!(
                "every node id in {range} is leased or resting"
            )));
        }
        let (stop, rx) = watch::channel(false);
        let handle = tokio::spawn(task.run(rx));
        Ok(LeaseHandle {
            stop,
            task: tokio::sync::Mutex::new(Some(handle)),
        })
    }

    /// Releases the lease and waits for the task to finish (bounded by its own timeouts);
    /// every caller returns only once it has.
    pub(crate) async fn close(&self) {
        self.stop.send_replace(true);
        let mut task = self.task.lock().await;
        if let Some(h) = task.take() {
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
    const FOREVER: Stamp = Stamp {
        wall_ms: u64::MAX,
        mono_ms: u64::MAX,
    };

    fn shard(n: i64) -> ShardNo {
        ShardNo::new(n).unwrap()
    }

    /// The clocks at monotonic `mono_ms`, the wall clock `WALL + mono_ms`.
    fn at(mono_ms: u64) -> impl Fn() -> Stamp {
        move || Stamp {
            wall_ms: WALL + mono_ms,
            mono_ms,
        }
    }

    /// A deadline at monotonic `mono_ms` (and the matching wall time).
    fn until(mono_ms: u64) -> Stamp {
        at(mono_ms)()
    }

    #[test]
    fn node_and_deadline_pack_into_one_word() {
        let s = pack(999, 123_456_789);
        assert_eq!((s & NODE_MASK, s >> NODE_BITS), (999, 123_456_789));
        assert_eq!(pack(5, u64::MAX) >> NODE_BITS, MAX_DEADLINE);
        let slot = LeaseSlot::new(1);
        slot.install(5, "t".into(), FOREVER).unwrap();
        // An unreadable monotonic clock (u64::MAX) is never before any deadline.
        let unreadable = || Stamp {
            wall_ms: WALL,
            mono_ms: u64::MAX,
        };
        assert!(slot.next(shard(1), unreadable).is_err());
        assert!(slot.install(1000, "t".into(), until(1)).is_err());
    }

    #[test]
    fn the_local_deadline_comes_before_the_server_expiry() {
        assert_eq!(deadline_ms(1000, Duration::from_secs(30)), 30_000);
        assert_eq!(deadline_ms(1000, Duration::from_secs(2)), 2_800);
        // A clock that could not be read when the statement was sent: already passed.
        assert_eq!(deadline_ms(u64::MAX, Duration::from_secs(2)), 0);
        assert_eq!(deadline_ms(5_000, Duration::MAX), u64::MAX);
        let sent = Stamp {
            wall_ms: WALL,
            mono_ms: u64::MAX,
        };
        let d = deadline(sent, Duration::from_secs(30));
        assert_eq!((d.wall_ms, d.mono_ms), (WALL + 29_000, 0));
        let slot = LeaseSlot::new(1);
        slot.install(5, "t".into(), d).unwrap();
        assert!(slot.next(shard(1), at(0)).is_err());
    }

    #[test]
    fn ids_only_while_the_lease_is_valid() {
        let slot = LeaseSlot::new(1);
        let err = slot.next(shard(1), at(0)).unwrap_err();
        assert!(err.to_string().contains("no lease taken yet"), "{err}");
        slot.install(12, "t".into(), until(5_000)).unwrap();
        let id = slot.next(shard(1), at(4_999)).unwrap().unwrap();
        assert_eq!(IdGenerator::parts(id).unwrap().node, 12);
        assert_eq!(slot.status(at(4_999)).node, Some(12));
        // Past the deadline without a renewal: refused, and the status says so.
        slot.set_why("connection refused".into());
        let err = slot.next(shard(1), at(5_000)).unwrap_err().to_string();
        assert!(err.contains("not renewed in time, last renewal error: connection refused; IDs resume once a renewal gets through"), "{err}");
        assert_eq!(slot.status(at(5_000)).node, None);
        // A late renewal of the same lease (nobody took it over) makes it usable again.
        let held = slot.held().unwrap();
        slot.extend(&held, until(9_000));
        slot.extend(&held, until(8_000)); // an older renewal answering late moves nothing back
        assert!(slot.next(shard(1), at(8_500)).unwrap().is_ok());
        // ... and forgets the renewal error.
        let err = slot.next(shard(1), at(9_000)).unwrap_err().to_string();
        assert!(!err.contains("connection refused"), "{err}");
    }

    #[tokio::test]
    async fn every_concurrent_close_waits_for_the_task() {
        use std::sync::atomic::AtomicBool;
        let (stop, mut rx) = watch::channel(false);
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        // Stands in for the lease task: a release that takes a while after the stop.
        let task = tokio::spawn(async move {
            let _ = rx.wait_for(|s| *s).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            d.store(true, Ordering::SeqCst);
        });
        let handle = LeaseHandle {
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        };
        let (a, b) = tokio::join!(
            async {
                handle.close().await;
                done.load(Ordering::SeqCst)
            },
            async {
                handle.close().await;
                done.load(Ordering::SeqCst)
            }
        );
        assert!(
            a && b,
            "a close() returned before the task finished: {a} {b}"
        );
    }

    #[test]
    fn a_suspended_machine_is_caught_by_the_wall_clock() {
        let slot = LeaseSlot::new(1);
        slot.install(12, "t".into(), until(5_000)).unwrap();
        // The monotonic clock stood still for an hour of suspend; the wall clock did not.
        let resumed = || Stamp {
            wall_ms: WALL + 3_600_000,
            mono_ms: 100,
        };
        assert!(slot.next(shard(1), resumed).is_err());
        assert_eq!(slot.status(resumed).node, None);
        // The wall clock set back does not stretch the lease either.
        let set_back = || Stamp {
            wall_ms: WALL - 3_600_000,
            mono_ms: 5_000,
        };
        assert!(slot.next(shard(1), set_back).is_err());
    }

    #[test]
    fn a_lost_lease_refuses_until_a_new_one_is_installed() {
        let slot = LeaseSlot::new(1);
        slot.install(3, "a".into(), FOREVER).unwrap();
        let held = slot
            .drop_lease("node id 3 was taken over".into(), true)
            .unwrap();
        assert_eq!(held.token, "a");
        let err = slot.next(shard(1), at(0)).unwrap_err();
        assert!(matches!(err, ClientError::NoIdLease { .. }));
        assert!(err.to_string().contains("taken over"), "{err}");
        // Extending the dropped lease (a renewal that was in flight) does not revive it.
        slot.extend(&held, FOREVER);
        assert!(slot.next(shard(1), at(0)).is_err());
        slot.install(4, "b".into(), FOREVER).unwrap();
        let id = slot.next(shard(1), at(0)).unwrap().unwrap();
        assert_eq!(IdGenerator::parts(id).unwrap().node, 4);
        let st = slot.status(at(0));
        assert_eq!((st.node, st.acquisitions, st.losses), (Some(4), 2, 1));
    }

    #[test]
    fn the_same_node_id_again_continues_after_the_ids_already_made() {
        // Also after another node id in between.
        let slot = LeaseSlot::new(1);
        slot.install(7, "a".into(), FOREVER).unwrap();
        // A burst runs ahead of the clock.
        let mut seen = HashSet::new();
        for _ in 0..500 {
            assert!(seen.insert(slot.next(shard(2), at(0)).unwrap().unwrap()));
        }
        slot.drop_lease("lost".into(), true);
        slot.install(8, "b".into(), FOREVER).unwrap();
        assert!(seen.insert(slot.next(shard(2), at(0)).unwrap().unwrap()));
        slot.drop_lease("lost".into(), true);
        slot.install(7, "c".into(), FOREVER).unwrap();
        for _ in 0..500 {
            let id = slot.next(shard(2), at(0)).unwrap().unwrap();
            assert!(seen.insert(id), "duplicate {id} after taking node 7 again");
        }
    }
}
