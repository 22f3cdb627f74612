//! Tunables of a [`crate::Cluster`], with defaults meant for production.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// How often the snapshot is refreshed in the background (jittered ±25% so many
    /// processes do not probe the nodes in lockstep). A routing error refreshes at once.
    pub refresh_period: Duration,
    /// Least time between two discovery rounds, so a burst of routing errors is one round.
    pub min_refresh_interval: Duration,
    /// How long a shard that is absent (not active anywhere: a move's switch-over) or an
    /// island without a master (a failover) is waited for before the caller gets an error.
    pub shard_absent_window: Duration,
    /// Attempts per statement, whatever the window.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long a write's entry in a [`crate::Timeline`] matters. After it, replicas are
    /// assumed to have caught up.
    pub timeline_ttl: Duration,
    pub pool_max_size: usize,
    /// Longest wait for a free pooled connection.
    pub pool_wait_timeout: Duration,
    /// Bound on one node's discovery probe.
    pub node_timeout: Duration,
    /// The node id of this process for app-side IDs ([`crate::Cluster::new_id`]); must be
    /// unique among the processes generating IDs at the same time (see
    /// [`atoll_core::IdGenerator`]). `None` disables app-side generation.
    pub id_node: Option<u16>,
    pub application_name: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            refresh_period: Duration::from_secs(1),
            min_refresh_interval: Duration::from_millis(50),
            shard_absent_window: Duration::from_secs(5),
            max_attempts: 30,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(400),
            timeline_ttl: Duration::from_secs(60),
            pool_max_size: 16,
            pool_wait_timeout: Duration::from_secs(5),
            node_timeout: Duration::from_secs(2),
            id_node: None,
            application_name: "atoll-client".to_string(),
        }
    }
}
