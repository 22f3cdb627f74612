//! Turning what `inspect.rs` read into the DDL the destination runs: pure functions, no
//! I/O, unit-tested. Statements are split around the initial copy (see [`SchemaDdl`]).

use super::inspect::{Column, SchemaObjects, Sequence, Table};
use super::{SchemaDdl, TableInfo};
use crate::db::ident;

/// The DDL of schema `schema` (owners, grants, comments and RLS are added by the caller).
pub(crate) fn render(schema: &str, objects: SchemaObjects) -> SchemaDdl {
    let q_schema = ident(schema);
    let mut out = SchemaDdl {
        unsupported: objects.unsupported,
        sequences: objects.all_sequences,
        ..SchemaDdl::default()
    };
    // Enum types first: columns may use them.
    for e in &objects.enums {
        out.pre_copy.push(format!(
            "create type {q_schema}.{} as enum ({})",
            ident(&e.name),
            e.labels.as_deref().unwrap_or_default()
        ));
    }
    for s in &objects.sequences {
        out.pre_copy.push(create_sequence(&q_schema, s));
    }
    // Functions and procedures (bodies are not checked at creation: they may name tables
    // that come later).
    out.pre_copy.extend(objects.functions);
    let mut identity_indexes = Vec::new();
    for t in &objects.tables {
        out.pre_copy.extend(create_table(&q_schema, t));
        if let Some((oid, _, _)) = &t.identity_index {
            identity_indexes.push(*oid);
        }
        out.tables.push(TableInfo {
            name: t.name.clone(),
            pk: t
                .primary_key
                .as_ref()
                .map(|pk| pk.2.clone())
                .unwrap_or_default(),
            replident: t.replident,
        });
    }
    // Sequence ownership (serial columns), once the tables exist.
    for (s, t, c) in &objects.owned_sequences {
        out.pre_copy.push(format!(
            "alter sequence {q_schema}.{} owned by {q_schema}.{}.{}",
            ident(s),
            ident(t),
            ident(c)
        ));
    }
    // After the copy: unique, check and exclusion constraints, then foreign keys.
    for (t, name, def) in &objects.constraints {
        out.post_copy.push(format!(
            "alter table {q_schema}.{} add constraint {} {def}",
            ident(t),
            ident(name)
        ));
    }
    // Secondary indexes (the replica identity's was made before the copy).
    for (oid, def) in objects.indexes {
        if !identity_indexes.contains(&oid) {
            out.post_copy.push(def);
        }
    }
    // A disabled trigger stays disabled. Replica and always triggers are created as plain
    // (origin) ones: enabled as they are, they would fire on the destination while it
    // applies the source's changes.
    for t in &objects.triggers {
        out.post_copy.push(t.def.clone());
        if t.disabled {
            out.post_copy.push(format!(
                "alter table {q_schema}.{} disable trigger {}",
                ident(&t.table),
                ident(&t.name)
            ));
        }
    }
    for (name, def) in &objects.views {
        out.post_copy.push(format!(
            "create view {q_schema}.{} as {}",
            ident(name),
            def.trim_end_matches(';')
        ));
    }
    out
}

fn create_sequence(q_schema: &str, s: &Sequence) -> String {
    format!(
        "create sequence {q_schema}.{} as {} {}",
        ident(&s.name),
        s.data_type,
        sequence_options(s)
    )
}

/// The options a sequence is created with, also an identity column's.
fn sequence_options(s: &Sequence) -> String {
    format!(
        "increment by {} minvalue {} maxvalue {} start with {} cache {} {}cycle",
        s.increment,
        s.min,
        s.max,
        s.start,
        s.cache,
        if s.cycle { "" } else { "no " }
    )
}

/// `create table` with columns and primary key, then its replica identity.
fn create_table(q_schema: &str, t: &Table) -> Vec<String> {
    let qt = format!("{q_schema}.{}", ident(&t.name));
    let mut cols: Vec<String> = t.columns.iter().map(|c| column(q_schema, c)).collect();
    if let Some((name, def, _)) = &t.primary_key {
        cols.push(format!("constraint {} {def}", ident(name)));
    }
    let mut out = vec![format!("create table {qt} (\n  {}\n)", cols.join(",\n  "))];
    match (t.replident, &t.identity_index) {
        ('f', _) => out.push(format!("alter table {qt} replica identity full")),
        ('i', Some((_, def, name))) => {
            out.push(def.clone());
            out.push(format!(
                "alter table {qt} replica identity using index {}",
                ident(name)
            ));
        }
        _ => {}
    }
    out
}

fn column(q_schema: &str, c: &Column) -> String {
    let mut def = format!("{} {}", ident(&c.name), c.data_type);
    // An identity column's sequence keeps its own name and options (increment, bounds,
    // cycle): the defaults would hand out other values.
    let identity_options = c
        .identity_sequence
        .as_ref()
        .map(|s| {
            format!(
                " (sequence name {q_schema}.{} {})",
                ident(&s.name),
                sequence_options(s)
            )
        })
        .unwrap_or_default();
    if let Some(coll) = &c.collation {
        def.push_str(&format!(" collate {coll}"));
    }
    match (c.identity.as_str(), c.generated.as_str(), &c.default) {
        ("a", _, _) => def.push_str(&format!(" generated always as identity{identity_options}")),
        ("d", _, _) => def.push_str(&format!(
            " generated by default as identity{identity_options}"
        )),
        (_, "s", Some(e)) => def.push_str(&format!(" generated always as ({e}) stored")),
        (_, _, Some(e)) => def.push_str(&format!(" default {e}")),
        _ => {}
    }
    if c.not_null {
        def.push_str(" not null");
    }
    def
}

#[cfg(test)]
mod tests {
    use super::super::inspect::{EnumType, Trigger};
    use super::*;

    fn col(name: &str, typ: &str) -> Column {
        Column {
            name: name.into(),
            data_type: typ.into(),
            not_null: false,
            default: None,
            identity: String::new(),
            generated: String::new(),
            collation: None,
            identity_sequence: None,
        }
    }

    fn objects() -> SchemaObjects {
        let id = Column {
            not_null: true,
            identity: "a".into(),
            ..col("id", "bigint")
        };
        let doubled = Column {
            generated: "s".into(),
            default: Some("(id * 2)".into()),
            ..col("doubled", "bigint")
        };
        let note = Column {
            default: Some("'x'::text".into()),
            collation: Some("\"C\"".into()),
            ..col("note", "text")
        };
        SchemaObjects {
            enums: vec![EnumType {
                name: "mood".into(),
                labels: Some("'ok', 'meh'".into()),
            }],
            sequences: vec![Sequence {
                name: "id_seq".into(),
                data_type: "bigint".into(),
                increment: 1,
                min: 1,
                max: 99,
                start: 1,
                cache: 1,
                cycle: false,
            }],
            all_sequences: vec!["id_seq".into(), "t_id_seq".into()],
            tables: vec![
                Table {
                    name: "t".into(),
                    columns: vec![id, doubled, note],
                    primary_key: Some((
                        "t_pkey".into(),
                        "PRIMARY KEY (id)".into(),
                        vec!["id".into()],
                    )),
                    replident: 'd',
                    identity_index: None,
                },
                Table {
                    name: "loose".into(),
                    columns: vec![col("v", "integer")],
                    primary_key: None,
                    replident: 'i',
                    identity_index: Some((
                        7,
                        "CREATE UNIQUE INDEX u ON s.loose (v)".into(),
                        "u".into(),
                    )),
                },
            ],
            constraints: vec![(
                "t".into(),
                "t_note_check".into(),
                "CHECK (note <> '')".into(),
            )],
            indexes: vec![
                (7, "CREATE UNIQUE INDEX u ON s.loose (v)".into()),
                (8, "CREATE INDEX i ON s.t (note)".into()),
            ],
            views: vec![("v".into(), " SELECT 1;".into())],
            ..SchemaObjects::default()
        }
    }

    #[test]
    fn pre_copy_has_types_sequences_tables_and_the_identity_index() {
        let ddl = render("sh0001", objects());
        assert_eq!(
            ddl.pre_copy[0],
            r#"create type "sh0001"."mood" as enum ('ok', 'meh')"#
        );
        assert_eq!(
            ddl.pre_copy[1],
            r#"create sequence "sh0001"."id_seq" as bigint increment by 1 minvalue 1 maxvalue 99 start with 1 cache 1 no cycle"#
        );
        assert_eq!(
            ddl.pre_copy[2],
            "create table \"sh0001\".\"t\" (\n  \"id\" bigint generated always as identity not null,\n  \
             \"doubled\" bigint generated always as ((id * 2)) stored,\n  \
             \"note\" text collate \"C\" default 'x'::text,\n  constraint \"t_pkey\" PRIMARY KEY (id)\n)"
        );
        assert_eq!(ddl.pre_copy[4], "CREATE UNIQUE INDEX u ON s.loose (v)");
        assert_eq!(
            ddl.pre_copy[5],
            r#"alter table "sh0001"."loose" replica identity using index "u""#
        );
        assert_eq!(ddl.sequences, ["id_seq", "t_id_seq"]);
        assert_eq!(ddl.tables[0].pk, ["id"]);
        assert!(ddl.tables[1].pk.is_empty());
        assert_eq!(ddl.tables[1].replident, 'i');
    }

    #[test]
    fn an_identity_column_keeps_its_sequence_name_and_options() {
        let c = Column {
            identity: "d".into(),
            identity_sequence: Some(Sequence {
                name: "ids".into(),
                data_type: "bigint".into(),
                increment: 5,
                min: 10,
                max: 100,
                start: 10,
                cache: 1,
                cycle: true,
            }),
            ..col("id", "bigint")
        };
        assert_eq!(
            column("\"sh0001\"", &c),
            "\"id\" bigint generated by default as identity (sequence name \"sh0001\".\"ids\" \
             increment by 5 minvalue 10 maxvalue 100 start with 10 cache 1 cycle)"
        );
    }

    #[test]
    fn post_copy_has_constraints_other_indexes_and_views() {
        let ddl = render("sh0001", objects());
        assert_eq!(
            ddl.post_copy,
            [
                r#"alter table "sh0001"."t" add constraint "t_note_check" CHECK (note <> '')"#,
                "CREATE INDEX i ON s.t (note)",
                r#"create view "sh0001"."v" as  SELECT 1"#,
            ]
        );
    }

    #[test]
    fn a_disabled_trigger_stays_disabled() {
        let trigger = |name: &str, disabled| Trigger {
            table: "t".into(),
            name: name.into(),
            def: format!("CREATE TRIGGER {name} BEFORE INSERT ON s.t EXECUTE FUNCTION s.f()"),
            disabled,
        };
        let objects = SchemaObjects {
            triggers: vec![trigger("on", false), trigger("off", true)],
            ..SchemaObjects::default()
        };
        assert_eq!(
            render("sh0001", objects).post_copy,
            [
                "CREATE TRIGGER on BEFORE INSERT ON s.t EXECUTE FUNCTION s.f()",
                "CREATE TRIGGER off BEFORE INSERT ON s.t EXECUTE FUNCTION s.f()",
                r#"alter table "sh0001"."t" disable trigger "off""#,
            ]
        );
    }
}
