//! Ownership, privileges, comments and row-level security of a shard schema, read from the
//! source's `pg_catalog` and replayed on the destination after the initial copy (with the
//! other post-copy DDL, in the same transaction).
//!
//! What is copied: owners of the schema, tables, views, sequences (those no column owns),
//! functions, procedures and enum types; their ACLs (including column-level grants, and
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
//! initial `COPY` nor the apply of later changes sees a policy. Enabling RLS only after
//! the copy keeps it that way should a non-superuser ever own the subscription (a later
//! PostgreSQL allows it): the copy would still run unhindered, and the apply worker refuses
//! rows it may not see with an error the move reports (it counts apply errors), never
//! silently dropping them.
//!
//! An object whose ACL is NULL on the source (default privileges) gets nothing: a fresh
//! destination object has its defaults too (unless the destination has global default
//! privileges for the creating role, which are not undone). A non-NULL ACL is replayed as
//! pg_dump does: revoke everything from PUBLIC and the owner, then grant each entry.

use crate::db::{ident, literal, Db};
use crate::error::MoveError;
use std::collections::BTreeSet;

/// One exploded ACL privilege (`aclexplode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Privilege {
    pub grantor: String,
    /// `None` is PUBLIC.
    pub grantee: Option<String>,
    pub privilege: String,
    pub grantable: bool,
}

/// An object that has an owner and an ACL.
#[derive(Debug, Clone)]
pub(crate) struct Secured {
    /// The keyword of GRANT / ALTER ... OWNER: table, view, sequence, function,
    /// procedure, type, schema.
    pub kind: String,
    /// The quoted, qualified name (functions with their argument types).
    pub name: String,
    pub owner: String,
    /// False where the owner follows another object (sequences owned by a column).
    pub set_owner: bool,
    /// `None` when the ACL is NULL (defaults).
    pub acl: Option<Vec<Privilege>>,
}

/// Statements to replay, and every role they name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Security {
    pub statements: Vec<String>,
    pub roles: BTreeSet<String>,
}

impl Security {
    fn note_roles(&mut self, p: &[Privilege]) {
        for p in p {
            self.roles.insert(p.grantor.clone());
            if let Some(g) = &p.grantee {
                self.roles.insert(g.clone());
            }
        }
    }
}

fn grantee_sql(g: &Option<String>) -> String {
    g.as_deref().map_or_else(|| "public".to_string(), ident)
}

/// GRANT statements for `acl`, consecutive privileges of one (grantor, grantee, grant
/// option) merged; `target` is what follows ON, `cols` the column list for column grants.
/// A grantor other than `owner` grants under `SET ROLE` (a superuser's GRANT is recorded
/// as the owner's), in ACL order, so the grant option it relies on already exists.
pub(crate) fn grants(
    acl: &[Privilege],
    owner: &str,
    target: &str,
    col: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < acl.len() {
        let head = &acl[i];
        let mut privs = Vec::new();
        while i < acl.len()
            && acl[i].grantor == head.grantor
            && acl[i].grantee == head.grantee
            && acl[i].grantable == head.grantable
        {
            privs.push(match col {
                Some(c) => format!("{} ({})", acl[i].privilege.to_lowercase(), ident(c)),
                None => acl[i].privilege.to_lowercase(),
            });
            i += 1;
        }
        let grant = format!(
            "grant {} on {target} to {}{}",
            privs.join(", "),
            grantee_sql(&head.grantee),
            if head.grantable {
                " with grant option"
            } else {
                ""
            }
        );
        out.push(if head.grantor == owner {
            grant
        } else {
            format!("set role {}; {grant}; reset role", ident(&head.grantor))
        });
    }
    out
}

/// Owner and ACL statements of one object.
pub(crate) fn object_sql(o: &Secured) -> Vec<String> {
    let mut out = Vec::new();
    if o.set_owner {
        out.push(format!(
            "alter {} {} owner to {}",
            o.kind,
            o.name,
            ident(&o.owner)
        ));
    }
    if let Some(acl) = &o.acl {
        // GRANT ... ON TABLE covers views too; the other kinds use their own keyword.
        let on = if o.kind == "view" { "table" } else { &o.kind };
        let target = format!("{on} {}", o.name);
        out.push(format!("revoke all on {target} from public"));
        out.push(format!("revoke all on {target} from {}", ident(&o.owner)));
        out.extend(grants(acl, &o.owner, &target, None));
    }
    out
}

/// `ALTER DEFAULT PRIVILEGES` statements of one `pg_default_acl` row.
pub(crate) fn default_acl_sql(
    role: &str,
    schema: &str,
    objtype: &str,
    acl: &[Privilege],
) -> Option<Vec<String>> {
    let what = match objtype {
        "r" => "tables",
        "S" => "sequences",
        "f" => "functions",
        "T" => "types",
        _ => return None,
    };
    let prefix = format!(
        "alter default privileges for role {} in schema {}",
        ident(role),
        ident(schema)
    );
    // The grantor of a default ACL is always its role: no SET ROLE needed.
    let stmts = grants(acl, role, what, None)
        .into_iter()
        .map(|g| format!("{prefix} {g}"))
        .collect();
    Some(stmts)
}

/// The COMMENT ON keyword for a `pg_identify_object` type; `None` for kinds a shard
/// schema cannot hold here (they are skipped).
pub(crate) fn comment_kind(object_type: &str) -> Option<&'static str> {
    Some(match object_type {
        "schema" => "schema",
        "table" => "table",
        "view" => "view",
        "sequence" => "sequence",
        "index" => "index",
        "table column" | "view column" => "column",
        "function" => "function",
        "procedure" => "procedure",
        "type" => "type",
        // Their identities read "name on schema.table", as COMMENT ON expects.
        "table constraint" => "constraint",
        "trigger" => "trigger",
        "policy" => "policy",
        _ => return None,
    })
}

/// The CREATE POLICY statement of one policy.
pub(crate) fn policy_sql(
    name: &str,
    table: &str,
    permissive: bool,
    cmd: &str,
    roles: &[Option<String>],
    using: Option<&str>,
    check: Option<&str>,
) -> String {
    let cmd = match cmd {
        "r" => "select",
        "a" => "insert",
        "w" => "update",
        "d" => "delete",
        _ => "all",
    };
    let roles: Vec<String> = roles.iter().map(grantee_sql).collect();
    let mut s = format!(
        "create policy {} on {table} as {} for {cmd} to {}",
        ident(name),
        if permissive {
            "permissive"
        } else {
            "restrictive"
        },
        if roles.is_empty() {
            "public".to_string()
        } else {
            roles.join(", ")
        }
    );
    if let Some(u) = using {
        s.push_str(&format!(" using ({u})"));
    }
    if let Some(c) = check {
        s.push_str(&format!(" with check ({c})"));
    }
    s
}

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

    // Owners and ACLs, one row per privilege (or one row with NULLs for an empty / NULL
    // ACL), in object order then ACL order.
    let sql = format!(
        "with o(ord, kind, name, owner, set_owner, acl) as (
           select 0::int8, 'schema', quote_ident(n.nspname), n.nspowner, true, n.nspacl
             from pg_namespace n where n.oid = $1
           union all
           select 1 + c.oid::int8,
                  case c.relkind when 'r' then 'table' when 'v' then 'view' else 'sequence' end,
                  quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.relowner,
                  not exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass
                              and d.objid = c.oid and d.deptype in ('a', 'i')),
                  c.relacl
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where c.relnamespace = $1 and c.relkind in ('r', 'v', 'S')
           union all
           select 1 + p.oid::int8, case p.prokind when 'p' then 'procedure' else 'function' end,
                  p.oid::regprocedure::text, p.proowner, true, p.proacl
             from pg_proc p where p.pronamespace = $1 and p.prokind in ('f', 'p')
           union all
           select 1 + t.oid::int8, 'type', t.oid::regtype::text, t.typowner, true, t.typacl
             from pg_type t where t.typnamespace = $1 and t.typtype = 'e'
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
        out.statements.extend(object_sql(o));
    }

    // Column grants (a fresh column has none, so only grants).
    let sql = format!(
        "select quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname::text,
                pg_get_userbyid(c.relowner)::text, {EXPLODED}
           from pg_attribute a join pg_class c on c.oid = a.attrelid
           join pg_namespace n on n.oid = c.relnamespace
           cross join lateral aclexplode(a.attacl) with ordinality x
          where c.relnamespace = $1 and c.relkind in ('r', 'v') and a.attnum > 0
            and not a.attisdropped and a.attacl is not null
          order by c.oid, a.attnum, x.ordinality"
    );
    let mut cols: Vec<(String, String, String, Vec<Privilege>)> = Vec::new();
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

    // Row-level security, then the policies.
    for r in db
        .query(
            "select quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                    c.relrowsecurity, c.relforcerowsecurity
               from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relnamespace = $1 and c.relkind = 'r'
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

    // Comments on the schema and everything in it.
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

    // Default privileges last: objects created above must not pick them up.
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(grantor: &str, grantee: Option<&str>, privilege: &str, grantable: bool) -> Privilege {
        Privilege {
            grantor: grantor.into(),
            grantee: grantee.map(Into::into),
            privilege: privilege.into(),
            grantable,
        }
    }

    #[test]
    fn acl_is_replaced_and_foreign_grantors_grant_under_their_role() {
        let o = Secured {
            kind: "view".into(),
            name: "sh0001.v".into(),
            owner: "own".into(),
            set_owner: true,
            acl: Some(vec![
                p("own", Some("own"), "SELECT", false),
                p("own", Some("own"), "INSERT", false),
                p("own", Some("Reader"), "SELECT", true),
                p("Reader", None, "SELECT", false),
            ]),
        };
        assert_eq!(
            object_sql(&o),
            vec![
                "alter view sh0001.v owner to \"own\"",
                "revoke all on table sh0001.v from public",
                "revoke all on table sh0001.v from \"own\"",
                "grant select, insert on table sh0001.v to \"own\"",
                "grant select on table sh0001.v to \"Reader\" with grant option",
                "set role \"Reader\"; grant select on table sh0001.v to public; reset role",
            ]
        );
    }

    #[test]
    fn a_null_acl_keeps_the_defaults_and_owned_sequences_keep_their_owner() {
        let o = Secured {
            kind: "sequence".into(),
            name: "sh0001.s".into(),
            owner: "own".into(),
            set_owner: false,
            acl: None,
        };
        assert!(object_sql(&o).is_empty());
    }

    #[test]
    fn column_and_default_grants() {
        let acl = [
            p("own", Some("app"), "SELECT", false),
            p("own", Some("app"), "UPDATE", false),
        ];
        assert_eq!(
            grants(&acl, "own", "table sh0001.t", Some("note")),
            vec!["grant select (\"note\"), update (\"note\") on table sh0001.t to \"app\""]
        );
        assert_eq!(
            default_acl_sql("own", "sh0001", "r", &acl[..1]),
            Some(vec![
                "alter default privileges for role \"own\" in schema \"sh0001\" grant select on tables to \"app\"".to_string()
            ])
        );
        assert_eq!(default_acl_sql("own", "sh0001", "n", &acl), None);
    }

    #[test]
    fn policies_and_comment_kinds() {
        assert_eq!(
            policy_sql("p", "sh0001.t", false, "w", &[None, Some("app".into())], Some("(a > 0)"), Some("true")),
            "create policy \"p\" on sh0001.t as restrictive for update to public, \"app\" using ((a > 0)) with check (true)"
        );
        assert_eq!(
            policy_sql("p", "sh0001.t", true, "*", &[], None, None),
            "create policy \"p\" on sh0001.t as permissive for all to public"
        );
        assert_eq!(comment_kind("table column"), Some("column"));
        assert_eq!(comment_kind("table constraint"), Some("constraint"));
        assert_eq!(comment_kind("toast table"), None);
    }
}
