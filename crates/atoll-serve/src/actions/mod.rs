//! Actions: what an operator changes through the control plane. Each one needs a write
//! token ([`crate::auth`]) and a confirmation in its body (the shard's schema name, or the
//! digest of the plan the operator reviewed), runs the same library call as the CLI
//! (`atoll-move`, `atoll-migrate`), and is recorded in the catalog's action log (who, when,
//! what, outcome: `atoll_pg::catalog::action_log`) before it starts. No record, no action.
//!
//! An action is answered once it passed the library's own checks: `202` while it goes on
//! (its progress then shows in `/api/v1/actions` and in the moves or migration view),
//! `200` when it already ended, `409` when it was refused (a conflicting operation, a
//! changed plan) — with nothing changed.
//!
//! One file per family: [`moves`] (start, resume, abort), [`rebalance`] (plan, run),
//! [`migrate`] (plan, apply); request parsing and validation in [`request`]; the log and
//! the tasks in [`run`].

pub mod migrate;
pub mod moves;
pub mod rebalance;
pub mod request;
pub mod run;

use crate::api::App;
use axum::routing::{get, post};
use axum::Router;

pub use run::{Actions, LiveAction};

/// The routes under `/api/v1/actions`.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/api/v1/actions", get(run::list))
        .route("/api/v1/actions/move", post(moves::start))
        .route("/api/v1/actions/move/resume", post(moves::resume))
        .route("/api/v1/actions/move/abort", post(moves::abort))
        .route("/api/v1/actions/rebalance/plan", post(rebalance::plan))
        .route("/api/v1/actions/rebalance", post(rebalance::start))
        .route("/api/v1/actions/migrate/plan", post(migrate::plan))
        .route("/api/v1/actions/migrate/apply", post(migrate::apply))
}
