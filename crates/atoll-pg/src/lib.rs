//! The PostgreSQL layer of atoll: connecting to nodes, the `atoll` catalog schema on every
//! island master, discovery (which turns what the nodes say into an immutable
//! [`atoll_core::Snapshot`]), allocating microshards and flipping their active flag.
//!
//! The types most users need:
//! - [`Discoverer`]: reads every node in parallel and builds a `Snapshot`; keeps its
//!   connections between rounds so a rediscovery is one round trip per node;
//! - [`catalog::install`]: `atoll init`;
//! - [`allocate::execute`] and [`shard_state::set_active`].
//! - [`catalog`]: the only code that reads or writes the `atoll` catalog, one module per
//!   area ([`catalog::registry`], [`catalog::moves`], [`catalog::migration_runs`],
//!   [`catalog::id_leases`]);
//! - [`locks`]: every advisory lock atoll takes;
//! - [`schema_signature`]: a shard schema's definition as facts (`schema diff`, moves).
//! - [`endpoints::resolve`]: the islands from the endpoint records, credentials by alias
//!   through a keychain (`[endpoints]` in `atoll.toml`);
//! - [`notices::ShardNotices`]: one `LISTEN` connection per island master, passing on the
//!   shard notices the registry's triggers send (the client, and later a proxy or router,
//!   update their snapshot from them).
//!
//! Decisions are made by `atoll-core`; this crate only reads and writes. It must not depend
//! on the CLI, on process management (the sandbox) or on terminal output.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod allocate;
pub mod catalog;
mod connect;
pub mod coordination;
mod discovery;
pub mod endpoints;
mod error;
pub mod locks;
mod master;
pub mod notices;
pub mod schema_signature;
pub mod shard_state;
pub mod tls;

pub use connect::{connect, connect_as, connect_with_timeout, describe_connect, pg_config};
pub use discovery::{read_catalog, Discoverer, DiscoveryOptions};
pub use error::{describe, PgError};
pub use master::master_node;
pub use tls::{rustls_client_config, tls_connector, TlsError};
pub use tokio_postgres;
