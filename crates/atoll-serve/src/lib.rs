//! The atoll control plane (`atoll serve`): one process that keeps a discovery snapshot
//! fresh (an `atoll_client::Cluster`: discovery rounds plus shard notices) and the
//! catalog's moves read every period, and serves them as a versioned JSON API
//! (`/api/v1/...`) and as Prometheus metrics (`/metrics`).
//!
//! The few types a user needs: [`ServeConfig`] (what to serve and where), [`start`] and the
//! [`ServeHandle`] it returns (address, graceful [`ServeHandle::shutdown`]).
//!
//! It reads through `atoll-client`, `atoll-pg` and `atoll-move` (the same library calls as
//! the CLI); it must not depend on the CLI, on terminal output or on the sandbox outside
//! tests. It holds no state of its own: everything it shows is read from the islands.

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
