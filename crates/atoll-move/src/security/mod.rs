//! Ownership, privileges, comments and row-level security of a shard schema, read from the
//! source's `pg_catalog` and replayed on the destination after the initial copy (with the
//! other post-copy DDL, in the same transaction).
//!
//! What is copied: owners of the schema, tables (partitioned too), views, materialized
//! views, sequences (those no column owns), functions, procedures and enum types (the
//! owners of everything else come with the dump, `crate::ddl`); the ACLs of those, of
//! aggregates, domains, composite and range types (the dump's are left out: replayed over
//! them, the entries would come out in another order), including column-level grants, and
//! grants made by a non-owner holding the grant option, replayed under `SET ROLE` of that
//! grantor); the schema's default privileges (`ALTER DEFAULT PRIVILEGES ... IN SCHEMA`);
//! comments on every object of the schema; `ENABLE` / `FORCE ROW LEVEL SECURITY` and the
//! policies. Every role these name must already exist on the destination (roles are
//! cluster-wide); the safety check `missing_role` refuses the move up front otherwise.
//!
//! Why after the copy, and why RLS never blocks replication: in PostgreSQL 15 only a
//! superuser can create a subscription, its apply and table-sync workers run as the
//! subscription's owner, and superusers bypass row-level security even where a table has
//! `FORCE ROW LEVEL SECURITY` (FORCE only subjects the table's owner). So neither the
//! initial `COPY` nor the apply of later changes sees a policy. From PostgreSQL 16 the
//! apply would run as each table's owner (whom FORCE subjects to the policies) unless the
//! subscription has `run_as_owner = true`, which the move sets there. Enabling RLS only
//! after the copy keeps the copy unhindered should a non-superuser ever own the
//! subscription; the apply worker then refuses rows it may not see with an error the move
//! reports (it counts apply errors), never silently dropping them.
//!
//! Everything here is read again right before the replay (a change made during a long
//! copy must not be lost), and the replayed state is compared with the source's by name
//! ([`fingerprint`]) in the replay's transaction and again inside the cutover pause; a
//! difference rolls the move back.
//!
//! An object whose ACL is NULL on the source (default privileges) gets nothing: a fresh
//! destination object has its defaults too (unless the destination has global default
//! privileges for the creating role, which are not undone). A non-NULL ACL is replayed as
//! pg_dump does: revoke everything from PUBLIC and the owner, then grant each entry.

pub(crate) mod fingerprint;
mod render;

use crate::db::{literal, Db};
use crate::error::MoveError;
pub(crate) use render::Security;
use render::{comment_kind, default_acl_sql, grants, objects_sql, policy_sql};
use render::{Privilege, Secured};

/// Rows of (grantor, grantee, privilege, grantable) columns starting at `at`.
fn privilege(r: &tokio_postgres::Row, at: usize) -> Option<Privilege> {
    let grantor: Option<String> = r.get(at);
    Some(Privilege {
        grantor: grantor?,
        grantee: r.get(at + 1),
        privilege: r.get(at + 2),
        grantable: r.get(at + 3),
    })
}

/// The exploded ACL columns: grantor, grantee (NULL for PUBLIC), privilege, grant option.
const EXPLODED: &str = "pg_get_userbyid(x.grantor)::text,
    case when x.grantee = 0 then null else pg_get_userbyid(x.grantee)::text end,
    x.privilege_type, x.is_grantable";

/// Reads what the schema `schema` (oid `ns`) needs beyond its DDL. The session runs with
/// `search_path = pg_catalog`, so `regprocedure` / `regtype` names come out qualified.
pub(crate) async fn read(db: &Db, schema: &str, ns: u32) -> Result<Security, MoveError> {
    let mut out = Security::default();
    let objects = read_objects(db, ns, &mut out).await?;
    let cols = read_column_grants(db, ns, &mut out).await?;
    check_grantors(db, schema, ns, &objects, &cols, &mut out).await?;
    read_row_security(db, ns, &mut out).await?;
    read_comments(db, ns, &mut out).await?;
    read_default_privileges(db, schema, ns, &mut out).await?;
    read_other_owners(db, ns, &mut out).await?;
    Ok(out)
}

/// The owners of every other kind of object in the schema (the dump sets them before
/// the copy): they must exist on the destination too.
async fn read_other_owners(db: &Db, ns: u32, out: &mut Security) -> Result<(), MoveError> {
    for r in db
        .query(
            "select pg_get_userbyid(o)::text from (
               select typowner from pg_type where typnamespace = $1
               union select oprowner from pg_operator where oprnamespace = $1
               union select collowner from pg_collation where collnamespace = $1
               union select stxowner from pg_statistic_ext where stxnamespace = $1
               union select conowner from pg_conversion where connamespace = $1
               union select opfowner from pg_opfamily where opfnamespace = $1
               union select opcowner from pg_opclass where opcnamespace = $1
               union select relowner from pg_class where relnamespace = $1
               union select proowner from pg_proc where pronamespace = $1) x(o)",
            &[&ns],
        )
        .await?
    {
        out.roles.insert(r.get(0));
    }
    Ok(())
}

/// Column grants: `(table, column, table owner, privileges)`.
type ColumnGrants = Vec<(String, String, String, Vec<Privilege>)>;

/// Owners and ACLs of the schema and its objects.
async fn read_objects(db: &Db, ns: u32, out: &mut Security) -> Result<Vec<Secured>, MoveError> {
    // Owners and ACLs, one row per privilege (or one row with NULLs for an empty / NULL
    // ACL), in object order then ACL order.
    let sql = format!(
        "with o(ord, kind, name, owner, set_owner, acl) as (
           select 0::int8, 'schema', quote_ident(n.nspname), n.nspowner, true, n.nspacl
             from pg_namespace n where n.oid = $1
           union all
           select 1 + c.oid::int8,
                  case c.relkind when 'r' then 'table' when 'p' then 'table' when 'v' then 'view' when 'm' then 'materialized view' else 'sequence' end,
                  quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relowner,
                  not (c.relkind = 'S' and exists (
                         select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                            and d.objid = c.oid and d.deptype in ('a', 'i'))),
                  c.relacl
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relnamespace = $1 and c.relkind in ('r', 'p', 'v', 'm', 'S')
           union all
           select 1 + p.oid::int8, case p.prokind when 'p' then 'procedure' else 'function' end,
                  p.oid::regprocedure::text, p.proowner, p.prokind in ('f', 'p'), p.proacl
             from pg_proc p where p.pronamespace = $1
           union all
           select 1 + t.oid::int8, case t.typtype when 'd' then 'domain' else 'type' end,
                  t.oid::regtype::text, t.typowner, t.typtype = 'e', t.typacl
             from pg_type t left join pg_class c on c.oid = t.typrelid
            where t.typnamespace = $1
              and (t.typtype in ('e', 'd', 'r') or (t.typtype = 'c' and c.relkind = 'c'))
         )
         select o.kind, o.name, pg_get_userbyid(o.owner)::text, o.set_owner, o.acl is not null,
                {EXPLODED}
           from o left join lateral aclexplode(o.acl) with ordinality x on true
          order by o.ord, x.ordinality"
    );
    let mut objects: Vec<Secured> = Vec::new();
    for r in db.query(&sql, &[&ns]).await? {
        let (kind, name): (String, String) = (r.get(0), r.get(1));
        let same = objects
            .last()
            .is_some_and(|o| o.kind == kind && o.name == name);
        if !same {
            let has_acl: bool = r.get(4);
            objects.push(Secured {
                kind,
                name,
                owner: r.get(2),
                set_owner: r.get(3),
                acl: has_acl.then(Vec::new),
            });
        }
        if let (Some(p), Some(o)) = (privilege(&r, 5), objects.last_mut()) {
            if let Some(acl) = o.acl.as_mut() {
                acl.push(p);
            }
        }
    }
    for o in &objects {
        out.roles.insert(o.owner.clone());
        if let Some(acl) = &o.acl {
            out.note_roles(acl);
        }
    }
    out.statements.extend(objects_sql(&objects));

    Ok(objects)
}

/// Column grants (a fresh column has none, so only grants).
async fn read_column_grants(
    db: &Db,
    ns: u32,
    out: &mut Security,
) -> Result<ColumnGrants, MoveError> {
    let sql = format!(
        "select quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname::text,
                pg_get_userbyid(c.relowner)::text, {EXPLODED}
           from pg_attribute a join pg_class c on c.oid = a.attrelid
           join pg_namespace n on n.oid = c.relnamespace
           cross join lateral aclexplode(a.attacl) with ordinality x
          where c.relnamespace = $1 and c.relkind in ('r', 'p', 'v', 'm') and a.attnum > 0
            and not a.attisdropped and a.attacl is not null
          order by c.oid, a.attnum, x.ordinality"
    );
    let mut cols: ColumnGrants = Vec::new();
    for r in db.query(&sql, &[&ns]).await? {
        let (table, col, owner): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let Some(p) = privilege(&r, 3) else { continue };
        match cols.last_mut() {
            Some(last) if last.0 == table && last.1 == col => last.3.push(p),
            _ => cols.push((table, col, owner, vec![p])),
        }
    }
    for (table, col, owner, acl) in &cols {
        out.note_roles(acl);
        out.statements
            .extend(grants(acl, owner, &format!("table {table}"), Some(col)));
    }

    Ok(cols)
}

/// Grantors other than the owner must be able to use the schema (see below).
async fn check_grantors(
    db: &Db,
    schema: &str,
    ns: u32,
    objects: &[Secured],
    cols: &ColumnGrants,
    out: &mut Security,
) -> Result<(), MoveError> {
    // A grant made by a non-owner is replayed under SET ROLE of its grantor, which must
    // be able to look the object up: without USAGE on the schema the GRANT would fail (or
    // grant less, with only a warning). The schema's ACL is replayed first, so the source's
    // answer is the destination's.
    let mut foreign: Vec<String> = objects
        .iter()
        .flat_map(|o| {
            o.acl
                .iter()
                .flatten()
                .filter(|p| p.grantor != o.owner)
                .map(|p| p.grantor.clone())
        })
        .chain(
            cols.iter()
                .flat_map(|(_, _, owner, acl)| acl.iter().filter(move |p| &p.grantor != owner))
                .map(|p| p.grantor.clone()),
        )
        .collect();
    foreign.sort();
    foreign.dedup();
    for r in db
        .query(
            "select r from unnest($1::text[]) r
              where not has_schema_privilege(r, $2::oid, 'usage') order by 1",
            &[&foreign, &ns],
        )
        .await?
    {
        let role: String = r.get(0);
        out.unusable.push(format!(
            "grants made by role {role} in schema {schema} (it lacks USAGE on the schema, so they cannot be replayed as that role)"
        ));
    }

    Ok(())
}

/// `ENABLE` / `FORCE ROW LEVEL SECURITY`, then the policies.
async fn read_row_security(db: &Db, ns: u32, out: &mut Security) -> Result<(), MoveError> {
    for r in db
        .query(
            "select quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                    c.relrowsecurity, c.relforcerowsecurity
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relnamespace = $1 and c.relkind in ('r', 'p')
                and (c.relrowsecurity or c.relforcerowsecurity)
              order by c.oid",
            &[&ns],
        )
        .await?
    {
        let (table, enable, force): (String, bool, bool) = (r.get(0), r.get(1), r.get(2));
        if enable {
            out.statements
                .push(format!("alter table {table} enable row level security"));
        }
        if force {
            out.statements
                .push(format!("alter table {table} force row level security"));
        }
    }
    for r in db
        .query(
            "select p.polname::text, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                    p.polpermissive, p.polcmd::text,
                    array(select case when r = 0 then null else pg_get_userbyid(r)::text end
                            from unnest(p.polroles) r),
                    pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)
               from pg_policy p join pg_class c on c.oid = p.polrelid
               join pg_namespace n on n.oid = c.relnamespace
              where c.relnamespace = $1 order by p.oid",
            &[&ns],
        )
        .await?
    {
        let roles: Vec<Option<String>> = r.get(4);
        out.roles.extend(roles.iter().flatten().cloned());
        let (using, check): (Option<String>, Option<String>) = (r.get(5), r.get(6));
        out.statements.push(policy_sql(
            &r.get::<_, String>(0),
            &r.get::<_, String>(1),
            r.get(2),
            &r.get::<_, String>(3),
            &roles,
            using.as_deref(),
            check.as_deref(),
        ));
    }

    Ok(())
}

/// Comments on the schema and everything in it.
async fn read_comments(db: &Db, ns: u32, out: &mut Security) -> Result<(), MoveError> {
    for r in db
        .query(
            "select o.type, o.identity, d.description
               from pg_description d
               cross join lateral pg_identify_object(d.classoid, d.objoid, d.objsubid) o
              where (d.classoid = 'pg_namespace'::regclass and d.objoid = $1)
                 or (d.classoid = 'pg_class'::regclass
                     and d.objoid in (select oid from pg_class where relnamespace = $1))
                 or (d.classoid = 'pg_proc'::regclass
                     and d.objoid in (select oid from pg_proc where pronamespace = $1))
                 or (d.classoid = 'pg_type'::regclass
                     and d.objoid in (select oid from pg_type where typnamespace = $1))
                 or (d.classoid = 'pg_constraint'::regclass
                     and d.objoid in (select oid from pg_constraint where connamespace = $1))
                 or (d.classoid = 'pg_trigger'::regclass
                     and d.objoid in (select t.oid from pg_trigger t
                                      join pg_class c on c.oid = t.tgrelid where c.relnamespace = $1))
                 or (d.classoid = 'pg_policy'::regclass
                     and d.objoid in (select p.oid from pg_policy p
                                      join pg_class c on c.oid = p.polrelid where c.relnamespace = $1))
              order by d.classoid, d.objoid, d.objsubid",
            &[&ns],
        )
        .await?
    {
        let (kind, identity, text): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        if let Some(k) = comment_kind(&kind) {
            out.statements
                .push(format!("comment on {k} {identity} is {}", literal(&text)));
        }
    }

    Ok(())
}

/// The schema's default privileges: replayed last, so objects created before do not pick
/// them up.
async fn read_default_privileges(
    db: &Db,
    schema: &str,
    ns: u32,
    out: &mut Security,
) -> Result<(), MoveError> {
    let sql = format!(
        "select pg_get_userbyid(d.defaclrole)::text, d.defaclobjtype::text, {EXPLODED}
           from pg_default_acl d cross join lateral aclexplode(d.defaclacl) with ordinality x
          where d.defaclnamespace = $1
          order by d.oid, x.ordinality"
    );
    let mut defaults: Vec<(String, String, Vec<Privilege>)> = Vec::new();
    for r in db.query(&sql, &[&ns]).await? {
        let (role, objtype): (String, String) = (r.get(0), r.get(1));
        let Some(p) = privilege(&r, 2) else { continue };
        match defaults.last_mut() {
            Some(last) if last.0 == role && last.1 == objtype => last.2.push(p),
            _ => defaults.push((role, objtype, vec![p])),
        }
    }
    for (role, objtype, acl) in &defaults {
        out.roles.insert(role.clone());
        out.note_roles(acl);
        if let Some(stmts) = default_acl_sql(role, schema, objtype, acl) {
            out.statements.extend(stmts);
        }
    }
    Ok(())
}
