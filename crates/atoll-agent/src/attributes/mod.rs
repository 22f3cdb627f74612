//! Attributes: what the agent says about its node, read from that node alone (one
//! connection to the local server, a pipeline of a few queries on PostgreSQL's own views)
//! and from the agent itself. Reading never connects to another node.

mod read;
mod status;

pub use read::AttributeReader;
pub use status::{decide, NodeStatus, StatusInputs, UnhealthyReason};

use serde::Serialize;
use std::collections::BTreeMap;

/// Everything `GET /v1/attributes` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Attributes {
    /// atoll's cluster id (`atoll.meta`); `None` before `atoll init` / `cluster.init`.
    pub cluster_id: Option<String>,
    /// The node's stable id (from the agent's config; default `host:port`).
    pub node_id: String,
    /// The island `atoll.toml` puts the node on.
    pub island: u16,
    /// The agent's version (SemVer).
    pub agent_version: String,
    /// The server's version as SemVer (`15.18.0`); `None` when PostgreSQL is down.
    pub store_version: Option<String>,
    /// The node's status.
    pub status: NodeStatus,
    /// Why the node is UNHEALTHY (empty otherwise).
    pub status_reasons: Vec<UnhealthyReason>,
    /// What failed, for UNAVAILABLE and UNKNOWN.
    pub status_message: Option<String>,
    /// `master` or `replica`; `None` when PostgreSQL is down.
    pub role: Option<NodeRole>,
    /// The shards on the node.
    pub shards: Vec<ShardAttributes>,
    /// Attributes known only while PostgreSQL runs (`postgresql.…`); empty when it is down.
    pub store_attributes: BTreeMap<String, serde_json::Value>,
    /// Attributes the agent always knows (`atoll.agent.…`).
    pub agent_attributes: BTreeMap<String, serde_json::Value>,
    /// When the reading was taken, Unix time in ms.
    pub read_at_ms: i64,
    /// How long the reading took, in ms.
    pub read_took_ms: f64,
}

/// The node's replication role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Accepts writes (not in recovery).
    Master,
    /// A streaming (or recovering) replica.
    Replica,
}

/// One shard on the node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardAttributes {
    /// The shard's cluster-unique id: its schema name, `shNNNN`.
    pub id: String,
    /// The shard's number, 0..=9999.
    pub shard: u16,
    /// The shard's replication state on this node.
    pub state: ShardState,
    /// The last persisted write: the node's WAL position (on a replica, the replayed one).
    pub commit_offset: Offset,
    /// On replicas: how far replay is behind what was received.
    pub replication_lag: Option<Lag>,
}

/// A shard's replication state on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShardState {
    /// Active, on the master: this node takes the shard's writes.
    Primary,
    /// Active, on a replica: a copy.
    Secondary,
    /// Present here but not active (allocated inactive, deactivated, or a move's copy
    /// not yet switched).
    Inactive,
    /// An unfinished move of the shard involves this island.
    Moving,
}

/// A position with its unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Offset {
    /// The value.
    pub value: i64,
    /// Its unit; always `bytes` (the LSN as a byte position in the WAL).
    pub unit: OffsetUnit,
}

/// The unit of a commit offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetUnit {
    /// Bytes of WAL.
    Bytes,
}

/// Replication lag, computed on the replica alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// WAL received but not yet replayed, in bytes.
    pub bytes: i64,
    /// 0 when everything received is replayed, else the time since the last replayed
    /// transaction's commit, in ms.
    pub ms: i64,
    /// Age of the received position: ms since the replica last heard from its master
    /// (`None` when no WAL receiver runs).
    pub age_ms: Option<i64>,
}

/// `server_version_num` as SemVer: 150018 → `15.18.0`, 90624 → `9.6.24`.
pub fn semver_of(version_num: i32) -> Option<String> {
    if version_num <= 0 {
        return None;
    }
    let v = if version_num >= 100_000 {
        semver::Version::new(
            (version_num / 10_000) as u64,
            (version_num % 10_000) as u64,
            0,
        )
    } else {
        semver::Version::new(
            (version_num / 10_000) as u64,
            (version_num / 100 % 100) as u64,
            (version_num % 100) as u64,
        )
    };
    Some(v.to_string())
}

/// The agent's own version (this crate's).
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(semver_of(150018).as_deref(), Some("15.18.0"));
        assert_eq!(semver_of(170002).as_deref(), Some("17.2.0"));
        assert_eq!(semver_of(90624).as_deref(), Some("9.6.24"));
        assert_eq!(semver_of(0), None);
        assert!(semver::Version::parse(AGENT_VERSION).is_ok());
    }
}
