//! Tunables of a [`crate::Cluster`], with defaults meant for production.

use atoll_core::{MAX_LEAD_SECONDS, NODE_IDS};
use std::ops::Range;
use std::time::Duration;

/// Tunables of a [`crate::Cluster`]; `Default` gives values meant for production.
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
    /// Backoff before the first retry (default 20 ms); doubles with each attempt.
    pub backoff_initial: Duration,
    /// Longest backoff between two attempts (default 400 ms).
    pub backoff_max: Duration,
    /// How long a write's entry in a [`crate::Timeline`] matters. After it, replicas are
    /// assumed to have caught up.
    pub timeline_ttl: Duration,
    /// Most connections in each node's pool (default 16).
    pub pool_max_size: usize,
    /// Longest wait for a free pooled connection.
    pub pool_wait_timeout: Duration,
    /// Bound on one node's discovery probe.
    pub node_timeout: Duration,
    /// Where this process's node id for app-side IDs ([`crate::Cluster::new_id`]) comes
    /// from: none (app-side generation disabled), a fixed one, or a lease.
    pub id_node: IdNode,
    /// `application_name` of every connection, shown in `pg_stat_activity` and in lease holders
    /// (default `atoll-client`).
    pub application_name: String,
    /// Listen for shard notices (default on): one extra connection per island master
    /// (`application_name` + ` notices`), over which the islands announce a move's switch
    /// and activation and `shard activate|deactivate` as they commit, so the snapshot
    /// follows at once instead of after an error and a rediscovery. Off for a client that
    /// must not hold extra connections; it then learns through errors, as before.
    pub shard_notices: bool,
    /// Keep at least one pooled connection open to every island master (default on), so
    /// the first statement after a move (or a failover) onto an island this process has
    /// not used yet does not also pay for connecting (measured 38-41 ms on a loaded
    /// machine, in the move benchmarks' cut-over gap). Opened in the background after each
    /// discovery round that finds a master's pool empty.
    pub warm_masters: bool,
    /// Measure every shard's size in each discovery round (default off: routing does not
    /// need sizes, and at 10,000 shards they cost the islands a pass over pg_class); on for
    /// a process that shows them (`atoll serve`).
    pub shard_sizes: bool,
    /// The island this process runs next to: [`crate::Cluster::global`] reads shard 0's
    /// tables from that island's read-only copy (`atoll global replicate`) when it can
    /// answer as fresh as asked. `None` (the default): shard 0's island.
    pub home_island: Option<atoll_core::IslandId>,
    /// How long a read-your-writes read of shard 0 waits for the local copy to apply the
    /// caller's write before reading from shard 0's island instead.
    pub global_copy_wait: Duration,
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
            id_node: IdNode::None,
            application_name: "atoll-client".to_string(),
            shard_notices: true,
            warm_masters: true,
            shard_sizes: false,
            home_island: None,
            global_copy_wait: Duration::from_millis(20),
        }
    }
}

/// The node id app-side IDs carry (see [`atoll_core::IdGenerator`]): it must be unique among
/// the processes generating IDs at the same time, and rest for the generator's lead window
/// after its holder stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IdNode {
    /// No app-side IDs: [`crate::Cluster::new_id`] fails with `NoIdNode`.
    #[default]
    None,
    /// A node id chosen by the operator (a pod ordinal, ...), who keeps it unique. Keep
    /// fixed ids outside the leased range when both are used.
    Fixed(u16),
    /// A node id leased from the cluster (`atoll.id_leases` on the lowest island's
    /// master), renewed in the background; IDs are refused while no lease is valid.
    Lease(LeaseOptions),
}

impl IdNode {
    /// A lease with the default timing over all node ids.
    pub fn lease() -> IdNode {
        IdNode::Lease(LeaseOptions::default())
    }
}

/// Timing and range of a node id lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseOptions {
    /// How long a lease lasts without renewal (server clock). IDs stop a little before it
    /// ends (measured from when the renewal was sent), never after.
    pub ttl: Duration,
    /// How often the lease is renewed; several renewals fit in one `ttl`, so one or two
    /// failed ones (a connection blip) cost nothing.
    pub renew_every: Duration,
    /// How long a node id rests after its lease ended before another process may take it:
    /// the generator's lead over the clock plus one second (IDs carry whole seconds) plus
    /// the clock difference allowed between hosts. At least `MAX_LEAD_SECONDS + 1` s.
    pub reuse_after: Duration,
    /// The node ids this process may lease (e.g. `100..1000` when `0..100` are fixed ones).
    pub nodes: Range<u16>,
}

/// The longest lease ttl accepted: a day. A process that hangs keeps its node id that
/// long, so longer makes no sense, and it keeps deadline arithmetic far from overflow.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(86_400);

/// The clock difference between two hosts that the default `reuse_after` allows for.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            reuse_after: Duration::from_secs(MAX_LEAD_SECONDS + 1) + DEFAULT_CLOCK_SKEW,
            nodes: 0..NODE_IDS,
        }
    }
}

impl LeaseOptions {
    /// Refuses timings under which the lease could not protect uniqueness or would lapse
    /// between renewals.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() || self.nodes.end > NODE_IDS {
            return Err(format!(
                "lease node range {}..{} must be a non-empty part of 0..{NODE_IDS}",
                self.nodes.start, self.nodes.end
            ));
        }
        if self.ttl < Duration::from_secs(1) || self.ttl > MAX_LEASE_TTL {
            return Err(format!(
                "lease ttl {:?} must be between 1 s and {MAX_LEASE_TTL:?}",
                self.ttl
            ));
        }
        let twice = self.renew_every.checked_mul(2);
        if self.renew_every.is_zero() || !matches!(twice, Some(t) if t <= self.ttl) {
            return Err(format!(
                "lease renew_every {:?} must be positive and at most half the ttl {:?}",
                self.renew_every, self.ttl
            ));
        }
        let least = Duration::from_secs(MAX_LEAD_SECONDS + 1);
        if self.reuse_after < least {
            return Err(format!(
                "lease reuse_after {:?} is below the generator's lead window {least:?}",
                self.reuse_after
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_options_are_checked() {
        assert_eq!(LeaseOptions::default().validate(), Ok(()));
        let bad = |f: fn(&mut LeaseOptions)| {
            let mut o = LeaseOptions::default();
            f(&mut o);
            o.validate().unwrap_err()
        };
        assert!(bad(|o| o.nodes = 5..5).contains("non-empty"));
        assert!(bad(|o| o.nodes = 0..1001).contains("0..1000"));
        assert!(bad(|o| o.ttl = Duration::from_millis(500)).contains("between 1 s"));
        assert!(bad(|o| o.ttl = Duration::MAX).contains("between 1 s"));
        assert!(bad(|o| o.renew_every = Duration::MAX).contains("half the ttl"));
        assert!(bad(|o| o.renew_every = Duration::from_secs(16)).contains("half the ttl"));
        assert!(bad(|o| o.renew_every = Duration::ZERO).contains("positive"));
        assert!(bad(|o| o.reuse_after = Duration::from_secs(30)).contains("lead window"));
    }
}
