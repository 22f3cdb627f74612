//! What `atoll ha status` and `atoll status` show of failover, read from etcd: per island
//! the leader and since when, each member's last record, the synchronous set, the last
//! election and the last failover, and in asynchronous mode how much a failover now could
//! lose.

use super::etcd::{Etcd, EtcdError};
use atoll_core::ha::{
    Election, FailoverRecord, LeaderRecord, MemberRecord, MemberRole, Optime, SyncSet,
};
use atoll_core::{Config, IslandId};
use serde::Serialize;

/// One island's failover state.
#[derive(Debug, Clone, Serialize)]
pub struct IslandHa {
    /// The island.
    pub island: IslandId,
    /// The leader key's holder, if any.
    pub leader: Option<LeaderRecord>,
    /// The members whose agents run (their records live under their leases), by address.
    pub members: Vec<MemberRecord>,
    /// The master's last published position.
    pub optime: Option<Optime>,
    /// The synchronous standby set (synchronous mode).
    pub sync: Option<SyncSet>,
    /// Bytes a failover now could lose: the master's position minus the most advanced
    /// replica's (asynchronous mode only; 0 in synchronous mode by construction).
    pub could_lose_bytes: Option<u64>,
    /// The last election's outcome.
    pub last_election: Option<Election>,
    /// The last failover.
    pub last_failover: Option<FailoverRecord>,
}

fn parse<T: serde::de::DeserializeOwned>(v: Option<&str>) -> Option<T> {
    serde_json::from_str(v?).ok()
}

/// Reads every island's state; `None` when `cfg` has no `[ha]`.
pub async fn read_status(cfg: &Config) -> Result<Option<Vec<IslandHa>>, EtcdError> {
    let Some(ha) = &cfg.ha else {
        return Ok(None);
    };
    let etcd = Etcd::connect(ha).await?;
    let mut out = Vec::new();
    for island in &cfg.islands {
        let keys = ha.keys(island.id);
        // One read per island: every key under its prefix.
        let all = etcd.get_prefix(&keys.island()).await?;
        let value = |key: String| {
            all.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, e)| e.value.as_str())
        };
        let members_prefix = keys.members();
        let mut members: Vec<MemberRecord> = all
            .iter()
            .filter(|(k, _)| k.starts_with(&members_prefix))
            .filter_map(|(_, e)| serde_json::from_str(&e.value).ok())
            .collect();
        members.sort_by(|a, b| a.node.cmp(&b.node));
        let optime: Option<Optime> = parse(value(keys.optime()));
        let could_lose_bytes = match (&optime, ha.synchronous) {
            (Some(o), false) => Some(
                members
                    .iter()
                    .filter(|m| m.role == MemberRole::Replica && m.timeline == o.timeline)
                    .map(|m| o.position.saturating_sub(m.position))
                    .min()
                    .unwrap_or(o.position),
            ),
            _ => None,
        };
        out.push(IslandHa {
            island: island.id,
            leader: parse(value(keys.leader())),
            members,
            optime,
            sync: parse(value(keys.sync())),
            could_lose_bytes,
            last_election: parse(value(keys.last_election())),
            last_failover: parse(value(keys.last_failover())),
        });
    }
    Ok(Some(out))
}
