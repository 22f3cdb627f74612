//! `atoll.id_leases` (catalog step 4): leases of app-side ID node ids.
//!
//! An app-side ID carries the node id (0..999) of the process that made it
//! ([`atoll_core::IdGenerator`]); two processes generating at the same time must hold
//! different node ids, and a node id must rest for the generator's lead window after its
//! holder stopped. These functions let processes take node ids from a table instead of
//! being configured with one:
//! - [`acquire`]: one statement takes the lowest node id in a range that nobody holds and
//!   whose last lease ended more than `reuse_after` ago;
//! - [`renew`]: extends a lease only while it is still ours (same token);
//! - [`release`]: ends a lease now; the node id rests for `reuse_after` from now.
//!
//! All lease times are the server's (`now()`), so no client's clock decides who holds a
//! node id. The clients' clocks still matter for the IDs themselves (they carry each host's
//! wall time), which is why `reuse_after` includes an allowed clock difference.
//!
//! The table lives on the master of the **lowest configured island** ([`lease_island`]),
//! the same island that holds the migration lock. Not where shard 0 is: the `atoll` schema
//! does not move with shard 0, and during a move of shard 0 two clients could see it on
//! different islands and lease the same node id from two tables. The lowest island id
//! changes only if that island is removed from the config, which must not happen while
//! leases are held.

use crate::error::PgError;
use atoll_core::{Config, IslandId, NodeConfig};
use std::ops::Range;
use std::time::Duration;
use tokio_postgres::Client;

/// The island whose master holds the lease table: the one that keeps everything
/// cluster-wide ([`crate::coordination::coordination_island`]).
pub fn lease_island(config: &Config) -> Option<IslandId> {
    crate::coordination::coordination_island(config)
}

/// What an acquirer asks for.
#[derive(Debug, Clone)]
pub struct LeaseRequest<'a> {
    /// Random, unique per acquisition; proves ownership to [`renew`] and [`release`].
    pub token: &'a str,
    /// Shown to people (`host pid N (app)`); must not contain secrets.
    pub holder: &'a str,
    /// How long a lease lasts without a renewal (the server's clock counts it).
    pub ttl: Duration,
    /// How long after a lease ended its node id rests before another acquirer may take it.
    pub reuse_after: Duration,
    /// The node ids this acquirer may take.
    pub nodes: Range<u16>,
}

/// One row of the lease table, for status output and tests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeaseRow {
    /// The leased node id.
    pub node: u16,
    /// Who took it, as its [`LeaseRequest::holder`] said; `None` if no holder was recorded.
    pub holder: Option<String>,
    /// Seconds from now (server clock) until the lease expires; negative once expired.
    pub expires_in_s: f64,
    /// Ended by [`release`] (rather than still held, or expired without a release).
    pub released: bool,
}

fn table_error(node: &NodeConfig, e: tokio_postgres::Error) -> PgError {
    if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) {
        return PgError::Refused(format!(
            "node {node}: atoll.id_leases does not exist; run `atoll init` to upgrade the catalog"
        ));
    }
    PgError::query(node, e)
}

fn node_id(n: i32) -> Result<u16, PgError> {
    u16::try_from(n).map_err(|_| PgError::Refused(format!("atoll.id_leases has node {n}")))
}

/// Takes the lowest free node id in `req.nodes`, atomically: `None` when every node id in
/// the range is held or still resting.
pub async fn acquire(
    client: &Client,
    node: &NodeConfig,
    req: &LeaseRequest<'_>,
) -> Result<Option<u16>, PgError> {
    // SKIP LOCKED: a row another acquirer is taking right now is skipped, not waited for;
    // a row taken by one that committed after this statement began is re-checked against
    // the WHERE clause (and then skipped), so no two acquirers get the same row.
    let row = client
        .query_opt(
            "update atoll.id_leases set token = $1, holder = $2, acquired_at = now(),
                 renewed_at = now(), released_at = null,
                 expires_at = now() + make_interval(secs => $3)
             where node = (
                 select node from atoll.id_leases
                 where node >= $5 and node < $6
                   and expires_at < now() - make_interval(secs => $4)
                 order by node
                 limit 1
                 for update skip locked)
             returning node",
            &[
                &req.token,
                &req.holder,
                &req.ttl.as_secs_f64(),
                &req.reuse_after.as_secs_f64(),
                &i32::from(req.nodes.start),
                &i32::from(req.nodes.end),
            ],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    row.map(|r| node_id(r.get(0))).transpose()
}

/// Extends the lease on `node_id` to now + `ttl` if `token` still holds it. False when it
/// does not (taken over after it expired, or released): the caller must stop using the
/// node id. Extending an expired lease that nobody took over is allowed: it was ours all
/// along.
pub async fn renew(
    client: &Client,
    node: &NodeConfig,
    node_id: u16,
    token: &str,
    ttl: Duration,
) -> Result<bool, PgError> {
    let n = client
        .execute(
            "update atoll.id_leases
             set renewed_at = now(), expires_at = now() + make_interval(secs => $3)
             where node = $1 and token = $2",
            &[&i32::from(node_id), &token, &ttl.as_secs_f64()],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(n == 1)
}

/// Ends the lease now if `token` still holds it (whether it did). The expiry only moves
/// earlier, so the node id rests for the reuse window counted from now.
pub async fn release(
    client: &Client,
    node: &NodeConfig,
    node_id: u16,
    token: &str,
) -> Result<bool, PgError> {
    let n = client
        .execute(
            "update atoll.id_leases
             set token = null, released_at = now(), expires_at = least(expires_at, now())
             where node = $1 and token = $2",
            &[&i32::from(node_id), &token],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    Ok(n == 1)
}

/// Every node id that has ever been leased, in node order.
pub async fn list(client: &Client, node: &NodeConfig) -> Result<Vec<LeaseRow>, PgError> {
    let rows = client
        .query(
            "select node, holder, extract(epoch from expires_at - now())::float8, token is null
             from atoll.id_leases where acquired_at is not null order by node",
            &[],
        )
        .await
        .map_err(|e| table_error(node, e))?;
    rows.iter()
        .map(|r| {
            Ok(LeaseRow {
                node: node_id(r.get(0))?,
                holder: r.get(1),
                expires_in_s: r.get(2),
                released: r.get(3),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_core::ConfigSource;

    #[test]
    fn the_lease_island_is_the_lowest_configured_one() {
        let node =
            |p| format!("nodes = [{{ host = \"h\", port = {p}, user = \"u\", database = \"d\" }}]");
        let text = format!(
            "[cluster]\nname = \"t\"\n[[island]]\nid = 3\n{}\n[[island]]\nid = 1\n{}\n",
            node(1),
            node(2)
        );
        let config = Config::parse(&text, ConfigSource::Inline).unwrap();
        assert_eq!(lease_island(&config), Some(IslandId(1)));
    }
}
