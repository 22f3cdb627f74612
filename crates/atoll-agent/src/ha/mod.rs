//! Automated failover (`docs/failover.md`): with `[ha]` in `atoll.toml`, every agent runs a
//! loop that holds one etcd lease (its session), publishes its node's facts under it, and
//! acts on the island's leader key:
//! - the master holds the leader key under its lease and renews it every loop; when it
//!   cannot renew for [`HaConfig::demote_after`] it demotes its server (a fast shutdown,
//!   then a read-only restart) before the lease can expire;
//! - a master whose server stops answering is fenced (its processes killed) and the lease
//!   revoked, so a replica takes over at once;
//! - when the leader key is gone, the replicas publish their final positions and the one
//!   [`atoll_core::ha::elect`] chooses takes the key in an etcd transaction, fences the old
//!   master if its server still answers, and promotes itself;
//! - every other node follows the leader: a writable non-leader is demoted and rejoined
//!   (pg_rewind when needed), a replica streaming from elsewhere is repointed.
//!
//! The decisions are `atoll-core`'s (`ha`); this module carries them out. Consensus is
//! etcd's: nothing here elects without a successful transaction on the leader key.

mod election;
pub mod etcd;
mod follower;
mod local;
mod run;
pub mod status;
mod sync;

pub use etcd::{Etcd, EtcdError};
pub use run::run;
pub use status::{read_status, IslandHa};

use crate::config::AgentConfig;
use atoll_core::ha::{FailoverRecord, HaConfig, IslandKeys, LeaderRecord};
use std::sync::{Arc, Mutex};

/// What the failover loop and the `node.switchover` action share.
pub struct HaHandle {
    pub(crate) cfg: Arc<AgentConfig>,
    pub(crate) ha: HaConfig,
    pub(crate) keys: IslandKeys,
    /// The agent's API address, published in its member record (`atoll failover` finds
    /// the master's agent there).
    pub(crate) agent_addr: String,
    /// The etcd connection, made lazily and dropped after a failed request so that the next
    /// loop reconnects.
    etcd: tokio::sync::Mutex<Option<Etcd>>,
    /// The agent's session lease: `None` until granted, and again once it expired or was
    /// revoked. Read by a handover, which puts the leader key under it.
    lease: Mutex<Option<i64>>,
}

impl HaHandle {
    /// The handle for an agent of a cluster with `[ha]`; `None` without failover.
    pub fn new(cfg: Arc<AgentConfig>, agent_addr: String) -> Option<Arc<HaHandle>> {
        let ha = cfg.cluster.ha.clone()?;
        Some(Arc::new(HaHandle {
            keys: ha.keys(cfg.island),
            ha,
            cfg,
            agent_addr,
            etcd: tokio::sync::Mutex::new(None),
            lease: Mutex::new(None),
        }))
    }

    /// The connection, made now if there is none.
    pub(crate) async fn etcd(&self) -> Result<Etcd, EtcdError> {
        let mut slot = self.etcd.lock().await;
        if let Some(e) = slot.as_ref() {
            return Ok(e.clone());
        }
        let e = Etcd::connect(&self.ha).await?;
        *slot = Some(e.clone());
        Ok(e)
    }

    /// Forgets the connection after a failure.
    pub(crate) async fn drop_etcd(&self) {
        *self.etcd.lock().await = None;
    }

    pub(crate) fn lease(&self) -> Option<i64> {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_lease(&self, id: Option<i64>) {
        *self.lease.lock().unwrap_or_else(|p| p.into_inner()) = id;
    }

    /// `node.switchover`: hands the leader key held by this node to `to` (under this
    /// agent's lease until `to`'s agent puts it under its own). Refused unless this node
    /// holds the key.
    pub async fn hand_over(&self, to: &str) -> Result<(), String> {
        let me = self.cfg.node.addr();
        let etcd = self.etcd().await.map_err(|e| e.to_string())?;
        let lease = self.lease().ok_or("this agent holds no etcd lease")?;
        let (entry, _) = etcd
            .get(&self.keys.leader())
            .await
            .map_err(|e| e.to_string())?;
        let entry = entry.ok_or("the island has no leader in etcd")?;
        let held: LeaderRecord = serde_json::from_str(&entry.value)
            .map_err(|e| format!("the leader key holds no leader record: {e}"))?;
        if held.node != me {
            return Err(format!("the leader key is held by {}, not {me}", held.node));
        }
        let next = LeaderRecord {
            node: to.to_string(),
            since_ms: crate::queue::now_ms().max(0) as u64,
        };
        let text = serde_json::to_string(&next).map_err(|e| e.to_string())?;
        match etcd
            .swap(&self.keys.leader(), entry.mod_revision, &text, lease)
            .await
        {
            Ok(true) => Ok(()),
            Ok(false) => Err("the leader key changed during the handover".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Records a failover done by `node.switchover` (best effort: the handover happened).
    pub async fn record_manual(&self, to: &str, lag_bytes: u64, writes_refused_ms: u64) {
        let rec = FailoverRecord {
            at_ms: crate::queue::now_ms().max(0) as u64,
            from: Some(self.cfg.node.addr()),
            to: to.to_string(),
            lag_bytes,
            writes_refused_ms: Some(writes_refused_ms),
            synchronous: self.ha.synchronous,
            manual: true,
        };
        let (Ok(etcd), Ok(text)) = (self.etcd().await, serde_json::to_string(&rec)) else {
            return;
        };
        let _ = etcd.put(&self.keys.last_failover(), text, None).await;
    }
}
