//! Keeping the copies' tables shaped like shard 0's when its schema changes (DDL does not
//! travel through logical replication). [`hold`] runs before shard 0's master changes:
//! each copy catches up, then its subscription is disabled, so none of the master's rows
//! of the new shape reaches a copy of the old one. [`follow`] runs after: per copy, the
//! `before` half of [`follow_plan`] (new columns, type changes), the subscription enabled
//! again, the catch-up, the `after` half (drops, NOT NULL, constraints), then the copy
//! compared once more. Both are idempotent: a follow that was killed is finished by
//! `atoll global replicate`, which follows before it re-enables a copy.

use super::create::caught_up;
use super::{source_island, subscription, GlobalCopyError, SCHEMA};
use crate::db::{ident, Db};
use crate::replication::sub_oid;
use atoll_core::global_copy::{copied_facts, follow_plan, FollowPlan};
use atoll_core::{Config, IslandId, Snapshot};
use atoll_pg::catalog::global_copy::{self, CopyRow};
use atoll_pg::schema_signature;
use std::collections::BTreeSet;

/// What [`follow`] did to one copy.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FollowReport {
    /// The copy's island.
    pub island: IslandId,
    /// Statements run while replication was held, and after it caught up.
    pub before: usize,
    /// Statements run once caught up.
    pub after: usize,
    /// Differences left, with why no statement was generated for them.
    pub not_generated: Vec<String>,
}

/// How one copy's tables compare with shard 0's (`schema diff`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CopyDrift {
    /// The copy's island.
    pub island: IslandId,
    /// Whether its copied tables match shard 0's.
    pub in_sync: bool,
    /// What would bring it there (`atoll global replicate` runs it).
    pub plan: FollowPlan,
}

/// Every copy compared with shard 0's master (nothing changed).
pub async fn drift(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<CopyDrift>, GlobalCopyError> {
    let (src, list) = copies(config, snapshot).await?;
    let mut out = Vec::new();
    for (dst, row) in list {
        let plan = plan(&src, &dst, &row.tables).await?;
        out.push(CopyDrift {
            island: dst.island,
            in_sync: plan.is_empty(),
            plan,
        });
    }
    Ok(out)
}

/// Every island holding a copy (any state), connected, with its record.
async fn copies(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<(Db, Vec<(Db, CopyRow)>), GlobalCopyError> {
    let source = source_island(snapshot)?;
    let src = Db::connect(config, snapshot, source).await?;
    let mut out = Vec::new();
    for island in config.islands.iter().map(|i| i.id).filter(|i| *i != source) {
        // Fail closed: an unreachable island may hold a copy that would break.
        let dst = Db::connect(config, snapshot, island).await?;
        if let Some(row) = global_copy::get(&dst.client, &dst.node).await? {
            out.push((dst, row));
        }
    }
    Ok((src, out))
}

/// Before shard 0's master changes its schema: each copy caught up, then its subscription
/// disabled (a copy whose subscription is missing or disabled already is left as it is).
/// Returns the islands held.
pub async fn hold(config: &Config, snapshot: &Snapshot) -> Result<Vec<IslandId>, GlobalCopyError> {
    let (src, list) = copies(config, snapshot).await?;
    let mut held = Vec::new();
    for (dst, _) in list {
        let name = subscription(dst.island);
        if !enabled(&dst, &name).await? {
            continue;
        }
        caught_up(&src, dst.island, &name).await?;
        dst.exec(&format!("alter subscription {} disable", ident(&name)))
            .await?;
        held.push(dst.island);
    }
    Ok(held)
}

async fn enabled(dst: &Db, name: &str) -> Result<bool, GlobalCopyError> {
    let r = dst
        .opt(
            "select subenabled from pg_subscription where subname = $1",
            &[&name],
        )
        .await?;
    Ok(r.is_some_and(|r| r.get::<_, bool>(0)))
}

/// After shard 0's master changed its schema: every copy brought to it and released.
pub async fn follow(
    config: &Config,
    snapshot: &Snapshot,
) -> Result<Vec<FollowReport>, GlobalCopyError> {
    let (src, list) = copies(config, snapshot).await?;
    let mut out = Vec::new();
    for (dst, row) in list {
        out.push(follow_one(&src, &dst, &row.tables).await?);
    }
    Ok(out)
}

/// One copy: the `before` statements, its subscription enabled (when it has one) and
/// caught up, the `after` statements, then what still differs.
pub(crate) async fn follow_one(
    src: &Db,
    dst: &Db,
    tables: &[String],
) -> Result<FollowReport, GlobalCopyError> {
    let plan = plan(src, dst, tables).await?;
    run(dst, &plan.before).await?;
    let name = subscription(dst.island);
    if sub_oid(dst, &name).await?.is_some() {
        dst.exec(&format!("alter subscription {} enable", ident(&name)))
            .await?;
        caught_up(src, dst.island, &name).await?;
    }
    run(dst, &plan.after).await?;
    let left = self::plan(src, dst, tables).await?;
    Ok(FollowReport {
        island: dst.island,
        before: plan.before.len(),
        after: plan.after.len(),
        not_generated: left.not_generated,
    })
}

/// The copy's tables' facts against the master's.
pub(crate) async fn plan(
    src: &Db,
    dst: &Db,
    tables: &[String],
) -> Result<FollowPlan, GlobalCopyError> {
    let master = copied_facts(&facts(src).await?, tables);
    let copy = copied_facts(&facts(dst).await?, tables);
    Ok(follow_plan(&master, &copy))
}

async fn facts(db: &Db) -> Result<BTreeSet<String>, GlobalCopyError> {
    let st = schema_signature::prepare(&db.client, &db.node, SCHEMA).await?;
    let facts = schema_signature::run(&db.client, &db.node, &st).await?;
    Ok(facts.into_iter().collect())
}

/// `statements` in one transaction, names resolved in the copy's schema (the facts'
/// definitions are unqualified).
async fn run(dst: &Db, statements: &[String]) -> Result<(), GlobalCopyError> {
    if statements.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "begin; set local search_path to {}; {} commit;",
        ident(SCHEMA),
        statements.join(" ")
    );
    if let Err(e) = dst.exec(&sql).await {
        let _ = dst.exec("rollback").await;
        return Err(GlobalCopyError::Follow {
            island: dst.island,
            error: e.to_string(),
            statements: statements.join(" "),
        });
    }
    Ok(())
}
