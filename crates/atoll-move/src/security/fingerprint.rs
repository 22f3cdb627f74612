//! A by-name fingerprint of what [`super::read`] copies (owners, ACLs, column ACLs,
//! default privileges, RLS flags, policies, comments) of one schema, to prove the
//! destination's equals the source's: after the replay (same transaction) and again inside
//! the cutover pause, so a GRANT, REVOKE, policy or comment changed on the source after
//! the replay fails the move instead of being lost (a lost REVOKE would grant more).

use crate::db::Db;
use crate::error::MoveError;
use tokio_postgres::{GenericClient, Statement};

/// One text line per object or entry; no oids, so equal on two servers when the schemas
/// match. Function names use identity arguments (not `regprocedure`, whose rendering
/// depends on the search path).
const SQL: &str = r"
with ns as (select n.oid, n.nspowner, n.nspacl from pg_catalog.pg_namespace n
             where n.nspname = $1::text)
select 'schema ' || pg_catalog.pg_get_userbyid(ns.nspowner) || ' ' || coalesce(ns.nspacl::text, '-')
  from ns
union all
select 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || pg_catalog.pg_get_userbyid(c.relowner)
       || ' ' || coalesce(c.relacl::text, '-') || ' rls ' || c.relrowsecurity
       || ' force ' || c.relforcerowsecurity
  from pg_catalog.pg_class c join ns on c.relnamespace = ns.oid
union all
select 'col ' || c.relname || '.' || a.attname || ' ' || a.attacl::text
  from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid
  join ns on c.relnamespace = ns.oid
 where a.attacl is not null and a.attnum > 0 and not a.attisdropped
union all
select 'proc ' || p.proname || '(' || pg_catalog.pg_get_function_identity_arguments(p.oid) || ') '
       || pg_catalog.pg_get_userbyid(p.proowner) || ' ' || coalesce(p.proacl::text, '-')
  from pg_catalog.pg_proc p join ns on p.pronamespace = ns.oid
union all
select 'type ' || t.typname || ' ' || pg_catalog.pg_get_userbyid(t.typowner) || ' '
       || coalesce(t.typacl::text, '-')
  from pg_catalog.pg_type t join ns on t.typnamespace = ns.oid
  left join pg_catalog.pg_class tc on tc.oid = t.typrelid
 where t.typtype in ('e', 'd', 'r') or (t.typtype = 'c' and tc.relkind = 'c')
union all
select 'default ' || pg_catalog.pg_get_userbyid(d.defaclrole) || ' ' || d.defaclobjtype::text
       || ' ' || d.defaclacl::text
  from pg_catalog.pg_default_acl d join ns on d.defaclnamespace = ns.oid
union all
select 'policy ' || c.relname || ' ' || p.polname || ' ' || p.polpermissive || ' ' || p.polcmd::text
       || ' ' || array(select case when r = 0 then 'public'
                                   else pg_catalog.pg_get_userbyid(r)::text end
                         from unnest(p.polroles) r)::text
       || ' ' || coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '-')
       || ' ' || coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '-')
  from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid
  join ns on c.relnamespace = ns.oid
union all
select 'comment ' || o.type || ' ' || o.identity || ' ' || d.description
  from pg_catalog.pg_description d
  cross join lateral pg_catalog.pg_identify_object(d.classoid, d.objoid, d.objsubid) o
 where (d.classoid = 'pg_catalog.pg_namespace'::regclass and d.objoid = (select oid from ns))
    or (d.classoid = 'pg_catalog.pg_class'::regclass and d.objoid in
        (select c.oid from pg_catalog.pg_class c join ns on c.relnamespace = ns.oid))
    or (d.classoid = 'pg_catalog.pg_proc'::regclass and d.objoid in
        (select p.oid from pg_catalog.pg_proc p join ns on p.pronamespace = ns.oid))
    or (d.classoid = 'pg_catalog.pg_type'::regclass and d.objoid in
        (select t.oid from pg_catalog.pg_type t join ns on t.typnamespace = ns.oid))
    or (d.classoid = 'pg_catalog.pg_constraint'::regclass and d.objoid in
        (select k.oid from pg_catalog.pg_constraint k join ns on k.connamespace = ns.oid))
    or (d.classoid = 'pg_catalog.pg_trigger'::regclass and d.objoid in
        (select g.oid from pg_catalog.pg_trigger g join pg_catalog.pg_class c on c.oid = g.tgrelid
           join ns on c.relnamespace = ns.oid))
    or (d.classoid = 'pg_catalog.pg_policy'::regclass and d.objoid in
        (select p.oid from pg_catalog.pg_policy p join pg_catalog.pg_class c on c.oid = p.polrelid
           join ns on c.relnamespace = ns.oid))";

/// The fingerprint of `schema` as seen by `client` (a session or an open transaction),
/// sorted in Rust so the servers' collations do not matter.
pub(crate) async fn read<C: GenericClient>(
    client: &C,
    schema: &str,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client.query(SQL, &[&schema]).await?;
    Ok(sorted(&rows))
}

/// The statement behind [`read`] for `schema`, prepared on `db`'s session ahead of the
/// cutover pause, where [`run`] then costs one execution. The schema is a literal, not a
/// parameter: a parameterised statement is planned again on each of its first executions
/// (custom plans), and planning this catalog query takes about as long as running it.
pub(crate) async fn prepare(db: &Db, schema: &str) -> Result<Statement, MoveError> {
    let sql = SQL.replace("$1::text", &crate::db::literal(schema));
    db.client.prepare(&sql).await.map_err(|e| db.err(e))
}

/// [`read`] through a statement from [`prepare`] on the same session.
pub(crate) async fn run(db: &Db, statement: &Statement) -> Result<Vec<String>, MoveError> {
    let rows = db
        .client
        .query(statement, &[])
        .await
        .map_err(|e| db.err(e))?;
    Ok(sorted(&rows))
}

fn sorted(rows: &[tokio_postgres::Row]) -> Vec<String> {
    let mut lines: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    lines.sort();
    lines
}

/// [`read`] on a [`Db`], with its error context.
pub(crate) async fn of(db: &Db, schema: &str) -> Result<Vec<String>, MoveError> {
    read(&db.client, schema).await.map_err(|e| db.err(e))
}

/// `None` when equal, else the first few differing lines of each side. Both must be
/// sorted, as [`read`] and [`run`] return them.
pub(crate) fn differences(source: &[String], destination: &[String]) -> Option<String> {
    const SHOWN: usize = 3;
    let only = |a: &[String], b: &[String]| -> Vec<String> {
        // Both sides come sorted (see `sorted`); this runs inside the write pause.
        a.iter()
            .filter(|l| b.binary_search(l).is_err())
            .cloned()
            .collect()
    };
    let (src, dst) = (only(source, destination), only(destination, source));
    if src.is_empty() && dst.is_empty() {
        return None;
    }
    let show = |v: &[String]| {
        let mut s = v.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
        if v.len() > SHOWN {
            s.push_str(&format!("; and {} more", v.len() - SHOWN));
        }
        if s.is_empty() {
            s.push('-');
        }
        s
    };
    Some(format!(
        "only on the source: {}; only on the destination: {}",
        show(&src),
        show(&dst)
    ))
}

#[cfg(test)]
mod tests {
    use super::{differences, SQL};

    #[test]
    fn the_schema_is_the_one_parameter() {
        // `prepare` puts a literal in its place.
        assert_eq!(SQL.matches("$1::text").count(), 1);
        assert!(!SQL.contains("$2"));
    }

    #[test]
    fn differences_name_both_sides() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(differences(&s(&["a", "b"]), &s(&["a", "b"])), None);
        assert_eq!(
            differences(
                &s(&["rel t {o=r/o}", "x"]),
                &s(&["rel t {o=r/o,app=r/o}", "x"])
            )
            .as_deref(),
            Some(
                "only on the source: rel t {o=r/o}; only on the destination: rel t {o=r/o,app=r/o}"
            )
        );
        assert_eq!(
            differences(&s(&["a", "b", "c", "d"]), &s(&[])).as_deref(),
            Some("only on the source: a; b; c; and 1 more; only on the destination: -")
        );
    }
}
