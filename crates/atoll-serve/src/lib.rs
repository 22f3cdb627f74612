//! The atoll control plane (`atoll serve`): one process that keeps a discovery snapshot
//! fresh (an `atoll_client::Cluster`: discovery rounds plus shard notices) and the
//! catalog read every period (moves, migration runs, the action log), and serves them as a
//! versioned JSON API (`/api/v1/...`, with its OpenAPI document), a live web console (`/`)
//! and Prometheus metrics (`/metrics`); operators holding a write token act through it
//! (moves, rebalance, migrate), each action confirmed and recorded in the catalog.
//!
//! The few types a user needs: [`ServeConfig`] (what to serve, where, who may act), [`start`]
//! and the [`ServeHandle`] it returns (address, graceful [`ServeHandle::shutdown`]).
//!
//! It reads and acts through `atoll-client`, `atoll-pg`, `atoll-move` and `atoll-migrate`
//! (the same library calls as the CLI); it must not depend on the CLI, on terminal output or
//! on the sandbox outside tests. It keeps no state of its own beyond the progress of the
//! actions it runs: everything it shows is read from the islands.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod actions;
mod api;
mod auth;
mod config;
mod error;
mod events;
mod metrics;
mod move_stats;
mod openapi;
mod overview;
mod server;
#[cfg(test)]
mod testdata;
mod view;

pub use config::{ServeConfig, WriteToken};
pub use error::ServeError;
pub use metrics::render as render_metrics;
pub use server::{start, ServeHandle};
pub use view::CatalogView;
