//! Every object type a schema can hold moves (issue 9, items 1–4): the fixture
//! `fixtures/every_object.sql` (one of each, with data) moves to the other island and
//! back, and each time `pg_dump --schema-only` of the shard on the destination equals the
//! source's before the move (normalised: only psql's `\restrict` / `\unrestrict` lines,
//! whose key is random per run, are dropped), and so do the rows of every table and of
//! the refreshed materialized view. A foreign key to a table the destination lacks is
//! refused before anything is created; tables without a key move with
//! `--replica-identity-full`, which is undone after the switch, after an abort and on a
//! resume after a kill.

mod common;

use atoll_core::move_plan::MoveStep;
use atoll_core::{Config, IslandId, ShardNo};
use atoll_move::{MoveError, MoveOptions, MoveReport};
use atoll_testkit::TestCluster;
use common::{discover, master, shard};
use std::time::Duration;
use tokio_postgres::Client;

const FIXTURE: &str = include_str!("fixtures/every_object.sql");
const A: IslandId = IslandId(0);
const B: IslandId = IslandId(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_object_type_moves_there_and_back() {
    tokio::time::timeout(Duration::from_secs(420), scenario())
        .await
        .expect("the scenario finishes within 7 minutes");
}

async fn scenario() {
    let tc = TestCluster::setup(2, 0)
        .shards([1, 3, 4])
        .on_island(A)
        .start()
        .await
        .unwrap();
    let config = tc.config().clone();
    let snap = discover(&config).await;
    let (m0, m1) = (
        master(&config, &snap, A).await,
        master(&config, &snap, B).await,
    );
    // Roles are per PostgreSQL cluster; the global table is on both islands.
    for m in [&m0, &m1] {
        m.batch_execute(
            "create role atoll_fx_reader nologin;
             create schema globals;
             create table globals.countries (code text primary key);
             insert into globals.countries values ('FR'), ('DE');",
        )
        .await
        .unwrap();
    }
    m0.batch_execute(FIXTURE).await.unwrap();

    other_schemas_and_large_objects_are_refused(&config, &m0, &m1).await;
    there_and_back(&config, &m0, &m1).await;
    identity_is_restored_after_abort_and_resume(&config, &m0, &m1).await;
}

async fn start(
    config: &Config,
    s: ShardNo,
    to: IslandId,
    opts: &MoveOptions,
) -> Result<MoveReport, MoveError> {
    let snap = discover(config).await;
    atoll_move::start_move(config, &snap, s, to, opts, atoll_move::no_progress()).await
}

async fn resume(config: &Config, opts: &MoveOptions) -> Result<MoveReport, MoveError> {
    let snap = discover(config).await;
    atoll_move::resume_move(config, &snap, None, opts, atoll_move::no_progress()).await
}

fn check_of(e: &MoveError) -> &'static str {
    match e {
        MoveError::Unsafe { check, .. } => check,
        _ => "other",
    }
}

fn full() -> MoveOptions {
    MoveOptions {
        replica_identity_full: true,
        ..MoveOptions::default()
    }
}

async fn there_and_back(config: &Config, m0: &Client, m1: &Client) {
    let s = shard(1);
    // Tables without a key are refused by default, naming both ways out.
    let e = start(config, s, B, &MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(check_of(&e), "table_without_primary_key", "{e}");
    let text = e.to_string();
    assert!(text.contains("sh0001.audit_log"), "{e}");
    assert!(text.contains("--replica-identity-full"), "{e}");
    assert!(text.contains("primary key"), "{e}");

    let schema = s.schema();
    let before = dump(config, A, &schema);
    for needle in [
        "CREATE DOMAIN",
        "CREATE AGGREGATE",
        "CREATE OPERATOR",
        "CREATE COLLATION",
        "CREATE MATERIALIZED VIEW",
        "PARTITION BY RANGE",
        "CREATE RULE",
        "CREATE STATISTICS",
        "INHERITS",
        "fillfactor='70'",
        "DISABLE TRIGGER shout",
        "ENABLE ALWAYS TRIGGER stamp_visits",
        "ENABLE REPLICA TRIGGER mark_visits",
        "PARTITION BY LIST",
        "PARTITION BY HASH",
        "CREATE POLICY",
        "COMMENT ON OPERATOR",
        "REFERENCES globals.countries",
    ] {
        assert!(before.contains(needle), "the fixture's dump lacks {needle}");
    }
    let rows = data(m0, &schema).await;
    let tickets = last_value(m0, "sh0001.tickets").await;

    let report = start(config, s, B, &full()).await.expect("move there");
    assert_eq!(report.replica_identity_full, ["audit_log (was default)"]);
    assert_same(&before, &dump(config, B, &schema), "after the move there");
    assert_eq!(data(m1, &schema).await, rows, "rows after the move there");
    assert!(last_value(m1, "sh0001.tickets").await > tickets);
    let backup = report.backup_schema.clone().unwrap();
    assert_eq!(
        replident(m0, &backup, "audit_log").await,
        "d",
        "the source's copy has its identity back"
    );

    start(config, s, A, &full()).await.expect("move back");
    assert_same(&before, &dump(config, A, &schema), "after the move back");
    assert_eq!(data(m0, &schema).await, rows, "rows after the move back");
}

/// Item 3: a foreign key to a table only the source island has is refused before anything
/// is created; item 1: large objects and extensions in the schema are refused by name.
async fn other_schemas_and_large_objects_are_refused(config: &Config, m0: &Client, m1: &Client) {
    m0.batch_execute(
        "create schema only_here;
         create table only_here.things (id int primary key);
         create table sh0003.refs (id int primary key, thing int references only_here.things);",
    )
    .await
    .unwrap();
    let e = start(config, shard(3), B, &MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(check_of(&e), "foreign_key_to_other_schema", "{e}");
    assert!(
        e.to_string()
            .contains("sh0003.refs.refs_thing_fkey references only_here.things"),
        "{e}"
    );
    // Nothing was created: no schema on the destination, no move recorded.
    let on_b: bool = m1
        .query_one(
            "select exists (select 1 from pg_namespace where nspname = 'sh0003')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!on_b);
    let snap = discover(config).await;
    assert!(atoll_move::unfinished(config, &snap)
        .await
        .unwrap()
        .is_empty());

    // Item 1: a large object column (here the `lo` extension's domain over oid) and an
    // extension installed in the shard's schema are refused by name.
    m0.batch_execute(
        "drop table sh0003.refs;
         create extension lo schema public;
         create table sh0003.files (id int primary key, body public.lo);",
    )
    .await
    .unwrap();
    let e = start(config, shard(3), B, &MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(check_of(&e), "unsupported_object", "{e}");
    assert!(
        e.to_string()
            .contains("large object column sh0003.files.body"),
        "{e}"
    );
    m0.batch_execute("drop table sh0003.files; create extension citext schema sh0003")
        .await
        .unwrap();
    let e = start(config, shard(3), B, &MoveOptions::default())
        .await
        .unwrap_err();
    assert_eq!(check_of(&e), "unsupported_object", "{e}");
    assert!(
        e.to_string()
            .contains("extension citext installed in sh0003"),
        "{e}"
    );
}

/// Item 4: `FULL` is set for the move and undone by an abort, and after a kill past the
/// switch by the resume; changes to the keyless tables replicate meanwhile.
async fn identity_is_restored_after_abort_and_resume(config: &Config, m0: &Client, m1: &Client) {
    let s = shard(4);
    m0.batch_execute(
        "create table sh0004.log (at int, what text);
         alter table sh0004.log replica identity nothing;
         create table sh0004.notes (n int);
         insert into sh0004.log select g, 'e' || g from generate_series(1, 100) g;
         insert into sh0004.notes select g from generate_series(1, 10) g;",
    )
    .await
    .unwrap();
    let stop_at = |step| MoveOptions {
        stop_after: Some(step),
        ..full()
    };
    let e = start(config, s, B, &stop_at(MoveStep::Subscribed))
        .await
        .unwrap_err();
    assert!(matches!(e, MoveError::Stopped { .. }), "{e}");
    assert_eq!(replident(m0, "sh0004", "log").await, "f");
    assert_eq!(replident(m0, "sh0004", "notes").await, "f");
    let snap = discover(config).await;
    atoll_move::abort_move(config, &snap, Some(s))
        .await
        .expect("abort");
    assert_eq!(replident(m0, "sh0004", "log").await, "n");
    assert_eq!(replident(m0, "sh0004", "notes").await, "d");

    let e = start(config, s, B, &stop_at(MoveStep::Subscribed))
        .await
        .unwrap_err();
    assert!(matches!(e, MoveError::Stopped { .. }), "{e}");
    m0.batch_execute(
        "update sh0004.log set what = 'changed' where at <= 10;
         delete from sh0004.log where at > 90;
         delete from sh0004.notes where n = 1;",
    )
    .await
    .unwrap();
    let e = resume(config, &stop_at(MoveStep::Activated))
        .await
        .unwrap_err();
    assert!(matches!(e, MoveError::Stopped { .. }), "{e}");
    let report = resume(config, &MoveOptions::default())
        .await
        .expect("resume");
    let backup = report.backup_schema.clone().unwrap();
    assert_eq!(replident(m0, &backup, "log").await, "n");
    assert_eq!(replident(m0, &backup, "notes").await, "d");
    assert_eq!(replident(m1, "sh0004", "log").await, "n");
    assert_eq!(replident(m1, "sh0004", "notes").await, "d");
    let counts = m1
        .query_one(
            "select (select count(*) from sh0004.log where what = 'changed'),
                    (select count(*) from sh0004.log), (select count(*) from sh0004.notes)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            counts.get::<_, i64>(0),
            counts.get::<_, i64>(1),
            counts.get::<_, i64>(2)
        ),
        (10, 90, 9)
    );
}

async fn replident(c: &Client, schema: &str, table: &str) -> String {
    c.query_one(
        "select c.relreplident::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = $1 and c.relname = $2",
        &[&schema, &table],
    )
    .await
    .unwrap()
    .get(0)
}

async fn last_value(c: &Client, seq: &str) -> i64 {
    c.query_one(&format!("select last_value from {seq}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// Every table's and materialized view's rows (`ONLY`: inheritance children count once),
/// as a count and a digest of their sorted text.
async fn data(c: &Client, schema: &str) -> Vec<(String, i64, String)> {
    let rels: Vec<String> = c
        .query(
            "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where n.nspname = $1 and c.relkind in ('r', 'm') order by 1",
            &[&schema],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for rel in rels {
        let r = c
            .query_one(
                &format!(
                    "select count(*), coalesce(md5(string_agg(t::text, '|' order by t::text)), '')
                       from only \"{schema}\".\"{rel}\" t"
                ),
                &[],
            )
            .await
            .unwrap();
        out.push((rel, r.get(0), r.get(1)));
    }
    assert!(out
        .iter()
        .any(|(rel, n, _)| rel == "mood_summary" && *n == 3));
    out
}

/// `pg_dump --schema-only` of `schema` on `island`'s master, without psql's `\restrict`
/// and `\unrestrict` lines (their key is random per run).
fn dump(config: &Config, island: IslandId, schema: &str) -> String {
    let node = &config.islands[usize::from(island.0)].nodes[0];
    let bin = std::env::var_os("ATOLL_PG_BIN")
        .map(|d| std::path::PathBuf::from(d).join("pg_dump"))
        .unwrap_or_else(|| "pg_dump".into());
    let out = std::process::Command::new(bin)
        .args(["--schema-only", &format!("--schema={schema}")])
        .env("PGHOST", &node.host)
        .env("PGPORT", node.port.to_string())
        .env("PGUSER", &node.user)
        .env("PGDATABASE", &node.database)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Equal dumps, or a panic showing the first lines that differ.
fn assert_same(want: &str, got: &str, when: &str) {
    if want == got {
        return;
    }
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let first = w
        .iter()
        .zip(&g)
        .position(|(a, b)| a != b)
        .unwrap_or(w.len().min(g.len()));
    let from = first.saturating_sub(3);
    panic!(
        "pg_dump differs {when} at line {first}:\n--- source before\n{}\n--- destination\n{}",
        w[from..(first + 8).min(w.len())].join("\n"),
        g[from..(first + 8).min(g.len())].join("\n")
    );
}
