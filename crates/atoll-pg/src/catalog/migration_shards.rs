//! `atoll.migration_shards` (catalog step 7), on the coordination island's master: one
//! row per schema per migration run, with its [`ShardState`], the file and error of a
//! failure, and its attempts. Written in batches by the run (a few statements a second,
//! not one per schema), read by `migrate status`.
//!
//! Writer: `atoll-migrate`'s run; reader: `migrate status` and `apply --plan` (what an
//! earlier run of the same plan finished).

use crate::error::PgError;
use atoll_core::migration::{ShardRow, ShardState};
use atoll_core::{IslandId, NodeConfig};
use tokio_postgres::GenericClient;

/// Whether catalog step 7 is installed on this master.
pub async fn installed(client: &impl GenericClient, node: &NodeConfig) -> Result<bool, PgError> {
    super::has_table(client, node, "atoll.migration_shards").await
}

/// Writes the rows' states (inserting rows not there yet), in one statement, in order:
/// a later row's `changed_at` is not before an earlier one's.
pub async fn record(
    client: &impl GenericClient,
    node: &NodeConfig,
    run_id: i64,
    rows: &[ShardRow],
) -> Result<(), PgError> {
    if rows.is_empty() {
        return Ok(());
    }
    let schemas: Vec<&str> = rows.iter().map(|r| r.schema.as_str()).collect();
    let islands: Vec<i32> = rows.iter().map(|r| i32::from(r.island.0)).collect();
    let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    let files: Vec<Option<&str>> = rows.iter().map(|r| r.file.as_deref()).collect();
    let errors: Vec<Option<&str>> = rows.iter().map(|r| r.error.as_deref()).collect();
    let attempts: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.attempts).unwrap_or(i32::MAX))
        .collect();
    client
        .execute(
            "insert into atoll.migration_shards
                 (run_id, schema_name, island, state, file, error, attempts)
             select $1, s, i, st, f, e, a
             from unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[], $7::int[])
                  with ordinality as u(s, i, st, f, e, a, n)
             order by n
             on conflict (run_id, schema_name, island) do update
                 set state = excluded.state, file = excluded.file, error = excluded.error,
                     attempts = excluded.attempts, changed_at = clock_timestamp()",
            &[
                &run_id, &schemas, &islands, &states, &files, &errors, &attempts,
            ],
        )
        .await
        .map_err(|e| PgError::query(node, e))?;
    Ok(())
}

/// A run's rows, in the order they last changed.
pub async fn read(
    client: &impl GenericClient,
    node: &NodeConfig,
    run_id: i64,
) -> Result<Vec<ShardRow>, PgError> {
    let q = |e| PgError::query(node, e);
    let rows = client
        .query(
            "select schema_name, island, state, file, error, attempts
             from atoll.migration_shards where run_id = $1
             order by changed_at, schema_name",
            &[&run_id],
        )
        .await
        .map_err(q)?;
    rows.iter()
        .map(|r| {
            let state: String = r.try_get(2).map_err(q)?;
            let island: i32 = r.try_get(1).map_err(q)?;
            Ok(ShardRow {
                schema: r.try_get(0).map_err(q)?,
                island: IslandId(u16::try_from(island).unwrap_or(u16::MAX)),
                state: ShardState::parse(&state).ok_or_else(|| {
                    PgError::Refused(format!(
                        "node {node}: atoll.migration_shards state {state:?} is unknown"
                    ))
                })?,
                file: r.try_get(3).map_err(q)?,
                error: r.try_get(4).map_err(q)?,
                attempts: u32::try_from(r.try_get::<_, i32>(5).map_err(q)?).unwrap_or(0),
            })
        })
        .collect()
}

/// The schemas that runs of the plan with this digest finished (`done`).
pub async fn done_by_plan(
    client: &impl GenericClient,
    node: &NodeConfig,
    digest: &str,
) -> Result<Vec<String>, PgError> {
    let q = |e| PgError::query(node, e);
    let rows = client
        .query(
            "select distinct s.schema_name from atoll.migration_shards s
             join atoll.migration_runs r using (run_id)
             where r.plan_digest = $1 and s.state = 'done'",
            &[&digest],
        )
        .await
        .map_err(q)?;
    rows.iter()
        .map(|r| r.try_get(0).map_err(q))
        .collect::<Result<Vec<String>, PgError>>()
}
