//! # atoll-router
//!
//! A stateless HTTP router in front of application cells. In atoll an ID carries its shard,
//! so the router classifies most requests itself: a rule extracts an ID or a key from the
//! path, a header, a cookie or a query parameter, the shard's island comes from a discovery
//! snapshot kept fresh by `atoll-client` (rounds and shard notices), and the cell serving
//! that island gets the request. What no rule places goes to routes learned from cells
//! (`X-Atoll-Cell-Redirect` / `X-Atoll-Cell-Cache`, re-sent once, never a second hop), then
//! to the default cell. Bodies are held for a re-send only up to a cap and within a global
//! budget; learned routes live in a bounded LRU with a TTL.
//!
//! The types a user needs: [`RouterConfig`] (`router.toml`), [`start`] and
//! [`RouterHandle`] (a running router, graceful [`RouterHandle::shutdown`]) and
//! [`explain()`]. Node credentials by alias (`[endpoints]` in `atoll.toml`) come with
//! `atoll-client`'s connection (`atoll_pg::endpoints`).
//!
//! It builds on `atoll-core`, `atoll-pg` and `atoll-client`; it must not depend on the CLI,
//! the sandbox (outside tests) or terminal output.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod answer;
pub mod body;
pub mod cache;
pub mod check;
pub mod config;
pub mod discovery;
mod error;
pub mod explain;
mod forward;
pub mod headers;
pub mod health;
pub mod metrics;
mod probe;
mod proxy;
mod reload;
pub mod route;
pub mod rules;
mod server;
pub mod state;

pub use config::RouterConfig;
pub use error::RouterError;
pub use explain::{explain, Explanation};
pub use route::{Decision, RouteSource};
pub use server::{start, RouterHandle};
