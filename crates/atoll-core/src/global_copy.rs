//! Shard 0's read-only copies on other islands: the decisions that need no server.
//!
//! DDL does not travel through logical replication, so after shard 0's master changes
//! its schema (a migration) each copy's tables are brought to the master's by generated
//! statements. [`copied_facts`] keeps the signature facts a copy must share with the
//! master; [`follow_plan`] splits what differs into what runs while the copy's
//! replication is held (before the master's new rows can reach it: new columns, type
//! changes, dropped columns made nullable) and what runs once it has caught up (drops,
//! NOT NULL, constraints, unique indexes: they hold only for the master's new data).

use crate::migration::converge::{
    add_constraint, column_fact, constraint_fact, create_tables, index_name, split_default,
};
use crate::quote::ident;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The statement triggers that make a copy's tables read-only (the copy's own, never
/// compared with the master's).
pub const READ_ONLY_TRIGGERS: [&str; 2] = ["atoll_read_only", "atoll_read_only_truncate"];

/// The table a signature fact is about, if any. An index fact is named after the index:
/// its table follows `ON` in the definition.
fn fact_table(fact: &str) -> Option<&str> {
    if let Some((_, def)) = fact.strip_prefix("index ").and_then(|r| r.split_once(": ")) {
        let mut words = def.split(' ').skip_while(|w| *w != "ON").skip(1);
        return words.find(|w| *w != "ONLY");
    }
    let rest = [
        "table ",
        "replica identity ",
        "column ",
        "constraint ",
        "trigger ",
    ]
    .iter()
    .find_map(|p| fact.strip_prefix(p))?;
    let end = rest.find(['.', ':', ' ']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The facts about `tables` only, without the copy's read-only triggers and without
/// foreign keys (replication does not check them, and a copy keeps only some tables).
pub fn copied_facts(facts: &BTreeSet<String>, tables: &[String]) -> BTreeSet<String> {
    facts
        .iter()
        .filter(|f| fact_table(f).is_some_and(|t| tables.iter().any(|x| x == t)))
        .filter(|f| {
            !READ_ONLY_TRIGGERS
                .iter()
                .any(|t| f.starts_with("trigger ") && f.contains(&format!(".{t}: ")))
        })
        .filter(|f| !constraint_fact(f).is_some_and(|(_, d)| d.starts_with("FOREIGN KEY ")))
        .cloned()
        .collect()
}

/// What brings a copy's tables to the master's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FollowPlan {
    /// While the copy's replication is held: columns added (nullable, with the master's
    /// default, which fills the copy's existing rows as it filled the master's), column
    /// types changed, NOT NULL dropped from columns the master no longer has, plain
    /// indexes.
    pub before: Vec<String>,
    /// Once the copy has caught up: constraints and indexes the master dropped, columns it
    /// dropped, defaults and NOT NULL set, constraints and unique indexes added.
    pub after: Vec<String>,
    /// Differences no statement is generated for, each with why.
    pub not_generated: Vec<String>,
}

impl FollowPlan {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty() && self.after.is_empty() && self.not_generated.is_empty()
    }
}

/// A column definition's parts: type (with collation), default, NOT NULL, and whether
/// it is an identity or generated column.
struct Column<'a> {
    kind: String,
    default: Option<&'a str>,
    not_null: bool,
    special: bool,
}

fn column(def: &str) -> Column<'_> {
    let (rest, default) = split_default(def);
    let (kind, not_null) = match rest.strip_suffix(" not null") {
        Some(k) => (k.to_string(), true),
        None => (rest.clone(), false),
    };
    Column {
        special: kind.contains(" generated "),
        kind,
        default,
        not_null,
    }
}

fn alter(t: &str, what: String) -> String {
    format!("alter table {} {what};", ident(t))
}

/// The plan bringing a copy (`copy`, its [`copied_facts`]) to the master's (`master`).
pub fn follow_plan(master: &BTreeSet<String>, copy: &BTreeSet<String>) -> FollowPlan {
    let mut plan = FollowPlan::default();
    let cols = |facts: &BTreeSet<String>| -> BTreeMap<(String, String), String> {
        facts
            .iter()
            .filter_map(|f| column_fact(f))
            .map(|(t, c, d)| ((t.to_string(), c.to_string()), d.to_string()))
            .collect()
    };
    let (want, have) = (cols(master), cols(copy));
    // Tables newly copied are created whole (empty: the subscription copies their rows).
    let all_missing: Vec<String> = master.difference(copy).cloned().collect();
    let (created, new_tables, _) = create_tables(&all_missing);
    plan.before.extend(created);
    let mut drop_columns = Vec::new();
    for ((t, c), def) in &want {
        if new_tables.contains(t.as_str()) {
            continue;
        }
        let w = column(def);
        match have.get(&(t.clone(), c.clone())) {
            _ if w.special && !have.contains_key(&(t.clone(), c.clone())) => {
                plan.not_generated.push(format!(
                    "column {t}.{c} {def} missing: an identity or generated column is not added to a copy; copy the table again"
                ));
            }
            None => {
                let default = w
                    .default
                    .map(|e| format!(" default {e}"))
                    .unwrap_or_default();
                plan.before.push(alter(
                    t,
                    format!("add column if not exists {} {}{default}", ident(c), w.kind),
                ));
                if w.not_null {
                    plan.after
                        .push(alter(t, format!("alter column {} set not null", ident(c))));
                }
            }
            Some(h) => column_change(&mut plan, t, c, &w, &column(h)),
        }
    }
    for ((t, c), def) in &have {
        if want.contains_key(&(t.clone(), c.clone())) {
            continue;
        }
        if column(def).not_null {
            plan.before
                .push(alter(t, format!("alter column {} drop not null", ident(c))));
        }
        drop_columns.push(alter(t, format!("drop column if exists {}", ident(c))));
    }
    let missing: Vec<&String> = all_missing
        .iter()
        .filter(|f| column_fact(f).is_none())
        .filter(|f| {
            index_name(f).is_some() || !fact_table(f).is_some_and(|t| new_tables.contains(t))
        })
        .collect();
    let extra: Vec<&String> = copy
        .difference(master)
        .filter(|f| column_fact(f).is_none())
        .collect();
    let (drop_objects, add_objects) = objects(&mut plan, master, &missing, &extra);
    // Constraints and indexes first: a dropped column may carry them.
    plan.after
        .splice(0..0, drop_objects.into_iter().chain(drop_columns));
    plan.after.extend(add_objects);
    plan
}

/// A column both sides have, defined differently.
fn column_change(plan: &mut FollowPlan, t: &str, c: &str, w: &Column<'_>, h: &Column<'_>) {
    if w.kind != h.kind {
        if w.special || h.special {
            plan.not_generated.push(format!(
                "column {t}.{c} changed from {} to {}: identity and generated columns are not changed on a copy; copy the table again",
                h.kind, w.kind
            ));
            return;
        }
        // The copy's rows converted as the master's were, by the type's cast.
        plan.before.push(alter(
            t,
            format!(
                "alter column {0} type {1} using {0}::{2}",
                ident(c),
                w.kind,
                type_only(&w.kind)
            ),
        ));
    }
    if w.default != h.default {
        plan.after.push(alter(
            t,
            match w.default {
                Some(e) => format!("alter column {} set default {e}", ident(c)),
                None => format!("alter column {} drop default", ident(c)),
            },
        ));
    }
    if w.not_null && !h.not_null {
        plan.after
            .push(alter(t, format!("alter column {} set not null", ident(c))));
    } else if h.not_null && !w.not_null {
        plan.before
            .push(alter(t, format!("alter column {} drop not null", ident(c))));
    }
}

/// A column type without its collation, for a cast.
fn type_only(kind: &str) -> &str {
    kind.split(" collate ").next().unwrap_or(kind)
}

/// Constraints, indexes, tables and the rest: (statements dropping, statements adding),
/// both for `after`; plain indexes go to `plan.before`.
fn objects(
    plan: &mut FollowPlan,
    master: &BTreeSet<String>,
    missing: &[&String],
    extra: &[&String],
) -> (Vec<String>, Vec<String>) {
    let (mut drops, mut adds) = (Vec::new(), Vec::new());
    let constraint_names: BTreeSet<&str> = master
        .iter()
        .chain(extra.iter().copied())
        .filter_map(|f| constraint_fact(f))
        .filter_map(|(n, _)| n.split_once('.').map(|(_, c)| c))
        .collect();
    for f in extra {
        if let Some((name, _)) = constraint_fact(f) {
            if let Some((t, c)) = name.split_once('.') {
                drops.push(alter(t, format!("drop constraint if exists {}", ident(c))));
            }
        } else if let Some(name) = index_name(f).filter(|n| !constraint_names.contains(n)) {
            drops.push(format!("drop index if exists {};", ident(name)));
        } else if index_name(f).is_none() {
            plan.not_generated
                .push(format!("{f}: only on the copy; not dropped"));
        }
    }
    for f in missing {
        if let Some((name, def)) = constraint_fact(f) {
            let Some((t, c)) = name.split_once('.') else {
                continue;
            };
            let has_index = !missing.iter().any(|m| index_name(m) == Some(c))
                && master.iter().any(|x| index_name(x) == Some(c));
            match add_constraint(t, c, def, has_index, false) {
                Ok(sql) => adds.extend(sql),
                Err(why) => plan.not_generated.push(why),
            }
        } else if let Some(name) = index_name(f) {
            if constraint_names.contains(name) {
                continue;
            }
            let def = f.split_once(": ").map(|(_, d)| d).unwrap_or_default();
            // Changed (the old one is dropped first) or unique: once caught up.
            let replaces = extra.iter().any(|x| index_name(x) == Some(name));
            if let Some(r) = def.strip_prefix("CREATE UNIQUE INDEX ") {
                adds.push(format!("CREATE UNIQUE INDEX IF NOT EXISTS {r};"));
            } else if let Some(r) = def.strip_prefix("CREATE INDEX ") {
                let sql = format!("CREATE INDEX IF NOT EXISTS {r};");
                if replaces {
                    adds.push(sql);
                } else {
                    plan.before.push(sql);
                }
            }
        } else {
            plan.not_generated.push(format!(
                "{f}: only on shard 0's master; not generated for a copy (only columns, indexes and constraints are)"
            ));
        }
    }
    (drops, adds)
}

/// The future of a [`CopyHook`] step: a line saying what was done, or why it failed.
pub type HookFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send + 'a>>;

/// What a migration run does around shard 0's own migration when shard 0 has copies:
/// atoll-move implements it, atoll-migrate (on the same layer) calls it.
pub trait CopyHook: Send + Sync + std::fmt::Debug {
    /// Before shard 0's master changes: every copy caught up, then held.
    fn hold(&self) -> HookFuture<'_>;
    /// After it changed (or failed to): every copy brought to it and released.
    fn follow(&self) -> HookFuture<'_>;
}

#[cfg(test)]
#[path = "global_copy_tests.rs"]
mod tests;
