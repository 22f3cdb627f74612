//! The background task of a leased node id: takes a lease, renews it every `renew_every`,
//! drops it at once when a renewal finds it taken over, takes a new one, and releases it
//! when the cluster handle goes away. It talks to the lease island's master
//! ([`atoll_pg::catalog::id_leases::lease_island`]) on a connection of its own, found through the
//! cluster's current snapshot, so it follows a failover like every query does.

use super::{deadline, LeaseSlot};
use crate::clock::stamp;
use crate::cluster::Shared;
use crate::error::ClientError;
use crate::options::LeaseOptions;
use atoll_core::NodeConfig;
use atoll_pg::catalog::id_leases::{self, LeaseRequest};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_postgres::Client;

/// How long releasing a lease on shutdown may take before it is left to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the lease task shows people as the holder: host, pid and application name (never
/// anything from the config, so never a credential).
pub(crate) fn holder_text(application_name: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    // At most 200 characters (String::truncate would panic inside a multibyte one).
    format!("{host} pid {} ({application_name})", std::process::id())
        .chars()
        .take(200)
        .collect()
}

/// Why IDs stopped after a renewal found the lease taken over.
fn lost_text(node: u16) -> String {
    format!("the lease on node id {node} was taken over by another process after it expired")
}

/// A lease statement.
#[derive(Clone, Copy)]
enum Op<'a> {
    Acquire(&'a LeaseRequest<'a>),
    Renew(u16, &'a str, Duration),
    Release(u16, &'a str),
}

impl Op<'_> {
    fn what(&self) -> &'static str {
        match self {
            Op::Acquire(_) => "acquiring a node id lease",
            Op::Renew(..) => "renewing the node id lease",
            Op::Release(..) => "releasing the node id lease",
        }
    }
}

pub(crate) struct LeaseTask {
    shared: Arc<Shared>,
    slot: Arc<LeaseSlot>,
    opts: LeaseOptions,
    holder: String,
    conn: Option<(NodeConfig, Client)>,
    /// The node id whose lease was last lost, until a new lease is taken.
    lost: Option<u16>,
}

impl LeaseTask {
    pub(crate) fn new(shared: Arc<Shared>, slot: Arc<LeaseSlot>, opts: LeaseOptions) -> Self {
        let holder = holder_text(&shared.options.application_name);
        LeaseTask {
            shared,
            slot,
            opts,
            holder,
            conn: None,
            lost: None,
        }
    }

    /// A connection to the lease island's current master (reused while it is the master).
    async fn client(&mut self) -> Result<(NodeConfig, &Client), ClientError> {
        let state = self.shared.state.load_full();
        let island = id_leases::lease_island(&state.config).ok_or_else(|| {
            ClientError::IdLease("the config names no island to lease node ids on".into())
        })?;
        let node = atoll_pg::master_node(&state.config, &state.snapshot, island)
            .map_err(|e| ClientError::IdLease(format!("lease island {island}: {e}")))?;
        let fresh = match &self.conn {
            Some((n, c)) => *n != node || c.is_closed(),
            None => true,
        };
        if fresh {
            self.conn = None;
            let c = atoll_pg::connect_with_timeout(&node, state.config.connect_timeout)
                .await
                .map_err(|e| ClientError::IdLease(e.to_string()))?;
            self.conn = Some((node.clone(), c));
        }
        match &self.conn {
            Some((_, c)) => Ok((node, c)),
            None => Err(ClientError::IdLease("no lease connection".into())),
        }
    }

    /// The bound on one lease statement: `min(renew_every, ttl/4)`, so even two hung
    /// renewals in a row leave time for a third before the deadline.
    fn statement_limit(&self) -> Duration {
        self.opts.renew_every.min(self.opts.ttl / 4)
    }

    /// Runs one lease statement, bounded by `limit`; opening a fresh connection first is
    /// bounded separately by the config's `connect_timeout` (a slow connect is not a hung
    /// statement, and the lease deadline counts from before both anyway). On failure the
    /// connection is dropped and a rediscovery requested (the master may have changed).
    /// Acquire answers the node id taken; renew and release answer the node id if the lease
    /// was still ours.
    async fn exec(&mut self, op: Op<'_>, limit: Duration) -> Result<Option<u16>, ClientError> {
        let out = match self.client().await {
            Err(e) => Err(e),
            Ok((node, c)) => {
                let statement = async {
                    match op {
                        Op::Acquire(req) => id_leases::acquire(c, &node, req).await,
                        Op::Renew(n, token, ttl) => id_leases::renew(c, &node, n, token, ttl)
                            .await
                            .map(|ok| ok.then_some(n)),
                        Op::Release(n, token) => id_leases::release(c, &node, n, token)
                            .await
                            .map(|ok| ok.then_some(n)),
                    }
                    .map_err(|e| ClientError::IdLease(e.to_string()))
                };
                match tokio::time::timeout(limit, statement).await {
                    Ok(r) => r,
                    Err(_) => Err(ClientError::IdLease(format!(
                        "{} on the lease island's master {node} timed out after {limit:?}",
                        op.what()
                    ))),
                }
            }
        };
        if out.is_err() {
            self.conn = None;
            self.shared.wake.notify_one();
        }
        out
    }

    /// Takes the first lease, while the cluster connects: nothing is waiting on a renewal
    /// yet, so the statement may take as long as a connect may (a cold server or a slow
    /// machine must not fail `Cluster::connect`).
    pub(crate) async fn acquire_first(&mut self) -> Result<bool, ClientError> {
        let connect_timeout = self.shared.state.load().config.connect_timeout;
        let limit = self.statement_limit().max(connect_timeout);
        self.acquire_within(limit).await
    }

    /// Takes a new lease: Ok(false) when every node id in the range is held or resting
    /// (the caller says so: its message depends on why it was acquiring).
    async fn acquire_within(&mut self, limit: Duration) -> Result<bool, ClientError> {
        let token = format!("{:032x}", rand::random::<u128>());
        let holder = self.holder.clone();
        let req = LeaseRequest {
            token: &token,
            holder: &holder,
            ttl: self.opts.ttl,
            reuse_after: self.opts.reuse_after,
            nodes: self.opts.nodes.clone(),
        };
        let sent = stamp();
        let got = self.exec(Op::Acquire(&req), limit).await?;
        let Some(node) = got else {
            return Ok(false);
        };
        self.slot
            .install(node, token, deadline(sent, self.opts.ttl))?;
        tracing::info!(node, "atoll-client: leased ID node id");
        Ok(true)
    }

    /// Tries to take a new lease; the delay to the next round.
    async fn acquire_round(&mut self, retry: Duration) -> Duration {
        let failed = match self.acquire_within(self.statement_limit()).await {
            Ok(true) => {
                self.lost = None;
                return self.opts.renew_every;
            }
            Ok(false) => None,
            Err(e) => Some(e),
        };
        // Keep the loss in the message: it is why there is no lease.
        let lost = self
            .lost
            .map(|n| format!("{}, and ", lost_text(n)))
            .unwrap_or_default();
        let (a, b) = (self.opts.nodes.start, self.opts.nodes.end);
        match failed {
            None => {
                self.slot.set_why(format!(
                    "{lost}every node id in {a}..{b} is leased or resting; IDs resume once one is free and leased"
                ));
                retry.max(self.opts.renew_every / 2)
            }
            Some(e) => {
                self.slot.set_why(format!(
                    "{lost}taking a new lease failed: {e}; IDs resume once a lease on a node id in {a}..{b} is taken"
                ));
                retry
            }
        }
    }

    /// One round: renew the lease in force, or take one. Returns the delay to the next.
    async fn round(&mut self) -> Duration {
        let retry = (self.opts.renew_every / 4).max(Duration::from_millis(50));
        let Some(held) = self.slot.held() else {
            return self.acquire_round(retry).await;
        };
        let sent = stamp();
        let (node, token, ttl) = (held.node, held.token.clone(), self.opts.ttl);
        let renewed = self
            .exec(Op::Renew(node, &token, ttl), self.statement_limit())
            .await;
        match renewed {
            Ok(Some(_)) => {
                self.slot.extend(&held, deadline(sent, ttl));
                self.opts.renew_every
            }
            Ok(None) => {
                tracing::warn!(node, "atoll-client: ID node id lease taken over by another process after it expired; IDs refused until a new lease");
                let (a, b) = (self.opts.nodes.start, self.opts.nodes.end);
                self.slot.drop_lease(
                    format!(
                        "{}; IDs resume once a lease on a node id in {a}..{b} is taken",
                        lost_text(node)
                    ),
                    true,
                );
                self.lost = Some(node);
                self.acquire_round(retry).await
            }
            Err(e) => {
                // The lease stays ours until the server says otherwise; IDs stop by
                // themselves at its local deadline if this keeps failing.
                tracing::warn!(node, error = %e, "atoll-client: cannot renew the ID node id lease");
                self.slot.set_why(e.to_string());
                retry
            }
        }
    }

    /// Renews until `stop` turns true (or its sender goes away), then releases the lease.
    pub(crate) async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut delay = self.opts.renew_every;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                r = stop.wait_for(|s| *s) => { let _ = r; break; }
            }
            delay = self.round().await;
        }
        self.release().await;
    }

    /// Stops making IDs, then ends the lease on the server (best effort, bounded): the node
    /// id then rests `reuse_after` from now instead of from the end of the ttl.
    async fn release(&mut self) {
        let Some(held) = self
            .slot
            .drop_lease("the cluster handle was closed".into(), false)
        else {
            return;
        };
        let node = held.node;
        let token = held.token.clone();
        let released = tokio::time::timeout(
            RELEASE_TIMEOUT,
            self.exec(Op::Release(node, &token), self.statement_limit()),
        )
        .await;
        match released {
            Ok(Ok(_)) => tracing::debug!(node, "atoll-client: released ID node id lease"),
            Ok(Err(e)) => {
                tracing::debug!(node, error = %e, "atoll-client: lease not released; it expires by itself")
            }
            Err(_) => tracing::debug!(
                node,
                "atoll-client: lease release timed out; it expires by itself"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_names_host_pid_and_application_only() {
        let h = holder_text("billing");
        assert!(
            h.contains(&format!(" pid {} (billing)", std::process::id())),
            "{h}"
        );
        assert!(!h.starts_with(' '), "{h}");
        assert!(holder_text(&"x".repeat(500)).len() <= 200);
        // Multibyte names are cut between characters, not inside one.
        assert_eq!(holder_text(&"é".repeat(500)).chars().count(), 200);
    }
}
