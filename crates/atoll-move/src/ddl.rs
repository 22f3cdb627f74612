//! The DDL of a shard schema, generated from the source's `pg_catalog` (no pg_dump): what
//! the destination needs before the initial copy (types, sequences, functions, tables with
//! their primary keys / replica identities) and what is built after it (other constraints,
//! foreign keys, secondary indexes, triggers, views), because loading into a table with
//! fewer indexes is faster.
//!
//! Names come back fully qualified because the reading session runs with
//! `search_path = pg_catalog`. Owners, privileges, comments and row-level security come
//! from [`crate::security`], re-read and applied last, after the copy. Not copied: extended
//! statistics. Unsupported objects (partitioned, unlogged or foreign
//! tables, materialized views, non-enum types, aggregates, window functions) make the move refuse (fail closed).

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
    let mut out = SchemaDdl::default();
    let q_schema = ident(schema);
    let ns_oid: u32 = db
        .one(
            "select oid from pg_namespace where nspname = $1",
            &[&schema],
        )
        .await?
        .get(0);

    for r in db
        .query(
            "select c.relname::text, c.relkind::text, c.relpersistence::text from pg_class c
             where c.relnamespace = $1 and c.relkind in ('p', 'f', 'm')
                or (c.relnamespace = $1 and c.relkind = 'r' and c.relpersistence <> 'p')
             order by 1",
            &[&ns_oid],
        )
        .await?
    {
        let (name, kind, persistence): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let what = match (kind.as_str(), persistence.as_str()) {
            ("p", _) => "partitioned table",
            ("f", _) => "foreign table",
            ("m", _) => "materialized view",
            _ => "unlogged or temporary table",
        };
        out.unsupported.push(format!("{what} {schema}.{name}"));
    }
    for r in db
        .query(
            "select t.typname::text from pg_type t left join pg_class c on c.oid = t.typrelid
             where t.typnamespace = $1 and t.typcategory <> 'A'
               and (t.typtype in ('b', 'd', 'r', 'm') or (t.typtype = 'c' and c.relkind = 'c'))",
            &[&ns_oid],
        )
        .await?
    {
        out.unsupported
            .push(format!("type {schema}.{}", r.get::<_, String>(0)));
    }

    // Only plain functions and procedures are copied below.
    for r in db
        .query(
            "select case p.prokind when 'a' then 'aggregate' else 'window function' end,
                    p.oid::regprocedure::text
             from pg_proc p where p.pronamespace = $1 and p.prokind in ('a', 'w') order by p.oid",
            &[&ns_oid],
        )
        .await?
    {
        let (what, name): (String, String) = (r.get(0), r.get(1));
        out.unsupported.push(format!("{what} {name}"));
    }

    // Enum types first: columns may use them.
    for r in db
        .query(
            "select t.typname::text,
                    (select string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder)
                       from pg_enum e where e.enumtypid = t.oid)
             from pg_type t where t.typnamespace = $1 and t.typtype = 'e' order by t.oid",
            &[&ns_oid],
        )
        .await?
    {
        let (name, labels): (String, Option<String>) = (r.get(0), r.get(1));
        out.pre_copy.push(format!(
            "create type {q_schema}.{} as enum ({})",
            ident(&name),
            labels.unwrap_or_default()
        ));
    }

    // Sequences, except those an identity column owns (the column re-creates them).
    for r in db
        .query(
            "select c.relname::text, format_type(s.seqtypid, null), s.seqincrement, s.seqmin,
                    s.seqmax, s.seqstart, s.seqcache, s.seqcycle
             from pg_sequence s join pg_class c on c.oid = s.seqrelid
             where c.relnamespace = $1
               and not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                               and d.objid = c.oid and d.deptype = 'i')
             order by c.oid",
            &[&ns_oid],
        )
        .await?
    {
        let name: String = r.get(0);
        let (typ, inc, min, max, start, cache, cycle): (String, i64, i64, i64, i64, i64, bool) = (
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
        );
        out.pre_copy.push(format!(
            "create sequence {q_schema}.{} as {typ} increment by {inc} minvalue {min} maxvalue {max} start with {start} cache {cache} {}cycle",
            ident(&name),
            if cycle { "" } else { "no " }
        ));
    }
    for r in db
        .query(
            "select c.relname::text from pg_class c where c.relnamespace = $1 and c.relkind = 'S' order by 1",
            &[&ns_oid],
        )
        .await?
    {
        out.sequences.push(r.get(0));
    }

    // Functions and procedures (bodies are not checked at creation: they may name tables
    // that come later).
    for r in db
        .query(
            "select pg_get_functiondef(p.oid) from pg_proc p
             where p.pronamespace = $1 and p.prokind in ('f', 'p') order by p.oid",
            &[&ns_oid],
        )
        .await?
    {
        out.pre_copy.push(r.get(0));
    }

    // Tables: columns (with defaults, identity, generated expressions), primary key,
    // replica identity.
    let tables = db
        .query(
            "select c.oid, c.relname::text, c.relreplident::text from pg_class c
             where c.relnamespace = $1 and c.relkind = 'r' and c.relpersistence = 'p'
             order by c.oid",
            &[&ns_oid],
        )
        .await?;
    let mut identity_index = Vec::new();
    for t in &tables {
        let (oid, name, replident): (u32, String, String) = (t.get(0), t.get(1), t.get(2));
        let qt = format!("{q_schema}.{}", ident(&name));
        let mut cols = Vec::new();
        for c in db
            .query(
                "select a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                        pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
                        case when a.attcollation <> ty.typcollation
                             then quote_ident(co.collname) end
                 from pg_attribute a
                 join pg_type ty on ty.oid = a.atttypid
                 left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                 left join pg_collation co on co.oid = a.attcollation
                 where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
                 order by a.attnum",
                &[&oid],
            )
            .await?
        {
            let (cname, typ, notnull, default, identity, generated, coll): (
                String,
                String,
                bool,
                Option<String>,
                String,
                String,
                Option<String>,
            ) = (
                c.get(0),
                c.get(1),
                c.get(2),
                c.get(3),
                c.get(4),
                c.get(5),
                c.get(6),
            );
            let mut def = format!("{} {typ}", ident(&cname));
            if let Some(coll) = coll {
                def.push_str(&format!(" collate {coll}"));
            }
            match (identity.as_str(), generated.as_str(), default) {
                ("a", _, _) => def.push_str(" generated always as identity"),
                ("d", _, _) => def.push_str(" generated by default as identity"),
                (_, "s", Some(e)) => def.push_str(&format!(" generated always as ({e}) stored")),
                (_, _, Some(e)) => def.push_str(&format!(" default {e}")),
                _ => {}
            }
            if notnull {
                def.push_str(" not null");
            }
            cols.push(def);
        }
        let pk = db
            .opt(
                "select con.conname::text, pg_get_constraintdef(con.oid),
                        array(select a.attname::text from unnest(con.conkey) with ordinality k(n, i)
                              join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n
                              order by k.i)
                 from pg_constraint con where con.conrelid = $1 and con.contype = 'p'",
                &[&oid],
            )
            .await?;
        let mut pk_cols = Vec::new();
        if let Some(pk) = pk {
            let (cname, def, keys): (String, String, Vec<String>) =
                (pk.get(0), pk.get(1), pk.get(2));
            cols.push(format!("constraint {} {def}", ident(&cname)));
            pk_cols = keys;
        }
        out.pre_copy
            .push(format!("create table {qt} (\n  {}\n)", cols.join(",\n  ")));
        let rep = replident.chars().next().unwrap_or('d');
        match rep {
            'f' => out
                .pre_copy
                .push(format!("alter table {qt} replica identity full")),
            'i' => {
                // The identity index must exist before the copy, so changes can be applied.
                if let Some(r) = db
                    .opt(
                        "select i.indexrelid, pg_get_indexdef(i.indexrelid), c.relname::text
                         from pg_index i join pg_class c on c.oid = i.indexrelid
                         where i.indrelid = $1 and i.indisreplident",
                        &[&oid],
                    )
                    .await?
                {
                    let (ioid, def, iname): (u32, String, String) = (r.get(0), r.get(1), r.get(2));
                    identity_index.push(ioid);
                    out.pre_copy.push(def);
                    out.pre_copy.push(format!(
                        "alter table {qt} replica identity using index {}",
                        ident(&iname)
                    ));
                }
            }
            _ => {}
        }
        out.tables.push(TableInfo {
            name,
            pk: pk_cols,
            replident: rep,
        });
    }

    // Sequence ownership (serial columns), once the tables exist.
    for r in db
        .query(
            "select s.relname::text, t.relname::text, a.attname::text
             from pg_depend d
             join pg_class s on s.oid = d.objid and s.relkind = 'S'
             join pg_class t on t.oid = d.refobjid
             join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
             where d.classid = 'pg_class'::regclass and d.deptype = 'a'
               and s.relnamespace = $1 and t.relnamespace = $1",
            &[&ns_oid],
        )
        .await?
    {
        let (s, t, c): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        out.pre_copy.push(format!(
            "alter sequence {q_schema}.{} owned by {q_schema}.{}.{}",
            ident(&s),
            ident(&t),
            ident(&c)
        ));
    }

    // After the copy: unique, check and exclusion constraints, then foreign keys.
    for r in db
        .query(
            "select c.relname::text, con.conname::text, pg_get_constraintdef(con.oid)
             from pg_constraint con join pg_class c on c.oid = con.conrelid
             where c.relnamespace = $1 and con.contype in ('u', 'c', 'x', 'f')
             order by case con.contype when 'f' then 1 else 0 end, con.oid",
            &[&ns_oid],
        )
        .await?
    {
        let (t, name, def): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        out.post_copy.push(format!(
            "alter table {q_schema}.{} add constraint {} {def}",
            ident(&t),
            ident(&name)
        ));
    }
    // Secondary indexes that no constraint owns.
    for r in db
        .query(
            "select i.indexrelid, pg_get_indexdef(i.indexrelid) from pg_index i
             join pg_class c on c.oid = i.indexrelid
             where c.relnamespace = $1
               and not exists (select 1 from pg_constraint con where con.conindid = i.indexrelid
                               and con.contype in ('p', 'u', 'x'))
             order by i.indexrelid",
            &[&ns_oid],
        )
        .await?
    {
        let ioid: u32 = r.get(0);
        if !identity_index.contains(&ioid) {
            out.post_copy.push(r.get(1));
        }
    }
    for r in db
        .query(
            "select pg_get_triggerdef(tg.oid) from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
             where c.relnamespace = $1 and not tg.tgisinternal order by tg.oid",
            &[&ns_oid],
        )
        .await?
    {
        out.post_copy.push(r.get(0));
    }
    for r in db
        .query(
            "select c.relname::text, pg_get_viewdef(c.oid) from pg_class c
             where c.relnamespace = $1 and c.relkind = 'v' order by c.oid",
            &[&ns_oid],
        )
        .await?
    {
        let (name, def): (String, String) = (r.get(0), r.get(1));
        out.post_copy.push(format!(
            "create view {q_schema}.{} as {}",
            ident(&name),
            def.trim_end_matches(';')
        ));
    }
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
