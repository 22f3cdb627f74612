//! `schema plan --like sh0001`: for each group of shards whose signature differs from the
//! reference shard's, the DDL that brings it there, for the safe subset only: missing
//! tables, columns, indexes, column defaults and table constraints. The statements are
//! meant for that group's shards only (`$atoll_shards`); all but the constraints are
//! idempotent (`IF NOT EXISTS`, `SET DEFAULT`) besides. A CHECK or FOREIGN KEY constraint
//! is added `NOT VALID` and then validated (the validation does not block writes); a
//! UNIQUE or PRIMARY KEY constraint whose index the shard has already is attached to it
//! (`USING INDEX`). What cannot be generated safely is listed instead: anything the group
//! has and the reference lacks (dropping it is destructive), column type or nullability
//! changes, and other objects (functions, triggers, views, sequences, types).

use super::signature::group_signatures;
use crate::quote::ident;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One drifted group and what would converge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvergeGroup {
    /// How many shards are in the group.
    pub count: usize,
    /// The shards, as ranges.
    pub schemas: String,
    /// Every shard of the group.
    pub members: Vec<String>,
    /// The statements, in order (tables, columns, defaults, indexes, constraints), for
    /// this group's shards only.
    pub ddl: Vec<String>,
    /// Differences no statement was generated for, each with why.
    pub not_generated: Vec<String>,
}

/// `column T.c REST` → (T, c, REST).
pub(crate) fn column_fact(fact: &str) -> Option<(&str, &str, &str)> {
    let rest = fact.strip_prefix("column ")?;
    let (table, rest) = rest.split_once('.')?;
    let (col, def) = rest.split_once(' ')?;
    Some((table, col, def))
}

/// A column definition without its default, and the default expression.
pub(crate) fn split_default(def: &str) -> (String, Option<&str>) {
    match def.find(" default ") {
        Some(i) => {
            let after = &def[i + " default ".len()..];
            let (expr, tail) = match after.strip_suffix(" not null") {
                Some(e) => (e, " not null"),
                None => (after, ""),
            };
            (format!("{}{tail}", &def[..i]), Some(expr))
        }
        None => (def.to_string(), None),
    }
}

/// A missing table is created whole: its columns and constraints inside one
/// `CREATE TABLE IF NOT EXISTS`. Returns the statements, the tables and the constraints
/// (whose indexes come with them).
pub(crate) fn create_tables(missing: &[String]) -> (Vec<String>, BTreeSet<&str>, BTreeSet<&str>) {
    let mut tables = Vec::new();
    let new_tables: BTreeSet<&str> = missing
        .iter()
        .filter_map(|f| f.strip_prefix("table "))
        .filter(|t| !t.contains(' '))
        .collect();
    let mut bodies: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut constraint_names: BTreeSet<&str> = BTreeSet::new();
    for f in missing {
        if let Some((t, c, def)) = column_fact(f).filter(|(t, _, _)| new_tables.contains(t)) {
            bodies
                .entry(t)
                .or_default()
                .push(format!("{} {def}", ident(c)));
        }
    }
    for f in missing {
        let Some((name, def)) = constraint_fact(f) else {
            continue;
        };
        if let Some((t, c)) = name.split_once('.').filter(|(t, _)| new_tables.contains(t)) {
            bodies
                .entry(t)
                .or_default()
                .push(format!("constraint {} {def}", ident(c)));
            constraint_names.insert(c);
        }
    }
    for t in &new_tables {
        let body = bodies.remove(t).unwrap_or_default();
        tables.push(format!(
            "create table if not exists {} ({});",
            ident(t),
            body.join(", ")
        ));
    }
    (tables, new_tables, constraint_names)
}

/// The index name of an `index T: CREATE [UNIQUE] INDEX name ON ...` fact.
pub(crate) fn index_name(fact: &str) -> Option<&str> {
    let (_, def) = fact.strip_prefix("index ")?.split_once(": ")?;
    def.split(' ').skip_while(|w| *w != "INDEX").nth(1)
}

/// The statements adding a missing constraint `T.c: DEF` to the existing table `T`, or why
/// none is generated. `has_index`: the shard has an index named `c` already (the
/// reference's, since the fact of it is not missing); `index_differs`: it has one named
/// `c` that differs from the reference's.
pub(crate) fn add_constraint(
    t: &str,
    c: &str,
    def: &str,
    has_index: bool,
    index_differs: bool,
) -> Result<Vec<String>, String> {
    let alter = format!("alter table {} add constraint {}", ident(t), ident(c));
    if index_differs {
        return Err(format!(
            "constraint {t}.{c}: {def} missing, and index {c} differs from the reference's: write it by hand"
        ));
    }
    if def.starts_with("CHECK ") || def.starts_with("FOREIGN KEY ") {
        if def.ends_with(" NOT VALID") {
            return Ok(vec![format!("{alter} {def};")]);
        }
        return Ok(vec![
            format!("{alter} {def} NOT VALID;"),
            format!("alter table {} validate constraint {};", ident(t), ident(c)),
        ]);
    }
    let kind = ["UNIQUE", "PRIMARY KEY", "EXCLUDE"]
        .into_iter()
        .find(|k| def.starts_with(&format!("{k} ")));
    match kind {
        Some(k @ ("UNIQUE" | "PRIMARY KEY")) if has_index => Ok(vec![format!(
            "{alter} {k} USING INDEX {};",
            ident(c)
        )]),
        Some(_) if has_index => Err(format!(
            "constraint {t}.{c}: {def} missing over an existing index: write it by hand"
        )),
        Some(_) => Ok(vec![format!("{alter} {def};")]),
        None => Err(format!(
            "constraint {t}.{c}: {def} missing: not a CHECK, FOREIGN KEY, UNIQUE, PRIMARY KEY or EXCLUDE constraint"
        )),
    }
}

/// The statements and the leftovers for one group's missing and extra facts (`target`:
/// the reference's facts).
fn converge_one(
    target: &BTreeSet<String>,
    missing: &[String],
    extra: &[String],
) -> (Vec<String>, Vec<String>) {
    let mut tables = Vec::new();
    let mut columns = Vec::new();
    let mut defaults = Vec::new();
    let mut indexes = Vec::new();
    let mut constraints = Vec::new();
    let mut not_generated = Vec::new();
    let extra_cols: BTreeMap<(&str, &str), &str> = extra
        .iter()
        .filter_map(|f| column_fact(f).map(|(t, c, d)| ((t, c), d)))
        .collect();
    let mut explained: BTreeSet<&str> = BTreeSet::new();
    let (created, new_tables, mut constraint_names) = create_tables(missing);
    tables.extend(created);
    let missing_indexes: BTreeSet<&str> = missing.iter().filter_map(|f| index_name(f)).collect();
    let extra_indexes: BTreeSet<&str> = extra.iter().filter_map(|f| index_name(f)).collect();
    // Constraints of existing tables first: one that builds its index makes the index
    // fact below redundant.
    let mut handled: BTreeSet<&str> = BTreeSet::new();
    for f in missing {
        let Some((name, def)) = constraint_fact(f) else {
            continue;
        };
        let Some((t, c)) = name
            .split_once('.')
            .filter(|(t, _)| !new_tables.contains(t))
        else {
            continue;
        };
        if !target.contains(&format!("table {t}"))
            && !target.contains(&format!("table {t} (partitioned)"))
        {
            not_generated.push(format!(
                "{f} missing: only constraints of plain and partitioned tables are generated"
            ));
            handled.insert(f);
            continue;
        }
        let differs = missing_indexes.contains(c) && extra_indexes.contains(c);
        let has_index =
            !missing_indexes.contains(c) && target.iter().any(|x| index_name(x) == Some(c));
        match add_constraint(t, c, def, has_index, differs) {
            Ok(sql) => {
                constraints.extend(sql);
                constraint_names.insert(c);
            }
            Err(why) => not_generated.push(why),
        }
        handled.insert(f);
    }
    for f in missing {
        if f.strip_prefix("table ")
            .is_some_and(|t| new_tables.contains(t))
        {
            continue;
        }
        if column_fact(f).is_some_and(|(t, _, _)| new_tables.contains(t)) {
            continue;
        }
        let in_new_table = f
            .strip_prefix("constraint ")
            .and_then(|r| r.split_once('.'))
            .is_some_and(|(t, _)| new_tables.contains(t));
        if handled.contains(f.as_str()) {
            continue;
        }
        let backs_constraint = index_name(f).is_some_and(|name| constraint_names.contains(name));
        if in_new_table || backs_constraint {
            continue;
        }
        if let Some(t) = f.strip_prefix("table ") {
            not_generated.push(format!(
                "{f} missing: only plain tables are generated ({t})"
            ));
        } else if let Some((t, c, def)) = column_fact(f) {
            match extra_cols.get(&(t, c)) {
                // Fails on a table with rows (existing rows would be NULL).
                None if def.ends_with(" not null")
                    && !def.contains(" default ")
                    && !def.contains(" generated ") =>
                {
                    not_generated.push(format!(
                        "column {t}.{c} {def} missing: NOT NULL without a default fails on a table with rows; add it with a default, or nullable and backfill, by hand"
                    ));
                }
                None => columns.push(format!(
                    "alter table {} add column if not exists {} {def};",
                    ident(t),
                    ident(c)
                )),
                Some(have) => {
                    let (want_rest, want_default) = split_default(def);
                    let (have_rest, _) = split_default(have);
                    if want_rest != have_rest {
                        not_generated.push(format!(
                            "column {t}.{c} is {have}, the reference has {def}: a type or nullability change, write it by hand"
                        ));
                    } else {
                        defaults.push(match want_default {
                            Some(e) => format!(
                                "alter table {} alter column {} set default {e};",
                                ident(t),
                                ident(c)
                            ),
                            None => format!(
                                "alter table {} alter column {} drop default;",
                                ident(t),
                                ident(c)
                            ),
                        });
                    }
                    if let Some(x) = extra.iter().find(|x| column_fact(x) == Some((t, c, have))) {
                        explained.insert(x);
                    }
                }
            }
        } else if let Some(def) = f.strip_prefix("index ").and_then(|r| r.split_once(": ")) {
            let sql = def.1;
            let idempotent = if let Some(r) = sql.strip_prefix("CREATE UNIQUE INDEX ") {
                format!("CREATE UNIQUE INDEX IF NOT EXISTS {r};")
            } else if let Some(r) = sql.strip_prefix("CREATE INDEX ") {
                format!("CREATE INDEX IF NOT EXISTS {r};")
            } else {
                not_generated.push(format!("{f} missing: not a CREATE INDEX"));
                continue;
            };
            indexes.push(idempotent);
        } else {
            not_generated.push(format!(
                "{f} missing: not generated (only tables, columns, indexes, defaults and table constraints are)"
            ));
        }
    }
    for x in extra {
        if !explained.contains(x.as_str()) {
            not_generated.push(format!(
                "{x} extra: dropping it is destructive, write that by hand if intended"
            ));
        }
    }
    let mut ddl = tables;
    ddl.extend(columns);
    ddl.extend(defaults);
    ddl.extend(indexes);
    ddl.extend(constraints);
    (ddl, not_generated)
}

/// Groups `shards` by signature and plans every group that differs from `reference`'s.
/// `None` when `reference` is not among them.
pub fn converge(
    shards: &BTreeMap<String, BTreeSet<String>>,
    reference: &str,
) -> Option<Vec<ConvergeGroup>> {
    let target = shards.get(reference)?;
    let groups = group_signatures(shards);
    Some(
        groups
            .into_iter()
            .filter(|g| !g.members.iter().any(|m| m == reference))
            .map(|g| {
                let facts = g.members.first().and_then(|m| shards.get(m));
                let (missing, extra): (Vec<String>, Vec<String>) = match facts {
                    Some(f) => (
                        target.difference(f).cloned().collect(),
                        f.difference(target).cloned().collect(),
                    ),
                    None => (Vec::new(), Vec::new()),
                };
                let (ddl, not_generated) = converge_one(target, &missing, &extra);
                ConvergeGroup {
                    count: g.count,
                    schemas: g.schemas,
                    members: g.members,
                    ddl,
                    not_generated,
                }
            })
            .collect(),
    )
}

/// A signature fact `constraint <table>.<name>: <definition>` as (`<table>.<name>`,
/// definition); `None` for any other fact.
pub(crate) fn constraint_fact(f: &str) -> Option<(&str, &str)> {
    f.strip_prefix("constraint ")?.split_once(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_safe_subset_is_generated_the_rest_listed() {
        let reference = facts(&[
            "table users",
            "column users.id bigint not null",
            "column users.nick text default 'x'::text",
            "index users: CREATE INDEX users_nick_idx ON users USING btree (nick)",
            "table orders",
            "column orders.id bigint",
        ]);
        let mut shards = BTreeMap::new();
        shards.insert("sh0001".to_string(), reference.clone());
        shards.insert("sh0002".to_string(), reference.clone());
        shards.insert(
            "sh0003".to_string(),
            facts(&[
                "table users",
                "column users.id bigint not null",
                "column users.nick text",
                "table extra",
            ]),
        );
        let plan = converge(&shards, "sh0001").expect("reference present");
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].schemas, "sh0003");
        assert_eq!(
            plan[0].ddl,
            [
                "create table if not exists \"orders\" (\"id\" bigint);",
                "alter table \"users\" alter column \"nick\" set default 'x'::text;",
                "CREATE INDEX IF NOT EXISTS users_nick_idx ON users USING btree (nick);",
            ]
        );
        assert_eq!(
            plan[0].not_generated.len(),
            1,
            "{:?}",
            plan[0].not_generated
        );
        assert!(plan[0].not_generated[0].starts_with("table extra extra: dropping it"));
        assert!(converge(&shards, "sh0009").is_none());
    }

    #[test]
    fn a_missing_table_is_created_with_its_constraints() {
        let reference = facts(&[
            "table users",
            "column users.id bigint not null",
            "constraint users.users_pkey: PRIMARY KEY (id)",
            "index users: CREATE UNIQUE INDEX users_pkey ON users USING btree (id)",
        ]);
        let mut shards = BTreeMap::new();
        shards.insert("sh0001".to_string(), reference);
        shards.insert("sh0002".to_string(), facts(&[]));
        let plan = converge(&shards, "sh0001").expect("present");
        assert_eq!(
            plan[0].ddl,
            ["create table if not exists \"users\" (\"id\" bigint not null, constraint \"users_pkey\" PRIMARY KEY (id));"]
        );
        assert!(
            plan[0].not_generated.is_empty(),
            "{:?}",
            plan[0].not_generated
        );
    }

    #[test]
    fn a_not_null_column_without_default_is_not_generated() {
        let reference = facts(&[
            "table users",
            "column users.id bigint not null",
            "column users.plan text not null",
            "column users.tier text default 'free'::text not null",
            "column users.n bigint generated always as identity not null",
        ]);
        let mut shards = BTreeMap::new();
        shards.insert("sh0001".to_string(), reference);
        shards.insert(
            "sh0002".to_string(),
            facts(&["table users", "column users.id bigint not null"]),
        );
        let plan = converge(&shards, "sh0001").expect("reference present");
        assert_eq!(plan[0].ddl.len(), 2, "{:?}", plan[0].ddl);
        assert!(plan[0].ddl.iter().all(|d| !d.contains("\"plan\"")));
        assert_eq!(
            plan[0].not_generated.len(),
            1,
            "{:?}",
            plan[0].not_generated
        );
        assert!(plan[0].not_generated[0]
            .starts_with("column users.plan text not null missing: NOT NULL without a default"));
    }

    #[test]
    fn type_changes_and_other_objects_are_not_generated() {
        let mut shards = BTreeMap::new();
        shards.insert(
            "sh0001".to_string(),
            facts(&[
                "column t.a bigint",
                "function f(): abc",
                "constraint t.k: CHECK (a > 0)",
            ]),
        );
        shards.insert("sh0002".to_string(), facts(&["column t.a integer"]));
        let plan = converge(&shards, "sh0001").expect("present");
        assert!(plan[0].ddl.is_empty());
        let n = &plan[0].not_generated;
        assert_eq!(n.len(), 3, "{n:?}");
        assert!(n.iter().any(|x| x.contains("a type or nullability change")));
        assert!(n.iter().any(|x| x.starts_with("function f(): abc missing")));
        assert!(n.iter().any(|x| x.starts_with("constraint t.k")));
    }

    #[test]
    fn constraints_of_existing_tables_are_generated() {
        let reference = facts(&[
            "table t",
            "column t.a bigint",
            "column t.b bigint",
            "table u",
            "column u.id bigint not null",
            "constraint t.t_a_check: CHECK ((a > 0))",
            "constraint t.t_b_fkey: FOREIGN KEY (b) REFERENCES u(id)",
            "constraint t.t_old_check: CHECK ((b > 0)) NOT VALID",
            "constraint t.t_a_key: UNIQUE (a)",
            "index t: CREATE UNIQUE INDEX t_a_key ON t USING btree (a)",
            "constraint u.u_pkey: PRIMARY KEY (id)",
            "index u: CREATE UNIQUE INDEX u_pkey ON u USING btree (id)",
            "constraint positive.positive_check: CHECK ((VALUE > 0))",
        ]);
        let mut drifted: BTreeSet<String> = reference
            .iter()
            .filter(|f| !f.starts_with("constraint "))
            .cloned()
            .collect();
        // Its unique index on t is missing too; its primary key index on u is there.
        drifted.remove("index t: CREATE UNIQUE INDEX t_a_key ON t USING btree (a)");
        let mut shards = BTreeMap::new();
        shards.insert("sh0001".to_string(), reference);
        shards.insert("sh0002".to_string(), drifted);
        let plan = converge(&shards, "sh0001").expect("present");
        assert_eq!(
            plan[0].ddl,
            [
                "alter table \"t\" add constraint \"t_a_check\" CHECK ((a > 0)) NOT VALID;",
                "alter table \"t\" validate constraint \"t_a_check\";",
                "alter table \"t\" add constraint \"t_a_key\" UNIQUE (a);",
                "alter table \"t\" add constraint \"t_b_fkey\" FOREIGN KEY (b) REFERENCES u(id) NOT VALID;",
                "alter table \"t\" validate constraint \"t_b_fkey\";",
                "alter table \"t\" add constraint \"t_old_check\" CHECK ((b > 0)) NOT VALID;",
                "alter table \"u\" add constraint \"u_pkey\" PRIMARY KEY USING INDEX \"u_pkey\";",
            ]
        );
        let n = &plan[0].not_generated;
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(
            n[0].starts_with("constraint positive.positive_check"),
            "{n:?}"
        );
    }
}
