//! # atoll-agent
//!
//! The per-node agent: it runs beside one PostgreSQL node and offers, over an HTTP JSON
//! API under `/v1/` (`docs/agent.md`), **attributes** read from that node alone (cluster and
//! node ids, versions, status, the node's shards with their replication state, commit
//! offset and lag in bytes and ms, two attribute maps) and **actions** executed one at a
//! time in the order accepted, from a durable queue in its state directory (SQLite):
//! `cluster.init`, `cluster.add`, `cluster.join`, `cluster.remove`, `node.switchover`,
//! `node.restart`, `shard.activate`, `shard.deactivate`.
//!
//! The types a user needs: [`AgentConfig`] (built with [`AgentConfig::for_node`] from the
//! cluster's `atoll.toml`), [`Agent`] (`start`, `addr`, `stop`), and for clients the records
//! ([`ActionRecord`], [`ActionState`], [`ActionKind`]) and [`Attributes`].
//!
//! With `[ha]` in `atoll.toml` it also takes part in automated failover on etcd ([`ha`]:
//! the leader key, self-demotion, elections, promotion, rejoining).
//!
//! It uses `atoll-core` (config, secrets, quoting), `atoll-pg` (connections, catalog reads,
//! activation) and `atoll-sandbox` only to find the PostgreSQL binaries. It must not depend
//! on the CLI, on atoll-move or atoll-migrate, or on terminal output.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod actions;
pub mod attributes;
pub mod auth;
pub mod config;
mod error;
mod follow;
pub mod ha;
pub mod http;
mod pg_tools;
pub mod queue;
mod server;
mod timeline;

pub use actions::{ActionKind, ErrorCode};
pub use attributes::{Attributes, NodeStatus, ShardState};
pub use config::{AgentConfig, ReadAccess};
pub use error::AgentError;
pub use queue::{ActionRecord, ActionState};
pub use server::Agent;
