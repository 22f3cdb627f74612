//! What the move needs to know about a shard schema beyond its DDL (which `pg_dump`
//! writes, `dump.rs`), read from the source's `pg_catalog`: the tables to publish, the
//! sequences whose positions are copied, what cannot move, and what the copy must treat
//! specially. Queries only.

use super::TableInfo;
use crate::db::{ident, Db};
use crate::error::MoveError;
use std::collections::HashSet;

/// What [`super::read`] needs from the catalog.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaFacts {
    /// Objects the move cannot copy, each with its reason.
    pub unsupported: Vec<String>,
    /// The tables that hold rows: plain tables, leaf partitions, inheritance children.
    pub tables: Vec<TableInfo>,
    /// Every sequence's name: their positions are copied.
    pub sequences: Vec<String>,
    /// `(catalog oid, object oid)` of primary keys and replica identity indexes: created
    /// before the initial copy so that changes can be applied to the rows.
    pub identity: HashSet<(u32, u32)>,
    /// Materialized views holding data on the source, qualified: refreshed after the copy.
    pub matviews: Vec<String>,
    /// Triggers that fire in replica sessions (see [`replica_triggers`]).
    pub replica_triggers: Vec<ReplicaTrigger>,
    /// Foreign keys to tables of other schemas.
    pub foreign_refs: Vec<ForeignRef>,
}

/// A foreign key from the shard to a table in another schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRef {
    /// `table.constraint` in the shard.
    pub constraint: String,
    /// The referenced table's schema and name.
    pub schema: String,
    pub table: String,
}

/// Reads the facts of schema `ns_oid` (named `schema`, for messages).
pub(crate) async fn read(db: &Db, schema: &str, ns_oid: u32) -> Result<SchemaFacts, MoveError> {
    let mut out = SchemaFacts {
        unsupported: unsupported(db, schema, ns_oid).await?,
        tables: tables(db, ns_oid).await?,
        ..SchemaFacts::default()
    };
    out.sequences = strings(
        db,
        "select c.relname::text from pg_class c where c.relnamespace = $1 and c.relkind = 'S' order by 1",
        ns_oid,
    )
    .await?;
    out.matviews = strings(
        db,
        "select quote_ident(n.nspname) || '.' || quote_ident(c.relname) from pg_class c
           join pg_namespace n on n.oid = c.relnamespace
          where c.relnamespace = $1 and c.relkind = 'm' and c.relispopulated order by c.oid",
        ns_oid,
    )
    .await?;
    for r in db
        .query(
            "select 'pg_constraint'::regclass::oid, con.oid from pg_constraint con
              where con.connamespace = $1 and (con.contype = 'p' or exists (
                    select 1 from pg_index i where i.indexrelid = con.conindid and i.indisreplident))
             union all
             select 'pg_class'::regclass::oid, i.indexrelid from pg_index i
               join pg_class c on c.oid = i.indexrelid
              where c.relnamespace = $1 and (i.indisprimary or i.indisreplident)",
            &[&ns_oid],
        )
        .await?
    {
        out.identity.insert((r.get(0), r.get(1)));
    }
    out.replica_triggers = replica_triggers(db, schema).await?;
    out.foreign_refs = foreign_refs(db, ns_oid).await?;
    Ok(out)
}

/// A trigger enabled `ALWAYS` or `REPLICA`: the destination keeps it origin-only until
/// the switch (else it would fire while the destination applies the source's changes,
/// which runs as a replica session), then gets its state back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaTrigger {
    pub table: String,
    pub name: String,
    /// `always` or `replica`, as `ALTER TABLE ... ENABLE` takes it.
    pub keyword: &'static str,
}

impl ReplicaTrigger {
    /// `ALTER TABLE` giving the trigger, on the same table of `schema`, plain (`origin`)
    /// firing or its own.
    pub fn sql(&self, schema: &str, own: bool) -> String {
        let how = if own {
            format!("{} ", self.keyword)
        } else {
            String::new()
        };
        format!(
            "alter table {}.{} enable {how}trigger {}",
            ident(schema),
            ident(&self.table),
            ident(&self.name)
        )
    }
}

/// The triggers of schema `schema` that fire in replica sessions.
pub(crate) async fn replica_triggers(
    db: &Db,
    schema: &str,
) -> Result<Vec<ReplicaTrigger>, MoveError> {
    let rows = db
        .query(
            "select c.relname::text, tg.tgname::text, tg.tgenabled::text
               from pg_catalog.pg_trigger tg join pg_catalog.pg_class c on c.oid = tg.tgrelid
               join pg_catalog.pg_namespace n on n.oid = c.relnamespace
              where n.nspname = $1 and not tg.tgisinternal and tg.tgenabled in ('A', 'R')
              order by tg.oid",
            &[&schema],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ReplicaTrigger {
            table: r.get(0),
            name: r.get(1),
            keyword: if r.get::<_, String>(2) == "A" {
                "always"
            } else {
                "replica"
            },
        })
        .collect())
}

/// The first column of every row of `sql` (one `$1 = ns_oid` parameter).
async fn strings(db: &Db, sql: &str, ns_oid: u32) -> Result<Vec<String>, MoveError> {
    Ok(db
        .query(sql, &[&ns_oid])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// What this move cannot copy, each named with its reason: the tables logical
/// replication cannot publish, foreign tables (their server is outside the schema),
/// extensions installed in the schema, and large objects (they live in `pg_largeobject`, outside every schema, and logical
/// replication does not carry them: an `oid`/`lo` column would arrive pointing nowhere).
async fn unsupported(db: &Db, schema: &str, ns_oid: u32) -> Result<Vec<String>, MoveError> {
    let mut out = Vec::new();
    for r in db
        .query(
            "select c.relname::text, c.relkind = 'f' from pg_class c
              where c.relnamespace = $1
                and (c.relkind = 'f' or (c.relkind in ('r', 'p') and c.relpersistence <> 'p'))
              order by 1",
            &[&ns_oid],
        )
        .await?
    {
        let (name, foreign): (String, bool) = (r.get(0), r.get(1));
        out.push(if foreign {
            format!("foreign table {schema}.{name} (its server and user mappings are not part of the schema)")
        } else {
            format!("unlogged table {schema}.{name} (logical replication cannot publish unlogged tables)")
        });
    }
    for r in db
        .query(
            "select c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
               from pg_attribute a join pg_class c on c.oid = a.attrelid
               join pg_type t on t.oid = a.atttypid
              where c.relnamespace = $1 and c.relkind in ('r', 'p') and a.attnum > 0
                and not a.attisdropped
                and (a.atttypid = 'pg_catalog.oid'::regtype
                     or (t.typtype = 'd' and t.typbasetype = 'pg_catalog.oid'::regtype))
              order by 1, a.attnum",
            &[&ns_oid],
        )
        .await?
    {
        let (table, column, typ): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        out.push(format!(
            "large object column {schema}.{table}.{column} ({typ}): large objects live outside the schema (pg_largeobject) and logical replication does not carry them; store the bytes in a bytea column"
        ));
    }
    // `pg_dump --schema` leaves extensions out: their objects would be missing.
    for r in db
        .query(
            "select extname::text from pg_extension where extnamespace = $1 order by 1",
            &[&ns_oid],
        )
        .await?
    {
        out.push(format!(
            "extension {} installed in {schema} (an extension is not part of a schema's copy; install it in another schema, such as public, on every island)",
            r.get::<_, String>(0)
        ));
    }
    Ok(out)
}

/// The tables that hold rows (partitioned roots hold none: their leaves are published).
async fn tables(db: &Db, ns_oid: u32) -> Result<Vec<TableInfo>, MoveError> {
    let rows = db
        .query(
            "select c.relname::text, c.relreplident::text,
                    array(select a.attname::text
                            from pg_constraint con cross join unnest(con.conkey) with ordinality k(n, i)
                            join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n
                           where con.conrelid = c.oid and con.contype = 'p' order by k.i)
               from pg_class c
              where c.relnamespace = $1 and c.relkind = 'r' and c.relpersistence = 'p'
              order by c.oid",
            &[&ns_oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|t| {
            let replident: String = t.get(1);
            TableInfo {
                name: t.get(0),
                replident: replident.chars().next().unwrap_or('d'),
                pk: t.get(2),
            }
        })
        .collect())
}

/// Foreign keys of the schema's tables that reference another schema's table.
async fn foreign_refs(db: &Db, ns_oid: u32) -> Result<Vec<ForeignRef>, MoveError> {
    let rows = db
        .query(
            "select c.relname::text || '.' || con.conname::text, fn.nspname::text, fc.relname::text
               from pg_constraint con join pg_class c on c.oid = con.conrelid
               join pg_class fc on fc.oid = con.confrelid
               join pg_namespace fn on fn.oid = fc.relnamespace
              where c.relnamespace = $1 and con.contype = 'f' and fc.relnamespace <> $1
                and con.conparentid = 0
              order by con.oid",
            &[&ns_oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ForeignRef {
            constraint: r.get(0),
            schema: r.get(1),
            table: r.get(2),
        })
        .collect())
}
