//! The island without a leader: a master takes the key back (it has everything it wrote);
//! a replica waits [`HaConfig::election_wait`] for every member to publish its final
//! position, asks [`atoll_core::ha::elect`], and, if chosen, takes the key in an etcd
//! transaction, fences the old master if its server still answers, and promotes itself.
//!
//! [`HaConfig::election_wait`]: atoll_core::ha::HaConfig::election_wait

use super::local::{self, Local};
use super::run::{log_err, Loop};
use super::{sync, Etcd};
use crate::queue::now_ms;
use atoll_core::ha::{elect, Election, FailoverRecord, LeaderRecord, MemberRecord, Optime};
use std::time::{Duration, Instant};

/// An election this member takes part in.
pub(super) struct Candidate {
    /// The store revision at which the leader was first seen gone: records modified after
    /// it come from members alive since.
    revision: i64,
    /// When.
    since: Instant,
    /// The last outcome published, to write it only when it changes.
    last: Option<Election>,
}

/// Bound on fencing the old master's server (it may be gone, or unreachable).
const FENCE_TIMEOUT: Duration = Duration::from_millis(1000);

impl Loop {
    pub(super) async fn without_leader(&mut self, etcd: &Etcd, local: &Local, rev: i64) {
        metrics::gauge!("atoll_agent_ha_leader").set(0.0);
        match local {
            Local::Up(f) if !f.in_recovery => self.retake(etcd, f).await,
            Local::Up(_) => self.stand(etcd, rev).await,
            Local::Down | Local::Unresponsive => self.candidate = None,
        }
    }

    /// A master with no leader key takes it, unless the last master published a newer
    /// timeline (this one was left behind by a failover it missed): then it demotes.
    async fn retake(&mut self, etcd: &Etcd, f: &local::Facts) {
        let optime = read_optime(etcd, &self.h.keys.optime()).await;
        if let Some(o) = optime.filter(|o| o.node != self.me() && o.timeline > f.timeline) {
            tracing::warn!(newer = %o.node, timeline = o.timeline, "a master on an old timeline: demoting");
            if let Some(dir) = self.reader.data_dir() {
                log_err(
                    "demotion",
                    local::demote(&self.tools, &dir, self.h.ha.demote_margin()).await,
                );
            }
            return;
        }
        let Some(lease) = self.h.lease() else { return };
        if take(etcd, &self.h.keys.leader(), &self.me(), lease).await {
            tracing::info!("took the island's leader key");
        }
    }

    async fn stand(&mut self, etcd: &Etcd, rev: i64) {
        let c = self.candidate.get_or_insert_with(|| Candidate {
            revision: rev,
            since: Instant::now(),
            last: None,
        });
        let (revision, since) = (c.revision, c.since);
        if since.elapsed() < self.h.ha.election_wait() || self.reader.running().is_some() {
            return;
        }
        let keys = &self.h.keys;
        let Ok(members) = etcd.get_prefix(&keys.members()).await else {
            return;
        };
        // Every record still there belongs to a live agent (the old master's went with its
        // lease). One not republished since the leader was lost may hide the most advanced
        // member: wait for it, up to a TTL (by then it republished or its lease expired).
        let stale = members
            .iter()
            .filter(|(_, e)| e.mod_revision <= revision)
            .count();
        if stale > 0 && since.elapsed() < self.h.ha.ttl {
            return;
        }
        let fresh: Vec<MemberRecord> = members
            .iter()
            .filter(|(_, e)| e.mod_revision > revision)
            .filter_map(|(_, e)| serde_json::from_str(&e.value).ok())
            .collect();
        let optime = read_optime(etcd, &keys.optime()).await;
        let set = sync::read_set(etcd, keys).await;
        let outcome = elect(&self.h.ha, &fresh, optime.as_ref(), set.as_ref());
        self.record(etcd, &outcome, &fresh).await;
        if let Election::Winner {
            node, lag_bytes, ..
        } = &outcome
        {
            if *node == self.me() {
                self.take_over(etcd, optime, *lag_bytes).await;
            }
        }
    }

    /// Publishes an election's outcome when it differs from the last one.
    async fn record(&mut self, etcd: &Etcd, outcome: &Election, fresh: &[MemberRecord]) {
        let Some(c) = self.candidate.as_mut() else {
            return;
        };
        if c.last.as_ref() == Some(outcome) {
            return;
        }
        let positions: Vec<(&str, u64, u32)> = fresh
            .iter()
            .map(|m| (m.node.as_str(), m.position, m.timeline))
            .collect();
        tracing::info!(?positions, "members at the election");
        match outcome {
            Election::NoWinner { why, refused } => {
                tracing::warn!(%why, ?refused, "no member may take over");
            }
            Election::Winner { node, refused, .. } => {
                tracing::info!(winner = %node, ?refused, "election");
            }
        }
        c.last = Some(outcome.clone());
        if let Ok(t) = serde_json::to_string(outcome) {
            let _ = etcd.put(&self.h.keys.last_election(), t, None).await;
        }
    }

    async fn take_over(&mut self, etcd: &Etcd, optime: Option<Optime>, lag_bytes: u64) {
        let Some(lease) = self.h.lease() else { return };
        if !take(etcd, &self.h.keys.leader(), &self.me(), lease).await {
            return;
        }
        tracing::warn!(lag_bytes, "won the election: promoting");
        let old = optime.as_ref().map(|o| o.node.clone());
        if let Some(n) = old
            .as_deref()
            .filter(|o| *o != self.me())
            .and_then(|o| self.h.cfg.island_node(o))
        {
            if local::fence_remote(&n, FENCE_TIMEOUT).await {
                tracing::warn!(old = %n, "the old master still answered: fenced it read-only");
            }
        }
        if let Err(e) = local::promote(&self.h.cfg).await {
            tracing::error!(error = %e, "promotion failed; the next loop tries again");
            return;
        }
        let at_ms = now_ms().max(0) as u64;
        metrics::counter!("atoll_agent_ha_failovers_total").increment(1);
        let rec = FailoverRecord {
            at_ms,
            from: old,
            to: self.me(),
            lag_bytes,
            writes_refused_ms: optime.map(|o| at_ms.saturating_sub(o.at_ms)),
            synchronous: self.h.ha.synchronous,
            manual: false,
        };
        if let Ok(t) = serde_json::to_string(&rec) {
            let _ = etcd.put(&self.h.keys.last_failover(), t, None).await;
        }
        self.candidate = None;
    }
}

/// Takes the leader key for `me` if nobody holds it.
async fn take(etcd: &Etcd, key: &str, me: &str, lease: i64) -> bool {
    let rec = LeaderRecord {
        node: me.to_string(),
        since_ms: now_ms().max(0) as u64,
    };
    let Ok(text) = serde_json::to_string(&rec) else {
        return false;
    };
    etcd.create(key, &text, lease).await.unwrap_or(false)
}

async fn read_optime(etcd: &Etcd, key: &str) -> Option<Optime> {
    let (e, _) = etcd.get(key).await.ok()?;
    serde_json::from_str(&e?.value).ok()
}
