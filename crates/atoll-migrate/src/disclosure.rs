//! Unsafe disclosure per shard: for the tables a destructive pending statement touches,
//! how many rows and bytes they hold on each shard that would run it. One query per
//! island master, all at once; PostgreSQL's row estimate, so no table is scanned.

use crate::error::MigrateError;
use crate::state::Masters;
use atoll_core::migration::{Plan, UnsafeShard};
use atoll_core::IslandId;
use futures::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

/// Fills `plan.unsafe_shards` for the pending shards of `plan`.
pub(crate) async fn disclose(masters: &Masters, plan: &mut Plan) -> Result<(), MigrateError> {
    let tables: BTreeSet<&str> = plan
        .unsafe_pending
        .iter()
        .flat_map(|u| u.tables.iter().map(String::as_str))
        .collect();
    if tables.is_empty() {
        return Ok(());
    }
    let tables: Vec<String> = tables.into_iter().map(str::to_string).collect();
    let mut by_island: BTreeMap<IslandId, Vec<String>> = BTreeMap::new();
    for s in plan.pending_schemas().filter(|s| s.is_shard()) {
        by_island
            .entry(s.island)
            .or_default()
            .push(s.schema.clone());
    }
    let found = try_join_all(masters.nodes.iter().filter_map(|(island, node, client)| {
        let schemas = by_island.get(island)?.clone();
        let tables = &tables;
        Some(async move {
            let rows = client
                .query(
                    "select n.nspname::text, c.relname::text,
                            greatest(c.reltuples::bigint, coalesce(s.n_live_tup, 0)),
                            pg_total_relation_size(c.oid)
                     from pg_class c join pg_namespace n on n.oid = c.relnamespace
                     left join pg_stat_all_tables s on s.relid = c.oid
                     where n.nspname = any($1) and c.relname = any($2)
                       and c.relkind in ('r', 'p')",
                    &[&schemas, tables],
                )
                .await
                .map_err(|e| atoll_pg::PgError::query(node, e))?;
            rows.iter()
                .map(|r| {
                    Ok(UnsafeShard {
                        schema: r.try_get(0)?,
                        table: r.try_get(1)?,
                        rows: r.try_get(2)?,
                        bytes: r.try_get(3)?,
                    })
                })
                .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                .map_err(|e| MigrateError::from(atoll_pg::PgError::query(node, e)))
        })
    }))
    .await?;
    let mut all: Vec<UnsafeShard> = found.into_iter().flatten().collect();
    all.sort_by(|a, b| a.schema.cmp(&b.schema).then(a.table.cmp(&b.table)));
    plan.unsafe_shards = all;
    Ok(())
}
