//! The node status, decided from what the node said about itself (pure, no I/O).

use serde::Serialize;

/// The node's status (seed 004's node status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Running and doing its part.
    Healthy,
    /// Running, but something is wrong: see `reasons`.
    Unhealthy,
    /// PostgreSQL does not answer (stopped, starting, refusing connections).
    Unavailable,
    /// PostgreSQL runs but holds no atoll catalog: not (yet) part of a cluster.
    NotInCluster,
    /// A `cluster.join` is running on this agent.
    Joining,
    /// A `cluster.remove` of this very node is running on this agent.
    Leaving,
    /// The agent could not tell (a query failed): see `reasons`.
    Unknown,
}

/// Why a node is UNHEALTHY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnhealthyReason {
    /// A replica with no WAL receiver streaming from a master.
    NotStreaming,
    /// A replica whose replay is paused (`pg_wal_replay_pause()`).
    ReplayPaused,
    /// The catalog names another island than `atoll.toml` gives this node.
    IslandMismatch,
}

/// What the status is decided from.
#[derive(Debug, Clone, Default)]
pub struct StatusInputs {
    /// Connecting failed: this message.
    pub unavailable: Option<String>,
    /// A query failed: this message.
    pub unknown: Option<String>,
    /// An action of this agent is joining the node to a cluster.
    pub joining: bool,
    /// An action of this agent is removing this node.
    pub leaving: bool,
    /// The node holds an atoll catalog.
    pub has_catalog: bool,
    /// The node is a replica.
    pub in_recovery: bool,
    /// The replica's WAL receiver is streaming.
    pub streaming: bool,
    /// The replica's replay is paused.
    pub replay_paused: bool,
    /// The catalog's island differs from the configured one.
    pub island_mismatch: bool,
}

/// The status and, for UNHEALTHY, the reasons; for UNAVAILABLE and UNKNOWN, the message.
pub fn decide(i: &StatusInputs) -> (NodeStatus, Vec<UnhealthyReason>, Option<String>) {
    if i.joining {
        return (NodeStatus::Joining, Vec::new(), None);
    }
    if i.leaving {
        return (NodeStatus::Leaving, Vec::new(), None);
    }
    if let Some(m) = &i.unavailable {
        return (NodeStatus::Unavailable, Vec::new(), Some(m.clone()));
    }
    if let Some(m) = &i.unknown {
        return (NodeStatus::Unknown, Vec::new(), Some(m.clone()));
    }
    if !i.has_catalog {
        return (NodeStatus::NotInCluster, Vec::new(), None);
    }
    let mut reasons = Vec::new();
    if i.in_recovery && !i.streaming {
        reasons.push(UnhealthyReason::NotStreaming);
    }
    if i.in_recovery && i.replay_paused {
        reasons.push(UnhealthyReason::ReplayPaused);
    }
    if i.island_mismatch {
        reasons.push(UnhealthyReason::IslandMismatch);
    }
    if reasons.is_empty() {
        (NodeStatus::Healthy, reasons, None)
    } else {
        (NodeStatus::Unhealthy, reasons, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let healthy = StatusInputs {
            has_catalog: true,
            ..Default::default()
        };
        assert_eq!(decide(&healthy).0, NodeStatus::Healthy);
        let replica = StatusInputs {
            in_recovery: true,
            replay_paused: true,
            ..healthy.clone()
        };
        assert_eq!(
            decide(&replica),
            (
                NodeStatus::Unhealthy,
                vec![UnhealthyReason::NotStreaming, UnhealthyReason::ReplayPaused],
                None
            )
        );
        let down = StatusInputs {
            unavailable: Some("refused".into()),
            ..Default::default()
        };
        assert_eq!(decide(&down).0, NodeStatus::Unavailable);
        let joining = StatusInputs {
            joining: true,
            ..down
        };
        assert_eq!(decide(&joining).0, NodeStatus::Joining);
        assert_eq!(decide(&StatusInputs::default()).0, NodeStatus::NotInCluster);
    }
}
