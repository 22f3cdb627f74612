//! `atoll migrate`: versioned schema changes on every microshard, and `schema diff`.
//!
//! The decisions (file grammar, per-shard plan, drift, unsafe statements, undo targets,
//! signature grouping) are made by `atoll_core::migration`; this crate does the I/O around
//! them:
//! - [`read_dir`]: the migration directory; [`new_pair`]: `migrate new`;
//! - [`plan_only`]: the dry run, reading every schema's applied versions with one call per
//!   island master;
//! - [`apply`] / [`undo`]: a run under a cluster-wide lock: canary, per-island parallel
//!   fan-out, non-shard finalizer, `before.sql`/`after.sql`, versions recorded inside each
//!   schema (`<schema>.atoll_migrations`) in the same transaction as the change, so a
//!   killed run resumes by simply running again; pg-mig's per-file `$parallelism_*`,
//!   `$delay` and `$run_alone` honoured; an interrupted REINDEX CONCURRENTLY's invalid
//!   copies dropped before its retry;
//! - [`plan_scoped`] / [`ReviewedPlan`]: `plan --out` and `apply --plan`, the reviewed
//!   plan applied verbatim or refused; [`atoll_core::migration::Scope`] for `--shards` and
//!   `--island`;
//! - per-schema states of each run in the catalog, read by [`run_status`] and [`runs`];
//!   [`request_stop`] for `migrate stop`; [`OnFailure`] and `max_failures` halt a run;
//! - [`schema_plan`] / [`write_convergence`]: `schema plan --like`, the DDL converging
//!   drifted shards to a reference shard, written as a migration;
//! - [`schema_diff`]: live schema signatures of every shard, grouped (shard 0's read-only
//!   copies left out: atoll-move compares those);
//! - shard 0's chain held and followed by its read-only copies through
//!   [`RunOptions::global_copies`] (`atoll_core::global_copy::CopyHook`, which atoll-move
//!   implements: this crate does not depend on it);
//! - [`allocate_migrated`]: `allocate --migrate`, new shards brought to the current version
//!   before they are activated.
//!
//! It must not depend on the CLI, on terminal output or on process management: progress is
//! reported through a callback the caller renders.

#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod allocate;
mod book;
mod converge;
mod diff;
mod dir;
mod disclosure;
mod error;
mod exec;
mod jobs;
mod limits;
mod phases;
mod reindex;
mod report;
mod run;
mod run_lock;
mod state;
mod status;
mod workers;

pub use allocate::{allocate_migrated, AllocateError, AllocateOptions};
pub use atoll_pg::catalog::migration_runs::RunKind;
pub use atoll_pg::catalog::migration_runs::{RunRow, RunStatus};
pub use converge::{schema_plan, write_convergence};
pub use diff::schema_diff;
pub use dir::{new_pair, read_dir, utc_stamp};
pub use error::MigrateError;
pub use exec::{Direction, LockPolicy};
pub use jobs::ReviewedPlan;
pub use report::{Event, Phase, RunOutcome, RunReport, SchemaFailure};
pub use run::{apply, plan_only, plan_scoped, undo, OnFailure, RunOptions};
pub use state::finalizer_island;
pub use status::{request_stop, run_status, runs, RunView};
