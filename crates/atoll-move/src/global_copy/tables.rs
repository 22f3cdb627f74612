//! Changing which of shard 0's tables the copies hold (`replicate --tables`), in the order
//! logical replication needs: a table added is created on every copy (read-only, empty)
//! before the publication names it, then each copy's subscription is refreshed, which
//! copies its rows; a table removed leaves the publication first, then the subscription,
//! then the copy. Each step is idempotent, so a killed run is finished by running it again.

use super::{follow, GlobalCopyError, SCHEMA};
use crate::db::{ident, Db};
use atoll_core::{Config, IslandId, Snapshot};
use atoll_pg::catalog::global_copy;
use std::collections::BTreeSet;

/// The tables the existing copies hold (the first copy found), `None` without copies.
pub(super) async fn recorded(
    config: &Config,
    snapshot: &Snapshot,
    islands: &[IslandId],
) -> Result<Option<Vec<String>>, GlobalCopyError> {
    for island in islands {
        let dst = Db::connect(config, snapshot, *island).await?;
        if let Some(row) = global_copy::get(&dst.client, &dst.node).await? {
            return Ok(Some(row.tables));
        }
    }
    Ok(None)
}

/// On `island`'s existing copy, the tables of `tables` it lacks created (with their keys
/// and indexes, read-only) and the new list recorded, in one transaction.
pub(super) async fn add(
    config: &Config,
    snapshot: &Snapshot,
    src: &Db,
    island: IslandId,
    tables: &[String],
) -> Result<(), GlobalCopyError> {
    let mut dst = Db::connect(config, snapshot, island).await?;
    let Some(row) = global_copy::get(&dst.client, &dst.node).await? else {
        return Ok(());
    };
    if row.tables == tables {
        return Ok(());
    }
    let had: BTreeSet<&String> = row.tables.iter().collect();
    let added: Vec<&String> = tables.iter().filter(|t| !had.contains(t)).collect();
    let present = present(&dst).await?;
    let plan = follow::plan(src, &dst, tables).await?;
    let node = dst.node.clone();
    let (tx, ctx) = dst.tx().await?;
    let mut sql = format!("set local search_path to {};\n", ident(SCHEMA));
    for stmt in plan
        .before
        .iter()
        .filter(|s| s.starts_with("create table "))
    {
        sql.push_str(stmt);
        sql.push('\n');
    }
    for t in added.iter().filter(|t| !present.contains(**t)) {
        sql.push_str(&global_copy::read_only_sql(&format!(
            "{}.{}",
            ident(SCHEMA),
            ident(t)
        )));
    }
    tx.batch_execute(&sql).await.map_err(|e| ctx.err(e))?;
    global_copy::set_tables(&tx, &node, tables).await?;
    tx.commit().await.map_err(|e| ctx.err(e))?;
    Ok(())
}

/// The tables of the copy's schema.
async fn present(dst: &Db) -> Result<BTreeSet<String>, GlobalCopyError> {
    let rows = dst
        .query(
            "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = $1 and c.relkind in ('r', 'p') and not c.relispartition",
            &[&SCHEMA],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Once the publication names exactly `tables`: the subscription refreshed when its tables
/// differ (the added ones are copied, the removed ones left), then the tables no longer
/// copied dropped from the copy. The subscription must be enabled.
pub(super) async fn settle(dst: &Db, name: &str, tables: &[String]) -> Result<(), GlobalCopyError> {
    let rows = dst
        .query(
            "select c.relname::text from pg_subscription s
             join pg_subscription_rel r on r.srsubid = s.oid join pg_class c on c.oid = r.srrelid
             where s.subname = $1",
            &[&name],
        )
        .await?;
    let subscribed: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    let wanted: BTreeSet<String> = tables.iter().cloned().collect();
    if subscribed != wanted {
        dst.exec(&format!(
            "alter subscription {} refresh publication with (copy_data = true)",
            ident(name)
        ))
        .await?;
    }
    for t in present(dst).await? {
        if !wanted.contains(&t) && t != super::create::OWN_HISTORY {
            dst.exec(&format!("drop table {}.{}", ident(SCHEMA), ident(&t)))
                .await?;
        }
    }
    Ok(())
}
