//! Reading what a shard schema holds from the source's `pg_catalog`: plain rows, no SQL
//! rendering (that is `render.rs`). The session runs with `search_path = pg_catalog`, so
//! the `pg_get_*def` functions return fully qualified names.

use crate::db::Db;
use crate::error::MoveError;

/// Everything [`super::render::render`] needs, in the order it is read.
#[derive(Debug, Clone, Default)]
pub(crate) struct SchemaObjects {
    /// Objects the move cannot copy, described for the refusal (`partitioned table s.t`).
    pub unsupported: Vec<String>,
    pub enums: Vec<EnumType>,
    /// Sequences no identity column owns (an identity column re-creates its own).
    pub sequences: Vec<Sequence>,
    /// Every sequence's name, identity ones included: their positions are copied.
    pub all_sequences: Vec<String>,
    /// `pg_get_functiondef` of every plain function and procedure.
    pub functions: Vec<String>,
    pub tables: Vec<Table>,
    /// `(sequence, table, column)`: sequences owned by a column (serial).
    pub owned_sequences: Vec<(String, String, String)>,
    /// `(table, name, definition)`: unique, check and exclusion constraints, then foreign
    /// keys.
    pub constraints: Vec<(String, String, String)>,
    /// `(index oid, pg_get_indexdef)` of indexes no constraint owns.
    pub indexes: Vec<(u32, String)>,
    /// Every user trigger.
    pub triggers: Vec<Trigger>,
    /// `(name, pg_get_viewdef)`.
    pub views: Vec<(String, String)>,
}

/// A user trigger: `pg_get_triggerdef`, and whether it is disabled (the definition does
/// not say).
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub table: String,
    pub name: String,
    pub def: String,
    pub disabled: bool,
}

/// An enum type with its labels as one quoted, comma-separated list.
#[derive(Debug, Clone)]
pub(crate) struct EnumType {
    pub name: String,
    pub labels: Option<String>,
}

/// A sequence's definition.
#[derive(Debug, Clone)]
pub(crate) struct Sequence {
    pub name: String,
    /// `format_type` of its data type.
    pub data_type: String,
    pub increment: i64,
    pub min: i64,
    pub max: i64,
    pub start: i64,
    pub cache: i64,
    pub cycle: bool,
}

/// A table with its columns, primary key and replica identity.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub name: String,
    pub columns: Vec<Column>,
    /// `(constraint name, pg_get_constraintdef, key columns in key order)`.
    pub primary_key: Option<(String, String, Vec<String>)>,
    /// `relreplident`: d(efault = pk), f(ull), i(ndex), n(othing).
    pub replident: char,
    /// With `replident = 'i'`: `(index oid, pg_get_indexdef, index name)`.
    pub identity_index: Option<(u32, String, String)>,
}

/// A column as `pg_attribute` and `pg_attrdef` describe it.
#[derive(Debug, Clone)]
pub(crate) struct Column {
    pub name: String,
    /// `format_type` with the type modifier.
    pub data_type: String,
    pub not_null: bool,
    /// The default or generation expression.
    pub default: Option<String>,
    /// `attidentity`: `a` always, `d` by default, empty for none.
    pub identity: String,
    /// `attgenerated`: `s` stored, empty for none.
    pub generated: String,
    /// The quoted collation name when it differs from the type's.
    pub collation: Option<String>,
    /// An identity column's own sequence: its name and options travel with the column.
    pub identity_sequence: Option<Sequence>,
}

/// Reads every object of schema `ns_oid` (named `schema`, for messages).
pub(crate) async fn read(db: &Db, schema: &str, ns_oid: u32) -> Result<SchemaObjects, MoveError> {
    let mut out = SchemaObjects {
        unsupported: unsupported(db, schema, ns_oid).await?,
        ..SchemaObjects::default()
    };
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
        out.enums.push(EnumType {
            name: r.get(0),
            labels: r.get(1),
        });
    }
    out.sequences = sequences(db, ns_oid).await?;
    out.all_sequences = strings(
        db,
        "select c.relname::text from pg_class c where c.relnamespace = $1 and c.relkind = 'S' order by 1",
        ns_oid,
    )
    .await?;
    out.functions = strings(
        db,
        "select pg_get_functiondef(p.oid) from pg_proc p
         where p.pronamespace = $1 and p.prokind in ('f', 'p') order by p.oid",
        ns_oid,
    )
    .await?;
    out.tables = tables(db, ns_oid).await?;
    post_copy_objects(db, ns_oid, &mut out).await?;
    Ok(out)
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

/// Relations, types and routines this move cannot copy.
async fn unsupported(db: &Db, schema: &str, ns_oid: u32) -> Result<Vec<String>, MoveError> {
    let mut out = Vec::new();
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
        out.push(format!("{what} {schema}.{name}"));
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
        out.push(format!("type {schema}.{}", r.get::<_, String>(0)));
    }
    // Only plain functions and procedures are copied.
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
        out.push(format!("{what} {name}"));
    }
    Ok(out)
}

async fn sequences(db: &Db, ns_oid: u32) -> Result<Vec<Sequence>, MoveError> {
    let rows = db
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
        .await?;
    Ok(rows
        .iter()
        .map(|r| Sequence {
            name: r.get(0),
            data_type: r.get(1),
            increment: r.get(2),
            min: r.get(3),
            max: r.get(4),
            start: r.get(5),
            cache: r.get(6),
            cycle: r.get(7),
        })
        .collect())
}

async fn tables(db: &Db, ns_oid: u32) -> Result<Vec<Table>, MoveError> {
    let rows = db
        .query(
            "select c.oid, c.relname::text, c.relreplident::text from pg_class c
             where c.relnamespace = $1 and c.relkind = 'r' and c.relpersistence = 'p'
             order by c.oid",
            &[&ns_oid],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for t in &rows {
        let (oid, name, replident): (u32, String, String) = (t.get(0), t.get(1), t.get(2));
        let replident = replident.chars().next().unwrap_or('d');
        let primary_key = db
            .opt(
                "select con.conname::text, pg_get_constraintdef(con.oid),
                        array(select a.attname::text from unnest(con.conkey) with ordinality k(n, i)
                              join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n
                              order by k.i)
                 from pg_constraint con where con.conrelid = $1 and con.contype = 'p'",
                &[&oid],
            )
            .await?
            .map(|pk| (pk.get(0), pk.get(1), pk.get(2)));
        // The identity index must exist before the copy, so changes can be applied.
        let identity_index = match replident {
            'i' => db
                .opt(
                    "select i.indexrelid, pg_get_indexdef(i.indexrelid), c.relname::text
                     from pg_index i join pg_class c on c.oid = i.indexrelid
                     where i.indrelid = $1 and i.indisreplident",
                    &[&oid],
                )
                .await?
                .map(|r| (r.get(0), r.get(1), r.get(2))),
            _ => None,
        };
        out.push(Table {
            name,
            columns: columns(db, oid).await?,
            primary_key,
            replident,
            identity_index,
        });
    }
    Ok(out)
}

async fn columns(db: &Db, table_oid: u32) -> Result<Vec<Column>, MoveError> {
    let mut identity = identity_sequences(db, table_oid).await?;
    let rows = db
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
            &[&table_oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|c| Column {
            name: c.get(0),
            data_type: c.get(1),
            not_null: c.get(2),
            default: c.get(3),
            identity: c.get(4),
            generated: c.get(5),
            collation: c.get(6),
            identity_sequence: identity.remove(&c.get::<_, String>(0)),
        })
        .collect())
}

/// The sequences of the table's identity columns, by column name.
async fn identity_sequences(
    db: &Db,
    table_oid: u32,
) -> Result<std::collections::HashMap<String, Sequence>, MoveError> {
    let rows = db
        .query(
            "select a.attname::text, s.relname::text, format_type(q.seqtypid, null),
                    q.seqincrement, q.seqmin, q.seqmax, q.seqstart, q.seqcache, q.seqcycle
               from pg_depend d
               join pg_class s on s.oid = d.objid
               join pg_sequence q on q.seqrelid = s.oid
               join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
              where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
                and d.deptype = 'i' and d.refobjid = $1",
            &[&table_oid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Sequence {
                    name: r.get(1),
                    data_type: r.get(2),
                    increment: r.get(3),
                    min: r.get(4),
                    max: r.get(5),
                    start: r.get(6),
                    cache: r.get(7),
                    cycle: r.get(8),
                },
            )
        })
        .collect())
}

/// Sequence ownership, constraints, indexes, triggers and views.
async fn post_copy_objects(db: &Db, ns_oid: u32, out: &mut SchemaObjects) -> Result<(), MoveError> {
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
        out.owned_sequences.push((r.get(0), r.get(1), r.get(2)));
    }
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
        out.constraints.push((r.get(0), r.get(1), r.get(2)));
    }
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
        out.indexes.push((r.get(0), r.get(1)));
    }
    for r in db
        .query(
            "select c.relname::text, tg.tgname::text, pg_get_triggerdef(tg.oid), tg.tgenabled = 'D'
             from pg_trigger tg join pg_class c on c.oid = tg.tgrelid
             where c.relnamespace = $1 and not tg.tgisinternal order by tg.oid",
            &[&ns_oid],
        )
        .await?
    {
        out.triggers.push(Trigger {
            table: r.get(0),
            name: r.get(1),
            def: r.get(2),
            disabled: r.get(3),
        });
    }
    for r in db
        .query(
            "select c.relname::text, pg_get_viewdef(c.oid) from pg_class c
             where c.relnamespace = $1 and c.relkind = 'v' order by c.oid",
            &[&ns_oid],
        )
        .await?
    {
        out.views.push((r.get(0), r.get(1)));
    }
    Ok(())
}
