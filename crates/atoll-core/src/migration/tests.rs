use super::sql::statements;
use super::*;
use crate::island::IslandId;
use std::collections::{BTreeMap, BTreeSet};

fn pair(version: &str, up: &str) -> Vec<(String, String)> {
    vec![
        (format!("{version}.up.sql"), up.to_string()),
        (format!("{version}.dn.sql"), "select 1;".to_string()),
    ]
}

fn set(entries: &[(&str, &str)]) -> MigrationSet {
    let files = entries.iter().flat_map(|(v, up)| pair(v, up)).collect();
    MigrationSet::parse(files).expect("valid set")
}

fn state(schema: &str, island: u16, applied: &[&str]) -> SchemaState {
    SchemaState {
        schema: schema.into(),
        island: IslandId(island),
        applied: applied.iter().map(|s| s.to_string()).collect(),
        checksums: BTreeMap::new(),
    }
}

const A: &str = "20240101000000.users.sh";
const B: &str = "20240102000000.nick.sh";
const C: &str = "20240103000000.settings.public";

fn abc() -> MigrationSet {
    set(&[
        (B, "alter table users add column nick text;"),
        (A, "create table users (id bigint primary key);"),
        (C, "create table settings (k text);"),
    ])
}

#[test]
fn parses_pg_mig_names_in_version_order() {
    let s = abc();
    let v: Vec<&str> = s.migrations.iter().map(|m| m.version.as_str()).collect();
    assert_eq!(v, [A, B, C]);
    assert_eq!(s.migrations[0].number, "20240101000000");
    assert_eq!(s.migrations[0].name, "users");
    assert_eq!(s.migrations[0].target, "sh");
    assert_eq!(s.targets(), ["public", "sh"]);
    assert_eq!(
        s.find("20240102000000").map(|m| m.version.as_str()),
        Some(B)
    );
    assert_eq!(s.find(B).map(|m| m.name.as_str()), Some("nick"));
}

#[test]
fn numbers_sort_numerically_not_as_text() {
    let s = set(&[("10.b.sh", "select 1;"), ("9.a.sh", "select 1;")]);
    assert_eq!(s.migrations[0].version, "9.a.sh");
}

#[test]
fn refuses_malformed_names() {
    for bad in [
        "users.sh.up.sql",
        "2024.users.up.sql",
        "2024x.users.sh.up.sql",
        "2024.us ers.sh.up.sql",
        "2024.users.Sh.up.sql",
        "2024.users.sh.upp.sql",
        "2024.users.sh.extra.up.sql",
    ] {
        let err = MigrationSet::parse(vec![(bad.into(), String::new())]).unwrap_err();
        assert!(
            matches!(err, MigrationError::BadFileName { ref file, .. } if file == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(bad));
    }
}

#[test]
fn ignores_non_sql_files_and_reads_before_after() {
    let mut files = pair(A, "select 1;");
    files.push(("README.md".into(), "x".into()));
    files.push((".2024.x.sh.up.sql.swp".into(), "x".into()));
    files.push(("before.sql".into(), "set x = 1;".into()));
    files.push(("after.sql".into(), "select 2;".into()));
    let s = MigrationSet::parse(files).unwrap();
    assert_eq!(s.migrations.len(), 1);
    assert_eq!(s.before.as_deref(), Some("set x = 1;"));
    assert_eq!(s.after.as_deref(), Some("select 2;"));
}

#[test]
fn refuses_missing_half_and_duplicate_numbers() {
    let err = MigrationSet::parse(vec![(format!("{A}.up.sql"), String::new())]).unwrap_err();
    assert_eq!(err, MigrationError::MissingPair { version: A.into() });
    let mut files = pair(A, "select 1;");
    files.extend(pair("20240101000000.other.sh", "select 1;"));
    let err = MigrationSet::parse(files).unwrap_err();
    assert!(
        matches!(err, MigrationError::DuplicateVersion { .. }),
        "{err}"
    );
}

#[test]
fn longest_prefix_wins_with_pg_mig_rule() {
    let s = set(&[
        ("1.a.sh", "select 1;"),
        ("2.b.sh0000", "select 1;"),
        ("3.c.public", "select 1;"),
    ]);
    assert_eq!(s.target_for("sh0042"), Some("sh"));
    assert_eq!(s.target_for("sh0000"), Some("sh0000"));
    assert_eq!(s.target_for("public"), Some("public"));
    assert_eq!(s.target_for("shadow"), None);
    assert_eq!(s.target_for("atoll"), None);
    assert!(schema_matches_prefix("sh0001", "sh000"));
    assert!(!schema_matches_prefix("publicity", "public"));
}

#[test]
fn plan_groups_shards_with_the_same_pending_list() {
    let s = abc();
    let mut states: Vec<SchemaState> = (1..=64)
        .map(|n| state(&format!("sh{n:04}"), (n % 2) as u16, &[]))
        .collect();
    states[41] = state("sh0042", 0, &[A]);
    states[76 - 64] = state("sh0013", 1, &[A, B]);
    states.push(state("public", 0, &[]));
    states.push(state("atoll", 0, &[]));
    let p = plan(&s, &states);
    assert_eq!(p.schemas.len(), 65, "atoll matches no target");
    assert_eq!(p.up_to_date, 1);
    assert_eq!(p.groups.len(), 3);
    assert_eq!(p.groups[0].pending, [A, B]);
    assert_eq!(p.groups[0].count, 62);
    assert_eq!(
        p.groups[0].schemas,
        "sh0001-sh0012, sh0014-sh0041, sh0043-sh0064"
    );
    let one: Vec<_> = p.groups[1..]
        .iter()
        .map(|g| (&g.pending, &g.schemas))
        .collect();
    assert!(one.contains(&(&vec![B.to_string()], &"sh0042".to_string())));
    assert!(one.contains(&(&vec![C.to_string()], &"public".to_string())));
    assert!(p.drift.is_empty());
    assert!(!p.is_up_to_date());
    assert!(check_applicable(&p, false).is_ok());
    let public = p.schemas.iter().find(|s| s.schema == "public").unwrap();
    assert!(!public.is_shard());
}

#[test]
fn ten_thousand_shards_in_one_state_are_one_group() {
    let s = abc();
    let states: Vec<_> = (0..=9999)
        .map(|n| state(&format!("sh{n:04}"), 0, &[A]))
        .collect();
    let p = plan(&s, &states);
    assert_eq!(p.groups.len(), 1);
    assert_eq!(p.groups[0].schemas, "sh0000-sh9999");
    assert_eq!(p.groups[0].count, 10_000);
    assert_eq!(p.unmatched_targets, ["public"]);
}

#[test]
fn drift_missing_on_disk_and_out_of_order() {
    let s = abc();
    let gone = "20231231000000.old.sh";
    let states = vec![
        state("sh0001", 0, &[A, B]),
        state("sh0002", 0, &[A, gone]),
        state("sh0003", 1, &[B]),
    ];
    let p = plan(&s, &states);
    assert_eq!(p.up_to_date, 1);
    assert_eq!(p.drift.len(), 2);
    assert_eq!(
        p.drift[0].drift,
        Some(Drift::MissingOnDisk {
            version: gone.into()
        })
    );
    assert_eq!(
        p.drift[1].drift,
        Some(Drift::OutOfOrder {
            version: A.into(),
            later: B.into()
        })
    );
    let err = check_applicable(&p, true).unwrap_err();
    assert!(err.to_string().contains("sh0002"), "{err}");
    assert!(err.to_string().contains(gone), "{err}");
}

#[test]
fn applied_order_in_the_table_does_not_matter() {
    let s = abc();
    let p = plan(&s, &[state("sh0001", 0, &[B, A])]);
    assert!(p.drift.is_empty());
    assert_eq!(p.up_to_date, 1);
}

#[test]
fn unsafe_statements_need_consent() {
    let s = set(&[
        (A, "create table users (id int);"),
        (B, "alter table users drop column nick; truncate users;"),
    ]);
    let p = plan(&s, &[state("sh0001", 0, &[A])]);
    let what: Vec<&str> = p
        .unsafe_pending
        .iter()
        .map(|u| u.statement.as_str())
        .collect();
    assert_eq!(what, ["DROP COLUMN", "TRUNCATE"]);
    let err = check_applicable(&p, false).unwrap_err();
    assert!(err.to_string().contains("--allow-unsafe"), "{err}");
    assert!(check_applicable(&p, true).is_ok());
    // Already applied: no longer pending, no longer flagged.
    let p = plan(&s, &[state("sh0001", 0, &[A, B])]);
    assert!(p.unsafe_pending.is_empty());
}

#[test]
fn unsafe_detection() {
    let reason = |sql: &str| {
        statements(sql)
            .unwrap()
            .iter()
            .find_map(|s| s.unsafe_reason())
    };
    assert_eq!(reason("DROP TABLE users").as_deref(), Some("DROP TABLE"));
    assert_eq!(
        reason("drop schema x cascade").as_deref(),
        Some("DROP SCHEMA")
    );
    assert_eq!(reason("truncate table users").as_deref(), Some("TRUNCATE"));
    assert_eq!(
        reason("alter table users drop column nick").as_deref(),
        Some("DROP COLUMN")
    );
    assert_eq!(
        reason("alter table users drop nick").as_deref(),
        Some("DROP COLUMN")
    );
    assert_eq!(
        reason("alter table users add x int, alter column nick type varchar(10)").as_deref(),
        Some("ALTER COLUMN ... TYPE")
    );
    assert_eq!(
        reason("alter table users alter nick set data type text").as_deref(),
        Some("ALTER COLUMN ... TYPE")
    );
    assert_eq!(
        reason("alter table users drop constraint users_pkey").as_deref(),
        None
    );
    assert_eq!(
        reason("alter table users alter column nick drop default").as_deref(),
        None
    );
    assert_eq!(
        reason("alter table users alter column nick drop not null").as_deref(),
        None
    );
    assert_eq!(reason("create type mood as enum ('a')").as_deref(), None);
    assert_eq!(
        reason("-- drop table users\nselect 'drop table x'").as_deref(),
        None
    );
    assert_eq!(
        reason("create function f() returns void language sql as $$ truncate users $$").as_deref(),
        None
    );
    assert_eq!(
        reason("alter table users add column y int check (y > 0)").as_deref(),
        None
    );
}

#[test]
fn splits_statements_around_quotes_comments_and_dollar_bodies() {
    let st = statements(
        "select ';'; /* a; /* nested; */ b */ select \"x;y\";\n\
         create function f() returns int language sql as $body$ select 1; $body$;\n\
         select E'it\\'s;'; -- trailing; comment\n ;;",
    )
    .unwrap();
    let texts: Vec<&str> = st.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[0], "select ';'");
    assert!(texts[2].ends_with("$body$"));
}

#[test]
fn concurrently_files_run_outside_transactions() {
    let s = set(&[(
        A,
        "create unique index concurrently if not exists \"Users_Nick\" on users (nick);\n\
         drop index concurrently if exists sh0001.old_idx;",
    )]);
    let RunMode::Concurrently { statements } = &s.migrations[0].up.mode else {
        panic!("not concurrent");
    };
    assert_eq!(statements.len(), 2);
    assert!(statements[0].create);
    assert_eq!(statements[0].name.as_deref(), Some("Users_Nick"));
    assert!(!statements[1].create);
    assert_eq!(statements[1].name.as_deref(), Some("old_idx"));
    assert_eq!(s.migrations[0].dn.mode, RunMode::Transaction);
}

#[test]
fn concurrently_mixed_or_unnamed_is_refused() {
    for bad in [
        "create index concurrently on users (nick);",
        "create index concurrently i on users (nick); alter table users add x int;",
        "alter table p detach partition c concurrently;",
        "create table t (id int); refresh materialized view concurrently v; reindex table concurrently t;",
    ] {
        let err = MigrationSet::parse(pair(A, bad)).unwrap_err();
        assert!(
            matches!(err, MigrationError::BadFile { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn undo_targets_where_the_version_is_latest() {
    let s = abc();
    let states = vec![
        state("sh0001", 0, &[A, B]),
        state("sh0002", 1, &[A]),
        state("sh0003", 1, &[A, B]),
    ];
    let (m, targets) = plan_undo(&s, &states, "20240102000000").unwrap();
    assert_eq!(m.version, B);
    let names: Vec<&str> = targets.iter().map(|t| t.schema.as_str()).collect();
    assert_eq!(names, ["sh0001", "sh0003"]);
    let err = plan_undo(&s, &states, A).unwrap_err();
    assert!(matches!(err, MigrationError::NotLatest { .. }), "{err}");
    assert!(plan_undo(&s, &states, "nope").is_err());
}

#[test]
fn compacts_schema_lists() {
    assert_eq!(
        compact_schemas(&["sh0003", "sh0001", "sh0002", "public", "sh0007"], 10),
        "sh0001-sh0003, sh0007, public"
    );
    assert_eq!(
        compact_schemas(&["sh0001", "sh0003", "sh0005"], 2),
        "sh0001, sh0003, and 1 more"
    );
}

#[test]
fn signatures_group_and_explain() {
    let base: BTreeSet<String> = [
        "table users",
        "column users.id bigint",
        "column users.nick text",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut m = BTreeMap::new();
    for n in 1..=64 {
        m.insert(format!("sh{n:04}"), base.clone());
    }
    let mut odd = base.clone();
    odd.remove("column users.nick text");
    odd.insert("index users_x on users".to_string());
    m.insert("sh0042".into(), odd);
    let g = group_signatures(&m);
    assert_eq!(g.len(), 2);
    assert!(g[0].reference);
    assert_eq!(g[0].count, 63);
    assert!(g[0].missing.is_empty());
    assert_eq!(
        g[1].explain(),
        "sh0042 differs: column users.nick text missing; index users_x on users extra"
    );
    assert!(group_signatures(&BTreeMap::new()).is_empty());
}

#[test]
fn checksum_is_stable() {
    assert_eq!(sql::checksum(""), "cbf29ce484222325");
    assert_ne!(sql::checksum("a"), sql::checksum("b"));
}

#[test]
fn files_edited_after_apply_are_reported() {
    let s = abc();
    let mut edited = state("sh0001", 0, &[A, B]);
    edited
        .checksums
        .insert(A.into(), s.migrations[0].up.checksum.clone());
    edited.checksums.insert(B.into(), "0000000000000000".into());
    let mut same = state("sh0002", 0, &[A, B]);
    same.checksums
        .insert(B.into(), s.migrations[1].up.checksum.clone());
    let p = plan(&s, &[edited, same]);
    assert_eq!(p.changed.len(), 1);
    assert_eq!(p.changed[0].version, B);
    assert_eq!(p.changed[0].count, 1);
    assert_eq!(p.changed[0].example, "sh0001");
    assert_eq!(p.up_to_date, 2, "a warning, not drift");
}

#[test]
fn unsafe_detection_covers_every_destructive_statement() {
    let reason = |sql: &str| {
        statements(sql)
            .unwrap()
            .iter()
            .find_map(|s| s.unsafe_reason())
    };
    for (sql, want) in [
        ("drop sequence s", "DROP SEQUENCE"),
        ("drop view v", "DROP VIEW"),
        (
            "drop materialized view if exists v",
            "DROP MATERIALIZED VIEW",
        ),
        ("drop type mood", "DROP TYPE"),
        ("drop function f(int)", "DROP FUNCTION"),
        ("delete from users", "DELETE without WHERE"),
        ("delete from users using x", "DELETE without WHERE"),
        (
            "alter table users rename column nick to handle",
            "RENAME COLUMN",
        ),
        ("alter table users rename nick to handle", "RENAME COLUMN"),
        ("alter table users rename to people", "RENAME TO (table)"),
        ("do $$ begin execute 'drop table users'; end $$", "DO block"),
        (
            "alter table t alter column type type bigint",
            "ALTER COLUMN ... TYPE",
        ),
        (
            "alter table t alter \"Nick\" set data type text",
            "ALTER COLUMN ... TYPE",
        ),
    ] {
        assert_eq!(reason(sql).as_deref(), Some(want), "{sql}");
    }
    for sql in [
        "drop index users_nick_idx",
        "drop index concurrently if exists users_nick_idx",
        "delete from users where id in (select id from old)",
        "alter table users rename constraint a to b",
        // A column named `type`: not a type change.
        "alter table t alter column type set default 1",
        "alter table t alter type drop not null",
        "alter table t add column type text",
    ] {
        assert_eq!(reason(sql), None, "{sql}");
    }
}

#[test]
fn transaction_control_in_a_file_is_refused() {
    for bad in [
        "create table a (id int); commit;",
        "begin; create table a (id int);",
        "start transaction; select 1;",
        "create table a (id int);\nend;",
        "rollback;",
        "abort;",
        "rollback work;",
    ] {
        let err = MigrationSet::parse(pair(A, bad)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MigrationError::BadFile { .. }) && text.contains(&format!("{A}.up.sql")),
            "{bad}: {text}"
        );
        assert!(text.contains("transaction"), "{text}");
    }
    // Savepoints stay inside the transaction; BEGIN inside a body is no statement.
    let ok = "savepoint s; create table a (id int); rollback to savepoint s; \
              rollback transaction to s; release savepoint s; \
              create function f() returns void language plpgsql as $$ begin perform 1; end $$;";
    assert!(MigrationSet::parse(pair(A, ok)).is_ok());
    // A SQL-standard function body holds semicolons and ends with END: one statement.
    let atomic = "create function f(x int) returns int language sql begin atomic \
                  select case when x > 0 then 1 else 0 end; select 2; end; select 1;";
    assert_eq!(statements(atomic).unwrap().len(), 2);
    assert!(MigrationSet::parse(pair(A, atomic)).is_ok());
}

#[test]
fn refresh_and_reindex_concurrently() {
    let s = set(&[(A, "refresh materialized view concurrently stats;")]);
    assert_eq!(s.migrations[0].up.mode, RunMode::Transaction);
    let s = set(&[(
        A,
        "reindex index concurrently users_nick_idx;\nreindex (verbose) table concurrently users;",
    )]);
    let RunMode::Concurrently { statements } = &s.migrations[0].up.mode else {
        panic!("not concurrent");
    };
    assert_eq!(statements.len(), 2);
    assert!(statements
        .iter()
        .all(|s| s.op == sql::ConcurrentOp::Reindex));
    let err = MigrationSet::parse(pair(A, "alter table p detach partition c concurrently;"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DETACH PARTITION ... CONCURRENTLY") && err.contains(A),
        "{err}"
    );
}

#[test]
fn leftover_copies_matching_a_shard_prefix_are_ignored() {
    let s = abc();
    let states = vec![
        state("sh0042", 1, &[A]),
        state("sh0042_old", 1, &[]),
        state("sh0042_moved_1700000000", 0, &[A, B]),
        state("public", 0, &[]),
    ];
    let p = plan(&s, &states);
    let planned: Vec<&str> = p.schemas.iter().map(|s| s.schema.as_str()).collect();
    assert_eq!(planned, ["public", "sh0042"]);
    let ignored: Vec<&str> = p.ignored.iter().map(|s| s.schema.as_str()).collect();
    assert_eq!(ignored, ["sh0042_moved_1700000000", "sh0042_old"]);
    assert!(p.drift.is_empty());
    // Undo never touches a leftover copy either.
    let (_, targets) = plan_undo(&s, &states, B).expect("undo");
    assert!(targets.is_empty(), "{targets:?}");
    assert!(is_shard_target("sh") && is_shard_target("sh0042"));
    assert!(!is_shard_target("shadow") && !is_shard_target("public"));
}

#[test]
fn undo_needs_consent_for_destructive_down_files_and_refuses_drift() {
    let files = vec![
        (
            format!("{A}.up.sql"),
            "create table users (id int);".to_string(),
        ),
        (format!("{A}.dn.sql"), "drop table users;".to_string()),
        (
            format!("{B}.up.sql"),
            "alter table users add nick text;".to_string(),
        ),
        (format!("{B}.dn.sql"), "select 1;".to_string()),
    ];
    let s = MigrationSet::parse(files).expect("valid");
    let ok_states = vec![state("sh0001", 0, &[A])];
    let a = s.find(A).expect("A");
    let err = check_undo(&s, &ok_states, a, false).unwrap_err();
    assert!(
        matches!(&err, MigrationError::Unsafe { file, .. } if file == &format!("{A}.dn.sql")),
        "{err}"
    );
    assert!(check_undo(&s, &ok_states, a, true).is_ok());
    let b = s.find(B).expect("B");
    assert!(check_undo(&s, &[state("sh0001", 0, &[A, B])], b, false).is_ok());
    // Drift on any schema refuses the undo, even with consent.
    let drifted = vec![
        state("sh0001", 0, &[A, B]),
        state("sh0002", 0, &[A, B, "20230101000000.gone.sh"]),
    ];
    let err = check_undo(&s, &drifted, b, true).unwrap_err();
    assert!(matches!(err, MigrationError::Drift { .. }), "{err}");
}

#[test]
fn reindex_targets_and_their_leftovers() {
    use sql::ReindexTarget;
    let s = set(&[(
        A,
        "reindex index concurrently users_nick_idx;\nreindex (verbose) table concurrently public.\"Users\";\nreindex schema concurrently sh0001;",
    )]);
    let RunMode::Concurrently { statements } = &s.migrations[0].up.mode else {
        panic!("not concurrent");
    };
    let targets: Vec<_> = statements
        .iter()
        .map(|s| (s.reindex_schema.as_deref(), s.reindex.clone()))
        .collect();
    assert_eq!(
        targets,
        [
            (None, Some(ReindexTarget::Index("users_nick_idx".into()))),
            // The qualifier is kept: the leftovers are looked for in that schema.
            (Some("public"), Some(ReindexTarget::Table("Users".into()))),
            (Some("sh0001"), Some(ReindexTarget::Schema)),
        ]
    );
    let s = set(&[(A, "reindex database concurrently x;")]);
    let RunMode::Concurrently { statements } = &s.migrations[0].up.mode else {
        panic!("not concurrent");
    };
    assert_eq!(statements[0].reindex, Some(ReindexTarget::Schema));
    assert_eq!(statements[0].reindex_schema, None);
    let idx = ReindexTarget::Index("users_nick_idx".into());
    assert!(idx.is_leftover("users_nick_idx_ccnew", "users"));
    assert!(idx.is_leftover("users_nick_idx_ccold2", "users"));
    assert!(!idx.is_leftover("users_nick_idx", "users"));
    // Another index whose name is a prefix of the target's, or a look-alike suffix.
    assert!(!idx.is_leftover("users_ccnew", "users"));
    assert!(!idx.is_leftover("users_nick_idx_ccnewer", "users"));
    // A 63-byte copy of a long name: its base was truncated.
    let long = "a".repeat(70);
    let copy = format!("{}_ccnew", &long[..57]);
    assert!(ReindexTarget::Index(long).is_leftover(&copy, "t"));
    let table = ReindexTarget::Table("users".into());
    assert!(table.is_leftover("users_pkey_ccnew1", "users"));
    assert!(!table.is_leftover("orders_pkey_ccnew", "orders"));
    assert!(!table.is_leftover("users_tmp_idx", "users"));
    assert!(ReindexTarget::Schema.is_leftover("x_ccold", "orders"));
    // ChooseRelationName counts from 1 without leading zeros.
    assert!(!ReindexTarget::Schema.is_leftover("x_ccold01", "orders"));
}

#[test]
fn reindex_copy_names_follow_postgres_truncation() {
    use sql::{reindex_copy_name, truncate_identifier, ReindexTarget};
    // Short names: base + "_" + label.
    assert_eq!(reindex_copy_name("users_pkey", "ccnew"), "users_pkey_ccnew");
    assert_eq!(
        reindex_copy_name("users_pkey", "ccold12"),
        "users_pkey_ccold12"
    );
    // A long name: the base keeps 63 - 1 - len(label) bytes, so a numbered label
    // shortens it further.
    let long = "a".repeat(70);
    assert_eq!(truncate_identifier(&long).len(), 63);
    assert_eq!(
        reindex_copy_name(&long, "ccnew"),
        format!("{}_ccnew", "a".repeat(57))
    );
    assert_eq!(
        reindex_copy_name(&long, "ccnew1"),
        format!("{}_ccnew1", "a".repeat(56))
    );
    let target = ReindexTarget::Index(long.clone());
    assert!(target.is_leftover(&format!("{}_ccnew1", "a".repeat(56)), "t"));
    // Not a shorter base sharing the prefix: that is another index's copy.
    assert!(!target.is_leftover(&format!("{}_ccnew", "a".repeat(50)), "t"));
    assert!(!target.is_leftover(&format!("{}_ccnew1", "a".repeat(57)), "t"));
    // Multibyte: "ä" is 2 bytes. 30 of them and "_idx" (64 bytes) are stored as 63
    // bytes ("_id" kept); the copy's 57 bytes of room end inside a character, so the
    // base keeps 28 of them (56 bytes), as pg_mbcliplen cuts.
    let umlauts = format!("{}_idx", "ä".repeat(30));
    assert_eq!(
        truncate_identifier(&umlauts),
        format!("{}_id", "ä".repeat(30))
    );
    let copy = format!("{}_ccnew", "ä".repeat(28));
    assert_eq!(reindex_copy_name(&umlauts, "ccnew"), copy);
    let target = ReindexTarget::Index(umlauts.clone());
    assert!(target.is_leftover(&copy, "t"));
    assert!(target.is_leftover(&format!("{}_ccold", "ä".repeat(28)), "t"));
    assert!(!target.is_leftover(&format!("{}_ccnew", "ä".repeat(27)), "t"));
    // The index named by its truncated form finds the same copies.
    let stored = ReindexTarget::Index(truncate_identifier(&umlauts).to_string());
    assert!(stored.is_leftover(&copy, "t"));
    // A table named with more than 63 bytes is stored truncated, here to 62 bytes: the
    // 63rd byte is inside a character.
    let long_table = format!("{}_events", "é".repeat(32));
    let table = ReindexTarget::Table(long_table.clone());
    let stored_table = truncate_identifier(&long_table);
    assert_eq!(stored_table, "é".repeat(31));
    assert!(table.is_leftover("x_ccnew", stored_table));
    assert!(!table.is_leftover("x_ccnew", &long_table));
}

#[test]
fn pg_mig_directives() {
    let text = "-- $parallelism_per_host=2\n--$parallelism_global = 1\r\ncreate table t (id int);\n-- $delay=150\n--\t$run_alone=1\n-- a $note=not a directive\n";
    let d = Directives::parse("f.up.sql", text).expect("valid");
    assert_eq!(
        d,
        Directives {
            parallelism_per_host: Some(2),
            parallelism_global: Some(1),
            delay_ms: 150,
            run_alone: true,
            only_shards: None,
        }
    );
    // atoll's own: the shards whose schemas run the statements.
    let d = Directives::parse(
        "f",
        "-- $atoll_shards=3,17,100-102
select 1;",
    )
    .expect("valid");
    assert_eq!(d.to_string(), "$atoll_shards=3,17,100-102");
    assert!(d.runs_on("sh0017") && d.runs_on("sh0101"));
    assert!(!d.runs_on("sh0004") && !d.runs_on("public"));
    assert!(Directives::default().runs_on("public"));
    // 0 means "no limit" / "off", as in pg-mig.
    let d = Directives::parse("f", "-- $parallelism_global=0\n-- $run_alone=0").expect("valid");
    assert!(d.is_empty());
    assert!(
        Directives::parse("f", "select 1; -- $delay=x\n  -- $delay=x")
            .expect("valid")
            .is_empty()
    );
    // Other names are ordinary comments, not refused.
    let d = Directives::parse(
        "f",
        "-- $1=user id
-- $owner=ops
-- $delay=5",
    )
    .expect("valid");
    assert_eq!(d.delay_ms, 5);
    let err = |text: &str| Directives::parse("f.up.sql", text).unwrap_err().to_string();
    // A name starting like a known one is a typo, refused.
    assert!(err("-- $delay_ms=5").contains("unknown variable $delay_ms"));
    assert!(err("-- $run_alone_x=1").contains("unknown variable $run_alone_x"));
    assert!(err("-- $atoll_shard=1").contains("unknown variable $atoll_shard"));
    let e = err("-- $atoll_shards=5-2");
    assert!(
        e.contains("line 1") && e.contains("$atoll_shards=5-2"),
        "{e}"
    );
    let e = err("select 1;\n-- $parallelism=2");
    assert!(
        e.contains("f.up.sql line 2") && e.contains("unknown variable $parallelism"),
        "{e}"
    );
    let e = err("-- $delay=10ms");
    assert!(e.contains("line 1") && e.contains("$delay=10ms"), "{e}");
    assert!(err("-- $delay=").contains("non-negative integer"));
    assert!(err("-- $delay=-1").contains("non-negative integer"));
    assert!(err("-- $delay=1\n-- $delay=2").contains("line 2: $delay is set twice"));
    // Parsed with the file: a bad value refuses the directory, naming the file.
    let e = MigrationSet::parse(pair(A, "-- $parallelism_per_host=two\nselect 1;"))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("{A}.up.sql line 1")), "{e}");
    let s = set(&[(A, "-- $parallelism_per_host=3\n-- $delay=5\nselect 1;")]);
    assert_eq!(s.migrations[0].up.directives.parallelism_per_host, Some(3));
    assert!(s.migrations[0].dn.directives.is_empty());
    // The plan lists pending files that throttle themselves, as written.
    let p = plan(&s, &[state("sh0001", 0, &[])]);
    assert_eq!(p.throttled.len(), 1);
    assert_eq!(
        p.throttled[0].directives.to_string(),
        "$parallelism_per_host=3 $delay=5"
    );
    assert!(plan(&s, &[state("sh0001", 0, &[A])]).throttled.is_empty());
}

#[test]
fn atoll_shards_narrows_a_migration_to_the_shards_it_names() {
    let s = set(&[(A, "select 1;"), (B, "-- $atoll_shards=2\nselect 2;")]);
    let p = plan(
        &s,
        &[
            state("sh0001", 0, &[A]),
            state("sh0002", 0, &[A]),
            state("sh0003", 0, &[]),
        ],
    );
    let pending = |schema: &str| {
        p.schemas
            .iter()
            .find(|x| x.schema == schema)
            .map(|x| x.pending.clone())
            .unwrap_or_default()
    };
    assert!(pending("sh0001").is_empty());
    assert_eq!(pending("sh0002"), [B]);
    assert_eq!(pending("sh0003"), [A]);
    // A shard that has it is not out of order for lacking it elsewhere, and one without it
    // can take later versions.
    let p = plan(&s, &[state("sh0002", 0, &[A, B]), state("sh0001", 0, &[A])]);
    assert!(p.is_up_to_date(), "{p:?}");
}
