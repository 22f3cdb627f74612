//! The SQL text of owners, grants, default privileges, policies and comments: pure, so
//! the quoting and grouping are unit-tested without a server.

use crate::db::ident;
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
    /// Grants that cannot be replayed (see `unsupported` of the schema's DDL).
    pub unusable: Vec<String>,
}

impl Security {
    pub(crate) fn note_roles(&mut self, p: &[Privilege]) {
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

/// Owner and ACL statements of `objects`: every `ALTER ... OWNER` first, then the ACLs.
/// Changing a table's owner also changes the owner of the sequences its columns own and
/// rewrites their ACL entries (the old owner's become the new owner's), so a sequence's
/// ACL replayed before its table's owner change (its oid is lower) would come out altered.
pub(crate) fn objects_sql(objects: &[Secured]) -> Vec<String> {
    let mut out: Vec<String> = objects.iter().filter_map(owner_sql).collect();
    for o in objects {
        out.extend(acl_sql(o));
    }
    out
}

fn owner_sql(o: &Secured) -> Option<String> {
    o.set_owner
        .then(|| format!("alter {} {} owner to {}", o.kind, o.name, ident(&o.owner)))
}

fn acl_sql(o: &Secured) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(acl) = &o.acl {
        // GRANT ... ON TABLE covers views too; the other kinds use their own keyword.
        let on = if o.kind == "view" || o.kind == "materialized view" {
            "table"
        } else {
            &o.kind
        };
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
            objects_sql(&[o]),
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
        assert!(objects_sql(&[o]).is_empty());
    }

    #[test]
    fn all_owners_change_before_any_acl_is_replayed() {
        // A serial column's sequence (lower oid, owner follows its table) whose owner
        // revoked its own rights: its ACL must come after the table's owner change.
        let seq = Secured {
            kind: "sequence".into(),
            name: "sh0001.t_id_seq".into(),
            owner: "own".into(),
            set_owner: false,
            acl: Some(vec![p("own", Some("app"), "USAGE", false)]),
        };
        let table = Secured {
            kind: "table".into(),
            name: "sh0001.t".into(),
            owner: "own".into(),
            set_owner: true,
            acl: None,
        };
        assert_eq!(
            objects_sql(&[seq, table]),
            vec![
                "alter table sh0001.t owner to \"own\"",
                "revoke all on sequence sh0001.t_id_seq from public",
                "revoke all on sequence sh0001.t_id_seq from \"own\"",
                "grant usage on sequence sh0001.t_id_seq to \"app\"",
            ]
        );
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
