//! # atoll-client
//!
//! The library an application links to use an atoll cluster:
//! - [`Cluster`]: built from the same config as the CLI; keeps a discovery snapshot fresh in
//!   the background (jittered period, at once after a routing error) and reloads the islands
//!   list when the config file changes; between rounds it follows the shard notices the
//!   islands send when a shard is switched, activated or deactivated (one `LISTEN`
//!   connection per master). `shard_for_id`, `shard`, `global`, `random_shard`, `shards`,
//!   `scatter`, `new_id`.
//! - [`Shard`]: parameterised SQL through pooled connections (deadpool-postgres), to the
//!   master ([`Shard::write`]) or to a replica that is fresh enough ([`Shard::query`] with a
//!   [`Freshness`]); [`Timeline`] gives read-your-writes and travels as a short string.
//! - Errors become actions ([`action`]): rediscover when a shard's schema vanished or a write
//!   hit a read-only node, another node on connection loss; bounded retries with backoff,
//!   only where the statement provably did not run or is idempotent. A shard absent during a
//!   move is waited for within a bounded window, never looked for on a guessed island.
//! - IDs and key routing come from `atoll-core` ([`Id`], [`IdGenerator`], [`KeyRouter`]);
//!   the node id app-side IDs carry is fixed or leased from the cluster ([`IdNode`]).
//!
//! It builds on `atoll-core` (decisions) and `atoll-pg` (discovery). It must not depend on
//! the CLI, on the sandbox (outside tests) or on terminal output: applications link it.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod action;
mod attempt;
#[cfg(test)]
mod attempt_closed_tests;
#[cfg(test)]
mod attempt_tests;
mod clock;
mod cluster;
mod error;
mod global_copy;
mod lease;
mod master;
mod notices;
mod options;
mod pools;
mod refresh;
mod scatter;
mod shard;
mod timeline;

pub use atoll_core::keys::{KeyRouter, RouteKey};
pub use atoll_core::{Id, IdGenerator, Lsn, ShardNo, Snapshot};
pub use cluster::Cluster;
pub use error::ClientError;
pub use lease::IdLeaseStatus;
pub use master::MasterConnection;
pub use notices::ClientStats;
pub use options::{ClusterOptions, IdNode, LeaseOptions, DEFAULT_CLOCK_SKEW, MAX_LEASE_TTL};
pub use shard::{Shard, Write};
pub use timeline::{Freshness, Timeline, TimelineError};
pub use tokio_postgres;
pub use tokio_postgres::Row;
