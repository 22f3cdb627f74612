//! The DDL of a shard schema: `pg_dump --schema-only` of the source, restored on the
//! destination in two parts (`dump.rs`, `toc.rs`): before the initial copy the pre-data
//! section (types, domains, functions, aggregates, operators, collations, sequences,
//! tables, partitions, views, materialized views) plus the primary keys and replica
//! identity indexes, so changes can be applied from the start; after it the rest of the
//! post-data section (other constraints, foreign keys, indexes, triggers, rules, extended
//! statistics), because loading into a table with fewer indexes is faster. pg_dump is
//! PostgreSQL's own account of what a schema holds, so every object type it knows is
//! copied the way PostgreSQL restores it.
//!
//! What the move needs besides (the tables to publish, sequences, what cannot move, what
//! must be treated specially) is read from `pg_catalog` (`inspect.rs`). Owners, privileges,
//! comments and row-level security come from [`crate::security`], re-read and replayed
//! after the copy; the dump's owners and grants land earlier and are replayed over.
//! Objects logical replication cannot carry (unlogged and foreign tables, large objects)
//! make the move refuse (fail closed).

mod dump;
mod inspect;
mod toc;

use crate::db::{ident, Db};
use crate::error::MoveError;
use atoll_core::ShardNo;
pub(crate) use inspect::replica_triggers;
pub use inspect::ForeignRef;

/// One table of the shard that holds rows (and is published).
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

    /// Whether updates and deletes of the table can be replicated as it is.
    pub fn has_identity(&self) -> bool {
        match self.replident {
            'd' => !self.pk.is_empty(),
            'n' => false,
            _ => true,
        }
    }
}

/// The schema's DDL, split around the initial copy.
#[derive(Debug, Clone, Default)]
pub struct SchemaDdl {
    pub tables: Vec<TableInfo>,
    pub sequences: Vec<String>,
    /// SQL scripts run on the destination before the copy (with the reference row).
    pub pre_copy: Vec<String>,
    /// SQL scripts run on the destination after the copy; they end with the refresh of
    /// the materialized views that hold data on the source.
    pub post_copy: Vec<String>,
    /// Objects this move cannot copy; a non-empty list refuses the move.
    pub unsupported: Vec<String>,
    /// Foreign keys to tables of other schemas: the destination must have those tables.
    pub foreign_refs: Vec<ForeignRef>,
    /// Roles the schema's owners, grants and policies name; all must exist on the
    /// destination.
    pub roles: Vec<String>,
}

pub(crate) async fn read(db: &Db, shard: ShardNo) -> Result<SchemaDdl, MoveError> {
    let schema = shard.schema();
    db.exec("set search_path = pg_catalog").await?;
    let result = read_inner(db, shard, &schema).await;
    // Restore the default so the connection's later statements behave normally.
    db.exec("reset search_path").await?;
    result
}

async fn read_inner(db: &Db, shard: ShardNo, schema: &str) -> Result<SchemaDdl, MoveError> {
    let r = db
        .one(
            "select oid, current_setting('server_version_num')::int4 / 10000
               from pg_namespace where nspname = $1",
            &[&schema],
        )
        .await?;
    let (ns_oid, major): (u32, i32) = (r.get(0), r.get(1));
    let facts = inspect::read(db, schema, ns_oid).await?;
    // Owners, grants, comments and RLS are replayed after all of the above (grants name
    // views, comments name indexes and constraints), from a fresh read right before the
    // replay ([`read_security`]); here only what the safety checks need.
    let security = crate::security::read(db, schema, ns_oid).await?;
    let mut unsupported = facts.unsupported;
    unsupported.extend(security.unusable);
    let mut out = SchemaDdl {
        tables: facts.tables,
        sequences: facts.sequences,
        unsupported,
        foreign_refs: facts.foreign_refs,
        roles: security.roles.into_iter().collect(),
        ..SchemaDdl::default()
    };
    if !out.unsupported.is_empty() {
        return Ok(out); // refused: no need to dump
    }
    let scripts = dump::scripts(shard, &db.node, major.max(0) as u32, &facts.identity).await?;
    out.pre_copy.push(scripts.pre_copy);
    let mut post = scripts.post_copy;
    // Origin-only while the destination applies the source's changes (see `after_switch`).
    for t in &facts.replica_triggers {
        post.push_str(&t.sql(schema, false));
        post.push_str(";\n");
    }
    out.post_copy.push(post);
    // Materialized views are dumped empty; filled from the copied rows, before the
    // switch, so they hold at least what the source's held.
    for m in &facts.matviews {
        out.post_copy.push(format!("refresh materialized view {m}"));
    }
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
