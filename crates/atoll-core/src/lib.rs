//! The pure core of atoll: the model of a cluster and every decision that can be made
//! without touching a database.
//!
//! The types most users need:
//! - [`ShardNo`] and [`ShardRange`]: microshard numbers and the `shNNNN` schema names;
//! - [`Config`]: the islands and nodes of a cluster, parsed from `atoll.toml` or `ATOLL_ISLANDS`;
//! - [`Snapshot`]: an immutable picture of the cluster built from what discovery observed;
//!   [`ShardNotice`] and [`NoticeLog`]: one shard's placement updated from an island's
//!   announcement between discovery rounds;
//! - [`Id`]: the shard-encoded ID codec; [`IdGenerator`]: application-side IDs;
//! - [`keys::KeyRouter`]: external keys onto a declared, fixed list of shards;
//! - [`allocation::plan`]: where new microshards go;
//! - [`migration`]: migration files, per-shard plans, drift and unsafe-statement checks;
//! - [`ha`]: automated failover's `[ha]` settings, etcd keys and the election;
//! - [`global_copy`]: what brings shard 0's read-only copies to its schema after a change;
//! - [`statement_route`]: which microshard a SQL text names, and a session's routing.
//!
//! This crate does no I/O beyond reading a file or an environment variable the caller names
//! (secrets), and must never depend on tokio, a PostgreSQL driver or a process API: it is
//! unit-tested without a database, and every I/O layer builds on it.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod allocation;
#[cfg(test)]
mod allocation_tests;
mod config;
#[cfg(test)]
mod config_tests;
pub mod global_copy;
pub mod ha;
mod id_generator;
mod ids;
mod island;
mod islands_env;
pub mod keys;
pub mod migration;
pub mod move_plan;
pub mod proxy_config;
pub mod quote;
pub mod rebalance;
pub mod replica_identity;
mod secret;
mod shard;
pub mod shard_notice;
mod snapshot;
#[cfg(test)]
mod snapshot_tests;
pub mod statement_route;
mod tls;

pub use config::{
    Config, ConfigError, ConfigSource, EndpointsConfig, GlobalConfig, IslandConfig, NodeConfig,
};
pub use id_generator::{
    AppIdParts, IdGenError, IdGenerator, GENERATOR_EPOCH_UNIX_S, MAX_LEAD_SECONDS, NODE_IDS,
    SEQ_PER_SECOND,
};
pub use ids::{Id, IdError, ENV_DIGIT_MAX, ENV_DIGIT_MIN, SEQUENCE_MAX};
pub use island::IslandId;
pub use secret::{Secret, SecretError, SecretRef};
pub use shard::{ShardError, ShardNo, ShardRange};
pub use shard_notice::{NoticeError, ShardNotice};
pub use snapshot::{
    IslandCatalog, Lsn, NodeFacts, NodeObservation, NodeRole, NodeState, NoticeCounts, NoticeLog,
    NoticeOutcome, RouteError, ShardCopy, ShardObservation, Snapshot, SnapshotIsland,
    SnapshotProblem,
};
pub use tls::{SslMode, SslModeError, TlsConfig, SSL_MODES};
