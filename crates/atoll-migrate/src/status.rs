//! `migrate status`, `migrate runs` and `migrate stop`: reading (and, for stop, flagging)
//! the run records on the coordination island's master.

use crate::error::MigrateError;
use crate::state::finalizer_island;
use atoll_core::migration::{summarize, RunSummary};
use atoll_core::{Config, NodeConfig, Snapshot};
use atoll_pg::catalog::migration_runs::{self, RunRow};
use atoll_pg::catalog::migration_shards;
use serde::Serialize;
use tokio_postgres::Client;

/// One run and where its schemas are.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The run record.
    pub run: RunRow,
    /// Its schemas: counts, ranges per state, the first failure.
    pub shards: RunSummary,
}

/// Schemas listed per state before the rest is counted (`and 12 more`).
const SHOWN_RANGES: usize = 20;

async fn coordination(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<(NodeConfig, Client), MigrateError> {
    let island = finalizer_island(config).ok_or_else(|| MigrateError::Dir {
        dir: "config".into(),
        msg: "no islands configured".into(),
    })?;
    let node = atoll_pg::master_node(config, snapshot, island)?;
    let client = atoll_pg::connect_with_timeout(&node, config.connect_timeout).await?;
    if !migration_shards::installed(&client, &node).await? {
        return Err(MigrateError::NoCatalog(island));
    }
    Ok((node, client))
}

/// Run `run_id` (the latest when `None`) and its schemas; `None` when there is no such run.
pub async fn run_status(
    config: &Config,
    snapshot: &Snapshot,
    run_id: Option<i64>,
) -> Result<Option<RunView>, MigrateError> {
    let (node, client) = coordination(config, snapshot).await?;
    let Some(run) = migration_runs::get(&client, &node, run_id).await? else {
        return Ok(None);
    };
    let rows = migration_shards::read(&client, &node, run.run_id).await?;
    Ok(Some(RunView {
        shards: summarize(&rows, SHOWN_RANGES),
        run,
    }))
}

/// The latest `limit` runs, newest first.
pub async fn runs(
    config: &Config,
    snapshot: &Snapshot,
    limit: i64,
) -> Result<Vec<RunRow>, MigrateError> {
    let (node, client) = coordination(config, snapshot).await?;
    Ok(migration_runs::list(&client, &node, limit).await?)
}

/// Asks the running run to stop; its id, or `None` when none is running.
pub async fn request_stop(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Option<i64>, MigrateError> {
    let (node, client) = coordination(config, snapshot).await?;
    Ok(migration_runs::request_stop(&client, &node).await?)
}
