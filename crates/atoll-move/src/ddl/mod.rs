//! The DDL of a shard schema, generated from the source's `pg_catalog` (no pg_dump): what
//! the destination needs before the initial copy (types, sequences, functions, tables with
//! their primary keys / replica identities) and what is built after it (other constraints,
//! foreign keys, secondary indexes, triggers, views), because loading into a table with
//! fewer indexes is faster.
//!
//! Reading (`inspect.rs`, queries only) is kept apart from writing the DDL (`render.rs`,
//! pure). Names come back fully qualified because the reading session runs with
//! `search_path = pg_catalog`. Owners, privileges, comments and row-level security come
//! from [`crate::security`], re-read and applied last, after the copy. Not copied: extended
//! statistics. Unsupported objects (partitioned, unlogged or foreign
//! tables, materialized views, non-enum types, aggregates, window functions) make the move refuse (fail closed).

mod inspect;
mod render;

use crate::db::{ident, Db};
use crate::error::MoveError;
use atoll_core::ShardNo;

/// One table of the shard.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: String,
    /// Primary key columns, in key order; empty when the table has none.
    pub pk: Vec<String>,
    /// `relreplident`: d(efault = pk), f(ull), i(ndex), n(othing).
    pub replident: char,
}

impl TableInfo {
    pub fn qualified(&self, schema: &str) -> String {
        format!("{}.{}", ident(schema), ident(&self.name))
    }
}

/// The schema's DDL, split around the initial copy.
#[derive(Debug, Clone, Default)]
pub struct SchemaDdl {
    pub tables: Vec<TableInfo>,
    pub sequences: Vec<String>,
    pub pre_copy: Vec<String>,
    pub post_copy: Vec<String>,
    /// Objects this move cannot copy; a non-empty list refuses the move.
    pub unsupported: Vec<String>,
    /// Roles the schema's owners, grants and policies name; all must exist on the
    /// destination.
    pub roles: Vec<String>,
}

pub(crate) async fn read(db: &Db, shard: ShardNo) -> Result<SchemaDdl, MoveError> {
    let schema = shard.schema();
    db.exec("set search_path = pg_catalog").await?;
    let result = read_inner(db, &schema).await;
    // Restore the default so the connection's later statements behave normally.
    db.exec("reset search_path").await?;
    result
}

async fn read_inner(db: &Db, schema: &str) -> Result<SchemaDdl, MoveError> {
    let ns_oid: u32 = db
        .one(
            "select oid from pg_namespace where nspname = $1",
            &[&schema],
        )
        .await?
        .get(0);
    let mut out = render::render(schema, inspect::read(db, schema, ns_oid).await?);
    // Owners, grants, comments and RLS are replayed after all of the above (grants name
    // views, comments name indexes and constraints), from a fresh read right before the
    // replay ([`read_security`]); here only what the safety checks need.
    let security = crate::security::read(db, schema, ns_oid).await?;
    out.roles = security.roles.into_iter().collect();
    out.unsupported.extend(security.unusable);
    Ok(out)
}

/// The shard schema's owners, privileges, comments and row-level security as they are
/// now: read right before they are replayed, so a GRANT, REVOKE, policy or comment
/// changed on the source during a long copy is not lost.
pub(crate) async fn read_security(
    db: &Db,
    shard: ShardNo,
) -> Result<crate::security::Security, MoveError> {
    let schema = shard.schema();
    db.exec("set search_path = pg_catalog").await?;
    let result = async {
        let ns: u32 = db
            .one(
                "select oid from pg_namespace where nspname = $1",
                &[&schema],
            )
            .await?
            .get(0);
        crate::security::read(db, &schema, ns).await
    }
    .await;
    db.exec("reset search_path").await?;
    result
}
